"""GCT text (v1.2, v1.3, plain or gzip) and GCTX (HDF5) readers and writers.

GCTX layout (the LINCS / CMap convention)::

    /0/DATA/0/matrix     float, shape (n_samples, n_genes) as HDF5 sees it (the GCT matrix transposed)
    /0/META/ROW/id       gene (row) ids;    /0/META/ROW/<field> one dataset per gene metadata field
    /0/META/COL/id       sample (column) ids; /0/META/COL/<field> one dataset per sample metadata field

Missing metadata is written as -666 and read back as NaN. Files written by :func:`write_gctx` also carry
attributes (``perturbkit_dtype``, ``perturbkit_name``, ``perturbkit_columns``) that let :func:`read_gct` restore
dtypes, column names and column order exactly, and a CRC-32 of the file in the HDF5 user block (the first 512
bytes, which the HDF5 format reserves for the user) that :func:`read_gct` checks before HDF5 parses the file.
Other readers (cmapPy, h5py, cmapR) ignore both.

Agreement with cmapPy 4.0.1 (``cmapPy.pandasGEXpress.parse``): the same ids, matrix values and metadata, with
these deliberate differences:

- Missing metadata: cmapPy's tokens (``na``, ``NA``, ``NaN``, ``nan``, ``-nan``, ``-NaN``, ``None``, ``NULL``,
  ``#N/A``, ``N/A``, ``#NA``, ``#N/A!``, ``#VALUE!``, ``-666``, ``-666.0``) are missing in GCT text and GCTX alike
  (cmapPy's GCTX parser only maps -666); so are blank fields (cmapPy keeps ``""``, which makes a numeric column
  text), -666 with any number of zero decimals (cmapPy's text parser reads ``-666.000`` as the number -666) and
  tokens with surrounding white space.
- Metadata of only ``True``/``False`` becomes bool (cmapPy keeps strings).
- The matrix: ``""``, ``n/a`` and ``null`` are also read as NaN (cmapPy stops with an error).
- Stricter checks: every line must have the header's number of fields, NUL bytes and invalid UTF-8 are errors,
  duplicated ids are errors, and the result is AnnData (samples × genes), not genes × samples.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._atomic import atomic_write
from .._schema import FileFormatError, PerturbkitInputError, dense_matrix
from .._version import __version__
from ._utils import (
    CMAP_NA_STRINGS,
    MISSING_VALUE,
    checked_text,
    existing_path,
    first_present,
    infer_column,
    iter_lines,
    key_strings,
    load_table,
    lower_strings,
    read_file_bytes,
    warn_no_final_newline,
)

if TYPE_CHECKING:
    from anndata import AnnData

_MATRIX = "0/DATA/0/matrix"
_ROW = "0/META/ROW"
_COL = "0/META/COL"
_DTYPE_ATTR = "perturbkit_dtype"
_NAME_ATTR = "perturbkit_name"
_ORDER_ATTR = "perturbkit_columns"
_CATEGORIES_ATTR = "perturbkit_categories"
_WRITER_ATTR = "perturbkit_version"
_ID_ALIAS = "perturbkit:id"  # a metadata column literally called "id" is stored under this name

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_USERBLOCK = 512  # bytes before the HDF5 superblock, reserved for the user: perturbkit keeps its checksum there
_CHECKSUM_MAGIC = b"perturbkit GCTX checksum\n"
_VERIFY_UP_TO = 1 << 30  # files up to 1 GiB are always verified; larger ones when read whole (verify=None)

#: Missing values in the matrix of GCT text: cmapPy's tokens and -666 (pandas also matches "-666.0"), plus three
#: that cmapPy rejects.
_DATA_NA = [*CMAP_NA_STRINGS, "-666", "", "n/a", "null"]
_VEHICLE_TYPES = {"ctl_vehicle", "ctl_vehicle.cns", "ctrl_vehicle"}
_DOSE_UNITS = {
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "umol": 1.0,
    "micromolar": 1.0,
    "nm": 1e-3,
    "nanomolar": 1e-3,
    "mm": 1e3,
    "millimolar": 1e3,
    "pm": 1e-6,
    "m": 1e6,
    "molar": 1e6,
}
_TIME_UNITS = {
    "h": 1.0,
    "hr": 1.0,
    "hrs": 1.0,
    "hour": 1.0,
    "hours": 1.0,
    "m": 1 / 60,
    "min": 1 / 60,
    "mins": 1 / 60,
    "minute": 1 / 60,
    "minutes": 1 / 60,
    "d": 24.0,
    "day": 24.0,
    "days": 24.0,
}
_MISSING_666 = re.compile(r"^\s*-666(\.0*)?\s*$")
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\d\s].*?)?\s*$")
_LANDMARK_COLUMNS = ("pr_is_lm", "pr_is_lmark", "is_landmark", "landmark")
_SYMBOL_COLUMNS = ("pr_gene_symbol", "gene_symbol", "symbol")
_GENE_KEY_COLUMNS = ("pr_gene_id", "pr_id", "gene_id", "id", "pr_gene_symbol")
_SIG_KEY_COLUMNS = ("sig_id", "cid", "id", "inst_id", "distil_id")
_SMILES_COLUMNS = ("isomeric_smiles", "canonical_smiles")


# ----------------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------------


def _select(obs, var, *, cid, rid, gene_info, landmark_only: bool):
    """The samples and genes a read keeps: ``(obs, var, column indices, row indices, gene symbol source)``.

    ``cid`` / ``rid`` select samples and genes (None: all), ``gene_info`` joins the gene table, ``landmark_only`` keeps
    the landmark genes; the indices (None: all) index the file's matrix. Shared by :func:`read_gct` and
    :func:`perturbkit.io.convert_gctx`, so both select alike.
    """
    n_genes = len(var)
    col_idx = _selection(obs.index, cid, "cid", "sample (column)")
    row_idx = _selection(var.index, rid, "rid", "gene (row)")
    if col_idx is not None:
        obs = obs.iloc[col_idx]
    if row_idx is not None:
        var = var.iloc[row_idx]
    symbol_source = None
    if gene_info is not None:
        var, symbol_source = _join_gene_info(var, gene_info)
    if landmark_only:
        keep = _landmark_mask(var)
        row_idx = (np.arange(n_genes) if row_idx is None else row_idx)[keep]
        var = var.iloc[np.flatnonzero(keep)]
    return obs, var, col_idx, row_idx, symbol_source


def read_gct(
    path,
    *,
    sig_info=None,
    gene_info=None,
    landmark_only: bool = False,
    cid=None,
    rid=None,
    gene_symbols: bool | str = "auto",
    verify: bool | None = None,
) -> AnnData:
    """Read a GCT (text v1.2/v1.3, plain or ``.gz``) or GCTX (HDF5) file into AnnData.

    Samples (GCT columns) become ``obs``, genes (GCT rows) become ``var``. Column metadata goes to ``obs`` and row
    metadata to ``var``; missing values (-666, ``NA``, ``nan``, ... as cmapPy reads them; see the module notes)
    become NaN and text that looks numeric becomes numeric. The LINCS fields are mapped to perturbkit's schema,
    keeping the originals, and only where the column is not already there:

    ``cell_line`` ← ``cell_id``; ``drug`` ← ``pert_iname`` ("DMSO" for DMSO); ``dose`` (float, µM) ←
    ``pert_dose`` + ``pert_dose_unit``, else parsed from ``pert_idose`` ("10.0 um", nM converted to µM), 0.0 for
    vehicle controls without a dose; ``time`` (float, hours) ← ``pert_time`` + ``pert_time_unit``, else parsed
    from ``pert_itime`` ("24 h"); ``control`` (bool) ← ``pert_type`` in {ctl_vehicle, ctl_vehicle.cns,
    ctrl_vehicle} or ``pert_iname`` == DMSO; ``smiles`` ← ``isomeric_smiles``, else ``canonical_smiles``.
    Doses in units that cannot become µM (``ng``, ``ng/mL``, ``%``, ...) are NaN, with a warning that names
    the rows.

    The file is checked as it is read: a line with a missing or extra field, a NUL byte, bytes that are not
    UTF-8, a damaged ``.gz`` or HDF5 file all raise :class:`~perturbkit.errors.FileFormatError` naming the file
    (and line). GCTX files written by :func:`write_gctx` carry a checksum that is verified before HDF5 reads them.

    Parameters
    ----------
    path
        ``.gct``, ``.gct.gz`` or ``.gctx`` file (the format is sniffed from the content).
    sig_info
        LINCS signature/instance table (path or DataFrame), joined onto ``obs`` by sample id (its ``sig_id``,
        ``cid``, ``id``, ``inst_id`` or ``distil_id`` column). Fills columns the file lacks or leaves empty.
    gene_info
        LINCS gene table (path or DataFrame with ``pr_gene_id``, ``pr_gene_symbol``, ``pr_is_lm``), matched to
        the row ids (or to a matching ``var`` column such as ``pr_gene_id``). Its columns join ``var`` and gene
        symbols become ``var_names``; the original ids go to ``var['id']``.
    landmark_only
        Keep the landmark genes only (``pr_is_lm`` / ``pr_is_lmark`` equal to 1 or "Y", from ``gene_info`` or the
        file's own row metadata). Raises :class:`PerturbkitInputError` when no landmark flag is available.
    cid, rid
        Sample (column) / gene (row) ids to keep, in the order given. From a GCTX only those are read. To choose
        them from the metadata first, use :func:`read_gct_metadata`.
    gene_symbols
        ``"auto"`` (default): use the gene symbols as ``var_names`` when ``gene_info`` is given, or when the row
        metadata holds ``pr_gene_symbol`` (not for files written by :func:`write_gctx`, whose ``var_names`` are
        kept as written). ``True`` forces, ``False`` keeps the file's row ids.
    verify
        Check the checksum of a GCTX written by :func:`write_gctx`. ``None`` (default): when the file is at most
        1 GiB or is read whole (no ``cid``/``rid``/``landmark_only``); ``True``: always; ``False``: never.
        Files without a checksum (written by other tools) cannot be verified.

    Returns
    -------
    AnnData of shape (samples, genes) with float32 ``X``.

    Examples
    --------
    >>> adata = pk.io.read_gct("level4.gctx")
    >>> obs, var = pk.io.read_gct_metadata("level5_beta_trt_cp_n720216x12328.gctx")
    >>> keep = obs.index[(obs["cell_line"] == "A375") & (obs["time"] == 24)]
    >>> a375 = pk.io.read_gct("level5_beta_trt_cp_n720216x12328.gctx", cid=keep, landmark_only=True)
    """
    import anndata as ad

    path = existing_path(path, what="GCT/GCTX file")
    whole = cid is None and rid is None and not landmark_only
    with _open_source(path, matrix=True, verify=_should_verify(path, verify, whole)) as reader:
        obs, var, col_idx, row_idx, symbol_source = _select(
            reader.obs, reader.var, cid=cid, rid=rid, gene_info=gene_info, landmark_only=landmark_only
        )
        X = reader.matrix(col_idx, row_idx)
    obs, var = _finish(obs, var, sig_info, gene_symbols, symbol_source, reader.written_by_perturbkit)
    return ad.AnnData(X=X, obs=obs, var=var)


def read_gct_metadata(
    path, *, sig_info=None, gene_info=None, gene_symbols: bool | str = "auto", verify: bool | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the sample (``obs``) and gene (``var``) metadata of a GCT or GCTX file without its matrix.

    From a GCTX only the metadata groups are read, so this is quick even for the full LINCS files (e.g. 12,328 ×
    473,647); from GCT text the lines are checked and the ids and metadata parsed, but no matrix is built. The
    tables are exactly ``read_gct(path, ...).obs`` and ``.var``, with the same schema mapping; use them to choose
    ``cid=`` / ``rid=`` for :func:`read_gct`.

    Parameters
    ----------
    path
        ``.gct``, ``.gct.gz`` or ``.gctx`` file.
    sig_info, gene_info, gene_symbols
        As in :func:`read_gct`.
    verify
        Check the checksum of a GCTX written by :func:`write_gctx` (which means reading the whole file).
        ``None`` (default): only when the file is at most 1 GiB; ``True``: always; ``False``: never.

    Returns
    -------
    ``(obs, var)``: two DataFrames indexed by sample ids and gene ids (or symbols, see ``gene_symbols``).

    Examples
    --------
    >>> obs, var = pk.io.read_gct_metadata("level5_beta_trt_cp_n720216x12328.gctx")
    >>> obs["cell_line"].value_counts().head()
    >>> keep = obs.index[obs["drug"].isin(["vorinostat", "DMSO"])]
    >>> adata = pk.io.read_gct("level5_beta_trt_cp_n720216x12328.gctx", cid=keep)
    """
    path = existing_path(path, what="GCT/GCTX file")
    with _open_source(path, matrix=False, verify=_should_verify(path, verify, False)) as reader:
        obs, var = reader.obs, reader.var
        symbol_source = None
        if gene_info is not None:
            var, symbol_source = _join_gene_info(var, gene_info)
    return _finish(obs, var, sig_info, gene_symbols, symbol_source, reader.written_by_perturbkit)


def _finish(obs, var, sig_info, gene_symbols, symbol_source, written_by_perturbkit):
    if sig_info is not None:
        obs = _join_sig_info(obs, sig_info)
    obs = _lincs_schema(obs)
    var = _apply_gene_symbols(var, gene_symbols, symbol_source, written_by_perturbkit=written_by_perturbkit)
    obs.index = obs.index.astype(str)
    obs.index.name = None
    var.index.name = None
    return obs, var


def write_gctx(adata, path, *, compression: str | int | None = None, checksum: bool = True) -> Path:
    """Write ``adata`` as GCTX (HDF5, the LINCS/CMap layout) that :func:`read_gct` reads back identically.

    ``X`` is stored as float32 with shape (n_obs, n_vars) (i.e. genes × samples in GCT terms), ``obs`` as column
    metadata and ``var`` as row metadata. Missing values are written as -666. Each metadata dataset carries a
    ``perturbkit_dtype`` attribute so that bool, integer, float, string and categorical columns round-trip.
    The file is written to a temporary file next to ``path`` and then moved over it, so an interrupted write
    never leaves a half-written file (an existing ``path`` stays as it was).

    Parameters
    ----------
    adata
        The profiles (dense or sparse ``X``).
    path
        Output file (conventionally ``.gctx``); replaced if present.
    compression
        HDF5 filter for the matrix: ``None`` (default; contiguous storage, fastest to write and read, as cmapPy
        writes it), ``"gzip"`` (or a gzip level 0-9: about 10% smaller for float profiles, several times slower)
        or ``"lzf"``. The default used to be ``"gzip"``; pass it to get the old behaviour.
    checksum
        Store a CRC-32 of the file in its HDF5 user block, which :func:`read_gct` verifies so that a damaged file
        raises an error instead of crashing HDF5 or loading changed values. Readers other than perturbkit
        ignore it.

    Returns
    -------
    The path written, as :class:`pathlib.Path`.

    Examples
    --------
    >>> pk.io.write_gctx(adata, "profiles.gctx")
    >>> pk.io.write_gctx(adata, "profiles_small.gctx", compression="gzip")
    """
    import h5py

    path = Path(path).expanduser()
    if (
        compression is not None
        and compression not in ("gzip", "lzf")
        and not (isinstance(compression, int) and not isinstance(compression, bool) and 0 <= compression <= 9)
    ):
        raise PerturbkitInputError(
            f"compression={compression!r} is not known; use None, 'gzip' (or a level 0-9) or 'lzf'."
        )
    _check_unique(adata.obs_names, "obs_names")
    _check_unique(adata.var_names, "var_names")
    X = dense_matrix(adata, dtype=np.float32)
    with atomic_write(path) as tmp:
        options = {"userblock_size": _USERBLOCK} if checksum else {}
        with h5py.File(tmp, "w", **options) as f:
            f.attrs["version"] = "GCTX1.0"
            f.attrs["src"] = path.name
            f.attrs[_WRITER_ATTR] = __version__
            if compression is None or X.size == 0:
                f.create_dataset(_MATRIX, data=X)
            else:
                chunks = (max(1, min(X.shape[0], 256)), max(1, min(X.shape[1], 4096)))
                f.create_dataset(_MATRIX, data=X, chunks=chunks, compression=compression)
            for group_name, frame, ids in ((_COL, adata.obs, adata.obs_names), (_ROW, adata.var, adata.var_names)):
                group = f.require_group(group_name)
                group.create_dataset("id", data=_encode_strings(np.asarray(ids.astype(str), dtype=object)))
                order = []
                for column in frame.columns:
                    order.append(_write_meta_column(group, str(column), frame[column]))
                group.attrs[_ORDER_ATTR] = json.dumps(order)
        if checksum:
            _stamp_checksum(tmp)
    return path


def write_gct(adata, path) -> Path:
    """Write ``adata`` as GCT text v1.3 (gzip-compressed when ``path`` ends in ``.gz``).

    Genes are rows and samples columns, as the format wants; ``var`` goes to row metadata and ``obs`` to column
    metadata. ``X`` is written with 9 significant digits, so float32 values read back exactly. Text cannot keep
    dtypes: numbers, bools and strings come back as such, categoricals come back as strings, and strings that
    read as missing values (``NA``, ``None``, ...) come back as NaN. The file is written to a temporary file next
    to ``path`` and then moved over it, so an interrupted write never leaves a half-written file.

    Parameters
    ----------
    adata
        The profiles (dense or sparse ``X``); ``obs`` and ``var`` values must not hold tabs or line breaks.
    path
        Output file (``.gct``, or ``.gct.gz`` for gzip); replaced if present.

    Returns
    -------
    The path written, as :class:`pathlib.Path`.
    """
    path = Path(path).expanduser()
    _check_unique(adata.obs_names, "obs_names")
    _check_unique(adata.var_names, "var_names")
    X = dense_matrix(adata, dtype=np.float32)
    row_meta = {_text_field_name(c): _text_values(adata.var[c], c) for c in adata.var.columns}
    col_meta = {_text_field_name(c): _text_values(adata.obs[c], c) for c in adata.obs.columns}
    for ids, what in ((adata.obs_names, "obs_names"), (adata.var_names, "var_names")):
        _check_text(pd.Series(ids.astype(str)), what)

    with atomic_write(path) as tmp, open(tmp, "wb") as raw:
        if path.name.endswith(".gz"):  # the gzip header names the final file, not the temporary one
            stream = gzip.GzipFile(filename=path.name, mode="wb", compresslevel=4, fileobj=raw, mtime=0)
        else:
            stream = raw
        with io.TextIOWrapper(stream, encoding="utf-8", newline="\n") as fh:
            fh.write("#1.3\n")
            fh.write(f"{adata.n_vars}\t{adata.n_obs}\t{len(row_meta)}\t{len(col_meta)}\n")
            fh.write("\t".join(["id", *row_meta.keys(), *adata.obs_names.astype(str)]) + "\n")
            filler = ["na"] * len(row_meta)
            for name, values in col_meta.items():
                fh.write("\t".join([name, *filler, *values]) + "\n")
            numbers = io.StringIO()
            np.savetxt(numbers, X.T, fmt="%.9g", delimiter="\t")  # 9 significant digits: float32 reads back exactly
            prefixes = zip(adata.var_names.astype(str), *row_meta.values(), strict=True)
            for prefix, line in zip(prefixes, numbers.getvalue().splitlines(), strict=True):
                fh.write("\t".join(prefix) + ("\t" + line if line else "") + "\n")
    return path


# ----------------------------------------------------------------------------------------------------------------
# sources: text and HDF5
# ----------------------------------------------------------------------------------------------------------------


def _hdf5_offset(path: Path) -> int | None:
    """Where the HDF5 superblock starts (0, or after a user block: 512, 1024, ...); None if not HDF5."""
    with open(path, "rb") as fh:
        for offset in (0, 512, 1024, 2048, 4096, 8192):
            fh.seek(offset)
            if fh.read(8) == _HDF5_SIGNATURE:
                return offset
    return None


def _sniff_format(path: Path) -> str:
    if _hdf5_offset(path) is not None:
        return "gctx"
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(8)
        except (OSError, EOFError, zlib.error):
            head = read_file_bytes(path)[:8]  # raises the clear error for a damaged gzip file
    if head.lstrip(b"\xef\xbb\xbf").startswith((b"#1.2", b"#1.3")):
        return "gct"
    raise FileFormatError(
        f"'{path}' is not a GCT or GCTX file: GCT text starts with '#1.2' or '#1.3' (first bytes here: {head!r}), "
        f"GCTX is HDF5. For Cell Painting profiles use pk.io.read_cell_painting; for .h5ad use pk.io.read_h5ad."
    )


def _open_source(path: Path, *, matrix: bool, verify: bool):
    if _sniff_format(path) == "gctx":
        return _GctxSource(path, verify=verify)
    return _GctTextSource(path, matrix=matrix)


def _should_verify(path: Path, verify, whole: bool) -> bool:
    if verify is None:
        return whole or path.stat().st_size <= _VERIFY_UP_TO
    if not isinstance(verify, bool):
        raise PerturbkitInputError(f"verify must be True, False or None, not {verify!r}.")
    return verify


class _GctTextSource:
    """Checks every line of the text, parses headers by hand and the data block with pandas."""

    written_by_perturbkit = False

    def __init__(self, path: Path, *, matrix: bool = True):
        self.path = path
        raw = checked_text(read_file_bytes(path), path)
        self._parse(raw, matrix)
        warn_no_final_newline(raw, path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _fail(self, problem: str, line: int | None = None):
        where = f" line {line}" if line is not None else ""
        raise FileFormatError(f"Malformed GCT file '{self.path}'{where}: {problem}")

    def _parse(self, raw: bytes, matrix: bool) -> None:
        lines = iter_lines(raw)
        number, start, end = next(lines, (1, 0, 0))
        version = raw[start:end].split(b"\t")[0].strip().decode("utf-8")
        if version not in ("#1.2", "#1.3"):
            self._fail(f"the first line must be '#1.2' or '#1.3', not {version!r}.", 1)
        number, start, end = next(lines, (2, 0, 0))
        dims_line = raw[start:end].decode("utf-8")
        tokens = [t for t in re.split(r"[\t ]+", dims_line.strip()) if t]
        n_expected = 2 if version == "#1.2" else 4
        layout = "rows, columns" + ("" if version == "#1.2" else ", row-metadata fields, column-metadata fields")
        if len(tokens) != n_expected or not all(re.fullmatch(r"\d+", t) for t in tokens):
            self._fail(
                f"the dimension line (line 2) must hold {n_expected} non-negative integers ({layout}) for version "
                f"{version}, but it is {dims_line!r}.",
                2,
            )
        dims = [int(t) for t in tokens]
        n_rows, n_cols = dims[0], dims[1]
        n_row_meta, n_col_meta = (1, 0) if version == "#1.2" else (dims[2], dims[3])
        width = 1 + n_row_meta + n_cols
        layout = f"id + {n_row_meta} row-metadata fields + {n_cols} samples, as the dimension line says"

        # every non-blank line from line 3 on: the header, n_col_meta metadata lines, n_rows data lines
        heads: list[tuple[int, int, int]] = []
        data: list[tuple[int, int, int]] = []
        header_count, first_diff = None, None
        for number, start, end in lines:
            if end == start:
                continue  # blank lines are skipped, as pandas (and so cmapPy) skip them
            count = raw.count(b"\t", start, end) + 1
            if len(heads) < 1 + n_col_meta:
                heads.append((number, start, end))
            else:
                data.append((number, start, end))
            if header_count is None:
                header_count = count
            elif count != header_count and first_diff is None:
                first_diff = (number, count, end)
        if not heads:
            self._fail(f"the file ends before the header line (line 3; {layout}).")
        extra = header_count - width
        if extra and not (extra > 0 and raw.endswith(b"\t" * extra, heads[0][1], heads[0][2])):
            self._fail(
                f"the header line (line 3) has {header_count} fields, but the dimension line says {n_cols} samples "
                f"and {n_row_meta} row-metadata fields, i.e. {width} fields (id + row metadata + sample ids).",
                heads[0][0],
            )
        if first_diff is not None:
            number, count, end = first_diff
            last = " It is the last line: the file looks truncated." if end == len(raw) and count < header_count else ""
            padding = f" (the header line's last {extra} of them empty)" if extra else ""
            self._fail(
                f"the line has {count} fields where {header_count} are expected{padding} ({layout}).{last} A "
                f"missing or extra tab shifts every later value of the line; repair or re-export the file.",
                number,
            )
        if extra:  # every line ends in the same empty fields (a spreadsheet export): they must all be empty
            self._check_trailing(raw, heads + data, extra)

        def fields(start, end):
            values = raw[start:end].decode("utf-8").split("\t")
            return values[:width] if extra else values

        header = fields(heads[0][1], heads[0][2])
        row_fields = [_restore_name(h) for h in header[1 : 1 + n_row_meta]]
        col_ids = header[1 + n_row_meta :]
        _check_unique_names(row_fields, f"row-metadata field names in the header of '{self.path}'")
        if len(heads) < 1 + n_col_meta:
            self._fail(
                f"the dimension line says {n_col_meta} column-metadata lines, but the file ends after {len(heads) - 1}."
            )
        col_meta = {}
        for number, start, end in heads[1:]:
            values = fields(start, end)
            name = _restore_name(values[0])
            if name in col_meta:
                self._fail(f"the column-metadata field {name!r} appears twice.", number)
            col_meta[name] = values[1 + n_row_meta :]
        if len(data) != n_rows:
            self._fail(f"the dimension line says {n_rows} rows (genes), but the file holds {len(data)} data lines.")

        row_ids, row_meta, value_spans = self._split_data_lines(raw, data, n_row_meta, extra)
        self.var = _meta_frame(dict(zip(row_fields, row_meta, strict=True)), row_ids)
        self.obs = _meta_frame({name: np.asarray(v, dtype=object) for name, v in col_meta.items()}, col_ids)
        _check_unique(self.var.index, f"row ids in '{self.path}'")
        _check_unique(self.obs.index, f"column ids in '{self.path}'")
        self._X = self._parse_values(raw, data, value_spans, col_ids) if matrix else None

    def _check_trailing(self, raw, lines, extra):
        tail = b"\t" * extra
        for number, start, end in lines:
            if not raw.endswith(tail, start, end):
                self._fail(f"the line does not end in the {extra} empty fields that the header line ends in.", number)

    @staticmethod
    def _split_data_lines(raw, data, n_row_meta, extra):
        """Row ids, row-metadata columns and the byte span of each line's values (fields already counted)."""
        ids, meta, spans = [], [[] for _ in range(n_row_meta)], []
        for _, start, end in data:
            pos = start
            for _ in range(n_row_meta + 1):  # the id and row-metadata fields end at the next tabs
                tab = raw.find(b"\t", pos, end)
                pos = end + 1 if tab < 0 else tab + 1
            fields = raw[start : pos - 1].decode("utf-8").split("\t")
            ids.append(fields[0])
            for column, value in zip(meta, fields[1:], strict=True):
                column.append(value)
            spans.append((min(pos, end), end - extra))
        return ids, [np.asarray(column, dtype=object) for column in meta], spans

    def _parse_values(self, raw, data, spans, col_ids) -> np.ndarray:
        """The values as float32 (samples x genes), parsed by pandas as one long column, a few MB at a time."""
        n_cols = len(col_ids)
        X = np.empty((n_cols, len(spans)), dtype=np.float32)
        if n_cols == 0 or not spans:
            return X
        first = 0
        while first < len(spans):
            last, size = first, 0
            while last < len(spans) and (last == first or size < (32 << 20)):
                size += spans[last][1] - spans[last][0]
                last += 1
            chunk = b"\n".join(raw[a:b] for a, b in spans[first:last]).replace(b"\t", b"\n") + b"\n"
            try:
                values = pd.read_csv(
                    io.BytesIO(chunk),
                    header=None,
                    names=[0],
                    dtype={0: np.float32},
                    na_values=_DATA_NA,
                    keep_default_na=False,
                    skip_blank_lines=False,
                    quoting=3,
                    engine="c",
                )[0].to_numpy()
            except (ValueError, pd.errors.ParserError) as err:
                found = self._find_bad_value(raw, data[first:last], spans[first:last], col_ids)
                if found is None:
                    self._fail(f"the data block holds values that are not numbers ({err}).")
                number, sample, value = found
                self._fail(
                    f"the value {value!r} (sample {sample!r}) is not a number, so the data block holds values "
                    f"that are not numbers. Write missing values as NaN, NA or -666.",
                    number,
                )
            if values.size != (last - first) * n_cols:  # cannot happen after the field counts; never reshape wrong
                self._fail(
                    f"lines {data[first][0]}-{data[last - 1][0]} hold {values.size} values where "
                    f"{(last - first) * n_cols} were expected."
                )
            X[:, first:last] = values.reshape(last - first, n_cols).T
            first = last
        return X

    @staticmethod
    def _find_bad_value(raw, data, spans, col_ids):
        na = set(_DATA_NA) | {"-666.0"}
        for (number, _, _), (start, end) in zip(data, spans, strict=True):
            for k, value in enumerate(raw[start:end].decode("utf-8").split("\t")):
                if value in na:
                    continue
                try:
                    float(value)
                except ValueError:
                    return number, col_ids[k] if k < len(col_ids) else k, value
        return None

    def matrix(self, col_idx, row_idx) -> np.ndarray:
        X = self._X
        if col_idx is not None:
            X = X[col_idx]
        if row_idx is not None:
            X = X[:, row_idx]
        return np.ascontiguousarray(X, dtype=np.float32)


@contextmanager
def _h5_errors(path: Path):
    """Turn the errors h5py raises for a damaged file into :class:`FileFormatError` naming the file."""
    try:
        yield
    except PerturbkitInputError:
        raise
    except (OSError, KeyError, RuntimeError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise FileFormatError(
            f"'{path}' is a damaged or incomplete GCTX (HDF5) file ({type(err).__name__}: {err}). Download or write "
            f"it again (pk.io.write_gctx writes GCTX)."
        ) from None


def _checksum_record(path: Path) -> dict | None:
    """The checksum that :func:`write_gctx` keeps in the user block, or None when the file has none."""
    with open(path, "rb") as fh:
        head = fh.read(_USERBLOCK)
    if not head.startswith(_CHECKSUM_MAGIC):
        return None
    try:
        record = json.loads(head[len(_CHECKSUM_MAGIC) :].split(b"\n", 1)[0].decode("ascii"))
        record = {"crc32": int(record["crc32"]), "size": int(record["size"]), "offset": int(record["offset"])}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise FileFormatError(
            f"'{path}' is damaged: the checksum record that perturbkit wrote at its start is unreadable. Write the "
            f"file again, or pass verify=False to try reading it anyway."
        ) from None
    return record


def _crc32(path: Path, offset: int) -> tuple[int, int]:
    crc, size = 0, 0
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        fh.seek(offset)
        while True:
            n = fh.readinto(buffer)
            if not n:
                break
            crc = zlib.crc32(view[:n], crc)
            size += n
    return crc, size + offset


def _verify_checksum(path: Path) -> None:
    record = _checksum_record(path)
    if record is None:
        return
    crc, size = _crc32(path, record["offset"])
    if size != record["size"]:
        raise FileFormatError(
            f"'{path}' is {size} bytes but was written with {record['size']}: it is truncated or damaged. Download "
            f"or write it again (or pass verify=False to try reading it anyway)."
        )
    if crc != record["crc32"]:
        raise FileFormatError(
            f"'{path}' is damaged: its content no longer matches the checksum written with it (CRC-32 {crc:08x}, "
            f"expected {record['crc32']:08x}). Download or write it again (or pass verify=False to try anyway)."
        )


def _stamp_checksum(path: Path) -> None:
    crc, size = _crc32(path, _USERBLOCK)
    record = json.dumps({"crc32": crc, "size": size, "offset": _USERBLOCK, "writer": f"perturbkit {__version__}"})
    block = _CHECKSUM_MAGIC + record.encode("ascii") + b"\n"
    with open(path, "r+b") as fh:
        fh.write(block.ljust(_USERBLOCK, b"\0"))
        fh.flush()
        os.fsync(fh.fileno())


class _GctxSource:
    """Reads ids and metadata on entry; the matrix (or only the selected part of it) on demand."""

    def __init__(self, path: Path, *, verify: bool = True):
        import h5py

        self.path = path
        if verify:
            _verify_checksum(path)  # before HDF5 parses a damaged file (which can crash or hang the library)
        try:
            self._file = h5py.File(path, "r", rdcc_nbytes=128 * 1024**2)
        except OSError as err:
            raise FileFormatError(
                f"'{path}' cannot be opened as HDF5/GCTX: {err}. The file is damaged or incomplete; download or "
                f"write it again."
            ) from None
        try:
            with _h5_errors(path):
                self._read_metadata()
        except BaseException:
            self._file.close()
            raise

    def _read_metadata(self) -> None:
        import h5py

        path, f = self.path, self._file
        missing = [p for p in (_MATRIX, f"{_ROW}/id", f"{_COL}/id") if p not in f]
        if missing:
            raise FileFormatError(
                f"'{path}' is HDF5 but not GCTX: it lacks {', '.join('/' + m for m in missing)}. A GCTX holds "
                f"/0/DATA/0/matrix, /0/META/ROW/id and /0/META/COL/id (write one with pk.io.write_gctx)."
            )
        self.written_by_perturbkit = _WRITER_ATTR in f.attrs
        self.var = _read_meta_group(f[_ROW], path)
        self.obs = _read_meta_group(f[_COL], path)
        _check_unique(self.var.index, f"row ids in '{path}'")
        _check_unique(self.obs.index, f"column ids in '{path}'")
        ds = f[_MATRIX]
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 2:
            raise FileFormatError(f"Malformed GCTX '{path}': /0/DATA/0/matrix is not a 2-D dataset.")
        shape = ds.shape
        n_obs, n_var = len(self.obs), len(self.var)
        if shape == (n_obs, n_var):
            self._transposed = False
        elif shape == (n_var, n_obs):
            self._transposed = True
        else:
            raise FileFormatError(
                f"Malformed GCTX '{path}': /0/DATA/0/matrix has shape {shape}, but there are {n_obs} column ids "
                f"and {n_var} row ids (expected shape ({n_obs}, {n_var}))."
            )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()
        return False

    def matrix(self, col_idx, row_idx) -> np.ndarray:
        with _h5_errors(self.path):
            ds = self._file[_MATRIX]
            if self._transposed:  # genes x samples on disk
                return np.ascontiguousarray(_read_block(ds, row_idx, col_idx).T, dtype=np.float32)
            return np.ascontiguousarray(_read_block(ds, col_idx, row_idx), dtype=np.float32)


def _read_block(ds, rows, cols) -> np.ndarray:
    """``ds[rows][:, cols]`` reading only what is needed (h5py allows one increasing index list per read)."""
    n0, n1 = ds.shape
    if rows is None and cols is None:
        return ds[()]
    sel_rows = None if rows is None or len(rows) > 0.5 * n0 else np.unique(rows)
    sel_cols = None if cols is None or len(cols) > 0.5 * n1 else np.unique(cols)
    n_cols_read = n1 if sel_cols is None else len(sel_cols)

    def read(row_slice):
        if n_cols_read == 0:
            return np.empty((len(range(n0)[row_slice]), 0), ds.dtype)
        return ds[row_slice, :] if sel_cols is None else ds[row_slice, sel_cols]

    if sel_rows is None:
        block = read(slice(None))
    else:
        pieces = [read(slice(start, stop)) for start, stop in _runs(sel_rows)]
        block = np.concatenate(pieces, axis=0) if pieces else np.empty((0, n_cols_read), ds.dtype)
    if rows is not None:
        block = block[rows] if sel_rows is None else block[np.searchsorted(sel_rows, rows)]
    if cols is not None:
        block = block[:, cols] if sel_cols is None else block[:, np.searchsorted(sel_cols, cols)]
    return block


def _runs(sorted_idx: np.ndarray):
    """Contiguous runs [start, stop) of a sorted unique index array."""
    if len(sorted_idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(sorted_idx)]])
    return [(int(sorted_idx[a]), int(sorted_idx[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]


# ----------------------------------------------------------------------------------------------------------------
# metadata encoding
# ----------------------------------------------------------------------------------------------------------------


def _read_meta_group(group, path) -> pd.DataFrame:
    id_ds = group["id"]
    if not hasattr(id_ds, "ndim") or id_ds.ndim != 1:
        raise FileFormatError(f"Malformed GCTX '{path}': {group.name}/id is not a 1-D dataset of ids.")
    ids = _decode_strings(id_ds, path)
    names = [k for k in group.keys() if k != "id"]
    if _ORDER_ATTR in group.attrs:
        stored = json.loads(group.attrs[_ORDER_ATTR])
        names = [n for n in stored if n in group] + [n for n in names if n not in stored]
    columns = {}
    for key in names:
        ds = group[key]
        if not hasattr(ds, "shape") or ds.ndim != 1:
            continue
        if ds.shape[0] != len(ids):
            raise FileFormatError(
                f"Malformed GCTX '{path}': metadata field {group.name}/{key} has {ds.shape[0]} values but there are "
                f"{len(ids)} ids."
            )
        name = str(ds.attrs.get(_NAME_ATTR, key))
        columns[name] = _decode_column(ds, path)
    index = pd.Index(ids, dtype=object)
    return pd.DataFrame({k: v.set_axis(index) for k, v in columns.items()}, index=index)


def _decode_column(ds, path) -> pd.Series:
    hint = ds.attrs.get(_DTYPE_ATTR)
    hint = hint.decode() if isinstance(hint, bytes) else hint
    if ds.dtype.kind in "SOU":
        raw = pd.Series(_decode_strings(ds, path), dtype=object)
        if hint in ("string", "category"):
            values = raw.where(~_written_missing(raw.to_numpy()), np.nan)
            if hint == "category":
                cats = ds.attrs.get(_CATEGORIES_ATTR)
                if cats is not None:
                    return pd.Series(pd.Categorical(values, categories=json.loads(cats)))
                return values.astype("category")
            return values
        return infer_column(raw, na_strings=CMAP_NA_STRINGS)
    values = pd.Series(ds[()])
    if hint == "bool":
        return values.astype(bool)
    if hint == "boolean":
        return values.map(lambda v: pd.NA if v == MISSING_VALUE else bool(v)).astype("boolean")
    if hint in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"):
        return values.astype(object).where(values != MISSING_VALUE, pd.NA).astype(hint)
    if hint is not None and hint.startswith(("int", "uint")):
        return values.astype(hint)
    if hint is not None and hint.startswith("float"):
        return values.where(values != MISSING_VALUE, np.nan).astype(hint)
    return infer_column(values)


def _written_missing(values: np.ndarray) -> np.ndarray:
    """True where a string column written by :func:`write_gctx` holds its missing value, "-666"."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    flags = np.array([isinstance(v, str) and _MISSING_666.match(v) is not None for v in uniques] + [True], bool)
    return flags[np.where(codes < 0, len(uniques), codes)]


def _write_meta_column(group, name: str, values: pd.Series) -> str:
    key = _ID_ALIAS if name == "id" else name.replace("/", "∕")
    if key in group:
        raise PerturbkitInputError(f"Two metadata columns would be stored as {key!r}; rename one of them.")
    attrs = {}
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        data = _encode_strings(_strings_with_missing(values.astype(object)))
        hint = "category"
        cats = json.dumps([str(c) for c in dtype.categories])
        if len(cats) < 32_000:
            attrs[_CATEGORIES_ATTR] = cats
    elif isinstance(dtype, np.dtype) and dtype.kind == "b":
        data, hint = values.to_numpy(dtype=np.uint8), "bool"
    elif pd.api.types.is_bool_dtype(dtype):  # nullable "boolean"
        data = values.astype("Int16").fillna(MISSING_VALUE).to_numpy(np.int16)
        hint = "boolean"
    elif pd.api.types.is_integer_dtype(dtype):
        if isinstance(dtype, pd.api.extensions.ExtensionDtype):
            data, hint = values.astype("Float64").fillna(MISSING_VALUE).to_numpy(np.int64), str(dtype)
        else:
            data, hint = values.to_numpy(), dtype.name
    elif pd.api.types.is_float_dtype(dtype):
        arr = values.to_numpy(
            dtype=np.float64 if isinstance(dtype, pd.api.extensions.ExtensionDtype) else dtype, na_value=np.nan
        )
        data = np.where(np.isnan(arr), MISSING_VALUE, arr).astype(arr.dtype)
        hint = np.dtype(arr.dtype).name
    else:
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        if inferred == "boolean" and not values.isna().any():
            data, hint = values.astype(bool).to_numpy(dtype=np.uint8), "bool"
        else:
            data, hint = _encode_strings(_strings_with_missing(values)), "string"
    ds = group.create_dataset(key, data=data)
    ds.attrs[_DTYPE_ATTR] = hint
    if key != name:
        ds.attrs[_NAME_ATTR] = name
    for k, v in attrs.items():
        ds.attrs[k] = v
    return key


def _strings_with_missing(values) -> np.ndarray:
    """``str`` of each value, "-666" for missing ones (vectorised)."""
    obj = pd.Series(values, copy=False).astype(object)
    out = obj.astype(str).to_numpy(dtype=object)
    out[pd.isna(obj).to_numpy()] = str(MISSING_VALUE)
    return out


def _is_missing(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _encode_strings(values) -> np.ndarray:
    """UTF-8 fixed-width bytes (numpy's fast path for ASCII)."""
    values = np.asarray(values, dtype=object)
    try:
        out = values.astype("S")
    except UnicodeEncodeError:
        out = np.array([str(v).encode("utf-8") for v in values], dtype=object).astype("S")
    return out if out.dtype.itemsize > 0 else out.astype("S1")


def _decode_strings(ds, path=None) -> np.ndarray:
    """The values of an HDF5 dataset as Python strings (object array); bytes must be UTF-8."""
    data = ds[()]
    kind = data.dtype.kind
    if kind == "S":
        try:
            return data.astype("U").astype(object)
        except UnicodeDecodeError:
            data = data.astype(object)
            kind = "O"
    if kind == "O":
        out = np.empty(len(data), dtype=object)
        for i, v in enumerate(data):
            if isinstance(v, bytes):
                try:
                    v = v.decode("utf-8")
                except UnicodeDecodeError:
                    raise FileFormatError(
                        f"'{path}': the GCTX dataset {ds.name} holds bytes that are not UTF-8 (value {i}: {v[:40]!r})"
                        f"; the file is damaged or was written in another encoding."
                    ) from None
            out[i] = str(v)
        return out
    return data.astype(str).astype(object)


def _meta_frame(columns: dict, ids) -> pd.DataFrame:
    index = pd.Index([str(i).strip() for i in ids], dtype=object)
    return pd.DataFrame(
        {
            k: infer_column(pd.Series(v, index=index, dtype=object), na_strings=CMAP_NA_STRINGS)
            for k, v in columns.items()
        },
        index=index,
    )


def _text_field_name(name) -> str:
    name = str(name)
    return _ID_ALIAS if name == "id" else name


def _restore_name(name: str) -> str:
    name = name.strip()
    return "id" if name == _ID_ALIAS else name


def _text_values(values: pd.Series, name) -> list[str]:
    obj = pd.Series(values, copy=False).astype(object)
    is_float = obj.map(lambda v: isinstance(v, (float, np.floating))).to_numpy(dtype=bool)
    out = obj.astype(str).to_numpy(dtype=object)
    if is_float.any():
        out[is_float] = [repr(float(v)) for v in obj.to_numpy()[is_float]]
    out[pd.isna(obj).to_numpy()] = str(MISSING_VALUE)
    _check_text(pd.Series(out, dtype=object), f"column {name!r}")
    return out.tolist()


def _check_text(values: pd.Series, what: str) -> None:
    bad = values.str.contains(r"[\t\r\n]", regex=True)
    if bad.any():
        raise PerturbkitInputError(
            f"{what} holds tabs or line breaks (e.g. {values[bad].iloc[0]!r}), which GCT text cannot store; replace "
            f"them, or use pk.io.write_gctx."
        )


def _check_unique(index, what: str) -> None:
    index = pd.Index(index)
    if not index.is_unique:
        dups = index[index.duplicated()].unique()[:5].tolist()
        raise PerturbkitInputError(f"The {what} are not unique (e.g. {dups}); make them unique first.")


def _check_unique_names(names, what: str) -> None:
    index = pd.Index(names)
    if not index.is_unique:
        raise FileFormatError(f"The {what} are not unique (e.g. {index[index.duplicated()].unique()[:5].tolist()}).")


# ----------------------------------------------------------------------------------------------------------------
# selections, LINCS tables and the schema
# ----------------------------------------------------------------------------------------------------------------


def _selection(index: pd.Index, wanted, name: str, what: str):
    if wanted is None:
        return None
    wanted = [str(w) for w in ([wanted] if isinstance(wanted, str) else list(wanted))]
    pos = index.get_indexer(wanted)
    if (pos < 0).any():
        missing = [w for w, p in zip(wanted, pos, strict=True) if p < 0]
        raise PerturbkitInputError(
            f"{len(missing)} of the {len(wanted)} {name} ids are not {what} ids of the file, e.g. {missing[:5]}. "
            f"Its ids look like {index[:3].tolist()}."
        )
    if len(set(wanted)) != len(wanted):
        raise PerturbkitInputError(f"{name} lists some ids more than once; pass each id once.")
    return pos


def _join_by_key(frame: pd.DataFrame, table: pd.DataFrame, keys: pd.Series) -> pd.DataFrame:
    """Fill ``frame`` from ``table`` (indexed by key strings) row-matched on ``keys``; existing values win."""
    frame = frame.copy()
    for column in table.columns:
        incoming = pd.Series(table[column].reindex(keys.to_numpy()).to_numpy(), index=frame.index)
        if column not in frame.columns:
            frame[column] = infer_column(incoming)
        else:
            existing = frame[column]
            if existing.isna().any():
                frame[column] = infer_column(existing.astype(object).where(existing.notna(), incoming))
    return frame


def _join_sig_info(obs: pd.DataFrame, sig_info) -> pd.DataFrame:
    table = load_table(sig_info, name="sig_info")
    ids = key_strings(pd.Series(obs.index, index=obs.index))
    best, best_hits = None, -1
    for column in [c for c in _SIG_KEY_COLUMNS if c in table.columns] or [table.columns[0]]:
        hits = int(ids.isin(set(key_strings(table[column]).dropna())).sum())
        if hits > best_hits:
            best, best_hits = column, hits
    if best_hits <= 0:
        raise PerturbkitInputError(
            f"None of the {len(obs)} sample ids (e.g. {obs.index[:2].tolist()}) is in sig_info (key column "
            f"{best!r}, e.g. {table[best].head(2).tolist()}). Pass the sig_info that belongs to this file."
        )
    table = table.assign(_key=key_strings(table[best]).to_numpy()).dropna(subset="_key")
    table = table.drop_duplicates("_key").set_index("_key").drop(columns=[best])
    return _join_by_key(obs, table, ids)


def _join_gene_info(var: pd.DataFrame, gene_info) -> tuple[pd.DataFrame, str]:
    table = load_table(gene_info, name="gene_info")
    symbol = first_present(table, _SYMBOL_COLUMNS)
    if symbol is None:
        hint = (
            " It looks like sample/signature metadata (it has pert_iname/cell_id): pass such a table as sig_info=."
            if {"pert_iname", "cell_id", "sig_id"} & set(table.columns)
            else ""
        )
        raise PerturbkitInputError(
            f"gene_info has no gene-symbol column ({', '.join(_SYMBOL_COLUMNS)}); its columns are "
            f"{list(table.columns)[:12]}. Pass the LINCS gene_info table (pr_gene_id, pr_gene_symbol, pr_is_lm).{hint}"
        )
    table_keys = [c for c in _GENE_KEY_COLUMNS if c in table.columns] or [table.columns[0]]
    var_keys = [("__index__", key_strings(pd.Series(var.index, index=var.index)))]
    var_keys += [(c, key_strings(var[c])) for c in table_keys if c in var.columns]
    best, best_hits = None, 0
    for t_col in table_keys:
        t_vals = set(key_strings(table[t_col]).dropna())
        for v_name, v_vals in var_keys:
            hits = int(v_vals.isin(t_vals).sum())
            if hits > best_hits:
                best, best_hits = (t_col, v_name, v_vals), hits
    if best is None:
        raise PerturbkitInputError(
            f"None of the {len(var)} gene ids (e.g. {var.index[:3].tolist()}) matches gene_info (tried columns "
            f"{table_keys}, e.g. {table[table_keys[0]].head(3).tolist()}). Is this the gene table of this data set? "
            f"(A sig_info/instance table goes to sig_info=.)"
        )
    t_col, _, v_vals = best
    table = table.assign(_key=key_strings(table[t_col]).to_numpy()).dropna(subset="_key")
    table = table.drop_duplicates("_key").set_index("_key")
    if t_col in var.columns:
        table = table.drop(columns=[t_col])
    return _join_by_key(var, table, v_vals), symbol


def _truthy(values: pd.Series) -> np.ndarray:
    return values.map(
        lambda v: (not _is_missing(v)) and str(v).strip().lower() in {"1", "1.0", "y", "yes", "true"}
    ).to_numpy(dtype=bool)


def _landmark_mask(var: pd.DataFrame) -> np.ndarray:
    column = first_present(var, _LANDMARK_COLUMNS)
    if column is None:
        raise PerturbkitInputError(
            f"landmark_only=True needs a landmark flag, but the gene metadata has none of the columns "
            f"{list(_LANDMARK_COLUMNS)} (it has {list(var.columns)[:12]}). Pass gene_info= (the LINCS gene_info "
            f"table with pr_is_lm), or select genes with rid=."
        )
    return _truthy(var[column])


def _apply_gene_symbols(var: pd.DataFrame, gene_symbols, symbol_source, *, written_by_perturbkit: bool):
    if gene_symbols is False or "id" in var.columns:
        return var
    column = symbol_source or first_present(var, _SYMBOL_COLUMNS)
    if column is None:
        if gene_symbols is True:
            raise PerturbkitInputError(
                "gene_symbols=True, but there is no gene-symbol column (pr_gene_symbol) in the file's row metadata; "
                "pass gene_info= to map ids to symbols."
            )
        return var
    if gene_symbols == "auto" and symbol_source is None and written_by_perturbkit:
        return var
    var = var.copy()
    ids = pd.Index(var.index.astype(str))
    symbols = var[column].astype(object)
    names = [str(s) if not _is_missing(s) and str(s).strip() else i for s, i in zip(symbols, ids, strict=True)]
    var.insert(0, "id", ids.to_numpy(dtype=object))
    var.index = _make_unique(names)
    return var


def _make_unique(names: list[str]) -> pd.Index:
    seen: dict[str, int] = {}
    counts = pd.Series(names).value_counts()
    out = []
    for n in names:
        if counts[n] > 1:
            k = seen.get(n, 0)
            seen[n] = k + 1
            out.append(n if k == 0 else f"{n}-{k}")
        else:
            out.append(n)
    return pd.Index(out, dtype=object)


def _quantity(values: pd.Series, units: pd.Series | None, table: dict, default_unit: str):
    """Numbers in a target unit from a number column + unit column, or from strings like '10.0 um'.

    Vectorised over the distinct (value, unit) pairs. Returns the numbers and, per problem (an unknown unit or
    an unparsable value), a boolean mask of the rows that have it.
    """
    n = len(values)
    v_codes, v_uniques = pd.factorize(values.astype(object).to_numpy(), use_na_sentinel=True)
    if units is not None:
        u_codes, u_uniques = pd.factorize(units.astype(object).to_numpy(), use_na_sentinel=True)
    else:
        u_codes, u_uniques = np.full(n, -1, dtype=np.intp), []
    width = len(u_uniques) + 1
    pairs, inverse = np.unique(v_codes.astype(np.int64) * width + (u_codes + 1), return_inverse=True)
    numbers = np.full(len(pairs), np.nan)
    problems: dict[str, list[int]] = {}
    for k, pair in enumerate(pairs):
        vi, ui = divmod(int(pair), width)
        if vi < 0:
            continue  # missing value
        value, unit = v_uniques[vi], (u_uniques[ui - 1] if ui > 0 else None)
        if _is_missing(value):
            continue
        if isinstance(value, str):
            match = _QUANTITY.match(value)
            if not match:
                problems.setdefault(f"value {value!r}", []).append(k)
                continue
            number, parsed_unit = float(match.group(1)), match.group(2)
            unit = parsed_unit if parsed_unit else unit
        else:
            number = float(value)
        unit_key = default_unit if _is_missing(unit) or str(unit).strip() == "" else str(unit).strip().lower()
        factor = table.get(unit_key)
        if factor is None:
            problems.setdefault(f"unit {str(unit).strip()!r}", []).append(k)
            continue
        numbers[k] = number * factor
    masks = {label: np.isin(inverse, ks) for label, ks in problems.items()}
    return pd.Series(numbers[inverse], index=values.index, dtype=float), masks


def _quantity_column(obs, value_col, unit_col, text_col, table, default_unit, fill_zero=None):
    """A dose/time column from value + unit columns, falling back to strings like "10 um".

    Warns, naming the rows, about values that stay NaN because their unit cannot be converted.
    """
    result, problems = None, {}
    for values, units in ((value_col, unit_col), (text_col, None)):
        if values not in obs.columns:
            continue
        numbers, masks = _quantity(obs[values], obs[units] if units in obs.columns else None, table, default_unit)
        for label, mask in masks.items():
            problems.setdefault(f"{values} {label}", np.zeros(len(obs), bool))
            problems[f"{values} {label}"] |= mask
        result = numbers if result is None else result.fillna(numbers)
    if result is None:
        return None
    if fill_zero is not None:
        result = result.where(~(result.isna().to_numpy() & fill_zero), 0.0)
    still = result.isna().to_numpy()
    parts = []
    for label, mask in problems.items():
        rows = obs.index[mask & still]
        if len(rows):
            parts.append(f"{label} ({len(rows)} row{'s' if len(rows) > 1 else ''}, e.g. {rows[:3].tolist()})")
    if parts:
        target = "µM" if table is _DOSE_UNITS else "hours"
        warnings.warn(
            f"Some values cannot be converted to {target} and are set to NaN: {'; '.join(parts)}. Known units: "
            f"{', '.join(sorted(table))}. Convert them yourself (e.g. a mass concentration needs the molecular "
            f"weight) and set the column after reading.",
            UserWarning,
            stacklevel=4,
        )
    return result.astype(float)


def _lincs_schema(obs: pd.DataFrame) -> pd.DataFrame:
    obs = obs.copy()
    iname = obs["pert_iname"] if "pert_iname" in obs.columns else None
    is_dmso = lower_strings(iname) == "dmso" if iname is not None else np.zeros(len(obs), bool)
    vehicle = (
        np.isin(lower_strings(obs["pert_type"]), list(_VEHICLE_TYPES))
        if "pert_type" in obs.columns
        else np.zeros(len(obs), bool)
    )
    if "cell_line" not in obs.columns and "cell_id" in obs.columns:
        obs["cell_line"] = obs["cell_id"]
    if "drug" not in obs.columns and iname is not None:
        obs["drug"] = iname.astype(object).where(~is_dmso, "DMSO")
    if "control" not in obs.columns and (iname is not None or "pert_type" in obs.columns):
        obs["control"] = vehicle | is_dmso
    if "dose" not in obs.columns:
        dose = _quantity_column(
            obs, "pert_dose", "pert_dose_unit", "pert_idose", _DOSE_UNITS, "um", fill_zero=vehicle | is_dmso
        )
        if dose is not None:
            obs["dose"] = dose
    if "time" not in obs.columns:
        time = _quantity_column(obs, "pert_time", "pert_time_unit", "pert_itime", _TIME_UNITS, "h")
        if time is not None:
            obs["time"] = time
    if "smiles" not in obs.columns:
        column = first_present(obs, _SMILES_COLUMNS)
        if column is not None:
            obs["smiles"] = obs[column]
    return obs
