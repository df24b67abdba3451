"""Simulators with ground truth, and downloaders for the field's public data sets."""

from ._simulate import simulate_bulk

__all__ = ["simulate_bulk"]
