"""Lightning tasks: detection, segmentation and classification (one module each)."""
