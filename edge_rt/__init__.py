"""Edge runtime: capture audio, compute YAMNet features, run the model and report events."""
__version__ = "0.1.0"
