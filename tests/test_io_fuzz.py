"""Property-based fuzzing of the readers (issue 10): a damaged file gives a perturbkit error or the original result.

Small valid files (GCT text, .gct.gz, GCTX, a Cell Painting CSV) are mutated and read again. Only two outcomes
are accepted: a :class:`~perturbkit.errors.PerturbkitInputError` (a ``FileFormatError`` mostly), or an AnnData
whose ``X``, ``obs`` and ``var`` equal those of the unmutated file. Anything else (another exception, a crash, a
silently different result) fails.

The mutations are the ones a reader can detect: bytes that are never valid in these ASCII files (NUL, bytes that
are not UTF-8), inserted, deleted or swapped delimiters and line breaks, duplicated or deleted lines (GCT, whose
dimension line fixes the number of lines), truncations, CR/LF line ends, a byte-order mark, blank lines at the
end; for binary files any byte change, insertion, deletion or truncation. Mutations that make another valid
file are left out because no reader can tell them from a real file: changing one digit of a number, swapping two
data lines, duplicating, deleting or cutting off whole CSV rows, and cutting a GCT's last line inside its last
value (a GCT need not end with a line break; read_gct warns when it does not, read_cell_painting refuses it).

Bounded: ``max_examples`` per test, no deadline, deterministic examples (``derandomize``) and no example
database, so the default suite runs in well under a minute. Set ``PERTURBKIT_FUZZ_EXAMPLES=5000`` for a longer,
randomised run.
"""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import perturbkit as pk
from perturbkit.errors import PerturbkitInputError

