"""The package version (a leaf module, so that any module can name it without importing the whole API)."""

__version__ = "0.1.0"
