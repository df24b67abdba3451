"""A simulated LINCS GCTX of any size, written block by block in the layout of the files CMap distributes.

The layout mirrors the real level-4 plate in ``shared/data/l1000`` (``LJP005_A375_24H_level4_n377x978.gctx``):

- ``/0/DATA/0/matrix``: float32 of shape ``(n_signatures, n_genes)`` as HDF5 sees it (the GCT matrix transposed),
  contiguous and uncompressed (``chunk=None``), as in the real file; ``chunk=(rows, cols)`` stores it chunked
  instead (optionally compressed), as cmapPy's writer does;
- ``/0/META/COL/<field>`` and ``/0/META/ROW/<field>``: one 1-D dataset per metadata field, ``id`` included;
  strings as fixed-width ASCII bytes (``|S<n>``), integers int64, floats float64, missing values -666; each
  dataset gzip-6 compressed with h5py's automatic chunking;
- root attributes ``version = b"GCTX1.0"`` and ``src``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._atomic import atomic_write
from .._schema import PerturbkitInputError

_MATRIX = "0/DATA/0/matrix"
_ROW = "0/META/ROW"
_COL = "0/META/COL"
_BLOCK_BYTES = 64 << 20  # rows of the matrix generated and written at once: about 64 MiB
_PLATE = 384
_CELLS = ("A375", "A549", "HA1E", "HCC515", "HEPG2", "HT29", "MCF7", "PC3", "VCAP", "NPC")
_DOSES_UM = (0.04, 0.12, 0.37, 1.11, 3.33, 10.0)  # the six doses of the real plate
_TIMES_H = (6, 24)
_CONTROL_FRACTION = 0.06
_N_COMPOUNDS = 2000


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise PerturbkitInputError(f"{name}={value!r} must be an integer of at least {minimum}.")
    return int(value)


def _fixed(values) -> np.ndarray:
    return np.asarray(values, dtype=object).astype("S")


def _gene_metadata(n_genes: int, n_landmark: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Row metadata: probe ids, Entrez-like ids, symbols, titles and the landmark flag (landmarks scattered)."""
    landmark = np.zeros(n_genes, dtype=np.int64)
    landmark[rng.choice(n_genes, size=n_landmark, replace=False)] = 1
    k = np.arange(n_genes)
    return {
        "id": _fixed([f"{200000 + i}_at" for i in k]),
        "pr_analyte_id": _fixed(
            [f"Analyte {10 + i % 490}" if lm else "-666" for i, lm in zip(k, landmark, strict=True)]
        ),
        "pr_bset_id": _fixed(np.where(k % 2 == 0, "dp52", "dp53")),
        "pr_gene_id": (1000 + 7 * k).astype(np.int64),
        "pr_gene_symbol": _fixed([f"GENE{i}" for i in k]),
        "pr_gene_title": _fixed([f"simulated gene {i} (level-5 like)" for i in k]),
        "pr_is_bing": np.where(landmark == 1, 1, (k % 3 != 0).astype(np.int64)).astype(np.int64),
        "pr_is_lm": landmark,
        "pr_pool_id": _fixed(np.where(landmark == 1, "epsilon", "-666")),
    }