_EXAMPLES = int(os.environ.get("PERTURBKIT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_EXAMPLES or 120,
    deadline=None,
    derandomize=not _EXAMPLES,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

GCT = (
    "\n".join(
        [
            "#1.3",
            "4\t5\t2\t4",
            "id\tpr_gene_symbol\tpr_is_lm\tA01\tA02\tA03\tA04\tA05",
            "pert_iname\tna\tna\tDMSO\tvorinostat\tvorinostat\tdasatinib\tdasatinib",
            "pert_type\tna\tna\tctl_vehicle\ttrt_cp\ttrt_cp\ttrt_cp\ttrt_cp",
            "pert_dose\tna\tna\t-666\t10\t1.11\t0.37\tNA",
            "pert_dose_unit\tna\tna\t-666\tuM\tuM\tnM\tuM",
            "200814_at\tPSME1\t1\t11.3819\t-2.5\tNaN\t0.004\t7",
            "222103_at\tATF1\t1\t5.5\t-666\t1e-3\t2\t3",
            "201453_x_at\tRHEB\t0\t0\t1\t2\t3\t4",
            "200059_s_at\tRHOA\t1\t-1.25\t2.5\tNA\t8\t9",
        ]
    ).encode()
    + b"\n"
)

CSV = (
    "\n".join(
        [
            "Metadata_Plate,Metadata_Well,Metadata_broad_sample,Metadata_moa,Metadata_mmoles_per_liter,"
            "Cells_AreaShape_Area,Nuclei_Intensity_MeanIntensity_DNA,Cytoplasm_Texture_Contrast_RNA_5_0",
            "P1,A01,DMSO,,0,1.5,2.25,-0.5",
            'P1,A02,BRD-K1,"indoleamine 2,3-dioxygenase inhibitor",10,3.0,4.0,0.125',
            "P1,A03,BRD-K2,EGFR inhibitor|HER2 inhibitor,3.33,,0.5,7",
            "P1,A04,BRD-K2,EGFR inhibitor|HER2 inhibitor,1.11,2.5e-3,-1,8",
        ]
    ).encode()
    + b"\n"
)

POISON = [0x00, 0x80, 0xC0, 0xFE, 0xFF]  # never valid in these ASCII files: NUL or not UTF-8


def _outside_quotes(data: bytes) -> np.ndarray:
    """True for the bytes of ``data`` that are not inside a double-quoted field."""
    quote = np.frombuffer(data, np.uint8) == ord('"')
    inside = (np.cumsum(quote) % 2 == 1) & ~quote
    return ~inside


def _position(n: int):
    """An index 0..n-1: both hypothesis' small, edge-seeking integers and ones spread over the whole file."""
    return st.one_of(st.integers(0, n - 1), st.integers(0, 2**32).map(lambda k: k % n))


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]  # the files end with a line break


TEXT_KINDS = [
    "poison",
    "insert_poison",
    "insert_structural",
    "delete_structural",
    "swap_delimiter",
    "truncate",
    "neutral",
    "swap_all",
    "duplicate_line",
    "delete_line",
]
CSV_KINDS = TEXT_KINDS[:-2]  # a CSV has no row count: a duplicated or deleted row makes another valid file
BINARY_KINDS = ["flip", "set", "insert", "delete", "truncate", "append", "overwrite"]


@st.composite
def text_mutations(draw, data: bytes, kind: str, *, delimiters: bytes, rows_counted: bool):
    """A (description, mutated bytes) pair for a text file whose lines end in b"\\n"."""
    outside = _outside_quotes(data)
    structural = [i for i, b in enumerate(data) if outside[i] and (b in delimiters or b in b'\n"')]
    n = len(data)
    if kind == "poison":
        i, b = draw(_position(n)), draw(st.sampled_from(POISON))
        return f"byte {i} := {b:#x}", data[:i] + bytes([b]) + data[i + 1 :]
    if kind == "insert_poison":
        i, b = draw(_position(n + 1)), draw(st.sampled_from(POISON))
        return f"insert {b:#x} at {i}", data[:i] + bytes([b]) + data[i:]
    if kind == "insert_structural":
        quotes_before = np.concatenate([[0], np.cumsum(np.frombuffer(data, np.uint8) == ord('"'))])
        i = draw(st.sampled_from(np.flatnonzero(quotes_before % 2 == 0).tolist()))  # not inside a quoted field
        b = draw(st.sampled_from(list(delimiters + b"\n")))
        return f"insert {bytes([b])!r} at {i}", data[:i] + bytes([b]) + data[i:]
    if kind == "delete_structural":
        i = draw(st.sampled_from(structural))
        return f"delete {data[i : i + 1]!r} at {i}", data[:i] + data[i + 1 :]
    if kind == "swap_delimiter":
        i = draw(st.sampled_from([j for j in structural if data[j] in delimiters]))
        b = draw(st.sampled_from([d for d in b",;\t " if d != data[i]]))
        return f"byte {i} {data[i : i + 1]!r} := {bytes([b])!r}", data[:i] + bytes([b]) + data[i + 1 :]
    if kind == "truncate":
        if rows_counted:  # not inside the very last value (that file would be valid: GCT warns)
            last_sep = max(data.rfind(bytes([d]), 0, n - 1) for d in delimiters + b"\n")
            i = draw(st.one_of(st.integers(0, last_sep), st.integers(n - 1, n)))
        else:  # not at a line end: dropping whole rows leaves a valid CSV
            i = draw(st.sampled_from([j for j in range(n + 1) if j == n or data[j - 1 : j] != b"\n"]))
        return f"truncate to {i} bytes", data[:i]
    if kind == "neutral":
        how = draw(st.sampled_from(["crlf", "cr", "bom", "blank_end"]))
        mutated = {
            "crlf": data.replace(b"\n", b"\r\n"),
            "cr": data.replace(b"\n", b"\r"),
            "bom": b"\xef\xbb\xbf" + data,
            "blank_end": data + b"\n\n",
        }[how]
        return how, mutated
    if kind == "swap_all":
        old = draw(st.sampled_from(list(delimiters)))
        new = draw(st.sampled_from([d for d in b",;\t" if d != old]))
        swapped = bytes(new if b == old and outside[i] else b for i, b in enumerate(data))  # quoted text stays
        return f"every {bytes([old])!r} := {bytes([new])!r}", swapped
    lines = _lines(data)
    k = draw(st.integers(0, len(lines) - 1))
    if kind == "duplicate_line":
        lines.insert(k, lines[k])
    else:
        del lines[k]
    return f"{kind} {k + 1}", b"\n".join(lines) + b"\n"


@st.composite
def binary_mutations(draw, data: bytes, kind: str):
    n = len(data)
    i = draw(_position(n))
    if kind == "flip":
        mask = draw(st.integers(1, 255))
        return f"byte {i} ^= {mask:#x}", data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]
    if kind == "set":
        b = draw(st.sampled_from([0x00, 0xFF, 0x01, 0x80]))
        return f"byte {i} := {b:#x}", data[:i] + bytes([b]) + data[i + 1 :]
    if kind == "insert":
        return f"insert at {i}", data[:i] + bytes([draw(st.integers(0, 255))]) + data[i:]
    if kind == "delete":
        return f"delete byte {i}", data[:i] + data[i + 1 :]
    if kind == "truncate":
        return f"truncate to {i}", data[:i]
    if kind == "append":
        return "append", data + draw(st.binary(min_size=1, max_size=16))
    junk = draw(st.binary(min_size=8, max_size=8))
    return f"overwrite 8 bytes at {i}", data[:i] + junk + data[i + 8 :]


