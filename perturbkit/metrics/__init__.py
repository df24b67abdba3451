"""Metrics (``pk.metrics``) shared by every model and baseline."""

from .._stats import pearson_rows
from ._response import (
    METRICS,
    evaluate_response,
    explained_variance_rows,
    perturbation_ranks,
    r2_rows,
    summarise_response,
)

__all__ = [
    "METRICS",
    "evaluate_response",
    "explained_variance_rows",
    "pearson_rows",
    "perturbation_ranks",
    "r2_rows",
    "summarise_response",
]
