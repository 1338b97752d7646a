"""The eb_tf version, importable without TensorFlow (setup.py and run reports read it)."""
__all__ = ["__version__"]

__version__ = "0.7.0"
