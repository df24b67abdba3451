"""Convert a GCTX of any size (the full LINCS release: 12,328 genes × ~470,000 signatures) into an AnnData store.

The matrix is streamed ``chunk_size`` signatures at a time from the GCTX into ``X`` of an ``.h5ad`` file or a
``.zarr`` store, so memory is bounded by the chunk size, not by the file size. The store is laid out by anndata
itself: its writers write ``obs``, ``var`` and the rest of the skeleton; ``X`` is then added as an ordinary dense
array element (``encoding-type: array``) with h5py or zarr, which is exactly what anndata writes for a dense
``X``. ``anndata.read_h5ad`` / ``read_zarr`` (backed mode too) read the result.

Layout of ``X`` (samples × genes, float32, C order, so that blocks of whole rows stream in and out):

- ``.h5ad``: one contiguous, uncompressed HDF5 dataset, as :meth:`anndata.AnnData.write_h5ad` writes a dense
  ``X``: any block of rows is one contiguous byte range on disk;
- ``.zarr``: uncompressed chunks of whole rows, ``(rows, n_genes)`` with ``rows`` the largest power of two for
  which a chunk holds at most 16 MiB (256 rows × 12,328 genes = 12.6 MB; 4,096 rows × 978 landmark genes), never
  more than ``chunk_size``; each block written is a whole number of chunks, so no chunk is written twice.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .._schema import FileFormatError, PerturbkitInputError
from ._gct import (
    _MATRIX,
    _finish,
    _GctxSource,
    _runs,
    _select,
    _should_verify,
    _sniff_format,
)
from ._utils import existing_path

#: Signatures read and written per step. Measured on 20,000 × 12,328 (best of 3): throughput does not change from
#: 256 to 4,096 rows (per-step costs are microseconds next to a 12-50 MB block), so 1,024 (a 50 MB block, some
#: 150 MB of working set) keeps memory small without making steps tiny.
DEFAULT_CHUNK_SIZE = 1024
_ZARR_CHUNK_BYTES = 16 << 20  # zarr's cost per chunk written (~10 ms) is small next to 16 MiB
_SUFFIXES = {".h5ad": "h5ad", ".zarr": "zarr"}


def convert_gctx(
    path,
    out,
    *,
    landmark_only: bool = False,
    cid=None,
    rid=None,
    sig_info=None,
    gene_info=None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overwrite: bool = False,
    progress: bool | None = None,
    verify: bool | None = None,
) -> Path:
    """Convert a GCTX file of any size into an AnnData store (``.h5ad`` or ``.zarr``), chunk by chunk.

    The result holds what :func:`~perturbkit.io.read_gct` returns for the same arguments: ``obs`` = sample (column)
    metadata mapped to perturbkit's schema, ``var`` = gene (row) metadata, ``X`` = samples × genes float32, the
    same values in the same order. As :meth:`anndata.AnnData.write_h5ad` does, text ``obs``/``var`` columns
    with repeated values are stored as categoricals (the values are unchanged). The matrix is streamed
    ``chunk_size`` signatures at a time, so the memory it takes stays below 4 × ``chunk_size`` × n_genes × 4
    bytes (about 1-2 × for ``.h5ad``; zarr copies while encoding) whatever the size of the file: 200 MB at the
    default for 12,328 genes. ``obs`` and ``var`` are held in memory, as by :func:`~perturbkit.io.read_gct_metadata`
    (about 1.5 KB per signature with 16 metadata fields: 300 MB for 200,000 signatures). The store is written to
    a temporary sibling of ``out`` and moved into place at the end, so an interrupted conversion leaves no partial
    ``out`` (and an existing one as it was). The input file is only read.

    Parameters
    ----------
    path
        The ``.gctx`` file (GCT text is read whole by :func:`~perturbkit.io.read_gct`; convert that instead).
    out
        The store to write: a path ending in ``.h5ad`` (one HDF5 file) or ``.zarr`` (a directory).
    landmark_only
        Keep the landmark genes only (``pr_is_lm`` / ``pr_is_lmark`` equal to 1 or "Y", from ``gene_info`` or the
        file's own row metadata), as :func:`~perturbkit.io.read_gct` does.
    cid, rid
        Sample (column) / gene (row) ids to keep, in the order given; unknown ids raise an error naming them. To
        choose them from the metadata, use :func:`~perturbkit.io.read_gct_metadata` first (e.g.
        ``cid=obs.index[obs["cell_line"] == "A375"]``).
    sig_info, gene_info
        LINCS signature and gene tables joined onto ``obs`` / ``var``, as in :func:`~perturbkit.io.read_gct`.
    chunk_size
        Signatures read and written per step; it bounds the memory (a block is ``chunk_size`` × n_genes × 4
        bytes: 50 MB for 1,024 × 12,328).
    overwrite
        Replace an existing ``out``. ``False`` (default) refuses it.
    progress
        Show a progress bar; ``None`` (default) follows ``pk.settings.progress_bar``.
    verify
        Check the checksum of a GCTX written by :func:`~perturbkit.io.write_gctx`, as in
        :func:`~perturbkit.io.read_gct` (``None``: when the whole file is converted or it is at most 1 GiB).

    Returns
    -------
    The path of the store written, as :class:`pathlib.Path`.

    Examples
    --------
    >>> pk.io.convert_gctx("level5_beta_trt_cp_n720216x12328.gctx", "level5.zarr")
    >>> adata = anndata.read_zarr("level5.zarr")
    >>> obs, var = pk.io.read_gct_metadata("level5_beta_trt_cp_n720216x12328.gctx")
    >>> pk.io.convert_gctx(
    ...     "level5_beta_trt_cp_n720216x12328.gctx", "a375.h5ad", cid=obs.index[obs["cell_line"] == "A375"]
    ... )
    >>> backed = anndata.read_h5ad("a375.h5ad", backed="r")
    """
    import anndata as ad

    from .._settings import settings

    path = existing_path(path, what="GCTX file")
    out = Path(out).expanduser()
    kind = _store_kind(out)
    chunk_size = _check_chunk_size(chunk_size)
    for name, value in (("overwrite", overwrite), ("landmark_only", landmark_only)):
        if not isinstance(value, bool):
            raise PerturbkitInputError(f"{name}={value!r} must be True or False.")
    if progress is not None and not isinstance(progress, bool):
        raise PerturbkitInputError(f"progress={progress!r} must be True, False or None (pk.settings.progress_bar).")
    _check_out(path, out, overwrite=overwrite)
    _check_cid(cid)
    if _sniff_format(path) != "gctx":
        raise FileFormatError(
            f"'{path}' is GCT text, not GCTX (HDF5): convert_gctx streams the matrix of a GCTX. Read the text file "
            f"whole with pk.io.read_gct('{path.name}') and write it with .write_h5ad(), or convert it to GCTX first."
        )
    whole = cid is None and rid is None and not landmark_only
    with _GctxSource(path, verify=_should_verify(path, verify, whole)) as source:
        obs, var, col_idx, row_idx, symbol_source = _select(
            source.obs, source.var, cid=cid, rid=rid, gene_info=gene_info, landmark_only=landmark_only
        )
        obs, var = _finish(obs, var, sig_info, "auto", symbol_source, source.written_by_perturbkit)
        skeleton = ad.AnnData(obs=_storable(obs, "obs"), var=_storable(var, "var"))
        skeleton.strings_to_categoricals()  # what AnnData.write_h5ad / write_zarr store by default
        show = settings.progress_bar if progress is None else progress
        with _atomic_store(out, overwrite=overwrite) as tmp:
            _write_store(source, tmp, kind, skeleton, col_idx, row_idx, chunk_size, show)
    return out


# ----------------------------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------------------------


def _store_kind(out: Path) -> str:
    kind = _SUFFIXES.get(out.suffix.lower())
    if kind is None:
        raise PerturbkitInputError(
            f"out='{out}' ends in {out.suffix!r}, which is not an AnnData store; end it in '.h5ad' (one HDF5 file) or "
            f"'.zarr' (a directory), e.g. out='{out.with_suffix('.zarr').name}'."
        )
    return kind


def _check_chunk_size(chunk_size) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise PerturbkitInputError(
            f"chunk_size={chunk_size!r} must be a positive integer (signatures per step; default {DEFAULT_CHUNK_SIZE})."
        )
    return int(chunk_size)


def _check_out(path: Path, out: Path, *, overwrite: bool) -> None:
    if out.exists() and out.resolve() == path.resolve():
        raise PerturbkitInputError(f"out='{out}' is the input file itself; pass another path for the store.")
    if out.exists() and not overwrite:
        raise PerturbkitInputError(
            f"out='{out}' already exists. Pass overwrite=True to replace it, or choose another path."
        )
    if out.exists() and out.is_dir() and _SUFFIXES.get(out.suffix.lower()) == "h5ad":
        raise PerturbkitInputError(f"out='{out}' is a folder; remove it or choose another path for the .h5ad file.")


def _storable(frame, name: str):
    """``frame`` with the text columns anndata cannot store made storable, values unchanged.

    anndata stores text columns as strings or (with repeated values or missing values) as categoricals, which
    :meth:`anndata.AnnData.strings_to_categoricals` decides. A text column whose values are all missing (e.g.
    ``pert_dose_unit`` of a DMSO-only selection) is neither; it becomes a categorical without categories (all
    values missing, as before). A column mixing text with other values cannot be stored at all.
    """
    import pandas as pd

    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object:
            continue
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind == "empty":
            frame[column] = pd.Categorical(values, categories=pd.Index([], dtype=object))
        elif kind != "string":
            bad = next(v for v in values if not (isinstance(v, str) or pd.isna(v)))
            raise PerturbkitInputError(
                f"{name} column {column!r} mixes text with other values (e.g. {bad!r} of type "
                f"{type(bad).__name__}), which an AnnData store cannot hold. Fix the metadata (e.g. in sig_info= / "
                f"gene_info=) so the column holds one type."
            )
    return frame


def _check_cid(cid) -> None:
    """Refuse a boolean mask, which :func:`read_gct` does not take either (it would be read as ids "True"/"False")."""
    if cid is None or isinstance(cid, str):
        return
    values = np.asarray(cid)
    if values.dtype == bool:
        raise PerturbkitInputError(
            "cid= takes sample ids, not a boolean mask. Select the ids first, e.g. obs, var = "
            "pk.io.read_gct_metadata(path); cid = obs.index[mask]."
        )


# ----------------------------------------------------------------------------------------------------------------
# the atomic store
# ----------------------------------------------------------------------------------------------------------------


@contextmanager
def _atomic_store(out: Path, *, overwrite: bool):
    """Yield a path in a temporary sibling folder of ``out``; on success move it onto ``out``.

    A file replaces a file atomically (:func:`os.replace`). A directory cannot replace a non-empty directory in
    one step, so an existing ``out`` is first moved into the temporary folder and removed after the new store
    is in place (and moved back if that fails). On any failure, or an interruption, the temporary folder is
    removed and ``out`` is as it was.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        tmp = workdir / out.name
        yield tmp
        if out.exists() or out.is_symlink():
            if not overwrite:
                raise PerturbkitInputError(
                    f"out='{out}' appeared while converting; pass overwrite=True to replace it, or another path."
                )
            if tmp.is_dir() or out.is_dir():
                old = workdir / ".previous"
                os.replace(out, old)
                try:
                    os.replace(tmp, out)
                except BaseException:
                    os.replace(old, out)
                    raise
                return
        os.replace(tmp, out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------
# streaming
# ----------------------------------------------------------------------------------------------------------------


def _zarr_chunk_rows(n_vars: int, chunk_size: int) -> int:
    rows = 1
    while rows * 2 * max(n_vars, 1) * 4 <= _ZARR_CHUNK_BYTES:
        rows *= 2
    return min(rows, chunk_size)


def _write_store(source, tmp: Path, kind: str, skeleton, col_idx, row_idx, chunk_size: int, show: bool) -> None:
    """Write ``skeleton`` (obs, var) with anndata, then stream X into it."""
    n_obs, n_vars = skeleton.n_obs, skeleton.n_vars
    if kind == "h5ad":
        import h5py

        skeleton.write_h5ad(tmp, convert_strings_to_categoricals=False)
        with h5py.File(tmp, "r+") as f:
            X = f.create_dataset("X", shape=(n_obs, n_vars), dtype=np.float32)
            _set_array_encoding(X.attrs)
            _stream(source, X, col_idx, row_idx, chunk_size, show)
    else:
        import anndata as ad
        import zarr
        from anndata.io import write_elem

        # what AnnData.write_zarr does, with the zarr format chosen here (anndata's setting; 2 by default)
        group = zarr.open_group(tmp, mode="w", zarr_format=ad.settings.zarr_write_format)
        write_elem(group, "/", skeleton)
        rows = _zarr_chunk_rows(n_vars, chunk_size)
        chunk_size = max(rows, chunk_size // rows * rows)  # whole zarr chunks per block
        X = group.create_array(
            "X", shape=(n_obs, n_vars), dtype=np.float32, chunks=(rows, max(n_vars, 1)), compressors=None
        )
        _set_array_encoding(X.attrs)
        _stream(source, X, col_idx, row_idx, chunk_size, show)
        zarr.consolidate_metadata(group.store)  # anndata's readers open the consolidated metadata, now with X


def _set_array_encoding(attrs) -> None:
    # the attributes anndata's writer gives a dense array element (anndata on-disk format, "array" 0.2.0)
    attrs["encoding-type"] = "array"
    attrs["encoding-version"] = "0.2.0"


def _stream(source, X, col_idx, row_idx, chunk_size: int, show: bool) -> None:
    """Copy the selected matrix block by block into ``X`` (samples × genes, float32)."""
    from tqdm.auto import tqdm

    n_obs = X.shape[0]
    ds = source._file[_MATRIX]
    reader = _BlockReader(ds, transposed=source._transposed, chunk_size=chunk_size)
    with tqdm(total=n_obs, unit="sig", desc="convert_gctx", disable=not show, leave=False) as bar:
        for start in range(0, n_obs, chunk_size):
            stop = min(start + chunk_size, n_obs)
            rows = np.arange(start, stop) if col_idx is None else col_idx[start:stop]
            X[start:stop] = reader.read(rows, row_idx)
            bar.update(stop - start)


class _BlockReader:
    """Reads blocks of signatures (whole rows of the GCTX matrix) into one reused buffer."""

    def __init__(self, ds, *, transposed: bool, chunk_size: int):
        self.ds = ds
        self.transposed = transposed
        n_genes = ds.shape[0] if transposed else ds.shape[1]
        self.buffer = np.empty((min(chunk_size, ds.shape[1] if transposed else ds.shape[0]), n_genes), dtype=ds.dtype)

    def _read_run(self, start: int, stop: int, pos: int) -> None:
        n = stop - start
        if self.transposed:  # genes x samples on disk
            self.buffer[pos : pos + n] = self.ds[:, start:stop].T
        elif n:
            self.ds.read_direct(self.buffer, np.s_[start:stop, :], np.s_[pos : pos + n, :])

    def read(self, rows: np.ndarray, genes) -> np.ndarray:
        """``matrix[rows][:, genes]`` (samples × genes) as float32, ``rows`` in any order without repeats."""
        n = len(rows)
        if n and rows[-1] - rows[0] == n - 1 and (n == 1 or np.all(np.diff(rows) == 1)):
            self._read_run(int(rows[0]), int(rows[-1]) + 1, 0)
            block, order = self.buffer[:n], None
        else:
            order = np.argsort(rows, kind="stable")
            pos = 0
            for start, stop in _runs(rows[order]):
                self._read_run(start, stop, pos)
                pos += stop - start
            block = self.buffer[:n]
            order = np.argsort(order, kind="stable")  # sorted position of each requested row
        if genes is None and order is None:
            return block if block.dtype == np.float32 else block.astype(np.float32)
        if genes is None:
            picked = block[order]
        elif order is None:
            picked = block[:, genes]
        else:
            picked = block[np.ix_(order, genes)]
        return np.ascontiguousarray(picked, dtype=np.float32)
