"""Model classes (``pk.models``): the networks' user-facing wrappers, trained through ``pk.tl``.

``pk.models.deepcellstate``, ``pk.models.vae``, ``pk.models.cyclecdr`` and ``pk.models.baselines`` are imported on
first use, so ``pk.models.deepcellstate.DeepCellState.load(path)`` works in a fresh session.
"""

from __future__ import annotations

from .._lazy import lazy_submodules

_SUBPACKAGES = (
    "anchor_vae",
    "baselines",
    "cpa",
    "cyclecdr",
    "deepcellstate",
    "dual_gan",
    "scgen",
    "tensor_completion",
    "vae",
)

__all__ = list(_SUBPACKAGES)
__getattr__ = lazy_submodules(__name__, _SUBPACKAGES)
