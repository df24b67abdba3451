"""Simulated data with known ground truth, and downloaders for the field's public data sets.

Simulators (each documents its generative model; all take ``seed=`` and return AnnData in perturbkit's schema,
the truth in ``adata.uns['simulation']``, ``adata.layers`` and ``adata.obsm['latent_true']``):

- :func:`simulate_bulk`: LINCS L1000 level-5-like signatures in several cell lines (DeepCellState, cycleCDR).
- :func:`simulate_l1000`: a second, independently built L1000-like generator (shared low-rank map plus cell-line
  gene modules, Student-t noise, doses and times, drugs missing from some cell lines), to check that defaults chosen
  on one simulator carry over.
- :func:`simulate_morphology`: Cell Painting-like well profiles with CellProfiler feature groups (VAEs, LSA).
- :func:`simulate_single_cell`: unpaired single-cell UMI counts of control and treated cells (cycleCDR).
- :func:`write_simulated_gctx`: a LINCS-sized GCTX file with the real file's layout, written in blocks (for
  conversion tests and benchmarks).

Downloaders (pooch; cached in ``pk.settings.datadir``; hashes checked; :class:`DownloadError` when offline):

- :func:`lincs_l1000_level5`: GEO GSE70138 level 5 signatures, ``sig_info`` and ``gene_info``.
- :func:`kang_pbmc`: Kang et al. 2018 interferon-β PBMCs.
- :func:`lincs_cell_painting`: LINCS Cell Painting consensus or per-plate profiles.
- :func:`registry`: every known file with its URL, hash and the hash's source.
"""

from ._download import DownloadError, fetch, kang_pbmc, lincs_cell_painting, lincs_l1000_level5, registry
from ._gctx import write_simulated_gctx
from ._simulate import cellprofiler_feature_names, simulate_bulk, simulate_morphology, simulate_single_cell
from ._simulate_l1000 import simulate_l1000

__all__ = [
    "simulate_bulk",
    "simulate_l1000",
    "simulate_morphology",
    "simulate_single_cell",
    "cellprofiler_feature_names",
    "write_simulated_gctx",
    "lincs_l1000_level5",
    "kang_pbmc",
    "lincs_cell_painting",
    "registry",
    "fetch",
    "DownloadError",
]
