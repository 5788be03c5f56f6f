"""engage: student engagement recognition from facial expression."""

__version__ = "0.1.0"
