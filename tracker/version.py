"""The tracker's version: the User-Agent of its requests, the daemon's heartbeat row,
``tracker --version``. Its own module so that any part can name it without importing
the package (whose ``__init__`` hands out the Python API)."""

__version__ = "0.1.0"
