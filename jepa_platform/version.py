"""The package version, in a module of its own so that what reports it need not import the package root."""
__version__ = "0.1.0"
