"""Adapters that let other libraries use these backbones: segmentation_models_pytorch encoders (`interop.smp`)
and torchvision detection FPN backbones (`interop.torchvision_detection`).

Each adapter is imported on its own, so that using one library never requires the other.
"""
