"""The VAE with an anchor loss: the DeepCellState paper's competitor."""

from ._model import AnchorVAE
from ._module import AnchorVAENetwork

__all__ = ["AnchorVAE", "AnchorVAENetwork"]
