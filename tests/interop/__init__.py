"""Tests of the adapters to segmentation_models_pytorch and torchvision detection."""
