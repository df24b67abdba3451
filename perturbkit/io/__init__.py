"""Readers and writers of the field's formats, each returning AnnData in perturbkit's schema.

- :func:`read_gct` / :func:`write_gctx` / :func:`write_gct`: LINCS L1000 GCT text and GCTX (HDF5);
  :func:`read_gct_metadata`: their sample and gene tables without the matrix.
- :func:`read_cell_painting`: pycytominer-style Cell Painting profiles; :func:`parse_cellprofiler_features`.
- :func:`read_repurposing_hub`: the Broad Drug Repurposing Hub (drug → MOA, target, SMILES).
- :func:`read_moa_table`: a compound → MOA table such as the LINCS Cell Painting ``moa_map``.
- :func:`read_h5ad`: AnnData files, adding the schema's ``control`` column.
- :func:`convert_gctx`: a GCTX of any size into an ``.h5ad`` or ``.zarr`` store, block by block.
- :func:`read_store`: an ``.h5ad`` or ``.zarr`` store with X left on disk, for training larger than memory.
"""

from ._cellpainting import parse_cellprofiler_features, read_cell_painting
from ._convert import convert_gctx
from ._gct import read_gct, read_gct_metadata, write_gct, write_gctx
from ._h5ad import read_h5ad
from ._repurposing import read_moa_table, read_repurposing_hub
from ._store import read_store

__all__ = [
    "read_gct",
    "read_gct_metadata",
    "write_gctx",
    "write_gct",
    "read_cell_painting",
    "parse_cellprofiler_features",
    "read_repurposing_hub",
    "read_moa_table",
    "read_h5ad",
    "read_store",
    "convert_gctx",
]
