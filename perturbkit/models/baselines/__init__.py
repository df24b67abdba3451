"""Baselines the papers compare against."""

from ._cross_cell import RidgeMap, naive_cross_cell

__all__ = ["RidgeMap", "naive_cross_cell"]
