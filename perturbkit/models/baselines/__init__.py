"""Baselines the papers compare against: cross-cell-line maps and control → treated responses."""

from ._cross_cell import RidgeMap, naive_cross_cell
from ._response import (
    control_means,
    mean_treated_response,
    predict_mean_response,
    predict_no_change,
    response_baselines,
)

__all__ = [
    "RidgeMap",
    "control_means",
    "mean_treated_response",
    "naive_cross_cell",
    "predict_mean_response",
    "predict_no_change",
    "response_baselines",
]
