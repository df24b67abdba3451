"""perturbkit: predict and explore how drugs change cells.

>>> import perturbkit as pk
>>> adata = pk.datasets.simulate_bulk()
>>> pk.pp.validate(adata)

Namespaces follow scanpy: :mod:`pk.io` (readers), :mod:`pk.pp` (preprocessing), :mod:`pk.tl` (models and
analyses), :mod:`pk.experiments` (the papers' experiments), :mod:`pk.pl` (plotly figures), :mod:`pk.datasets`
(simulators and downloaders), :mod:`pk.metrics`, :mod:`pk.widgets` (Jupyter panels), :mod:`pk.errors` and
:data:`pk.settings`. Heavy submodules are imported on first use.
"""

from __future__ import annotations

from ._lazy import lazy_submodules
from ._settings import settings
from ._version import __version__

_SUBMODULES = ("io", "pp", "tl", "experiments", "pl", "datasets", "metrics", "train", "models", "widgets", "errors")

__all__ = ["settings", "__version__", *_SUBMODULES]


__getattr__ = lazy_submodules(__name__, _SUBMODULES)


def __dir__():
    return sorted(__all__)
