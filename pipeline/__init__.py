"""mediamon: multilingual media monitoring pipeline (import package ``pipeline``)."""

__version__ = "0.1.0"
