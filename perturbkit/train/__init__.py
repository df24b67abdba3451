"""The training engine shared by every model: one loop, early stopping, and the model base class."""

from ._base import BaseModel
from ._loop import Batches, EarlyStopping, History, Objective, evaluate, fit, split_indices

__all__ = ["BaseModel", "Batches", "EarlyStopping", "History", "Objective", "evaluate", "fit", "split_indices"]
