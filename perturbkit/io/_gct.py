"""GCT text (v1.2, v1.3, plain or gzip) and GCTX (HDF5) readers and writers.

GCTX layout (the LINCS / CMap convention)::

    /0/DATA/0/matrix     float, shape (n_samples, n_genes) as HDF5 sees it (the GCT matrix transposed)
    /0/META/ROW/id       gene (row) ids;    /0/META/ROW/<field> one dataset per gene metadata field
    /0/META/COL/id       sample (column) ids; /0/META/COL/<field> one dataset per sample metadata field

Missing metadata is written as -666 and read back as NaN. Files written by :func:`write_gctx` also carry
attributes (``perturbkit_dtype``, ``perturbkit_name``, ``perturbkit_columns``) that let :func:`read_gct` restore
dtypes, column names and column order exactly; other readers simply ignore them.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .._schema import PerturbkitInputError, dense_matrix
from .._version import __version__
from ._utils import (
    MISSING_VALUE,
    existing_path,
    first_present,
    infer_column,
    key_strings,
    load_table,
    open_text,
)

_MATRIX = "0/DATA/0/matrix"
_ROW = "0/META/ROW"
_COL = "0/META/COL"
_DTYPE_ATTR = "perturbkit_dtype"
_NAME_ATTR = "perturbkit_name"
_ORDER_ATTR = "perturbkit_columns"
_CATEGORIES_ATTR = "perturbkit_categories"
_WRITER_ATTR = "perturbkit_version"
_ID_ALIAS = "perturbkit:id"  # a metadata column literally called "id" is stored under this name

_NA_STRINGS = ["", "na", "NA", "NaN", "nan", "-nan", "N/A", "n/a", "NULL", "null", "None", "#N/A", "-666", "-666.0"]
_VEHICLE_TYPES = {"ctl_vehicle", "ctl_vehicle.cns"}
_DOSE_UNITS = {"um": 1.0, "µm": 1.0, "μm": 1.0, "umol": 1.0, "micromolar": 1.0, "nm": 1e-3, "mm": 1e3, "pm": 1e-6}
_TIME_UNITS = {"h": 1.0, "hr": 1.0, "hrs": 1.0, "hour": 1.0, "hours": 1.0, "m": 1 / 60, "min": 1 / 60,
               "d": 24.0, "day": 24.0, "days": 24.0}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\d\s].*?)?\s*$")
_LANDMARK_COLUMNS = ("pr_is_lm", "pr_is_lmark", "is_landmark", "landmark")
_SYMBOL_COLUMNS = ("pr_gene_symbol", "gene_symbol", "symbol")
_GENE_KEY_COLUMNS = ("pr_gene_id", "pr_id", "gene_id", "id", "pr_gene_symbol")
_SIG_KEY_COLUMNS = ("sig_id", "cid", "id", "inst_id", "distil_id")


# ----------------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------------


def read_gct(
    path,
    *,
    sig_info=None,
    gene_info=None,
    landmark_only: bool = False,
    cid=None,
    rid=None,
    gene_symbols: bool | str = "auto",
):
    """Read a GCT (text v1.2/v1.3, plain or ``.gz``) or GCTX (HDF5) file into AnnData.

    Samples (GCT columns) become ``obs``, genes (GCT rows) become ``var``. Column metadata goes to ``obs`` and row
    metadata to ``var``; -666 becomes NaN and text that looks numeric becomes numeric. The LINCS fields are mapped
    to perturbkit's schema, keeping the originals, and only where the column is not already there:

    ``cell_line`` ← ``cell_id``; ``drug`` ← ``pert_iname`` ("DMSO" for DMSO); ``dose`` (float, µM) ←
    ``pert_dose`` + ``pert_dose_unit``, else parsed from ``pert_idose`` ("10.0 um", nM converted to µM), 0.0 for
    vehicle controls without a dose; ``time`` (float, hours) ← ``pert_time`` + ``pert_time_unit``, else parsed
    from ``pert_itime`` ("24 h"); ``control`` (bool) ← ``pert_type`` in {ctl_vehicle, ctl_vehicle.cns} or
    ``pert_iname`` == DMSO.

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
        Sample (column) / gene (row) ids to keep, in the order given. From a GCTX only those are read.
    gene_symbols
        ``"auto"`` (default): use the gene symbols as ``var_names`` when ``gene_info`` is given, or when the row
        metadata holds ``pr_gene_symbol`` (not for files written by :func:`write_gctx`, whose ``var_names`` are
        kept as written). ``True`` forces, ``False`` keeps the file's row ids.

    Returns
    -------
    AnnData of shape (samples, genes) with float32 ``X``.
    """
    import anndata as ad

    path = existing_path(path, what="GCT/GCTX file")
    fmt = _sniff_format(path)
    reader = _GctxSource(path) if fmt == "gctx" else _GctTextSource(path)
    with reader:
        obs, var = reader.obs, reader.var
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
            row_idx = (np.arange(len(reader.var)) if row_idx is None else row_idx)[keep]
            var = var.iloc[np.flatnonzero(keep)]
        X = reader.matrix(col_idx, row_idx)

    if sig_info is not None:
        obs = _join_sig_info(obs, sig_info)
    obs = _lincs_schema(obs)
    var = _apply_gene_symbols(var, gene_symbols, symbol_source, written_by_perturbkit=reader.written_by_perturbkit)
    obs.index = obs.index.astype(str)
    obs.index.name = None
    var.index.name = None
    return ad.AnnData(X=X, obs=obs, var=var)


def write_gctx(adata, path, *, compression: str | None = "gzip"):
    """Write ``adata`` as GCTX (HDF5, the LINCS/CMap layout) that :func:`read_gct` reads back identically.

    ``X`` is stored as float32 with shape (n_obs, n_vars) (i.e. genes × samples in GCT terms), ``obs`` as column
    metadata and ``var`` as row metadata. Missing values are written as -666. Each metadata dataset carries a
    ``perturbkit_dtype`` attribute so that bool, integer, float, string and categorical columns round-trip.

    Parameters
    ----------
    adata
        The profiles (dense or sparse ``X``).
    path
        Output file (conventionally ``.gctx``); overwritten if present.
    compression
        HDF5 filter for the matrix (``"gzip"``, ``"lzf"`` or ``None``).

    Returns
    -------
    The path written, as :class:`pathlib.Path`.
    """
    import h5py

    path = Path(path).expanduser()
    _check_unique(adata.obs_names, "obs_names")
    _check_unique(adata.var_names, "var_names")
    X = dense_matrix(adata, dtype=np.float32)
    with h5py.File(path, "w") as f:
        f.attrs["version"] = "GCTX1.0"
        f.attrs["src"] = path.name
        f.attrs[_WRITER_ATTR] = __version__
        chunks = (max(1, min(X.shape[0], 256)), max(1, min(X.shape[1], 4096))) if X.size else None
        f.create_dataset(_MATRIX, data=X, chunks=chunks, compression=compression if X.size else None)
        for group_name, frame, ids in ((_COL, adata.obs, adata.obs_names), (_ROW, adata.var, adata.var_names)):
            group = f.require_group(group_name)
            group.create_dataset("id", data=_encode_strings(ids.astype(str)))
            order = []
            for column in frame.columns:
                order.append(_write_meta_column(group, str(column), frame[column]))
            group.attrs[_ORDER_ATTR] = json.dumps(order)
    return path


def write_gct(adata, path):
    """Write ``adata`` as GCT text v1.3 (gzip-compressed when ``path`` ends in ``.gz``).

    Genes are rows and samples columns, as the format wants; ``var`` goes to row metadata and ``obs`` to column
    metadata. ``X`` is written with 9 significant digits, so float32 values read back exactly. Text cannot keep
    dtypes: numbers, bools and strings come back as such, categoricals come back as strings.

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

    if path.name.endswith(".gz"):
        handle = io.TextIOWrapper(gzip.GzipFile(path, "wb", compresslevel=4, mtime=0), encoding="utf-8", newline="\n")
    else:
        handle = open(path, "w", encoding="utf-8", newline="\n")
    with handle as fh:
        fh.write("#1.3\n")
        fh.write(f"{adata.n_vars}\t{adata.n_obs}\t{len(row_meta)}\t{len(col_meta)}\n")
        fh.write("\t".join(["id", *row_meta.keys(), *adata.obs_names.astype(str)]) + "\n")
        filler = ["na"] * len(row_meta)
        for name, values in col_meta.items():
            fh.write("\t".join([name, *filler, *values]) + "\n")
        numbers = io.StringIO()
        np.savetxt(numbers, X.T, fmt="%.9g", delimiter="\t")  # 9 significant digits: float32 reads back exactly
        prefixes = zip(adata.var_names.astype(str), *row_meta.values())
        for prefix, line in zip(prefixes, numbers.getvalue().splitlines()):
            fh.write("\t".join(prefix) + ("\t" + line if line else "") + "\n")
    return path


