"""The package's version: the one source (pyproject.toml reads it), in a module of its own so that any module
can name it without importing the package's face, which reaches the Python API above it."""

__version__ = "0.1.0"