def _read_outcome(read, path: Path):
    """The reader's result, or None for a perturbkit input error; any other exception propagates (and fails)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return read(path)
        except PerturbkitInputError:
            return None


def _assert_same(result, expected, what: str) -> None:
    if result is None:
        return
    assert np.array_equal(result.X, expected.X, equal_nan=True), f"{what}: X differs"
    assert result.obs_names.equals(expected.obs_names) and result.var_names.equals(expected.var_names), what
    pd.testing.assert_frame_equal(result.obs, expected.obs, obj=f"{what}: obs")
    pd.testing.assert_frame_equal(result.var, expected.var, obj=f"{what}: var")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def base(workdir):
    """The unmutated files and what the readers make of them."""
    files = {"gct": workdir / "base.gct", "csv": workdir / "base.csv"}
    files["gct"].write_bytes(GCT)
    files["csv"].write_bytes(CSV)
    files["gz"] = workdir / "base.gct.gz"
    files["gz"].write_bytes(gzip.compress(GCT, mtime=0))
    gct = pk.io.read_gct(files["gct"])
    files["gctx"] = pk.io.write_gctx(gct, workdir / "base.gctx")
    files["foreign"] = pk.io.write_gctx(gct, workdir / "foreign.gctx", checksum=False)
    expected = {
        "gct": gct,
        "gz": pk.io.read_gct(files["gz"]),
        "gctx": pk.io.read_gct(files["gctx"]),
        "foreign": pk.io.read_gct(files["foreign"]),
        "csv": pk.io.read_cell_painting(files["csv"], cell_line="A549"),
    }
    assert expected["gct"].shape == (5, 4) and expected["csv"].shape == (4, 3)
    _assert_same(expected["gz"], expected["gct"], "gz")
    return files, expected


def _check(base, workdir, key, mutation, read=pk.io.read_gct, suffix=None):
    files, expected = base
    what, data = mutation
    path = workdir / f"mutated{suffix or ''.join(files[key].suffixes)}"
    path.write_bytes(data)
    result = _read_outcome(read, path)
    event("perturbkit error" if result is None else "same result")
    _assert_same(result, expected[key], f"{key} after {what}")


@pytest.mark.parametrize("kind", TEXT_KINDS)
@FUZZ
@given(data=st.data())
def test_fuzz_read_gct_text(base, workdir, kind, data):
    mutation = data.draw(text_mutations(GCT, kind, delimiters=b"\t", rows_counted=True))
    _check(base, workdir, "gct", mutation)


@pytest.mark.parametrize("kind", TEXT_KINDS + BINARY_KINDS)
@FUZZ
@given(data=st.data())
def test_fuzz_read_gct_gz(base, workdir, kind, data):
    if kind in BINARY_KINDS:  # damage the compressed bytes (gzip's CRC-32 catches it) ...
        mutation = data.draw(binary_mutations(gzip.compress(GCT, mtime=0), kind))
    else:  # ... or the text inside
        what, text = data.draw(text_mutations(GCT, kind, delimiters=b"\t", rows_counted=True))
        mutation = (f"{what} inside the gzip", gzip.compress(text, mtime=0))
    _check(base, workdir, "gz", mutation)


@pytest.mark.parametrize("kind", BINARY_KINDS)
@FUZZ
@given(data=st.data())
def test_fuzz_read_gctx(base, workdir, kind, data):
    files, _ = base
    mutation = data.draw(binary_mutations(files["gctx"].read_bytes(), kind))
    _check(base, workdir, "gctx", mutation)


@FUZZ
@given(data=st.data())
def test_fuzz_read_gctx_without_checksum_truncated(base, workdir, data):
    """GCTX files from other tools carry no checksum: HDF5 itself must notice a truncation."""
    files, _ = base
    raw = files["foreign"].read_bytes()
    i = data.draw(_position(len(raw)))
    _check(base, workdir, "foreign", (f"truncate to {i}", raw[:i]))


@pytest.mark.parametrize("kind", CSV_KINDS)
@FUZZ
@given(data=st.data())
def test_fuzz_read_cell_painting(base, workdir, kind, data):
    mutation = data.draw(text_mutations(CSV, kind, delimiters=b",", rows_counted=False))
    _check(base, workdir, "csv", mutation, read=lambda p: pk.io.read_cell_painting(p, cell_line="A549"))
