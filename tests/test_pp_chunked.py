"""Out-of-core preprocessing (issue 14): backed dense / CSR h5ad and dask-backed X give the in-memory results.

Tolerances: where the out-of-core path runs the same arithmetic on the same values (min/max, medians, quantiles,
MADs, MODZ, the per-element affine apply) the results are asserted EQUAL. Where only the float64 summation order
differs (means and variances summed block by block instead of in one go: ``zscore``, ``standardize``, the
``aggregate`` mean, ``control_diff``) and where a matrix product runs block by block (spherize), they agree to
float64 rounding, which after the cast to float32 is ``rtol=1e-6`` (plus ``atol=1e-6`` for values near 0: the
outputs are O(1)).
"""

from __future__ import annotations

import hashlib
import tracemalloc

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import perturbkit as pk
from perturbkit._schema import NonFiniteError, PerturbkitInputError
from perturbkit.pp import _chunked

N_OBS, N_VARS, CHUNK = 503, 17, 97  # CHUNK < N_OBS and does not divide it
CLOSE = {"rtol": 1e-6, "atol": 1e-6}


def _data(seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(N_OBS, N_VARS)) * 2 + rng.normal(size=N_VARS) * 3).astype(np.float32)
    X[rng.random(X.shape) < 0.3] = 0.0  # zeros, so the CSR file is really sparse
    plate = rng.integers(0, 5, N_OBS)
    obs = pd.DataFrame(
        {
            "plate": pd.Categorical([f"P{p}" for p in plate]),
            "cell_line": rng.choice(["A549", "MCF7"], N_OBS),
            "drug": rng.choice([f"d{i}" for i in range(40)], N_OBS),
            "control": rng.random(N_OBS) < 0.25,
        },
        index=[f"w{i}" for i in range(N_OBS)],
    )
    obs.loc[obs.groupby("plate", observed=True).head(2).index, "control"] = True  # controls on every plate
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(N_VARS)]))


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("chunked")
    adata = _data()
    dense, csr = base / "dense.h5ad", base / "csr.h5ad"
    adata.write_h5ad(dense)
    sparse = adata.copy()
    sparse.X = sp.csr_matrix(sparse.X)
    sparse.write_h5ad(csr)
    return adata, {"dense": dense, "csr": csr}


@pytest.fixture(params=["backed-dense", "backed-csr", "dask", "lazy-csr"])
def source(request, files):
    """(in-memory AnnData, the same data out of core); afterwards, checks that the user's data is unchanged.

    ``lazy-csr`` is anndata's lazy reader of the CSR file: a dask array with SciPy sparse chunks.
    """
    memory, paths = files
    if request.param == "lazy-csr":
        import h5py
        from anndata.experimental import read_elem_lazy

        digest = _sha(paths["csr"])
        with h5py.File(paths["csr"], "r") as handle:
            lazy = memory.copy()
            lazy.X = read_elem_lazy(handle["X"], chunks=(CHUNK, -1))
            yield memory, lazy
        assert _sha(paths["csr"]) == digest
        return
    if request.param == "dask":
        lazy = memory.copy()
        lazy.X = da.from_array(memory.X, chunks=(CHUNK, 9))  # row and column chunks
        before = lazy.X
        yield memory, lazy
        assert lazy.X is before
        return
    path = paths[request.param.split("-")[1]]
    digest = _sha(path)
    backed = ad.read_h5ad(path, backed="r")
    uns_before = dict(backed.uns)
    yield memory, backed
    assert backed.isbacked and dict(backed.uns) == uns_before and list(backed.layers) == []
    X = backed.X[:]
    np.testing.assert_array_equal(X.toarray() if sp.issparse(X) else X, memory.X)
    backed.file.close()
    assert _sha(path) == digest  # the user's file is unchanged, byte for byte


def _lazy_X(result):
    assert isinstance(result.X, da.Array) and not result.isbacked
    X = result.X.compute()
    return X.toarray() if sp.issparse(X) else X  # X of a CSR file read lazily keeps sparse chunks


