"""`fbtool validate`: PyTorch reference vs every other runtime and vs the deployed parser path."""

from .core import breaches, summary_table, validate

__all__ = ["validate", "breaches", "summary_table"]
