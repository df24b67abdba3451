"""Open an AnnData store (``.h5ad`` or ``.zarr``) with obs/var in memory and X left on disk, for streaming."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._schema import PerturbkitInputError

if TYPE_CHECKING:
    from anndata import AnnData

SUFFIXES = (".h5ad", ".zarr")


def read_store(path, *, backed: bool = True) -> AnnData:
    """Open an AnnData store whose matrix may not fit in memory: obs and var are read, X stays on disk.

    ``.h5ad`` opens in anndata's backed mode ``"r"`` (X is an ``h5py.Dataset`` or, for CSR, anndata's
    ``CSRDataset``); a ``.zarr`` store keeps X as the zarr array (dense) or anndata's ``CSRDataset`` over the zarr
    group (sparse); layers stay on disk the same way, and obsm, uns and the rest are read. These readers were the
    fastest for streaming, by measurement (``benchmarks/stream_readers.py``). Opening never writes the store.
    ``pk.tl.train_vae`` / ``train_scgen`` and the model classes stream such an AnnData in chunks instead of
    loading it.

    Parameters
    ----------
    path
        A ``.h5ad`` file or a ``.zarr`` folder written by anndata.
    backed
        Leave X on disk (default); ``False`` reads everything into memory, as ``anndata.read_h5ad`` /
        ``anndata.read_zarr``.

    Returns
    -------
    An AnnData with obs and var in memory and X on disk (``backed=True``).

    Examples
    --------
    >>> adata = pk.io.read_store("sciplex3.h5ad")          # 650,000 cells: X stays on disk
    >>> model = pk.tl.train_vae(adata, output="linear")    # streamed in chunks, flat memory
    """
    import anndata as ad

    if not isinstance(path, (str, Path)) and not hasattr(path, "__fspath__"):
        raise PerturbkitInputError(
            f"path must be the path of a .h5ad file or a .zarr store, got {type(path).__name__}."
        )
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise PerturbkitInputError(
            f"'{path}' is neither a .h5ad file nor a .zarr store (suffix {suffix or 'none'!r}). Pass an AnnData store "
            f"written by adata.write_h5ad(...) or adata.write_zarr(...); convert other formats with the pk.io readers "
            f"first."
        )
    if not path.exists():
        raise FileNotFoundError(
            f"No such AnnData store: '{path}'. Check the path (relative paths start at {Path.cwd()})."
        )
    if suffix == ".h5ad":
        if path.is_dir():
            raise PerturbkitInputError(f"'{path}' is a folder; a .h5ad store is one file. Pass the file's path.")
        try:
            return ad.read_h5ad(path, backed="r" if backed else None)
        except OSError as err:
            raise PerturbkitInputError(f"'{path}' cannot be read as .h5ad (HDF5): {err}") from None
    if not path.is_dir():
        raise PerturbkitInputError(
            f"'{path}' is a file; a .zarr store is a folder. Pass the folder written by write_zarr."
        )
    if not backed:
        return ad.read_zarr(path)
    return _open_zarr(path)


def _open_zarr(path: Path) -> AnnData:
    import anndata as ad
    import zarr
    from anndata.io import read_elem, sparse_dataset

    try:
        group = zarr.open_group(path, mode="r")
    except Exception as err:  # zarr raises several kinds for a folder that is not a store
        raise PerturbkitInputError(f"'{path}' cannot be opened as a zarr store: {err}") from None

    def lazy(element):
        if isinstance(element, zarr.Array):
            return element
        encoding = element.attrs.get("encoding-type")
        if encoding in ("csr_matrix", "csc_matrix"):
            return sparse_dataset(element)
        return read_elem(element)

    keys = set(group.keys())
    missing = {"obs", "var"} - keys
    if missing:
        raise PerturbkitInputError(
            f"'{path}' is not an AnnData zarr store: it has no {sorted(missing)} (keys: {sorted(keys)[:10]}). Write it "
            f"with adata.write_zarr(path)."
        )
    parts = {"obs": read_elem(group["obs"]), "var": read_elem(group["var"])}
    if "X" in keys:
        parts["X"] = lazy(group["X"])
    if "layers" in keys:
        parts["layers"] = {k: lazy(group["layers"][k]) for k in group["layers"].keys()}
    for name in ("obsm", "varm", "obsp", "varp", "uns"):
        if name in keys:
            parts[name] = read_elem(group[name])
    return ad.AnnData(**parts)
