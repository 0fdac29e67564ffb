"""Task heads that size themselves from a backbone's `feature_info`: SSDLite (`heads.ssdlite`), DeepLabV3
(`heads.deeplabv3`), LR-ASPP (`heads.lraspp`) and the segmentation model that joins one to a backbone
(`heads.segmentation`). The papers' classification heads live with the classifier, in `backbones.classifier`."""
