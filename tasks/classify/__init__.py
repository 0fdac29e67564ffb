"""Image classification with the papers' MobileNet classifiers: `python -m tasks.classify fit --backbone v3_small`."""

from tasks.classify.model import build_classifier
from tasks.classify.predictor import Classifier
from tasks.classify.task import ClassificationTask, main

__all__ = ["ClassificationTask", "Classifier", "build_classifier", "main"]
