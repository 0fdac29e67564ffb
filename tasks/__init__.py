"""Lightning tasks: detection, segmentation and classification (one package each), and what they share (common)."""
