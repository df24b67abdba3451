"""The training engine shared by every model: one loop, early stopping, the model base class, batch sources."""

from ._base import BaseModel
from ._loop import Batches, EarlyStopping, History, Objective, evaluate, fit, split_indices
from ._stack import ModuleStack, StackedBatches
from ._stream import StreamedBatches, is_out_of_core

__all__ = [
    "BaseModel",
    "Batches",
    "EarlyStopping",
    "History",
    "ModuleStack",
    "Objective",
    "StackedBatches",
    "StreamedBatches",
    "evaluate",
    "fit",
    "is_out_of_core",
    "split_indices",
]