# ------------------------------------------------------------------------------------------------ aggregate
@pytest.mark.parametrize("method", ["mean", "median", "modz"])
def test_aggregate_equals_in_memory(source, method):
    memory, lazy = source
    expected = pk.pp.aggregate(memory, method=method)
    got = pk.pp.aggregate(lazy, method=method, chunk_rows=CHUNK)
    pd.testing.assert_frame_equal(got.obs, expected.obs)
    X = got.X.toarray() if sp.issparse(got.X) else got.X
    assert sp.issparse(got.X) == (method == "mean" and _chunked.is_sparse(lazy.X))
    if method == "mean":
        np.testing.assert_allclose(X, expected.X, **CLOSE)
    else:  # the same rows through the same reduction
        np.testing.assert_array_equal(X, expected.X)
    assert got.uns["aggregate"] == expected.uns["aggregate"]


# ------------------------------------------------------------------------------------------------ scale
@pytest.mark.parametrize(
    ("method", "per_feature"), [("maxabs", True), ("minmax", True), ("zscore", True), ("zscore", False)]
)
def test_scale_and_unscale_equal_in_memory(source, method, per_feature):
    memory, lazy = source
    expected = pk.pp.scale(memory, method=method, per_feature=per_feature, copy=True)
    got = pk.pp.scale(lazy, method=method, per_feature=per_feature, chunk_rows=CHUNK, copy=True)
    Z = _lazy_X(got)
    params, reference = got.uns["scale"]["params"], expected.uns["scale"]["params"]
    if method == "zscore":
        np.testing.assert_allclose(params["offset"], reference["offset"], rtol=1e-12)
        np.testing.assert_allclose(params["scale"], reference["scale"], rtol=1e-12)
        np.testing.assert_allclose(Z, expected.X, **CLOSE)
    else:
        assert params == reference
        np.testing.assert_array_equal(Z, expected.X)
    back = pk.pp.unscale(got, chunk_rows=CHUNK, copy=True)
    np.testing.assert_allclose(_lazy_X(back), memory.X, rtol=1e-5, atol=1e-5)
    again = pk.pp.scale(lazy, scaler=expected.uns["scale"], chunk_rows=CHUNK, copy=True)  # re-applied, not fitted
    np.testing.assert_array_equal(_lazy_X(again), expected.X)


def test_scale_in_place_on_dask_stays_lazy_with_its_chunks():
    memory = _data(1)
    lazy = memory.copy()
    lazy.X = da.from_array(memory.X, chunks=(CHUNK, 9))
    assert pk.pp.scale(lazy, method="minmax", chunk_rows=CHUNK) is None
    assert isinstance(lazy.X, da.Array) and lazy.X.chunks == da.from_array(memory.X, chunks=(CHUNK, 9)).chunks
    np.testing.assert_array_equal(lazy.X.compute(), pk.pp.scale(memory, method="minmax", copy=True).X)


# ------------------------------------------------------------------------------------------------ normalize
NORMALIZE_CASES = [
    ({"method": "standardize"}, CLOSE),
    ({"method": "standardize", "groupby": "plate", "samples": "control"}, CLOSE),
    ({"method": "robustize", "groupby": "plate"}, None),
    ({"method": "mad_robustize", "samples": "control"}, None),
    ({"method": "robust_zscore", "groupby": "plate", "samples": "control"}, None),
    ({"method": "spherize", "spherize_method": "ZCA-cor"}, {"rtol": 1e-5, "atol": 1e-5}),
    ({"method": "spherize", "spherize_method": "PCA"}, {"rtol": 1e-5, "atol": 1e-5}),
]


@pytest.mark.parametrize(("options", "tolerance"), NORMALIZE_CASES, ids=lambda v: str(v) if v else "equal")
def test_normalize_equals_in_memory(source, options, tolerance):
    memory, lazy = source
    expected = pk.pp.normalize(memory, copy=True, **options)
    got = pk.pp.normalize(lazy, chunk_rows=CHUNK, copy=True, **options)
    pca = options.get("spherize_method") == "PCA"
    out, want = (got.obsm["X_normalize"].compute(), expected.obsm["X_normalize"]) if pca else (_lazy_X(got), expected.X)
    if pca:  # X stays the data, read lazily
        np.testing.assert_array_equal(_lazy_X(got), memory.X)
    record, reference = got.uns["normalize"], expected.uns["normalize"]
    assert {k: v for k, v in record.items() if k != "params"} == {k: v for k, v in reference.items() if k != "params"}
    for key, value in reference["params"].items():
        if tolerance is None or key == "rank":
            np.testing.assert_array_equal(record["params"][key], value)
        else:
            np.testing.assert_allclose(record["params"][key], value, rtol=1e-12, atol=1e-12)
    assert out.dtype == want.dtype == np.float32
    if tolerance is None:
        np.testing.assert_array_equal(out, want)
    else:
        np.testing.assert_allclose(out, want, **tolerance)


