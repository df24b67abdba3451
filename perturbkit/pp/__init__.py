"""Preprocessing (``pk.pp``).

Check, annotate, aggregate, normalise, scale, select features, handle missing values and subtract controls.

All functions follow scanpy: ``adata`` first, options keyword-only, ``copy=False`` modifies ``adata`` in place and
returns None, ``copy=True`` returns a new AnnData and leaves ``adata`` untouched, and the parameters are recorded
in ``adata.uns``. :func:`aggregate` changes the number of rows, so it always returns a new AnnData.

``PBMC_MARKERS`` is the default ``{cell type: [marker genes]}`` table of :func:`annotate_cell_types`: canonical
markers of the main human PBMC populations.
"""

from .._schema import validate
from ._aggregate import aggregate
from ._annotate import annotate
from ._control import control_diff
from ._feature_select import feature_select
from ._markers import PBMC_MARKERS, annotate_cell_types
from ._missing import drop_missing, impute
from ._normalize import normalize
from ._scale import Scaler, scale, unscale

__all__ = [
    "validate",
    "annotate",
    "aggregate",
    "normalize",
    "scale",
    "unscale",
    "Scaler",
    "feature_select",
    "drop_missing",
    "impute",
    "control_diff",
    "annotate_cell_types",
    "PBMC_MARKERS",
]
