"""jepa-platform: self-supervised video representation learning."""
__version__ = "0.1.0"
