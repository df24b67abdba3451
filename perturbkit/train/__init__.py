"""The training engine shared by every model: one loop, early stopping, the model base class, streamed batches."""

from ._base import BaseModel
from ._loop import Batches, EarlyStopping, History, Objective, evaluate, fit, split_indices
from ._stream import StreamedBatches, is_out_of_core

__all__ = [
    "BaseModel",
    "Batches",
    "EarlyStopping",
    "History",
    "Objective",
    "StreamedBatches",
    "evaluate",
    "fit",
    "is_out_of_core",
    "split_indices",
]
