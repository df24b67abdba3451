"""Row blocks of any matrix perturbkit reads: the one place where out-of-core data (backed h5ad, dask, zarr) is read.

Every out-of-core preprocessing step reads ``X`` (or a layer) through three functions:

* :func:`row_blocks` yields ``(start, stop, block)`` over consecutive row blocks of ``chunk_rows`` rows;
* :func:`take_rows` reads an arbitrary subset of rows (read in sorted order, returned in the order asked for);
* :func:`lazy_map` applies a per-block function lazily: the result is a dask array, computed block by block.

Supported matrices: NumPy arrays, SciPy sparse matrices, h5py datasets (a backed dense ``.h5ad``), anndata's backed
sparse datasets (a backed CSR/CSC ``.h5ad``), dask arrays (dense or with SciPy sparse chunks, e.g. from
``anndata.experimental.read_elem_lazy``) and zarr arrays.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._schema import NonFiniteError, PerturbkitInputError, check_positive_int

#: Bytes of one float64 row block when ``chunk_rows=None``. Measured with ``benchmarks/pp_chunked.py --quick --sweep``
#: (``scale(method="zscore")`` fit + streamed write of a backed dense 20,000 × 978 h5ad): 1 MiB blocks 0.84 s,
#: 4 MiB 0.67 s, 16 MiB 0.58 s, 64 MiB 0.82 s. 16 MiB is 2,144 rows of 978 features, 512 rows of 4,096.
BLOCK_BYTES = 16 * 2**20

#: Most bytes of the float64 buffer that holds the fitted rows of a column block, for the statistics that need all
#: of a feature's values at once (medians, quantiles, MADs; spherize needs all features of the fitted rows).
GATHER_BYTES = 256 * 2**20

FIX_NON_FINITE = (
    "Remove or impute them first: pk.pp.drop_missing(adata) drops the features that have them (axis='samples' drops "
    "the rows), and pk.pp.impute(adata) fills them with each feature's median."
)


# ------------------------------------------------------------------------------------------------ what X is
def kind(X) -> str:
    """``"numpy"``, ``"sparse"`` (SciPy), ``"h5py"``, ``"backed_sparse"``, ``"dask"``, ``"zarr"`` or ``"other"``."""
    if isinstance(X, np.ndarray):
        return "numpy"
    if sp.issparse(X):
        return "sparse"
    module = type(X).__module__.split(".")[0]
    if module == "h5py":
        return "h5py"
    if module == "anndata" and hasattr(X, "to_memory") and hasattr(X, "format"):
        return "backed_sparse"
    if module == "dask":
        return "dask"
    if module == "zarr":
        return "zarr"
    return "other"


def is_out_of_core(X) -> bool:
    """True for a matrix read block by block instead of loaded: on disk (h5py, backed sparse, zarr) or lazy (dask)."""
    return kind(X) in ("h5py", "backed_sparse", "dask", "zarr")


def is_sparse(X) -> bool:
    """True for SciPy sparse, a backed sparse dataset, or a dask array with SciPy sparse chunks."""
    k = kind(X)
    return k in ("sparse", "backed_sparse") or (k == "dask" and sp.issparse(getattr(X, "_meta", None)))


def resolve_chunk_rows(chunk_rows, n_cols: int) -> int:
    """``chunk_rows``, or the default for ``n_cols`` features (a float64 block of :data:`BLOCK_BYTES`)."""
    if chunk_rows is None:
        return max(1, BLOCK_BYTES // (8 * max(int(n_cols), 1)))
    check_positive_int(chunk_rows, "chunk_rows", allow_none=True)
    return int(chunk_rows)


def dense64(block) -> np.ndarray:
    """A block as a dense float64 NumPy array (a copy, so it can be changed in place)."""
    if sp.issparse(block):
        return block.toarray().astype(np.float64, copy=False)
    return np.array(block, dtype=np.float64)


# ------------------------------------------------------------------------------------------------ reading
def _read(X, rows, columns=None):
    """``X[rows, columns]`` for a slice or sorted unique index array ``rows``, in memory (dense or SciPy sparse)."""
    k = kind(X)
    cols = slice(None) if columns is None else columns
    if k == "dask":
        return X[rows, cols].compute()
    if k == "zarr":
        return X[rows, cols] if isinstance(rows, slice) else X.oindex[rows, cols]
    if k == "backed_sparse":
        block = X[rows]
        return block if columns is None else block[:, cols]
    if k == "h5py":
        return X[rows, cols] if isinstance(cols, slice) else X[rows][:, cols]
    block = X[rows]
    return block if columns is None else block[:, cols]


def block_bounds(X, chunk_rows: int) -> list[int]:
    """Start rows of the row blocks of ``X``, then its number of rows.

    A dask array's blocks follow its own row chunks, consecutive ones merged up to ``chunk_rows`` rows: a dask chunk
    is never split, as reading part of it would compute the whole chunk again.
    """
    if kind(X) != "dask":
        return list(range(0, X.shape[0], chunk_rows)) + [X.shape[0]]
    bounds = [0]
    for size in X.chunks[0]:
        if len(bounds) > 1 and bounds[-1] - bounds[-2] + size <= chunk_rows:
            bounds[-1] += size
        else:
            bounds.append(bounds[-1] + size)
    return bounds


def row_blocks(X, *, chunk_rows=None, columns=None, desc: str | None = None):
    """Yield ``(start, stop, block)`` over consecutive row blocks of ``X`` (dense array or SciPy sparse).

    Parameters
    ----------
    X
        Any supported matrix (see the module docstring).
    chunk_rows
        Rows per block; ``None``: a float64 block of :data:`BLOCK_BYTES`. For a dask array the blocks follow its
        own row chunks, consecutive ones merged up to ``chunk_rows`` rows.
    columns
        A slice of columns to read (all by default).
    desc
        Show a progress bar with this label (when ``pk.settings.progress_bar`` is on and there are several blocks).
    """
    chunk_rows = resolve_chunk_rows(chunk_rows, X.shape[1])
    bounds = block_bounds(X, chunk_rows)
    pairs = list(zip(bounds[:-1], bounds[1:], strict=True))
    for start, stop in _progress(pairs, desc):
        yield start, stop, _read(X, slice(start, stop), columns)


def take_rows(X, rows, *, columns=None, chunk_rows=None, dtype=np.float64) -> np.ndarray:
    """``X[rows]`` (in the order of ``rows``, repeats allowed) as a dense array, read in sorted order.

    The rows are read ``chunk_rows`` at a time, each piece as one sorted selection, so only the rows asked for are
    read from disk (a dask array computes only the chunks that hold them).
    """
    rows = np.asarray(rows, dtype=np.int64)
    unique, inverse = np.unique(rows, return_inverse=True)
    n_cols = X.shape[1] if columns is None else len(range(*columns.indices(X.shape[1])))
    out = np.empty((len(unique), n_cols), dtype=dtype)
    step = resolve_chunk_rows(chunk_rows, X.shape[1])
    for start in range(0, len(unique), step):
        piece = unique[start : start + step]
        if piece[-1] - piece[0] + 1 == len(piece):  # a run of consecutive rows: one slice
            block = _read(X, slice(int(piece[0]), int(piece[-1]) + 1), columns)
        else:
            block = _read(X, piece, columns)
        out[start : start + len(piece)] = block.toarray() if sp.issparse(block) else block
    if len(unique) == len(rows) and bool(np.all(np.diff(rows) > 0)):  # asked for in sorted order already
        return out
    return out[inverse.ravel()]


def _progress(items, desc: str | None):
    if desc is None or len(items) < 2:
        return items
    from tqdm.auto import tqdm

    from .._settings import settings

    return tqdm(items, desc=desc, disable=not settings.progress_bar, leave=False)


def add_group_sums(sums: np.ndarray, codes: np.ndarray, values) -> None:
    """``sums[g] += values[codes == g].sum(axis=0)`` for every group ``g`` in ``codes`` (−1 leaves a row out).

    Only the groups present in this block are touched, so a block costs its own size, not ``sums``'s.
    ``values`` is a dense array or SciPy sparse matrix with one row per entry of ``codes``.
    """
    from .._groups import indicator

    keep = codes >= 0
    if not keep.any():
        return
    present, local = np.unique(codes[keep], return_inverse=True)
    weights = indicator(local.ravel(), len(present))
    if sp.issparse(values):
        sums[present] += (weights @ sp.csr_matrix(values, dtype=np.float64)[np.flatnonzero(keep)]).toarray()
    else:
        sums[present] += weights @ np.asarray(values, dtype=np.float64)[keep]


# ------------------------------------------------------------------------------------------------ non-finite values
class FiniteCheck:
    """Counts NaN and infinite values over the blocks of one pass; :meth:`raise_if_bad` then raises naming them."""

    def __init__(self, where: str, *, allow_nan: bool = False) -> None:
        self.where = where
        self.allow_nan = allow_nan
        self.n_nan = 0
        self.n_inf = 0
        self.rows: list[int] = []

    def update(self, block, start: int | np.ndarray = 0) -> None:
        values = block.data if sp.issparse(block) else np.asarray(block)
        if values.dtype.kind not in "fc":
            return
        finite = np.isfinite(values)
        if finite.all():
            return
        nan = int(np.isnan(values).sum())
        self.n_nan += nan
        self.n_inf += int((~finite).sum()) - nan
        if len(self.rows) < 5 and not sp.issparse(block):
            bad = np.flatnonzero(~finite.all(axis=1))
            index = start[bad] if isinstance(start, np.ndarray) else bad + start
            self.rows.extend(int(r) for r in index[: 5 - len(self.rows)])

    @property
    def bad(self) -> bool:
        return bool(self.n_inf or (self.n_nan and not self.allow_nan))

    def raise_if_bad(self, fix: str = FIX_NON_FINITE) -> None:
        if self.bad:
            first = f" (first rows: {self.rows})" if self.rows else ""
            raise NonFiniteError(f"{self.where} holds {self.n_nan} NaN and {self.n_inf} infinite values{first}. {fix}")


def check_blocks_finite(block, rows, where: str) -> None:
    """Raise :class:`NonFiniteError` at once if ``block`` (the rows ``rows`` of ``where``) holds NaN or inf."""
    check = FiniteCheck(where)
    check.update(block, rows)
    if check.bad:
        first = f" in rows {check.rows}" if check.rows else ""
        raise NonFiniteError(
            f"{where} holds {check.n_nan} NaN and {check.n_inf} infinite values{first} (found while reading it block "
            f"by block; other blocks may hold more). {FIX_NON_FINITE}"
        )


def count_non_finite(X, *, where: str, chunk_rows=None, allow_nan: bool = False) -> FiniteCheck:
    """One pass over ``X`` counting NaN and inf; raises :class:`NonFiniteError` if there are any.

    NaN are allowed with ``allow_nan``.
    """
    check = FiniteCheck(where, allow_nan=allow_nan)
    for start, _, block in row_blocks(X, chunk_rows=chunk_rows):
        check.update(block, start)
    check.raise_if_bad()
    return check


# ------------------------------------------------------------------------------------------------ lazy results
class _FileRows:
    """The rows of a matrix in an HDF5 file, read by reopening the file (read-only) for every block.

    Picklable and safe from several threads; keeps no file open, so the user's backed AnnData may be closed.
    """

    def __init__(self, X) -> None:
        node = X if kind(X) == "h5py" else X.group
        self.filename = node.file.filename
        self.name = node.name
        self.sparse = kind(X) == "backed_sparse"
        self.shape = tuple(X.shape)
        self.dtype = np.dtype(X.dtype)
        self.ndim = 2

    def __getitem__(self, key):
        import h5py

        try:
            with h5py.File(self.filename, "r") as f:
                node = f[self.name]
                if self.sparse:
                    import anndata as ad

                    return ad.io.sparse_dataset(node)[key]
                return node[key]
        except (OSError, KeyError) as err:
            raise PerturbkitInputError(
                f"Cannot read {self.name!r} of {self.filename!r} ({err}). This lazy result reads that file when it is "
                f"computed: keep the file where it was, or compute the result (adata.X = adata.X.compute()) or write "
                f"it (adata.write_h5ad(...)) before moving or deleting the file."
            ) from None


def as_dask(X, *, chunk_rows=None):
    """``X`` as a dask array of row blocks (a dask array stays as it is; an on-disk one is read lazily)."""
    import dask.array as da

    k = kind(X)
    if k == "dask":
        return X
    chunk_rows = resolve_chunk_rows(chunk_rows, X.shape[1])
    chunks = (chunk_rows, X.shape[1])
    if k in ("h5py", "backed_sparse"):
        source = _FileRows(X)
        meta = sp.csr_matrix((0, 0), dtype=source.dtype) if source.sparse else np.empty((0, 0), source.dtype)
        return da.from_array(source, chunks=chunks, asarray=False, meta=meta, name=None, lock=False)
    if k == "zarr":
        return da.from_array(X, chunks=chunks)
    return da.from_array(X, chunks=chunks, asarray=not sp.issparse(X))


def lazy_map(X, func, *, dtype, chunk_rows=None, n_out: int | None = None, elementwise: bool = True):
    """A dask array whose row block ``[r0:r1]`` is ``func(dense float64 block, slice(r0, r1), columns)``.

    ``elementwise`` functions are applied to each chunk as it is (``columns`` is the chunk's slice of columns; a
    dask input keeps its chunks); otherwise each block holds whole rows and ``func`` may return ``n_out`` columns.
    """
    src = as_dask(X, chunk_rows=chunk_rows)
    if not elementwise and len(src.chunks[1]) > 1:
        src = src.rechunk({1: -1})
    dtype = np.dtype(dtype)

    def apply(block, block_info=None):
        (r0, r1), (c0, c1) = block_info[0]["array-location"]
        return np.asarray(func(dense64(block), slice(r0, r1), slice(c0, c1)), dtype=dtype)

    chunks = src.chunks if n_out is None else (src.chunks[0], (int(n_out),))
    return src.map_blocks(apply, dtype=dtype, chunks=chunks, meta=np.empty((0, 0), dtype=dtype))
