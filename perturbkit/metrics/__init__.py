"""Metrics (``pk.metrics``) shared by every model and baseline."""

from .._stats import pearson_rows

__all__ = ["pearson_rows"]