def test_normalize_gathers_features_in_blocks(monkeypatch, files):
    """With a gather budget of 3 features' fitted rows, robust_zscore reads 6 blocks of features: same result."""
    memory, paths = files
    monkeypatch.setattr(_chunked, "GATHER_BYTES", 8 * N_OBS * 3)
    backed = ad.read_h5ad(paths["dense"], backed="r")
    got = pk.pp.normalize(backed, method="robust_zscore", chunk_rows=CHUNK, copy=True)
    np.testing.assert_array_equal(_lazy_X(got), pk.pp.normalize(memory, method="robust_zscore", copy=True).X)
    with pytest.raises(PerturbkitInputError, match="samples='control'"):  # spherize needs all features at once
        pk.pp.normalize(backed, method="spherize", chunk_rows=CHUNK, copy=True)
    backed.file.close()


# ------------------------------------------------------------------------------------------------ control_diff
@pytest.mark.parametrize("groupby", ["plate", None])
def test_control_diff_equals_in_memory(source, groupby):
    memory, lazy = source
    expected = pk.pp.control_diff(memory, groupby=groupby, copy=True)
    got = pk.pp.control_diff(lazy, groupby=groupby, chunk_rows=CHUNK, copy=True)
    np.testing.assert_allclose(
        got.uns["control_diff"]["control_means"], expected.uns["control_diff"]["control_means"], rtol=1e-6
    )
    np.testing.assert_array_equal(got.uns["control_diff"]["n_controls"], expected.uns["control_diff"]["n_controls"])
    np.testing.assert_allclose(_lazy_X(got), expected.X, **CLOSE)
    layered = pk.pp.control_diff(lazy, groupby=groupby, key_added="diff", chunk_rows=CHUNK, copy=True)
    np.testing.assert_allclose(layered.layers["diff"].compute(), expected.X, **CLOSE)
    np.testing.assert_array_equal(_lazy_X(layered), memory.X)  # X of the copy: the data, read lazily


# ------------------------------------------------------------------------------------------------ the reader
def test_row_reader_on_every_kind(files, tmp_path):
    import zarr
    from anndata.experimental import read_elem_lazy

    memory, paths = files
    X = memory.X
    z = zarr.create_array(store=tmp_path / "x.zarr", shape=X.shape, chunks=(40, N_VARS), dtype="f4")
    z[:] = X
    backed_dense = ad.read_h5ad(paths["dense"], backed="r")
    backed_csr = ad.read_h5ad(paths["csr"], backed="r")
    import h5py

    handle = h5py.File(paths["csr"], "r")
    kinds = {
        "numpy": X,
        "sparse": sp.csr_matrix(X),
        "h5py": backed_dense.X,
        "backed_sparse": backed_csr.X,
        "dask": da.from_array(X, chunks=(31, 5)),
        "zarr": z,
        "dask-sparse": read_elem_lazy(handle["X"], chunks=(31, -1)),
    }
    rows = np.array([500, 3, 3, 77, 78, 79, 0, 250])
    for name, A in kinds.items():
        blocks = list(_chunked.row_blocks(A, chunk_rows=CHUNK))
        assert blocks[0][0] == 0 and blocks[-1][1] == N_OBS
        assert all(b[1] - b[0] <= CHUNK for b in blocks), name
        np.testing.assert_array_equal(np.vstack([_chunked.dense64(b[2]) for b in blocks]), X, err_msg=name)
        np.testing.assert_array_equal(_chunked.take_rows(A, rows, chunk_rows=3), X[rows], err_msg=name)
        cols = _chunked.take_rows(A, rows, columns=slice(4, 9), chunk_rows=3)
        np.testing.assert_array_equal(cols, X[rows, 4:9], err_msg=name)
    assert _chunked.resolve_chunk_rows(None, 978) == 2144  # the measured default: 16 MiB float64 blocks
    handle.close()
    backed_dense.file.close()
    backed_csr.file.close()


