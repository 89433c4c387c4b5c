"""tracker: keeps watch over long-running predictions on a Replicate-compatible API."""

__version__ = "0.1.0"
