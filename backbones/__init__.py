"""MobileNet V1-V4 backbones built from spec tables, with feature taps and checkpoint loading."""

from backbones import mobilenet_v1, mobilenet_v2, mobilenet_v3, mobilenet_v4  # noqa: F401  (registers the variants)
from backbones.builder import MobileNetBackbone, build_backbone
from backbones.classifier import MobileNetClassifier
from backbones.factory import create_backbone, create_classifier
from backbones.feature_info import FeatureInfo, FeatureTap
from backbones.registry import get_spec, list_backbones, register_backbone, variant_options

__all__ = [
    "FeatureInfo",
    "FeatureTap",
    "MobileNetBackbone",
    "MobileNetClassifier",
    "build_backbone",
    "create_backbone",
    "create_classifier",
    "get_spec",
    "list_backbones",
    "register_backbone",
    "variant_options",
]