def _sample_metadata(start: int, stop: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Column metadata of signatures ``start..stop-1``: plates of 384 wells, one cell line and time per plate."""
    i = np.arange(start, stop)
    plate, well = np.divmod(i, _PLATE)
    cell = np.asarray(_CELLS, dtype=object)[plate % len(_CELLS)]
    time = np.asarray(_TIMES_H)[(plate // len(_CELLS)) % len(_TIMES_H)]
    control = rng.random(len(i)) < _CONTROL_FRACTION
    compound = rng.integers(0, _N_COMPOUNDS, size=len(i))
    dose = np.asarray(_DOSES_UM)[rng.integers(0, len(_DOSES_UM), size=len(i))]
    det_plate = np.array([f"SIM{p:05d}_{c}_{t}H_X1" for p, c, t in zip(plate, cell, time, strict=True)], dtype=object)
    det_well = np.array([f"{chr(65 + w // 24)}{w % 24 + 1:02d}" for w in well], dtype=object)
    pert_id = np.where(control, "DMSO", np.array([f"BRD-K{c:08d}" for c in compound], dtype=object))
    pert_iname = np.where(control, "DMSO", np.array([f"compound-{c}" for c in compound], dtype=object))
    dose_text = np.array([f"{d} um" for d in dose], dtype=object)
    return {
        "id": _fixed(det_plate + ":" + det_well),
        "cell_id": _fixed(cell),
        "count_mean": rng.integers(40, 120, size=len(i)).astype(np.int64),
        "det_plate": _fixed(det_plate),
        "det_well": _fixed(det_well),
        "pert_dose": _fixed(np.where(control, "-666", np.array([f"{d}" for d in dose], dtype=object))),
        "pert_dose_unit": _fixed(np.where(control, "-666", "um")),
        "pert_id": _fixed(pert_id),
        "pert_idose": _fixed(np.where(control, "-666", dose_text)),
        "pert_iname": _fixed(pert_iname),
        "pert_itime": _fixed([f"{t} h" for t in time]),
        "pert_time": time.astype(np.int64),
        "pert_time_unit": _fixed(np.full(len(i), "h", dtype=object)),
        "pert_type": _fixed(np.where(control, "ctl_vehicle", "trt_cp")),
        "qc_iqr": np.round(rng.uniform(5.0, 12.0, size=len(i)), 6),
        "rna_well": _fixed(det_well),
    }


def _string_width(name: str) -> int:
    """Fixed widths of the sample string fields, known before the blocks are generated."""
    widths = {
        "id": 29,
        "cell_id": 6,
        "det_plate": 25,
        "det_well": 3,
        "pert_dose": 4,
        "pert_dose_unit": 4,
        "pert_id": 13,
        "pert_idose": 7,
        "pert_iname": 13,
        "pert_itime": 4,
        "pert_time_unit": 1,
        "pert_type": 11,
        "rna_well": 3,
    }
    return widths[name]


def write_simulated_gctx(
    path,
    *,
    n_genes: int = 12328,
    n_signatures: int = 10_000,
    n_landmark: int = 978,
    chunk: tuple[int, int] | None = None,
    compression: str | int | None = None,
    seed: int = 0,
) -> Path:
    """Write a random LINCS-like GCTX of any size, block by block, in the layout of the real CMap files.

    The matrix holds standard-normal float32 values (like level-5 z-scores) and is generated and written about
    64 MiB at a time, so memory stays bounded whatever the size; the sample metadata (plates of 384 wells, cell
    lines, compounds, doses, times, 6% DMSO controls) is written block by block alongside it. The field names and
    storage types mirror the real LINCS GCTX: ``id``, ``cell_id``, ``det_plate``, ``det_well``, ``pert_id``,
    ``pert_iname``, ``pert_type``, ``pert_dose``, ``pert_dose_unit``, ``pert_idose``, ``pert_time``,
    ``pert_time_unit``, ``pert_itime``, ``count_mean``, ``qc_iqr``, ``rna_well`` for samples and ``id``,
    ``pr_gene_id``, ``pr_gene_symbol``, ``pr_gene_title``, ``pr_is_lm``, ``pr_is_bing``, ``pr_analyte_id``,
    ``pr_bset_id``, ``pr_pool_id`` for genes. The ``n_landmark`` landmark genes (``pr_is_lm == 1``) are scattered
    among the rows. The file is written to a temporary sibling and moved into place at the end.

    Parameters
    ----------
    path
        Output ``.gctx`` file (replaced if present).
    n_genes
        Number of genes (GCT rows); the full LINCS files have 12,328.
    n_signatures
        Number of samples (GCT columns).
    n_landmark
        Number of landmark genes, at most ``n_genes``.
    chunk
        HDF5 chunk shape ``(signatures, genes)`` of the matrix; ``None`` (default) stores it contiguously, as the
        real file does.
    compression
        HDF5 filter for a chunked matrix (``"gzip"``, a gzip level or ``"lzf"``); ``None`` for none.
    seed
        Seed of the generator of values and metadata.

    Returns
    -------
    The path written, as :class:`pathlib.Path`.

    Examples
    --------
    >>> path = write_simulated_gctx("/tmp/sim.gctx", n_signatures=2000)
    >>> obs, var = pk.io.read_gct_metadata(path)
    """
    import h5py

    path = Path(path).expanduser()
    n_genes = _check_int("n_genes", n_genes, 1)
    n_signatures = _check_int("n_signatures", n_signatures, 0)
    n_landmark = _check_int("n_landmark", n_landmark, 0)
    if n_landmark > n_genes:
        raise PerturbkitInputError(f"n_landmark={n_landmark} is more than n_genes={n_genes}; pass at most n_genes.")
    if chunk is not None:
        if len(chunk) != 2:
            raise PerturbkitInputError(f"chunk={chunk!r} must be None or a pair (signatures, genes).")
        chunk = (_check_int("chunk[0]", chunk[0], 1), _check_int("chunk[1]", chunk[1], 1))
        chunk = (min(chunk[0], max(n_signatures, 1)), min(chunk[1], n_genes))
    elif compression is not None:
        raise PerturbkitInputError("compression= needs a chunked matrix; pass chunk=(signatures, genes) as well.")
    rng = np.random.default_rng(seed)
    genes = _gene_metadata(n_genes, n_landmark, rng)
    block = max(1, _BLOCK_BYTES // (4 * n_genes))
    if chunk is not None:
        block = max(chunk[0], block // chunk[0] * chunk[0])  # whole chunks per write
    with atomic_write(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["version"] = np.bytes_(b"GCTX1.0")
            f.attrs["src"] = path.name
            matrix = f.create_dataset(
                _MATRIX, shape=(n_signatures, n_genes), dtype=np.float32, chunks=chunk, compression=compression
            )
            meta = f.require_group(_COL)
            f.require_group(_ROW)
            for name, values in genes.items():
                f.create_dataset(f"{_ROW}/{name}", data=values, chunks=True, compression="gzip", compression_opts=6)
            columns = {}
            packed = {"chunks": True, "compression": "gzip", "compression_opts": 6} if n_signatures else {}
            for name, values in _sample_metadata(0, 1, np.random.default_rng(0)).items():
                dtype = f"S{_string_width(name)}" if values.dtype.kind == "S" else values.dtype
                columns[name] = meta.create_dataset(name, shape=(n_signatures,), dtype=dtype, **packed)
            for start in range(0, n_signatures, block):
                stop = min(start + block, n_signatures)
                matrix[start:stop] = rng.standard_normal((stop - start, n_genes), dtype=np.float32)
                for name, values in _sample_metadata(start, stop, rng).items():
                    if values.dtype.kind == "S" and values.dtype.itemsize > columns[name].dtype.itemsize:
                        raise AssertionError(f"simulated {name} values are wider than their field")  # never cut
                    columns[name][start:stop] = values
    return path
