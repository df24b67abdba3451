"""Model classes (``pk.models``): the networks' user-facing wrappers, trained through ``pk.tl``.

``pk.models.deepcellstate``, ``pk.models.vae``, ``pk.models.cyclecdr`` and ``pk.models.baselines`` are imported on
first use, so ``pk.models.deepcellstate.DeepCellState.load(path)`` works in a fresh session.
"""

from __future__ import annotations

import importlib

_SUBPACKAGES = ("baselines", "cyclecdr", "deepcellstate", "vae")

__all__ = list(_SUBPACKAGES)


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'perturbkit.models' has no attribute {name!r}")
