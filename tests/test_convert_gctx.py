"""pk.io.convert_gctx: a GCTX streamed chunk by chunk into .h5ad / .zarr equals pk.io.read_gct of the same file."""

from __future__ import annotations

import gc
import hashlib
import os
import tracemalloc
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, shared_file

import perturbkit as pk
from perturbkit._schema import FileFormatError, PerturbkitInputError
from perturbkit.datasets._gctx import write_simulated_gctx
from perturbkit.io import _convert
from perturbkit.io._convert import convert_gctx

REAL_GCTX_NAME = "l1000/LJP005_A375_24H_level4_n377x978.gctx"
REAL_GCTX = SHARED_DATA / REAL_GCTX_NAME  # ../shared/data, or $PERTURBKIT_SHARED_DATA
SUFFIXES = [".h5ad", ".zarr"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    """300 genes (40 landmarks, scattered) × 500 signatures, the real file's layout."""
    return write_simulated_gctx(
        tmp_path_factory.mktemp("gctx") / "sim.gctx", n_genes=300, n_signatures=500, n_landmark=40, seed=3
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A small GCTX from pk.io.write_gctx (checksummed) with little metadata: zarr stores of it are quick to write."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 50)).astype(np.float32)
    X[rng.random(X.shape) < 0.02] = np.nan
    obs = pd.DataFrame({"cell_id": rng.choice(["A375", "MCF7"], 120)}, index=[f"s{i}" for i in range(120)])
    var = pd.DataFrame({"pr_is_lm": [1, 0] * 25}, index=[f"g{i}" for i in range(50)])
    return pk.io.write_gctx(ad.AnnData(X=X, obs=obs, var=var), tmp_path_factory.mktemp("tiny") / "tiny.gctx")


def _read(out: Path, backed=None):
    return ad.read_h5ad(out, backed=backed) if out.suffix == ".h5ad" else ad.read_zarr(out)


def _assert_same(back, mem) -> None:
    """Same matrix (bit for bit, NaN included), ids, and obs/var values; text stored as categoricals is compared
    as the strings read_gct gives."""
    assert back.X.dtype == np.float32
    np.testing.assert_array_equal(back.X, mem.X)
    for name in ("obs", "var"):
        got, want = getattr(back, name), getattr(mem, name)
        cats = {c: object for c in got.columns if isinstance(got[c].dtype, pd.CategoricalDtype)}
        pd.testing.assert_frame_equal(got.astype(cats), want)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize(
    ("suffix", "selection"),
    [(".h5ad", s) for s in ("all", "landmark_only", "cid", "cid+landmark_only")]
    + [(".zarr", "all"), (".zarr", "cid+landmark_only")],  # zarr stores are slower to create: the two extremes
)
def test_round_trip_equals_read_gct(sim, tmp_path, suffix, selection):
    obs, _ = pk.io.read_gct_metadata(sim)
    kwargs = {}
    if "cid" in selection:  # a shuffled subset: the output keeps the order asked for
        kwargs["cid"] = list(np.random.default_rng(0).permutation(obs.index)[:173])
    if "landmark_only" in selection:
        kwargs["landmark_only"] = True
    out = convert_gctx(sim, tmp_path / f"out{suffix}", chunk_size=64, progress=False, **kwargs)
    assert out == tmp_path / f"out{suffix}"
    back, mem = _read(out), pk.io.read_gct(sim, **kwargs)
    assert back.shape == mem.shape == (173 if "cid" in selection else 500, 40 if "landmark" in selection else 300)
    _assert_same(back, mem)
    if "cid" in selection:
        assert back.obs_names.tolist() == kwargs["cid"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_store_equals_anndata_own_writer(sim, tmp_path, suffix):
    """obs/var (dtypes, categories) are exactly what AnnData.write_h5ad stores for read_gct's AnnData."""
    mem = pk.io.read_gct(sim)
    mem.copy().write_h5ad(tmp_path / "reference.h5ad")
    reference = ad.read_h5ad(tmp_path / "reference.h5ad")
    back = _read(convert_gctx(sim, tmp_path / f"out{suffix}", progress=False))
    pd.testing.assert_frame_equal(back.obs, reference.obs)
    pd.testing.assert_frame_equal(back.var, reference.var)
    np.testing.assert_array_equal(back.X, reference.X)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_chunk_size_does_not_change_the_result(sim, tiny, tmp_path, suffix):
    path = sim if suffix == ".h5ad" else tiny  # zarr stores of the 20 simulated obs columns are slow to create
    mem = pk.io.read_gct(path)
    for chunk_size in (1, 7, mem.n_obs, 10_000):  # one signature per step, uneven steps, exactly the file, larger
        back = _read(convert_gctx(path, tmp_path / f"c{chunk_size}{suffix}", chunk_size=chunk_size, progress=False))
        _assert_same(back, mem)


def test_zarr_layout_rows_contiguous(sim, tmp_path):
    import zarr

    out = convert_gctx(sim, tmp_path / "out.zarr", chunk_size=300, progress=False)
    X = zarr.open_group(out, mode="r")["X"]
    # whole rows per chunk; 16 MiB / (300 genes × 4 B) -> 8192 rows, capped at chunk_size
    assert X.chunks == (300, 300)
    assert _convert._zarr_chunk_rows(12_328, 1024) == 256 and _convert._zarr_chunk_rows(978, 100_000) == 4096
    assert X.compressors == ()
    with h5py.File(convert_gctx(sim, tmp_path / "out.h5ad", progress=False), "r") as f:
        assert f["X"].chunks is None  # contiguous, as AnnData.write_h5ad stores a dense X
        assert f["X"].attrs["encoding-type"] == "array"


def test_backed_and_zarr_v3_read_back(sim, tmp_path):
    mem = pk.io.read_gct(sim, landmark_only=True)
    backed = _read(convert_gctx(sim, tmp_path / "out.h5ad", landmark_only=True, progress=False), backed="r")
    np.testing.assert_array_equal(backed.X[123:321], mem.X[123:321])
    backed.file.close()
    with ad.settings.override(zarr_write_format=3):
        out = convert_gctx(sim, tmp_path / "v3.zarr", landmark_only=True, chunk_size=50, progress=False)
    assert (out / "zarr.json").exists()
    _assert_same(ad.read_zarr(out), mem)


def test_chunked_compressed_input(tmp_path):
    """A matrix stored in HDF5 chunks that cut across genes (as cmapPy writes) converts the same."""
    path = write_simulated_gctx(
        tmp_path / "chunked.gctx", n_genes=120, n_signatures=230, n_landmark=10, chunk=(50, 32), compression="gzip"
    )
    with h5py.File(path, "r") as f:
        assert f["0/DATA/0/matrix"].chunks == (50, 32)
    obs, _ = pk.io.read_gct_metadata(path)
    cid = obs.index[::-3].tolist()
    for kwargs in ({}, {"cid": cid, "landmark_only": True}):
        _assert_same(
            _read(convert_gctx(path, tmp_path / "out.h5ad", chunk_size=33, overwrite=True, progress=False, **kwargs)),
            pk.io.read_gct(path, **kwargs),
        )


def test_perturbkit_gctx_with_nan_and_gene_info(tmp_path):
    """A GCTX from pk.io.write_gctx (checksummed, NaN in X, typed metadata); gene_info= joins as in read_gct."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 25)).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan
    obs = pd.DataFrame(
        {"cell_id": rng.choice(["A375", "MCF7"], 90), "pert_dose": rng.choice([0.1, np.nan], 90)},
        index=[f"s{i}" for i in range(90)],
    )
    var = pd.DataFrame({"pr_gene_id": np.arange(25)}, index=[f"g{i}" for i in range(25)])
    path = pk.io.write_gctx(ad.AnnData(X=X, obs=obs, var=var), tmp_path / "pk.gctx")
    gene_info = pd.DataFrame(
        {"pr_gene_id": np.arange(25), "pr_gene_symbol": [f"SYM{i}" for i in range(25)], "pr_is_lm": [1, 0] * 12 + [1]}
    )
    for suffix, kwargs in ((".h5ad", {}), (".zarr", {"gene_info": gene_info, "landmark_only": True})):
        back = _read(convert_gctx(path, tmp_path / f"out{suffix}", chunk_size=16, progress=False, **kwargs))
        mem = pk.io.read_gct(path, **kwargs)
        assert np.isnan(back.X).sum() == np.isnan(mem.X).sum() > 0
        _assert_same(back, mem)
    assert back.var_names[:2].tolist() == ["SYM0", "SYM2"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_real_lincs_gctx(tmp_path, suffix):
    shared_file(REAL_GCTX_NAME)  # skips, naming the file, when the shared data are absent
    mem = pk.io.read_gct(REAL_GCTX)
    back = _read(convert_gctx(REAL_GCTX, tmp_path / f"real{suffix}", chunk_size=100, progress=False))
    assert back.shape == (377, 978)
    _assert_same(back, mem)
    if suffix == ".zarr":
        return  # the selection below is the same for both stores (and zarr stores are slow to create)
    cid = mem.obs_names[mem.obs["control"].to_numpy()][::-1].tolist()  # the 26 DMSO wells, reversed
    back = _read(convert_gctx(REAL_GCTX, tmp_path / f"dmso{suffix}", cid=cid, landmark_only=True, progress=False))
    _assert_same(back, pk.io.read_gct(REAL_GCTX, cid=cid, landmark_only=True))


def test_simulated_layout_mirrors_the_real_file(sim):
    with h5py.File(sim, "r") as f:
        layout = _layout(f)
    assert layout["matrix"] == ((500, 300), np.dtype("float32"), None, None)  # samples x genes, contiguous
    assert {"id", "cell_id", "pert_id", "pert_iname", "pert_idose", "pert_itime", "pert_type"} <= set(layout["col"])
    assert {"id", "pr_gene_id", "pr_gene_symbol", "pr_is_lm"} <= set(layout["row"])
    assert layout["meta_filters"] == {("gzip", 6)}
    assert layout["version"] == b"GCTX1.0"
    obs, var = pk.io.read_gct_metadata(sim)
    assert int(var["pr_is_lm"].sum()) == 40 and obs.index.is_unique
    assert 0 < obs["control"].mean() < 0.2 and set(obs.loc[obs["control"], "dose"]) == {0.0}
    if REAL_GCTX.exists():
        with h5py.File(REAL_GCTX, "r") as f:
            real = _layout(f)
        assert real["matrix"][1:] == layout["matrix"][1:] and real["meta_filters"] == layout["meta_filters"]
        assert real["version"] == layout["version"]
        assert {k: v.kind for k, v in layout["col"].items() if k in real["col"]} == {
            k: v.kind for k, v in real["col"].items() if k in layout["col"]
        }


def _layout(f) -> dict:
    ds = f["0/DATA/0/matrix"]
    col, row = f["0/META/COL"], f["0/META/ROW"]
    filters = {(d.compression, d.compression_opts) for g in (col, row) for d in g.values()}
    return {
        "matrix": (ds.shape, ds.dtype, ds.chunks, ds.compression),
        "col": {k: d.dtype for k, d in col.items()},
        "row": {k: d.dtype for k, d in row.items()},
        "meta_filters": filters,
        "version": bytes(f.attrs["version"]),
    }


def test_memory_is_bounded_by_chunk_size(tmp_path):
    """Streaming a 15 MB matrix 40 signatures (256 KB) at a time holds at most 4 blocks + 0.6 MB beyond the
    metadata tables (which pk.io.read_gct_metadata holds as well), where pk.io.read_gct holds the whole 15 MB."""
    n_genes, n_sig, chunk = 1600, 2400, 40
    path = write_simulated_gctx(tmp_path / "m.gctx", n_genes=n_genes, n_signatures=n_sig, n_landmark=100)
    matrix_bytes, block_bytes = n_sig * n_genes * 4, chunk * n_genes * 4

    def traced_peak(step) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            step()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    metadata = traced_peak(lambda: pk.io.read_gct_metadata(path))
    for suffix in SUFFIXES:
        out = tmp_path / f"m{suffix}"
        peak = traced_peak(lambda out=out: convert_gctx(path, out, chunk_size=chunk, progress=False))
        assert peak - metadata < 4 * block_bytes + 600_000, (suffix, peak, metadata)
        assert peak - metadata < matrix_bytes / 8, (suffix, peak, metadata)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_interrupted_conversion_leaves_no_partial_output(tiny, tmp_path, monkeypatch, suffix):
    out = tmp_path / f"out{suffix}"
    calls = {"n": 0}
    real_read = _convert._BlockReader.read

    def failing_read(self, rows, genes):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C in the middle
        return real_read(self, rows, genes)

    monkeypatch.setattr(_convert._BlockReader, "read", failing_read)
    with pytest.raises(KeyboardInterrupt):
        convert_gctx(tiny, out, chunk_size=20, progress=False)
    assert calls["n"] == 3
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary sibling left behind

    monkeypatch.setattr(_convert._BlockReader, "read", real_read)
    convert_gctx(tiny, out, landmark_only=True, progress=False)  # a good store ...
    before = _digest(out)
    calls["n"] = 0
    monkeypatch.setattr(_convert._BlockReader, "read", failing_read)
    with pytest.raises(KeyboardInterrupt):
        convert_gctx(tiny, out, chunk_size=20, overwrite=True, progress=False)  # ... survives a failed overwrite
    assert _digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert _read(out).shape == (120, 25)

    monkeypatch.setattr(_convert._BlockReader, "read", real_read)
    convert_gctx(tiny, out, overwrite=True, progress=False)  # and a successful overwrite replaces it
    assert _read(out).shape == (120, 50)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_input_file_is_not_modified(sim, tiny, tmp_path):
    for path, suffix in ((sim, ".h5ad"), (tiny, ".zarr")):
        before, mtime = _digest(path), os.stat(path).st_mtime_ns
        convert_gctx(path, tmp_path / f"out{suffix}", landmark_only=True, chunk_size=7, progress=False)
        assert _digest(path) == before and os.stat(path).st_mtime_ns == mtime


def test_progress_bar_follows_settings(sim, tmp_path, capsys):
    convert_gctx(sim, tmp_path / "a.h5ad", progress=True)
    assert "convert_gctx" in capsys.readouterr().err
    old = pk.settings.progress_bar
    pk.settings.progress_bar = False
    try:
        convert_gctx(sim, tmp_path / "b.h5ad")
    finally:
        pk.settings.progress_bar = old
    assert "convert_gctx" not in capsys.readouterr().err


def test_bad_inputs_raise_clear_errors(sim, tmp_path):
    missing = tmp_path / "nope.gctx"
    with pytest.raises(FileNotFoundError, match="nope.gctx"):
        convert_gctx(missing, tmp_path / "out.h5ad")
    with pytest.raises(PerturbkitInputError, match=r"'\.csv'.*'\.h5ad'.*'\.zarr'"):
        convert_gctx(sim, tmp_path / "out.csv")
    existing = tmp_path / "exists.h5ad"
    existing.write_bytes(b"keep me")
    with pytest.raises(PerturbkitInputError, match="exists.h5ad' already exists. Pass overwrite=True"):
        convert_gctx(sim, existing)
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(PerturbkitInputError, match=r"cid ids are not sample \(column\) ids.*'nope-1', 'nope-2'"):
        convert_gctx(sim, tmp_path / "out.h5ad", cid=["nope-1", "nope-2"])
    with pytest.raises(PerturbkitInputError, match="cid= takes sample ids, not a boolean mask"):
        convert_gctx(sim, tmp_path / "out.h5ad", cid=np.ones(500, dtype=bool))
    for bad in (0, -5, 2.5, True):
        with pytest.raises(PerturbkitInputError, match="chunk_size="):
            convert_gctx(sim, tmp_path / "out.h5ad", chunk_size=bad)
    with pytest.raises(PerturbkitInputError, match="overwrite="):
        convert_gctx(sim, tmp_path / "out.h5ad", overwrite="yes")
    text = tmp_path / "plate.gct"
    pk.io.write_gct(ad.AnnData(X=np.zeros((2, 3), np.float32)), text)
    with pytest.raises(FileFormatError, match="plate.gct' is GCT text, not GCTX"):
        convert_gctx(text, tmp_path / "out.h5ad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.h5ad", "plate.gct"]  # nothing else written
