"""unetsr's version, in the bottom layer so that any module can name it without importing the package's
public names (`unetsr/__init__.py` re-exports it)."""

__version__ = "0.1.0"