# ----------------------------------------------------------------------------------------------------------------
# sources: text and HDF5
# ----------------------------------------------------------------------------------------------------------------


def _sniff_format(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "gctx"
    if head[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as fh:
            try:
                head = fh.read(8)
            except OSError as err:
                raise PerturbkitInputError(
                    f"'{path}' looks gzip-compressed but cannot be decompressed: {err}"
                ) from None
    if head.lstrip(b"\xef\xbb\xbf").startswith((b"#1.2", b"#1.3")):
        return "gct"
    raise PerturbkitInputError(
        f"'{path}' is not a GCT or GCTX file: GCT text starts with '#1.2' or '#1.3' (first bytes here: {head!r}), "
        f"GCTX is HDF5. For Cell Painting profiles use pk.io.read_cell_painting; for .h5ad use pk.io.read_h5ad."
    )


class _GctTextSource:
    """Parses the whole text file (headers by hand, the data block with pandas)."""

    written_by_perturbkit = False

    def __init__(self, path: Path):
        self.path = path
        with open_text(path) as fh:
            self._parse(fh)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _fail(self, problem: str):
        raise PerturbkitInputError(f"Malformed GCT file '{self.path}': {problem}")

    def _parse(self, fh) -> None:
        version = fh.readline().rstrip("\r\n").lstrip("\ufeff").split("\t")[0].strip()
        if version not in ("#1.2", "#1.3"):
            self._fail(f"the first line must be '#1.2' or '#1.3', not {version!r}.")
        dims_line = fh.readline().rstrip("\r\n")
        tokens = [t for t in re.split(r"[\t ]+", dims_line.strip()) if t]
        n_expected = 2 if version == "#1.2" else 4
        layout = "rows, columns" + ("" if version == "#1.2" else ", row-metadata fields, column-metadata fields")
        if len(tokens) != n_expected or not all(re.fullmatch(r"\d+", t) for t in tokens):
            self._fail(
                f"the dimension line (line 2) must hold {n_expected} non-negative integers ({layout}) for version "
                f"{version}, but it is {dims_line!r}."
            )
        dims = [int(t) for t in tokens]
        n_rows, n_cols = dims[0], dims[1]
        n_row_meta, n_col_meta = (1, 0) if version == "#1.2" else (dims[2], dims[3])
        width = 1 + n_row_meta + n_cols

        header = fh.readline().rstrip("\r\n").split("\t")
        header = _trim_trailing(header, width)
        if len(header) != width:
            self._fail(
                f"the header line (line 3) has {len(header)} fields, but the dimension line says {n_cols} samples "
                f"and {n_row_meta} row-metadata fields, i.e. {width} fields (id + row metadata + sample ids)."
            )
        row_fields = [_restore_name(h) for h in header[1 : 1 + n_row_meta]]
        col_ids = header[1 + n_row_meta :]

        col_meta = {}
        for k in range(n_col_meta):
            line = fh.readline()
            if not line:
                self._fail(f"the dimension line says {n_col_meta} column-metadata lines, but the file ends after {k}.")
            fields = _trim_trailing(line.rstrip("\r\n").split("\t"), width)
            if len(fields) != width:
                self._fail(
                    f"column-metadata line {k + 1} ({fields[0]!r}, line {4 + k}) has {len(fields)} fields; "
                    f"expected {width}."
                )
            col_meta[_restore_name(fields[0])] = fields[1 + n_row_meta :]

        dtypes = {i: str for i in range(1 + n_row_meta)}
        dtypes.update({i: np.float32 for i in range(1 + n_row_meta, width)})
        na_values = {i: _NA_STRINGS for i in range(1 + n_row_meta, width)}
        try:
            block = pd.read_csv(
                fh, sep="\t", header=None, dtype=dtypes, keep_default_na=False, na_values=na_values,
                quoting=3, engine="c",
            )
        except pd.errors.EmptyDataError:
            block = pd.DataFrame(columns=range(width))
        except ValueError as err:
            self._fail(f"the data block holds values that are not numbers ({err}).")
        if block.shape[1] > width and block.iloc[:, width:].isna().all().all():
            block = block.iloc[:, :width]
        if block.shape[1] != width and len(block):
            self._fail(f"the data lines have {block.shape[1]} fields; expected {width} (id + {n_row_meta} row "
                       f"metadata + {n_cols} values).")
        if len(block) != n_rows:
            self._fail(f"the dimension line says {n_rows} rows (genes), but the file holds {len(block)} data lines.")

        row_ids = block.iloc[:, 0].astype(str).str.strip().to_numpy() if len(block) else np.array([], dtype=str)
        self.var = _meta_frame(
            {name: block.iloc[:, 1 + j].to_numpy(dtype=object) for j, name in enumerate(row_fields)}, row_ids
        )
        self.obs = _meta_frame({name: np.asarray(v, dtype=object) for name, v in col_meta.items()}, col_ids)
        _check_unique(self.var.index, f"row ids in '{self.path}'")
        _check_unique(self.obs.index, f"column ids in '{self.path}'")
        # genes x samples in the file; AnnData wants samples x genes
        self._X = np.ascontiguousarray(block.iloc[:, 1 + n_row_meta :].to_numpy(dtype=np.float32).T)

    def matrix(self, col_idx, row_idx) -> np.ndarray:
        X = self._X
        if col_idx is not None:
            X = X[col_idx]
        if row_idx is not None:
            X = X[:, row_idx]
        return np.ascontiguousarray(X, dtype=np.float32)


class _GctxSource:
    """Reads ids and metadata on entry; the matrix (or only the selected part of it) on demand."""

    def __init__(self, path: Path):
        import h5py

        self.path = path
        try:
            self._file = h5py.File(path, "r", rdcc_nbytes=128 * 1024**2)
        except OSError as err:
            raise PerturbkitInputError(f"'{path}' cannot be opened as HDF5/GCTX: {err}") from None
        try:
            missing = [p for p in (_MATRIX, f"{_ROW}/id", f"{_COL}/id") if p not in self._file]
            if missing:
                raise PerturbkitInputError(
                    f"'{path}' is HDF5 but not GCTX: it lacks {', '.join('/' + m for m in missing)}. A GCTX holds "
                    f"/0/DATA/0/matrix, /0/META/ROW/id and /0/META/COL/id (write one with pk.io.write_gctx)."
                )
            self.written_by_perturbkit = _WRITER_ATTR in self._file.attrs
            self.var = _read_meta_group(self._file[_ROW], path)
            self.obs = _read_meta_group(self._file[_COL], path)
            _check_unique(self.var.index, f"row ids in '{path}'")
            _check_unique(self.obs.index, f"column ids in '{path}'")
            shape = self._file[_MATRIX].shape
            n_obs, n_var = len(self.obs), len(self.var)
            if shape == (n_obs, n_var):
                self._transposed = False
            elif shape == (n_var, n_obs):
                self._transposed = True
            else:
                raise PerturbkitInputError(
                    f"Malformed GCTX '{path}': /0/DATA/0/matrix has shape {shape}, but there are {n_obs} column ids "
                    f"and {n_var} row ids (expected shape ({n_obs}, {n_var}))."
                )
        except BaseException:
            self._file.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()
        return False

    def matrix(self, col_idx, row_idx) -> np.ndarray:
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
    return [(int(sorted_idx[a]), int(sorted_idx[b - 1]) + 1) for a, b in zip(starts, stops)]


# ----------------------------------------------------------------------------------------------------------------
# metadata encoding
# ----------------------------------------------------------------------------------------------------------------


def _read_meta_group(group, path) -> pd.DataFrame:
    ids = _decode_strings(group["id"])
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
            raise PerturbkitInputError(
                f"Malformed GCTX '{path}': metadata field {group.name}/{key} has {ds.shape[0]} values but there are "
                f"{len(ids)} ids."
            )
        name = str(ds.attrs.get(_NAME_ATTR, key))
        columns[name] = _decode_column(ds)
    index = pd.Index(ids, dtype=object)
    return pd.DataFrame({k: v.set_axis(index) for k, v in columns.items()}, index=index)


def _decode_column(ds) -> pd.Series:
    hint = ds.attrs.get(_DTYPE_ATTR)
    hint = hint.decode() if isinstance(hint, bytes) else hint
    if ds.dtype.kind in "SOU":
        raw = pd.Series(_decode_strings(ds), dtype=object)
        if hint in ("string", "category"):
            values = raw.where(~raw.str.fullmatch(r"\s*-666(\.0*)?\s*").fillna(False), np.nan)
            if hint == "category":
                cats = ds.attrs.get(_CATEGORIES_ATTR)
                if cats is not None:
                    return pd.Series(pd.Categorical(values, categories=json.loads(cats)))
                return values.astype("category")
            return values
        return infer_column(raw)
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
    elif dtype == bool:
        data, hint = values.to_numpy(dtype=np.uint8), "bool"
    elif pd.api.types.is_bool_dtype(dtype):  # nullable "boolean"
        data = values.astype(object).map(lambda v: MISSING_VALUE if pd.isna(v) else int(v)).to_numpy(np.int16)
        hint = "boolean"
    elif pd.api.types.is_integer_dtype(dtype):
        if isinstance(dtype, pd.api.extensions.ExtensionDtype):
            data, hint = values.astype("Float64").fillna(MISSING_VALUE).to_numpy(np.int64), str(dtype)
        else:
            data, hint = values.to_numpy(), dtype.name
    elif pd.api.types.is_float_dtype(dtype):
        arr = values.to_numpy(dtype=np.float64 if isinstance(dtype, pd.api.extensions.ExtensionDtype) else dtype,
                              na_value=np.nan)
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


def _strings_with_missing(values: pd.Series) -> list[str]:
    return [str(MISSING_VALUE) if _is_missing(v) else str(v) for v in values]


def _is_missing(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _encode_strings(values) -> np.ndarray:
    encoded = [str(v).encode("utf-8") for v in values]
    width = max((len(b) for b in encoded), default=1) or 1
    return np.array(encoded, dtype=f"S{width}")


def _decode_strings(ds) -> np.ndarray:
    if ds.dtype.kind in "SO":
        return np.array(ds.asstr()[()], dtype=object)
    return np.array([str(v) for v in ds[()]], dtype=object)


def _meta_frame(columns: dict, ids) -> pd.DataFrame:
    index = pd.Index([str(i).strip() for i in ids], dtype=object)
    return pd.DataFrame({k: infer_column(pd.Series(v, index=index, dtype=object)) for k, v in columns.items()},
                        index=index)


def _text_field_name(name) -> str:
    name = str(name)
    return _ID_ALIAS if name == "id" else name


def _restore_name(name: str) -> str:
    name = name.strip()
    return "id" if name == _ID_ALIAS else name


def _text_values(values: pd.Series, name) -> list[str]:
    out = []
    for v in values.astype(object):
        if _is_missing(v):
            out.append(str(MISSING_VALUE))
        elif isinstance(v, (float, np.floating)):
            out.append(repr(float(v)))
        else:
            out.append(str(v))
    _check_text(pd.Series(out, dtype=object), f"column {name!r}")
    return out


def _check_text(values: pd.Series, what: str) -> None:
    bad = values.str.contains(r"[\t\r\n]", regex=True)
    if bad.any():
        raise PerturbkitInputError(
            f"{what} holds tabs or line breaks (e.g. {values[bad].iloc[0]!r}), which GCT text cannot store; replace "
            f"them, or use pk.io.write_gctx."
        )


def _trim_trailing(fields: list[str], width: int) -> list[str]:
    while len(fields) > width and fields[-1].strip() == "":
        fields = fields[:-1]
    return fields


def _check_unique(index, what: str) -> None:
    index = pd.Index(index)
    if not index.is_unique:
        dups = index[index.duplicated()].unique()[:5].tolist()
        raise PerturbkitInputError(f"The {what} are not unique (e.g. {dups}); make them unique first.")


# ----------------------------------------------------------------------------------------------------------------
# selections, LINCS tables and the schema
# ----------------------------------------------------------------------------------------------------------------


def _selection(index: pd.Index, wanted, name: str, what: str):
    if wanted is None:
        return None
    wanted = [str(w) for w in ([wanted] if isinstance(wanted, str) else list(wanted))]
    pos = index.get_indexer(wanted)
    if (pos < 0).any():
        missing = [w for w, p in zip(wanted, pos) if p < 0]
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
        hint = (" It looks like sample/signature metadata (it has pert_iname/cell_id): pass such a table as sig_info=."
                if {"pert_iname", "cell_id", "sig_id"} & set(table.columns) else "")
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
    return values.map(lambda v: (not _is_missing(v)) and str(v).strip().lower() in {"1", "1.0", "y", "yes", "true"}) \
        .to_numpy(dtype=bool)


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
    names = [str(s) if not _is_missing(s) and str(s).strip() else i for s, i in zip(symbols, ids)]
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


def _quantity(values: pd.Series, units: pd.Series | None, table: dict, default_unit: str) -> pd.Series:
    """Numbers in a target unit from a number column + unit column, or from strings like '10.0 um'."""
    out = pd.Series(np.nan, index=values.index, dtype=float)
    unknown: set[str] = set()
    for i, (value, unit) in enumerate(zip(values.astype(object), units if units is not None else [None] * len(values))):
        if _is_missing(value):
            continue
        if isinstance(value, str):
            match = _QUANTITY.match(value)
            if not match:
                unknown.add(value)
                continue
            number, parsed_unit = float(match.group(1)), match.group(2)
            unit = parsed_unit if parsed_unit else unit
        else:
            number = float(value)
        unit_key = default_unit if _is_missing(unit) or str(unit).strip() == "" else str(unit).strip().lower()
        factor = table.get(unit_key)
        if factor is None:
            unknown.add(str(unit))
            continue
        out.iloc[i] = number * factor
    if unknown:
        warnings.warn(
            f"{len(unknown)} unit(s) or value(s) could not be converted and were set to NaN: {sorted(unknown)[:5]}.",
            stacklevel=4,
        )
    return out


def _lincs_schema(obs: pd.DataFrame) -> pd.DataFrame:
    obs = obs.copy()
    iname = obs["pert_iname"] if "pert_iname" in obs.columns else None
    is_dmso = (iname.astype(object).map(lambda v: isinstance(v, str) and v.strip().lower() == "dmso").to_numpy(bool)
               if iname is not None else np.zeros(len(obs), bool))
    vehicle = (obs["pert_type"].astype(object).map(lambda v: isinstance(v, str) and v.strip().lower() in _VEHICLE_TYPES)
               .to_numpy(bool) if "pert_type" in obs.columns else np.zeros(len(obs), bool))
    if "cell_line" not in obs.columns and "cell_id" in obs.columns:
        obs["cell_line"] = obs["cell_id"]
    if "drug" not in obs.columns and iname is not None:
        obs["drug"] = iname.astype(object).where(~is_dmso, "DMSO")
    if "control" not in obs.columns and (iname is not None or "pert_type" in obs.columns):
        obs["control"] = vehicle | is_dmso
    if "dose" not in obs.columns:
        dose = None
        if "pert_dose" in obs.columns:
            units = obs["pert_dose_unit"] if "pert_dose_unit" in obs.columns else None
            dose = _quantity(obs["pert_dose"], units, _DOSE_UNITS, "um")
        if "pert_idose" in obs.columns:
            parsed = _quantity(obs["pert_idose"], None, _DOSE_UNITS, "um")
            dose = parsed if dose is None else dose.fillna(parsed)
        if dose is not None:
            obs["dose"] = dose.where(~(dose.isna().to_numpy() & (vehicle | is_dmso)), 0.0).astype(float)
    if "time" not in obs.columns:
        time = None
        if "pert_time" in obs.columns:
            units = obs["pert_time_unit"] if "pert_time_unit" in obs.columns else None
            time = _quantity(obs["pert_time"], units, _TIME_UNITS, "h")
        if "pert_itime" in obs.columns:
            parsed = _quantity(obs["pert_itime"], None, _TIME_UNITS, "h")
            time = parsed if time is None else time.fillna(parsed)
        if time is not None:
            obs["time"] = time.astype(float)
    return obs
