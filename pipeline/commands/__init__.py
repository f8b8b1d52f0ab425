"""CLI command modules; each defines ``register(app)``.  See ``pipeline.cli``."""
