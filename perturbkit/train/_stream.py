"""Training from data that does not fit in memory: an on-disk matrix streamed through the one training loop.

:class:`StreamedBatches` is a batch source for :func:`~perturbkit.train.fit`: it reads CONTIGUOUS chunks of
``chunk_rows`` rows from the matrix on disk (an ``h5py.Dataset`` of a backed ``.h5ad``, anndata's backed sparse
``CSRDataset``, a ``zarr.Array``, a dask array, or an array in memory), visits the chunks in a new random order every
epoch, and shuffles rows within a buffer of ``buffer_chunks`` chunks (the scDataset / annbatch approach: contiguous
reads are fast, and mixing many distant chunks gives batches close to uniformly shuffled). A background thread
reads the next chunks while the model trains (a bounded queue of ``prefetch`` chunks).

Which reader, by measurement (``benchmarks/stream_readers.py``, 40,000 × 2,000 float32, CSR 10 % dense, one thread,
shuffled chunk order): on ``.h5ad`` anndata's backed mode is the fastest reader for both dense (``h5py``: 1.7 M rows/s
with 512-row chunks) and CSR (anndata's ``CSRDataset``: 0.45 M rows/s with 4,096-row chunks); dask
(``read_elem_lazy``) is 3-35× slower (per-task overhead). On ``.zarr`` the zarr array itself (dense, 0.2 M rows/s in
whole zarr chunks) and anndata's ``sparse_dataset`` over the zarr group (CSR, 0.27 M rows/s) beat dask by 2-5×.
Random-row reads are 10-100× slower than contiguous chunks for every reader (0.1 M rows/s at best), hence chunks.
So :func:`perturbkit.io.read_store` opens ``.h5ad`` in backed mode and leaves a ``.zarr`` store's X as the zarr
array / ``CSRDataset``; a dask array is accepted too (read chunk by chunk).

Memory: a stream holds its buffer (``buffer_chunks`` chunks plus the rows carried from the last one), up to
``prefetch`` chunks waiting in the queue, the chunk being read (twice while it is densified, its columns selected or
transformed), the chunk being copied into the buffer, and the batches in flight: at most
``((buffer_chunks + prefetch + 5) × chunk_rows + 4 × batch_size) × n_genes × 4`` bytes, whatever the size of the
store (``StreamedBatches.memory_bound``; tests/test_stream.py measures 9.8 chunks' worth with tracemalloc for
``buffer_chunks=2, prefetch=2``, against a bound of 11).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .._schema import EmptyGroupError, GeneMismatchError, PerturbkitInputError, check_finite, stored_matrix

#: Bytes of one dense float32 chunk when ``chunk_rows`` is not given: 4 MiB (512 rows of 2,000 genes), the fastest
#: contiguous read of a dense ``.h5ad`` measured by ``benchmarks/stream_readers.py``. Sparse stores read 4× more
#: rows per chunk (CSR reads per row are slower for small chunks), zarr / dask stores whole row chunks of the store.
CHUNK_BYTES = 4 * 2**20
#: Chunk size limits of the automatic choice (rows).
MIN_CHUNK_ROWS, MAX_CHUNK_ROWS = 64, 16_384
#: Bytes of dense rows shuffled together when ``buffer_chunks`` is not given (at least 4 chunks): 64 MiB.
BUFFER_BYTES = 64 * 2**20
#: Chunks read ahead by the background thread.
PREFETCH = 2
#: Bytes of validation rows read into memory at most when training from a store (a random subset above it): 256 MiB,
#: 32,768 rows of 2,000 genes.
VALIDATION_BYTES = 256 * 2**20
#: Rows sampled to measure latent activity (posterior collapse) when the data is on disk: at most 10,000 rows and
#: 64 MiB (the variance of each unit's posterior mean needs thousands of rows, not millions).
ACTIVITY_ROWS, ACTIVITY_BYTES = 10_000, 64 * 2**20


def rows_in_bytes(n_bytes: int, n_genes: int, *, at_least: int = 1000) -> int:
    """How many dense float32 rows of ``n_genes`` fit in ``n_bytes`` (at least ``at_least``)."""
    return int(max(at_least, n_bytes // max(1, 4 * int(n_genes))))


def is_out_of_core(adata, layer: str | None = None) -> bool:
    """Whether ``adata``'s matrix (``X``, or ``layers[layer]``) stays on disk.

    True for a backed AnnData and for an X that is an ``h5py.Dataset``, a ``zarr.Array``, a dask array or anndata's
    backed sparse dataset (``CSRDataset``/``CSCDataset``), e.g. from :func:`perturbkit.io.read_store`.
    """
    if not hasattr(adata, "var_names") or not hasattr(adata, "obs") or getattr(adata, "is_view", False):
        return False  # a view's X is read into memory by anndata
    if layer is None and getattr(adata, "isbacked", False):
        return True
    if layer is not None and layer not in adata.layers:
        return False
    X = adata.X if layer is None else adata.layers[layer]
    return is_on_disk_array(X)


def is_on_disk_array(X) -> bool:
    """Whether ``X`` is a lazy / on-disk array (h5py, zarr, dask, or anndata's backed sparse dataset)."""
    if X is None or isinstance(X, np.ndarray) or sp.issparse(X):
        return False
    module = type(X).__module__
    return module.startswith(("h5py", "zarr", "dask", "anndata._core.sparse_dataset")) or hasattr(X, "compute")


def auto_chunk_rows(n_genes: int, X=None) -> int:
    """Rows per chunk read from ``X`` (between 64 and 16,384), from the measurements of the module docstring.

    Dense: about :data:`CHUNK_BYTES` of float32 rows; sparse: 4× as many rows; a zarr or dask array with larger
    row chunks: one of its row chunks (a partial read decompresses the whole chunk anyway).
    """
    rows = CHUNK_BYTES // max(1, 4 * int(n_genes))
    if X is not None and _is_sparse_store(X):
        rows *= 4
    store_rows = _store_row_chunk(X)
    if store_rows is not None and store_rows > rows:
        rows = store_rows
    return int(min(MAX_CHUNK_ROWS, max(MIN_CHUNK_ROWS, rows)))


def auto_buffer_chunks(chunk_rows: int, n_genes: int) -> int:
    """Chunks per shuffle buffer: about :data:`BUFFER_BYTES` of dense rows, at least 4 chunks."""
    return int(max(4, BUFFER_BYTES // max(1, chunk_rows * 4 * int(n_genes))))


def _is_sparse_store(X) -> bool:
    return (
        sp.issparse(X) or "sparse_dataset" in type(X).__module__ or hasattr(X, "format") and X.format in ("csr", "csc")
    )


def _store_row_chunk(X) -> int | None:
    chunks = getattr(X, "chunks", None)
    if not chunks or "h5py" in type(X).__module__:
        return None
    first = chunks[0]
    first = first[0] if isinstance(first, tuple) else first  # dask: a tuple of block sizes per axis
    try:
        return int(first)
    except (TypeError, ValueError):
        return None


def read_block(X, start: int, stop: int, *, columns: np.ndarray | None = None, select=None) -> np.ndarray:
    """Rows ``start:stop`` of the (possibly on-disk) matrix ``X`` as dense float32.

    ``select`` keeps only those rows of the block (local indices), ``columns`` only those columns.
    """
    block = X[start:stop]
    if hasattr(block, "compute"):  # dask
        block = block.compute()
    if sp.issparse(block):
        block = sp.csr_matrix(block)
        if select is not None:
            block = block[select]
        if columns is not None:
            block = block[:, columns]
        return np.asarray(block.toarray(), dtype=np.float32)
    block = np.asarray(block)
    if select is not None:
        block = block[select]
    if columns is not None:
        block = block[:, columns]
    return np.ascontiguousarray(block, dtype=np.float32)


def read_rows(X, rows, *, columns=None, chunk_rows: int = 4096) -> np.ndarray:
    """The rows ``rows`` (sorted or not) of an on-disk matrix as dense float32, read in contiguous blocks.

    Each block of at most ``chunk_rows`` rows that holds requested rows is read once (a fast contiguous read); rows
    come back in the order of ``rows``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    n_out = len(columns) if columns is not None else X.shape[1]
    out = np.empty((len(rows), n_out), dtype=np.float32)
    if len(rows) == 0:
        return out
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    blocks = sorted_rows // chunk_rows
    bounds = np.flatnonzero(np.diff(blocks)) + 1
    for part in np.split(np.arange(len(rows)), bounds):
        wanted = sorted_rows[part]
        start, stop = int(wanted[0]), int(wanted[-1]) + 1
        out[order[part]] = read_block(X, start, stop, columns=columns, select=wanted - start)
    return out


def iter_chunks(X, *, chunk_rows: int, columns=None) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, dense float32 rows)`` for consecutive row chunks of ``X``, in order."""
    for start in range(0, X.shape[0], chunk_rows):
        yield start, read_block(X, start, min(start + chunk_rows, X.shape[0]), columns=columns)


class StreamedBatches:
    """Minibatches streamed from a matrix on disk, a batch source for :func:`~perturbkit.train.fit`.

    Each epoch the (selected) rows are cut into contiguous chunks of ``chunk_rows``; the chunks are visited in a
    random order drawn from the epoch's generator, read by a background thread, gathered ``buffer_chunks`` at a
    time, and the buffer's rows are shuffled into batches (rows left over carry into the next buffer, so every
    batch but the last is full). ``iterate(None)`` serves the rows in order, unshuffled. When all rows fit in one
    chunk the order is exactly that of :class:`~perturbkit.train.Batches` for the same generator, so training
    equals in-memory training bitwise. Memory is at most ``((buffer_chunks + prefetch + 5) × chunk_rows + 4 ×
    batch_size) × n_columns × 4`` bytes (:attr:`memory_bound`), whatever the size of ``X``.

    Parameters
    ----------
    X
        The matrix (rows × features): an ``h5py.Dataset``, anndata's backed ``CSRDataset``, a ``zarr.Array``, a
        dask array, a SciPy sparse matrix or a NumPy array. Sparse chunks are densified one at a time.
    *side
        Per-row arrays held in memory (e.g. integer codes of obs columns), one entry per row of ``X``; served
        after X in every batch, aligned with its rows (floats as float32, integers as int64).
    batch_size
        Rows per batch.
    chunk_rows
        Rows per contiguous read (None: chosen by :func:`auto_chunk_rows`: 4 MiB of dense rows, 512 rows of 2,000
        genes).
    buffer_chunks
        Chunks whose rows are shuffled together (None: 64 MiB of dense rows, at least 4 chunks).
    prefetch
        Chunks the background thread reads ahead.
    rows
        The rows of ``X`` to serve (e.g. all but the validation rows); default all.
    columns
        Column indices of ``X`` to serve, in order (e.g. the model's genes); default all.
    transform
        Function applied to every dense chunk (rows × served columns, float32) before batching, e.g. the model's
        scaler; it may raise to refuse bad data.
    device
        The training device; the loop moves each (CPU) batch there.
    rank, world_size
        This process's shard of a distributed run (default: from ``torchrun``'s environment). Every epoch all ranks
        draw the same chunk order and rank ``r`` reads chunks ``r::world_size``; each rank serves the same number of
        rows (that of the smallest shard), so every rank runs the same number of batches.
    avoid_single_row_batch
        Raise the batch size by one when it would leave a last batch of one row (batch norm).
    """

    def __init__(
        self,
        X,
        *side,
        batch_size: int = 128,
        chunk_rows: int | None = None,
        buffer_chunks: int | None = None,
        prefetch: int = PREFETCH,
        rows=None,
        columns=None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        device=None,
        rank: int | None = None,
        world_size: int | None = None,
        avoid_single_row_batch: bool = False,
    ):
        from ._distributed import rank as env_rank
        from ._distributed import world_size as env_world_size

        if not hasattr(X, "shape") or len(X.shape) != 2:
            raise PerturbkitInputError(
                f"StreamedBatches needs a 2-D matrix (rows × features), got {type(X).__name__}; pass adata.X of an "
                f"AnnData opened with pk.io.read_store(path)."
            )
        self.X = X
        n_total = int(X.shape[0])
        self.rows = np.arange(n_total) if rows is None else np.sort(np.asarray(rows, dtype=np.int64))
        if len(self.rows) and (self.rows[0] < 0 or self.rows[-1] >= n_total):
            raise PerturbkitInputError(f"rows= must index the {n_total} rows of the matrix; got out-of-range rows.")
        self.columns = None if columns is None else np.asarray(columns, dtype=np.int64)
        bad_columns = (
            self.columns is not None
            and len(self.columns)
            and not 0 <= self.columns.min() <= self.columns.max() < X.shape[1]
        )
        if bad_columns:
            raise PerturbkitInputError(f"columns= must index the {X.shape[1]} columns of the matrix.")
        self.side = tuple(_side_array(a, n_total, i) for i, a in enumerate(side))
        for name, value in (("batch_size", batch_size), ("chunk_rows", chunk_rows), ("buffer_chunks", buffer_chunks)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise PerturbkitInputError(f"{name} must be a positive integer, got {value!r}.")
        if isinstance(prefetch, bool) or not isinstance(prefetch, (int, np.integer)) or prefetch < 1:
            raise PerturbkitInputError(f"prefetch must be a positive integer, got {prefetch!r}.")
        n_columns = X.shape[1] if self.columns is None else len(self.columns)
        self.world_size = env_world_size() if world_size is None else int(world_size)
        self.rank = env_rank() if rank is None else int(rank)
        if not 0 <= self.rank < self.world_size:
            raise PerturbkitInputError(f"rank must be in [0, world_size={self.world_size}), got {self.rank}.")
        if chunk_rows is None:
            self.chunk_rows = auto_chunk_rows(n_columns, X)
            if self.world_size > 1:  # small data over several processes: at least 4 chunks per rank
                self.chunk_rows = max(1, min(self.chunk_rows, len(self.rows) // (4 * self.world_size)))
        else:
            self.chunk_rows = int(chunk_rows)
        if buffer_chunks is None:
            buffer_chunks = auto_buffer_chunks(self.chunk_rows, n_columns)
        self.buffer_chunks, self.prefetch, self.transform = int(buffer_chunks), int(prefetch), transform
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.n_chunks = math.ceil(len(self.rows) / self.chunk_rows)
        self.n = self._rows_per_rank()
        if self.n == 0:
            raise EmptyGroupError(
                "no training rows to stream: the data (after splitting off validation) is empty. Pass more rows or "
                "a smaller validation_fraction."
            )
        self.batch_size = max(1, min(int(batch_size), self.n))
        if avoid_single_row_batch and self.n > self.batch_size and self.n % self.batch_size == 1:
            self.batch_size += 1

    def _rows_per_rank(self) -> int:
        if self.world_size == 1:
            return len(self.rows)
        per_rank = self.n_chunks // self.world_size
        if per_rank == 0:
            raise PerturbkitInputError(
                f"{self.n_chunks} chunks of {self.chunk_rows} rows cannot be shared by {self.world_size} processes; "
                f"pass a smaller chunk_rows (at most {max(1, len(self.rows) // self.world_size)})."
            )
        last = len(self.rows) - (self.n_chunks - 1) * self.chunk_rows
        # the smallest shard: the one that holds the short last chunk, if any
        return per_rank * self.chunk_rows - (self.chunk_rows - last)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    @property
    def memory_bound(self) -> int:
        """Bytes of row data the stream holds at most (see the class docstring)."""
        n_columns = self.X.shape[1] if self.columns is None else len(self.columns)
        rows = (self.buffer_chunks + self.prefetch + 5) * self.chunk_rows + 4 * self.batch_size
        return rows * n_columns * 4

    def _chunk_order(self, generator) -> np.ndarray:
        """The chunks this rank reads this epoch (all ranks draw the same permutation from the same generator)."""
        if generator is None or self.n_chunks == 1:
            order = np.arange(self.n_chunks)
        else:
            order = torch.randperm(self.n_chunks, generator=generator).numpy()
        if self.world_size > 1:
            order = order[self.rank :: self.world_size][: self.n_chunks // self.world_size]
        return order

    def _read_chunk(self, chunk: int) -> tuple[np.ndarray, ...]:
        rows = self.rows[chunk * self.chunk_rows : (chunk + 1) * self.chunk_rows]
        start, stop = int(rows[0]), int(rows[-1]) + 1
        if stop - start == len(rows):
            x = read_block(self.X, start, stop, columns=self.columns)
        else:  # rows= leaves gaps: read the span in blocks of at most chunk_rows rows
            x = read_rows(self.X, rows, columns=self.columns, chunk_rows=self.chunk_rows)
        if self.transform is not None:
            x = np.ascontiguousarray(self.transform(x), dtype=np.float32)
        return (x, *(a[rows] for a in self.side))

    def iterate(self, generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield this epoch's batches (tuples of CPU tensors: X rows, then the side arrays)."""
        chunks = _Prefetcher(self._read_chunk, self._chunk_order(generator), self.prefetch)
        served, carry, exhausted = 0, None, False
        try:
            pending = iter(chunks)
            while served < self.n and not exhausted:
                # fill one buffer: the rows carried over, then up to buffer_chunks chunks, each copied in as it comes
                capacity = self.buffer_chunks * self.chunk_rows + (0 if carry is None else len(carry[0]))
                buffer, filled = None, 0
                parts = [] if carry is None else [carry]
                carry = None
                for _ in range(self.buffer_chunks + len(parts)):
                    part = parts.pop() if parts else next(pending, None)
                    if part is None:
                        exhausted = True
                        break
                    if buffer is None:
                        buffer = tuple(np.empty((capacity, *a.shape[1:]), dtype=a.dtype) for a in part)
                    for target, a in zip(buffer, part, strict=True):
                        target[filled : filled + len(a)] = a
                    filled += len(part[0])
                    del part, target, a  # loop names would keep the chunk, and the buffer past its end, alive
                if buffer is None:
                    break
                size = min(filled, self.n - served)
                if generator is None:
                    index = np.arange(size)
                else:
                    index = torch.randperm(filled, generator=generator).numpy()[:size]
                last = exhausted or served + size >= self.n
                n_full = size if last else size - size % self.batch_size
                for start in range(0, n_full, self.batch_size):
                    idx = index[start : min(start + self.batch_size, n_full)]
                    yield self._tensors(tuple(a[idx] for a in buffer))
                served += n_full
                rest = index[n_full:size]
                carry = tuple(a[rest] for a in buffer) if len(rest) else None
                del buffer
        finally:
            chunks.close()

    def _tensors(self, arrays) -> tuple[torch.Tensor, ...]:
        tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
        if self.device.type == "cuda":
            tensors = tuple(t.pin_memory() for t in tensors)
        return tensors

    def __repr__(self) -> str:
        return (
            f"StreamedBatches({self.n} rows{'' if self.world_size == 1 else f' on rank {self.rank}/{self.world_size}'}"
            f", {len(self)} batches of {self.batch_size}, chunks of {self.chunk_rows} rows, buffer {self.buffer_chunks}"
            f" chunks)"
        )


class _Prefetcher:
    """Reads ``order``'s chunks with ``read`` on a background thread, at most ``depth`` ahead, in order."""

    _DONE = object()

    def __init__(self, read, order: Sequence[int], depth: int):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(read, list(order)), daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, read, order) -> None:
        try:
            for chunk in order:
                if self._stop.is_set() or not self._put(read(int(chunk))):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            self._put(_Failure(error))
            return
        self._put(self._DONE)

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
            item = None  # the consumer has copied it: do not hold it while waiting for the next chunk

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def _side_array(array, n: int, i: int) -> np.ndarray:
    array = np.asarray(array)
    if len(array) != n:
        raise PerturbkitInputError(
            f"side array {i} has {len(array)} rows but the matrix has {n}; give one entry per row of the matrix."
        )
    if array.dtype.kind == "f":
        return np.ascontiguousarray(array, dtype=np.float32)
    if array.dtype.kind == "b":
        return np.ascontiguousarray(array)
    return np.ascontiguousarray(array, dtype=np.int64)


# ------------------------------------------------------------------------------------------ models' one switch
class OnDiskFeatures:
    """A model's view of an out-of-core AnnData: its features (model order) read in row chunks, never all at once.

    Built by :func:`on_disk_features`, the one switch every model uses: ``None`` there means "in memory, use the
    usual path".
    """

    def __init__(self, matrix, columns: np.ndarray | None, where: str, chunk_rows: int | None = None):
        self.matrix, self.columns, self.where = matrix, columns, where
        n_columns = matrix.shape[1] if columns is None else len(columns)
        self.chunk_rows = auto_chunk_rows(n_columns, matrix) if chunk_rows is None else int(chunk_rows)
        self.requested_chunk_rows = chunk_rows  # None lets the stream choose (smaller chunks over several ranks)

    @property
    def n_obs(self) -> int:
        return int(self.matrix.shape[0])

    def checked(self, X: np.ndarray) -> np.ndarray:
        check_finite(X, where=self.where)
        return X

    def rows(self, rows) -> np.ndarray:
        """Rows ``rows`` in the model's feature order (float32, checked finite)."""
        return self.checked(read_rows(self.matrix, rows, columns=self.columns, chunk_rows=self.chunk_rows))

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, rows)`` chunks in order, in the model's feature order (checked finite)."""
        for start, X in iter_chunks(self.matrix, chunk_rows=self.chunk_rows, columns=self.columns):
            yield start, self.checked(X)

    def map_rows(self, function: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``function`` over row chunks (data units, model feature order), outputs concatenated in row order."""
        outputs = [function(X) for _, X in self.chunks()]
        return np.concatenate(outputs) if outputs else function(np.zeros((0, self.n_columns), dtype=np.float32))

    @property
    def n_columns(self) -> int:
        return self.matrix.shape[1] if self.columns is None else len(self.columns)

    def value_range(self) -> tuple[float, float]:
        """(min, max) over every value, in one streamed pass (checks finiteness on the way)."""
        lo, hi = math.inf, -math.inf
        for _, X in self.chunks():
            if X.size:
                lo, hi = min(lo, float(X.min())), max(hi, float(X.max()))
        return lo, hi

    def sample_rows(self, n_max: int | None, seed: int | None) -> np.ndarray:
        """Sorted indices of at most ``n_max`` rows, drawn with ``seed`` (all rows when there are fewer).

        ``n_max=None``: :data:`ACTIVITY_ROWS` rows, or fewer to stay within :data:`ACTIVITY_BYTES`.
        """
        if n_max is None:
            n_max = min(ACTIVITY_ROWS, rows_in_bytes(ACTIVITY_BYTES, self.n_columns))
        if self.n_obs <= n_max:
            return np.arange(self.n_obs)
        return np.sort(np.random.default_rng(0 if seed is None else seed).choice(self.n_obs, n_max, replace=False))

    def validation_rows(self, val_rows: np.ndarray, *, seed: int | None, max_rows: int | None = None):
        """``val_rows`` capped at ``max_rows`` (a seeded random subset): the rows read into memory to validate.

        ``max_rows=None``: :data:`VALIDATION_BYTES` of rows.
        """
        if max_rows is None:
            max_rows = rows_in_bytes(VALIDATION_BYTES, self.n_columns)
        if len(val_rows) <= max_rows:
            return val_rows
        rng = np.random.default_rng(0 if seed is None else seed)
        return np.sort(rng.choice(val_rows, max_rows, replace=False))

    def batches(self, *side, rows, batch_size, transform=None, device=None, buffer_chunks=None, **options):
        """A :class:`StreamedBatches` of ``rows`` in the model's feature order, ``transform`` applied per chunk."""
        return StreamedBatches(
            self.matrix,
            *side,
            batch_size=batch_size,
            chunk_rows=self.requested_chunk_rows,
            buffer_chunks=buffer_chunks,
            rows=rows,
            columns=self.columns,
            transform=lambda X: transform(self.checked(X)) if transform is not None else self.checked(X),
            device=device,
            **options,
        )


def on_disk_features(adata, *, var_names=None, layer: str | None = None, chunk_rows: int | None = None):
    """The one switch of the models: an :class:`OnDiskFeatures` when ``adata``'s matrix stays on disk, else None.

    ``var_names`` (a model's features) are matched by name (missing ones raise :class:`GeneMismatchError`);
    None serves the store's columns as they are. ``layer`` is the layer to read (None: X).
    """
    if not is_out_of_core(adata, layer):
        return None
    matrix = stored_matrix(adata, layer)
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    filename = getattr(adata, "filename", None)
    if filename is not None:
        where += f" of {filename}"
    columns = None
    if var_names is not None:
        names = pd.Index(adata.var_names.astype(str))
        wanted = pd.Index([str(v) for v in var_names])
        columns = names.get_indexer(wanted)
        if (columns < 0).any():
            missing = wanted[columns < 0]
            raise GeneMismatchError(
                f"the store{'' if filename is None else f' {filename}'} lacks {len(missing)} of the model's "
                f"{len(wanted)} features (e.g. {missing[:5].tolist()}). Use a store with the model's features, map "
                f"gene identifiers to the same naming first, or retrain on the store's genes."
            )
        if np.array_equal(columns, np.arange(adata.n_vars)):
            columns = None
    return OnDiskFeatures(matrix, columns, where, chunk_rows=chunk_rows)


def model_features(model, adata, *, layer: str | None = None, chunk_rows: int | None = None):
    """:func:`on_disk_features` for ``model``: its features, and its layer unless ``layer`` (``"X"``: adata.X).

    None when ``adata`` is not an out-of-core AnnData (then the model takes its in-memory path, unchanged).
    """
    if not hasattr(adata, "var_names") or not is_out_of_core(
        adata, model.layer if layer is None else (None if layer == "X" else layer)
    ):
        return None
    layer = model.layer if layer is None else (None if layer == "X" else layer)
    return on_disk_features(adata, var_names=model.var_names, layer=layer, chunk_rows=chunk_rows)