# ------------------------------------------------------------------------------------------------ memory
def test_memory_stays_bounded_on_a_backed_file(tmp_path, monkeypatch):
    """40,000 × 50 float32 (8 MB; 16 MB in float64) read 500 rows at a time: every step holds < 3.2 MB extra."""
    rng = np.random.default_rng(5)
    n, d = 40_000, 50
    X = rng.normal(size=(n, d)).astype(np.float32)
    obs = pd.DataFrame(
        {"g": pd.Categorical(np.sort(rng.integers(0, 1000, n)).astype(str)), "control": rng.random(n) < 0.2},
        index=[str(i) for i in range(n)],
    )
    path = tmp_path / "big.h5ad"
    ad.AnnData(X, obs=obs).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    monkeypatch.setattr(_chunked, "GATHER_BYTES", 2**19)  # gather at most 0.5 MB of fitted rows at a time
    bound = 3.2 * 2**20  # 20 % of X in float64; one float64 block is 0.2 MB
    steps = {
        "scale zscore": lambda: pk.pp.scale(backed, method="zscore", chunk_rows=500, copy=True),
        "normalize robustize": lambda: pk.pp.normalize(backed, method="robustize", chunk_rows=500, copy=True),
        "normalize standardize": lambda: pk.pp.normalize(backed, chunk_rows=500, copy=True),
        "control_diff": lambda: pk.pp.control_diff(backed, groupby=None, chunk_rows=500, copy=True),
        "aggregate mean": lambda: pk.pp.aggregate(backed, by="g", chunk_rows=500),
        "aggregate median": lambda: pk.pp.aggregate(backed, by="g", method="median", chunk_rows=500),
    }
    peaks = {}
    for name, step in steps.items():
        tracemalloc.start()
        result = step()
        if name.startswith(("scale", "normalize", "control")):  # stream the lazy result to a new file
            result.write_h5ad(tmp_path / "out.h5ad")
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert max(peaks.values()) < bound, {k: f"{v / 2**20:.2f} MB" for k, v in peaks.items()}
    written = ad.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_allclose(written.X, pk.pp.control_diff(ad.read_h5ad(path), groupby=None, copy=True).X, **CLOSE)
    backed.file.close()


# ------------------------------------------------------------------------------------------------ errors
def test_errors_name_the_argument_and_the_fix(files, tmp_path):
    memory, paths = files
    backed = ad.read_h5ad(paths["dense"], backed="r")
    for call in (pk.pp.scale, pk.pp.normalize, pk.pp.control_diff):
        with pytest.raises(PerturbkitInputError, match="copy=True"):
            call(backed)
    for call in (pk.pp.scale, pk.pp.normalize, pk.pp.control_diff, pk.pp.aggregate):
        with pytest.raises(PerturbkitInputError, match="chunk_rows"):
            call(backed, chunk_rows=0)
    backed.file.close()

    bad = memory.copy()
    bad.X[300, 4] = np.nan
    bad.X[400, 2] = np.inf
    path = tmp_path / "bad.h5ad"
    bad.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    with pytest.raises(NonFiniteError, match=r"adata.X holds 1 NaN and 1 infinite values \(first rows: \[300, 400\]\)"):
        pk.pp.scale(backed, chunk_rows=CHUNK, copy=True)
    with pytest.raises(NonFiniteError, match="1 NaN and 1 infinite"):
        pk.pp.aggregate(backed, chunk_rows=CHUNK)
    with pytest.raises(NonFiniteError, match="rows"):
        pk.pp.aggregate(backed, method="median", chunk_rows=CHUNK)
    with pytest.raises(NonFiniteError, match="Infinite values cannot be normalised"):
        pk.pp.normalize(backed, chunk_rows=CHUNK, copy=True)
    with pytest.raises(NonFiniteError, match="1 NaN and 1 infinite"):
        pk.pp.control_diff(backed, chunk_rows=CHUNK, copy=True)
    scaled = pk.pp.scale(backed, scaler=pk.pp.Scaler().fit(memory.X), chunk_rows=CHUNK, copy=True)
    with pytest.raises(NonFiniteError, match=r"in rows \[(300|400)\]"):  # a given scaler: raised when computed
        scaled.X.compute()
    backed.file.close()

    moved = tmp_path / "moved.h5ad"
    memory.write_h5ad(moved)
    backed = ad.read_h5ad(moved, backed="r")
    result = pk.pp.scale(backed, chunk_rows=CHUNK, copy=True)
    backed.file.close()
    np.testing.assert_array_equal(result.X.compute(), pk.pp.scale(memory, copy=True).X)  # works after close
    moved.unlink()
    with pytest.raises(PerturbkitInputError, match="moved.h5ad.*compute"):
        result.X.compute()
