"""Helpers shared by the readers: path checks, checked text loading, strict delimited tables, missing values."""

from __future__ import annotations

import csv
import gzip
import io
import re
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from .._schema import FileFormatError, PerturbkitInputError

#: LINCS / CMap encode missing metadata as -666 (number or string).
MISSING_VALUE = -666
_MISSING_STRING = re.compile(r"^\s*-666(\.0*)?\s*$")
_TRUE_STRINGS = {"true", "false"}

#: The tokens cmapPy 4.0.1 (``pandasGEXpress.parse_gct``) reads as missing, besides "-666". pandas, which cmapPy
#: parses with, also matches "-666.0" (the float form of "-666").
CMAP_NA_STRINGS = ("#N/A", "N/A", "NA", "#NA", "NULL", "NaN", "-NaN", "nan", "-nan", "#N/A!", "na", "None", "#VALUE!")
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"


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


def read_file_bytes(path: Path) -> bytes:
    """The content of ``path``, decompressed when it is gzip; a damaged gzip stream raises :class:`FileFormatError`."""
    raw = Path(path).read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise FileFormatError(
            f"'{path}' is a damaged or incomplete gzip file and cannot be decompressed ({err}). Download or "
            f"compress it again (`gzip -t` tests a .gz file)."
        ) from None


def _line_of(raw: bytes, pos: int) -> tuple[int, int]:
    """1-based line number and 0-based byte column of byte ``pos``."""
    start = raw.rfind(b"\n", 0, pos) + 1
    return raw.count(b"\n", 0, pos) + 1, pos - start


def checked_text(raw: bytes, path) -> bytes:
    """``raw`` as clean UTF-8 text bytes: BOM dropped, CR/CRLF line ends made LF.

    Raises :class:`FileFormatError` naming the file and line for NUL bytes (binary data or damage in a text
    file) and for bytes that are not UTF-8.
    """
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    nul = raw.find(b"\x00")
    if nul >= 0:
        line, col = _line_of(raw, nul)
        snippet = raw[max(0, nul - 12) : nul + 12].decode("utf-8", errors="replace")
        raise FileFormatError(
            f"'{path}' line {line} (byte {col + 1} of the line) holds a NUL byte, near {snippet!r}: the file is "
            f"damaged or not a text file. Read it from the original source again."
        )
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            line, col = _line_of(raw, err.start)
            raise FileFormatError(
                f"'{path}' is not valid UTF-8: line {line} (byte {col + 1} of the line) holds "
                f"{raw[err.start : err.start + 4]!r}. Save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or "
                f"read it from the original source again if it is damaged."
            ) from None
    return raw


def iter_lines(raw: bytes, start: int = 0, first_number: int = 1):
    """Yield ``(line_number, start, end)`` for each line of ``raw`` from byte ``start`` (end excludes the LF)."""
    number, pos, n = first_number, start, len(raw)
    while pos < n:
        end = raw.find(b"\n", pos)
        if end < 0:
            end = n
        yield number, pos, end
        number += 1
        pos = end + 1


def warn_no_final_newline(raw: bytes, path) -> None:
    if raw and not raw.endswith(b"\n"):
        warnings.warn(
            f"'{path}' does not end with a line break, so its last line may have been cut short (a truncated "
            f"download?). Check its last row.",
            UserWarning,
            stacklevel=4,
        )


def _sniff_separator(header: bytes, path, seps=(b"\t", b",", b";")) -> str:
    counts = {s: header.count(s) for s in seps}
    best = max(counts, key=lambda s: counts[s])
    if counts[best] == 0:
        return "\t" if b"\t" in seps else ","
    if best == b";":
        raise FileFormatError(
            f"'{path}' looks semicolon-separated (its header line has {counts[b';']} ';' and "
            f"{counts.get(b',', 0)} ','); pass sep=';' (and decimal=',' if its numbers use decimal commas)."
        )
    return best.decode()


