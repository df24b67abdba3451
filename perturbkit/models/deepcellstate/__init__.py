"""DeepCellState (Umarov, Li & Arner, PLOS Comput Biol 2021)."""

from ._model import DeepCellState
from ._module import DeepCellStateNetwork

__all__ = ["DeepCellState", "DeepCellStateNetwork"]
