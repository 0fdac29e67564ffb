"""Task heads that size themselves from a backbone's `feature_info`."""

from heads.classification import ClassificationHead

__all__ = ["ClassificationHead"]