def _field_counts_quoted(text: str, sep: str):
    """Yield ``(line_number, n_fields)`` per record of CSV text with quoted fields (blank lines skipped)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar='"')
    line = 1
    try:
        for row in reader:
            if row:
                yield line, len(row)
            line = reader.line_num + 1
    except csv.Error as err:
        raise FileFormatError(f"line {reader.line_num}: {err} (an unbalanced quote?)") from None


def check_quotes(raw: bytes, path, sep: str) -> None:
    """Refuse a double quote that does not open or close a quoted field, or is not doubled inside one.

    pandas and Python's csv module read ``a,b"c,d`` as if the quote were a letter, so a damaged quoted field
    (``x,"a,b"`` that lost a comma: ``x"a,b"``) would silently shift a line's values. Only lines holding a quote
    are looked at (a quoted field may span lines).
    """
    s = re.escape(sep.encode())
    field = rb'(?:"(?:[^"]|"")*"|[^"\n' + s + rb"]*)"
    record = re.compile(field + rb"(?:" + s + field + rb")*")
    pending, first = b"", None
    for number, start, end in iter_lines(raw):
        line = raw[start:end]
        if not pending and b'"' not in line:
            continue
        pending = pending + b"\n" + line if pending else line
        first = first or number
        if pending.count(b'"') % 2:
            continue  # a quoted field goes on in the next line
        if record.fullmatch(pending) is None:
            raise FileFormatError(
                f"'{path}' line {first}: a '\"' is inside a field that is not quoted (or does not end a quoted "
                f"field): {pending[:80].decode('utf-8', 'replace')!r}. Quote the whole field and double quotes in "
                f"it, or remove the stray quote."
            )
        pending, first = b"", None
    if pending:
        raise FileFormatError(f"'{path}' line {first}: a quoted field is never closed (an unbalanced '\"').")


def check_field_counts(raw: bytes, path, sep: str, *, what: str = "the header line") -> int:
    """Check that every non-blank line of a delimited text has the header's number of fields; return that number.

    Raises :class:`FileFormatError` naming the file, the line and both counts (the last line cut short
    is reported as a truncated file).
    """
    sep_b = sep.encode()
    lines = [(n, s, e) for n, s, e in iter_lines(raw) if e > s]
    if not lines:
        raise FileFormatError(f"'{path}' is empty; expected a table with a header line.")
    last_number = lines[-1][0]
    if b'"' in raw:
        check_quotes(raw, path, sep)
        try:
            counts = list(_field_counts_quoted(raw.decode("utf-8"), sep))
        except FileFormatError as err:
            raise FileFormatError(f"'{path}' {err}") from None
    else:
        counts = [(n, raw.count(sep_b, s, e) + 1) for n, s, e in lines]
    expected = counts[0][1]
    for number, found in counts[1:]:
        if found != expected:
            cut = (
                " The file looks truncated: its last line is incomplete."
                if (number == last_number and found < expected)
                else ""
            )
            raise FileFormatError(
                f"'{path}' line {number} has {found} fields, but {what} (line {counts[0][0]}) has {expected}.{cut} "
                f"A missing or extra {sep!r} shifts every later value of the line; repair or re-export the file."
            )
    return expected


def read_delimited(
    path: Path, *, comment_prefix: str | None = None, sep: str | None = None, strict: bool = False, **kwargs
) -> pd.DataFrame:
    """Read a tab-, comma- (or, with ``sep=';'``, semicolon-) separated table (gzip too).

    The separator is sniffed from the header line unless ``sep`` is given. Lines starting with ``comment_prefix``
    are dropped (only at line starts, unlike pandas' ``comment=``). The file must be UTF-8 without NUL bytes.
    ``strict=True`` also checks that every line has the header's number of fields (pandas pads short lines with
    NaN), that the column names are unique (pandas renames duplicates), and that the file ends with a line break
    (without one, a file cut inside its last value cannot be told from a complete one).
    """
    raw = checked_text(read_file_bytes(path), path)
    if comment_prefix is not None:
        prefix = comment_prefix.encode()
        raw = b"".join(line for line in raw.splitlines(keepends=True) if not line.startswith(prefix))
        if not raw.strip():
            raise PerturbkitInputError(
                f"'{path}' holds no table (only comment lines starting with {comment_prefix!r})."
            )
    if not raw.strip():
        raise PerturbkitInputError(f"'{path}' is empty; expected a table with a header line.")
    header = next(raw[s:e] for _, s, e in iter_lines(raw) if e > s)
    if sep is None:
        sep = _sniff_separator(header, path)
    if strict:
        check_field_counts(raw, path, sep)
        if not raw.endswith(b"\n"):
            last = raw[raw.rfind(b"\n") + 1 :].decode("utf-8")
            raise FileFormatError(
                f"'{path}' does not end with a line break, so its last line ({last[:60]!r}...) may have been cut "
                f"short (a truncated download or copy). If the file is complete, add a line break at its end."
            )
    try:
        table = pd.read_csv(io.BytesIO(raw), sep=sep, **kwargs)
    except pd.errors.EmptyDataError:
        raise PerturbkitInputError(f"'{path}' is empty; expected a table with a header line.") from None
    if strict:
        names = next(csv.reader(io.StringIO(header.decode("utf-8")), delimiter=sep))
        dups = pd.Index(names)[pd.Index(names).duplicated()].unique().tolist()
        if dups:
            raise FileFormatError(
                f"'{path}' names some columns twice, e.g. {dups[:5]}; rename them so that each column name is unique."
            )
    return table


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


def missing_mask(values, na_strings=()) -> np.ndarray:
    """True where ``values`` is missing.

    Missing are NaN/None, a blank string, "-666" (also "-666.0", ...) and ``na_strings`` (compared after
    stripping white space). Vectorised over the distinct values.
    """
    obj = np.asarray(values, dtype=object)
    codes, uniques = pd.factorize(obj, use_na_sentinel=True)
    tokens = set(na_strings)

    def is_missing(v) -> bool:
        if not isinstance(v, str):
            return False
        t = v.strip()
        return t == "" or t in tokens or _MISSING_STRING.match(t) is not None

    unique_missing = np.append(np.fromiter((is_missing(v) for v in uniques), dtype=bool, count=len(uniques)), True)
    return unique_missing[np.where(codes < 0, len(uniques), codes)]


def infer_column(values: pd.Series, *, na_strings=()) -> pd.Series:
    """A metadata column with missing values as NaN and the dtype its values suggest.

    Missing values (see :func:`missing_mask`, and numeric -666) become NaN, then numbers become a numeric dtype
    and "True"/"False" bool; anything else stays strings.
    """
    s = pd.Series(values, copy=False)
    if pd.api.types.is_bool_dtype(s.dtype) or isinstance(s.dtype, pd.CategoricalDtype):
        return s
    if pd.api.types.is_numeric_dtype(s.dtype):
        bad = s == MISSING_VALUE
        return s.where(~bad, np.nan) if bad.any() else s
    obj = s.astype(object)
    missing = missing_mask(obj.to_numpy(), na_strings)
    if missing.any():
        obj = obj.where(~missing, np.nan)
    present = obj[~missing]
    if len(present) == 0:
        return obj.astype(float) if len(obj) else obj
    uniques = pd.unique(present.to_numpy())
    try:
        pd.to_numeric(pd.Series(uniques, dtype=object), errors="raise")
        numeric = True
    except (ValueError, TypeError):
        numeric = False
    if numeric:
        out = pd.to_numeric(obj, errors="coerce")
        return out.where(out != MISSING_VALUE, np.nan) if (out == MISSING_VALUE).any() else out
    if all(isinstance(v, str) and v.strip().lower() in _TRUE_STRINGS for v in uniques):
        flags = obj.map(lambda v: v if pd.isna(v) else v.strip().lower() == "true")
        return flags.astype(bool) if not missing.any() else flags.astype("boolean")
    return obj


def lower_strings(values) -> np.ndarray:
    """Stripped lower-case strings of ``values`` (non-strings become ""), vectorised over distinct values."""
    obj = np.asarray(values, dtype=object)
    codes, uniques = pd.factorize(obj, use_na_sentinel=True)
    low = np.array([v.strip().lower() if isinstance(v, str) else "" for v in uniques] + [""], dtype=object)
    return low[np.where(codes < 0, len(uniques), codes)]


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
