"""Helpers shared by the readers: path checks, table loading and LINCS-style missing values."""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .._schema import PerturbkitInputError

#: LINCS / CMap encode missing metadata as -666 (number or string).
MISSING_VALUE = -666
_MISSING_STRING = re.compile(r"^\s*-666(\.0*)?\s*$")
_TRUE_STRINGS = {"true", "false"}


def existing_path(path, *, what: str = "file") -> Path:
    """Return ``path`` as a :class:`Path`, raising :class:`FileNotFoundError` naming it when it does not exist."""
    if not isinstance(path, (str, Path)) and not hasattr(path, "__fspath__"):
        raise TypeError(f"Expected a path to a {what}, got {type(path).__name__}.")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"No such {what}: '{p}'. Check the path (relative paths start at {Path.cwd()}).")
    if p.is_dir():
        raise PerturbkitInputError(f"'{p}' is a folder; pass the path of the {what} inside it.")
    return p


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def open_text(path: Path):
    """Open a plain or gzip-compressed text file for reading."""
    if is_gzip(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_delimited(path: Path, *, comment_prefix: str | None = None, **kwargs) -> pd.DataFrame:
    """Read a tab- or comma-separated table (gzip too), sniffing the separator from the first data line.

    Lines starting with ``comment_prefix`` are dropped (only at line starts, unlike pandas' ``comment=``).
    """
    with open_text(path) as fh:
        if comment_prefix is None:
            first = fh.readline()
            fh.seek(0)
            sep = "\t" if "\t" in first else ","
            try:
                return pd.read_csv(fh, sep=sep, **kwargs)
            except pd.errors.EmptyDataError:
                raise PerturbkitInputError(f"'{path}' is empty; expected a table with a header line.") from None
        lines = [line for line in fh if not line.startswith(comment_prefix)]
    if not lines:
        raise PerturbkitInputError(f"'{path}' holds no table (only comment lines starting with {comment_prefix!r}).")
    sep = "\t" if "\t" in lines[0] else ","
    return pd.read_csv(io.StringIO("".join(lines)), sep=sep, **kwargs)


def load_table(table, *, name: str) -> pd.DataFrame:
    """A DataFrame, or a path to a TSV/CSV(.gz) file, as a DataFrame with LINCS missing values as NaN."""
    if isinstance(table, pd.DataFrame):
        return clean_frame(table)
    path = existing_path(table, what=f"{name} table")
    df = read_delimited(path, dtype=str, keep_default_na=False, na_values=[""])
    return clean_frame(df)


def clean_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Apply :func:`infer_column` to every column (returns a new frame)."""
    return pd.DataFrame({c: infer_column(df[c]) for c in df.columns}, index=df.index)


def infer_column(values: pd.Series) -> pd.Series:
    """-666 / "-666" / "" → NaN, then numbers → numeric dtype and "True"/"False" → bool; else strings."""
    s = pd.Series(values, copy=False)
    if pd.api.types.is_bool_dtype(s.dtype) or isinstance(s.dtype, pd.CategoricalDtype):
        return s
    if pd.api.types.is_numeric_dtype(s.dtype):
        bad = s == MISSING_VALUE
        return s.where(~bad, np.nan) if bad.any() else s
    obj = s.astype(object)
    missing = obj.map(lambda v: isinstance(v, str) and (v.strip() == "" or _MISSING_STRING.match(v) is not None))
    obj = obj.where(~missing, np.nan)
    present = obj.dropna()
    if len(present) == 0:
        return obj.astype(float) if len(obj) else obj
    try:
        numeric = pd.to_numeric(present, errors="raise")
    except (ValueError, TypeError):
        numeric = None
    if numeric is not None:
        out = pd.to_numeric(obj, errors="coerce")
        return out.where(out != MISSING_VALUE, np.nan) if (out == MISSING_VALUE).any() else out
    if present.map(lambda v: isinstance(v, str) and v.strip().lower() in _TRUE_STRINGS).all():
        if len(present) == len(obj):
            return obj.map(lambda v: v.strip().lower() == "true").astype(bool)
        return obj.map(lambda v: v if pd.isna(v) else v.strip().lower() == "true").astype("boolean")
    return obj


def key_strings(values) -> pd.Series:
    """Identifiers as stripped strings, integral floats without '.0' (so 5720.0 and '5720' match); NaN stays NaN."""
    s = pd.Series(values, copy=False)
    if pd.api.types.is_float_dtype(s.dtype):
        def fmt(v):
            if pd.isna(v):
                return np.nan
            return str(int(v)) if float(v).is_integer() else repr(float(v))
        return s.map(fmt).astype(object)
    return s.astype(object).map(lambda v: np.nan if pd.isna(v) else str(v).strip())


def first_present(frame: pd.DataFrame, candidates) -> str | None:
    """The first of ``candidates`` that is a column of ``frame`` (None if none)."""
    for c in candidates:
        if c in frame.columns:
            return c
    return None
