"""Tests of pk.pp: aggregate, Scaler/scale/unscale, feature_select, control_diff (tiny hand-built AnnData)."""

from __future__ import annotations

import copy
import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import spearmanr

import perturbkit as pk
from perturbkit._schema import (
    ColumnTypeError,
    EmptyGroupError,
    GeneMismatchError,
    MissingColumnError,
    NonFiniteError,
    PerturbkitInputError,
)
from perturbkit.pp._aggregate import _modz_weights

# --------------------------------------------------------------------------------------------------- helpers


def _snapshot(adata):
    """A deep copy of what a function must not change."""
    return {
        "X": adata.X.copy(),
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "uns": copy.deepcopy(dict(adata.uns)),
        "layers": {k: v.copy() for k, v in adata.layers.items()},
    }


def _assert_unchanged(adata, snap):
    X = adata.X.toarray() if sp.issparse(adata.X) else adata.X
    X0 = snap["X"].toarray() if sp.issparse(snap["X"]) else snap["X"]
    assert X.dtype == X0.dtype
    np.testing.assert_array_equal(X, X0)
    pd.testing.assert_frame_equal(adata.obs, snap["obs"])
    pd.testing.assert_frame_equal(adata.var, snap["var"])
    assert set(adata.uns) == set(snap["uns"])
    assert set(adata.layers) == set(snap["layers"])
    for k, v in snap["layers"].items():
        np.testing.assert_array_equal(adata.layers[k], v)


@pytest.fixture
def replicates():
    """2 cell lines × 2 drugs; group sizes 3, 2, 1, 4 (features f0..f3)."""
    X = np.array(
        [
            # A|x (3 replicates)
            [1, 2, 3, 4],
            [3, 2, 1, 0],
            [2, 8, 2, 2],
            # A|y (2)
            [0, 0, 0, 0],
            [2, 4, 6, 8],
            # B|x (1)
            [5, 5, 5, 5],
            # B|y (4): three concordant replicates and one reversed outlier
            [1, 2, 3, 4],
            [2, 3, 4, 5],
            [1, 3, 5, 7],
            [4, 3, 2, 1],
        ],
        dtype=np.float32,
    )
    obs = pd.DataFrame(
        {
            "cell_line": ["A"] * 5 + ["B"] * 5,
            "drug": ["x", "x", "x", "y", "y", "x", "y", "y", "y", "y"],
            "moa": ["m1", "m1", "m1", "m2", "m2", "m1", "m2", "m2", "m2", "m2"],
            "control": [False] * 10,
            "well": [f"w{i}" for i in range(10)],
            "dose": [1.0, 1.0, 1.0, 2.0, 2.0, 1.0, 2.0, 2.0, 2.0, 2.0],
        },
        index=[f"r{i}" for i in range(10)],
    )
    obs["cell_line"] = obs["cell_line"].astype("category")
    var = pd.DataFrame(index=[f"f{j}" for j in range(4)])
    return ad.AnnData(X=X, obs=obs, var=var)


# --------------------------------------------------------------------------------------------------- aggregate


def test_aggregate_mean_values_obs_and_uns(replicates):
    snap = _snapshot(replicates)
    out = pk.pp.aggregate(replicates, method="mean")
    _assert_unchanged(replicates, snap)
    assert out.shape == (4, 4)
    assert list(out.obs_names) == ["A|x", "A|y", "B|x", "B|y"]
    assert out.obs["n_profiles"].tolist() == [3, 2, 1, 4]
    # constant within every group: moa, control, dose; 'well' varies and is dropped
    assert list(out.obs.columns) == ["cell_line", "drug", "n_profiles", "moa", "control", "dose"]
    assert out.obs["moa"].tolist() == ["m1", "m2", "m1", "m2"]
    assert isinstance(out.obs["cell_line"].dtype, pd.CategoricalDtype)
    np.testing.assert_allclose(out.X[0], [2, 4, 2, 2])
    np.testing.assert_allclose(out.X[1], [1, 2, 3, 4])
    np.testing.assert_allclose(out.X[2], [5, 5, 5, 5])
    np.testing.assert_allclose(out.X[3], [2, 2.75, 3.5, 4.25])
    assert out.X.dtype == np.float32
    assert out.uns["aggregate"] == {
        "by": ["cell_line", "drug"],
        "method": "mean",
        "layer": None,
        "keep_obs": "first-constant",
        "kept_columns": ["moa", "control", "dose"],
        "n_obs_before": 10,
        "n_groups": 4,
    }


def test_aggregate_median_values(replicates):
    out = pk.pp.aggregate(replicates, method="median")
    np.testing.assert_allclose(out.X[0], [2, 2, 2, 2])
    np.testing.assert_allclose(out.X[1], [1, 2, 3, 4])  # two replicates: their mean
    np.testing.assert_allclose(out.X[2], [5, 5, 5, 5])
    np.testing.assert_allclose(out.X[3], [1.5, 3, 3.5, 4.5])


def test_modz_downweights_the_outlier_replicate(replicates):
    block = replicates.X[6:10][None].astype(np.float64)
    w = _modz_weights(block)[0]
    # Spearman: the three concordant replicates correlate 1 with each other, -1 with the reversed one. LINCS clips
    # each correlation at 0 before averaging: (1 + 1 + 0)/3 = 2/3 for each of them, max(0, 0.01) for the outlier;
    # the normalised weights are rounded to 4 decimals, as cmapPy and pycytominer do
    expected = np.round(np.array([2 / 3, 2 / 3, 2 / 3, 0.01]) / (2 + 0.01), 4)
    np.testing.assert_array_equal(w, expected)
    assert w[3] < w[:3].min() / 60
    out = pk.pp.aggregate(replicates, method="modz")
    np.testing.assert_allclose(out.X[3], expected @ replicates.X[6:10], rtol=1e-6)
    np.testing.assert_allclose(out.X[1], [1, 2, 3, 4])  # two replicates: plain mean
    np.testing.assert_allclose(out.X[2], [5, 5, 5, 5])  # one replicate: itself
    # A|x: hand-computed Spearman correlations r12 = -1, r13 = -1/sqrt(15), r23 = +1/sqrt(15) (ties averaged);
    # clipped at 0, replicate 1 has mean 0 (→ 0.01) and replicates 2 and 3 have 1/(2 sqrt(15))
    r = 1 / (2 * np.sqrt(15))
    w_ax = np.round(np.array([0.01, r, r]) / (0.01 + 2 * r), 4)
    np.testing.assert_allclose(out.X[0], w_ax @ replicates.X[0:3], rtol=1e-6)


def test_modz_matches_a_per_group_spearman_reference():
    rng = np.random.default_rng(0)
    n, p = 300, 20
    codes = rng.integers(0, 60, n)
    X = rng.normal(size=(n, p)).astype(np.float32)
    X[:, :3] = np.round(X[:, :3])  # ties in the ranks
    obs = pd.DataFrame({"g": codes.astype(str)}, index=[str(i) for i in range(n)])
    out = pk.pp.aggregate(ad.AnnData(X, obs=obs), by="g", method="modz")
    exact = pk.pp.aggregate(ad.AnnData(X, obs=obs), by="g", method="modz", modz_weight_decimals=None)
    for name, row, row_exact in zip(out.obs["g"], out.X, exact.X, strict=True):
        block = X[obs["g"].to_numpy() == name].astype(np.float64)
        k = len(block)
        if k == 1:
            ref = ref_exact = block[0]
        elif k == 2:
            ref = ref_exact = block.mean(axis=0)
        else:
            corr = np.clip(spearmanr(block.T).statistic, 0, None)  # LINCS: negative correlations count as 0
            w = np.maximum((corr.sum(axis=1) - 1) / (k - 1), 0.01)
            ref, ref_exact = (np.round(w / w.sum(), 4) @ block), (w / w.sum()) @ block
        np.testing.assert_allclose(row, ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(row_exact, ref_exact, rtol=1e-5, atol=1e-6)
    assert exact.uns["aggregate"]["modz_weight_decimals"] is None and out.uns["aggregate"]["modz_min_weight"] == 0.01


def test_aggregate_vectorised_paths_match_pandas():
    rng = np.random.default_rng(1)
    n, p = 2000, 15
    obs = pd.DataFrame(
        {"cell_line": rng.choice(["A", "B", "C"], n), "drug": rng.choice([f"d{i}" for i in range(90)], n)},
        index=[str(i) for i in range(n)],
    )
    X = rng.normal(size=(n, p))
    adata = ad.AnnData(X, obs=obs)
    frame = pd.DataFrame(X).groupby([obs["cell_line"].to_numpy(), obs["drug"].to_numpy()])
    for method in ("mean", "median"):
        out = pk.pp.aggregate(adata, method=method)
        ref = getattr(frame, method)()
        assert out.n_obs == len(ref)
        assert out.X.dtype == np.float64  # float64 input keeps its precision
        np.testing.assert_allclose(out.X, ref.to_numpy(), atol=1e-12)
        assert out.obs["n_profiles"].sum() == n


def test_aggregate_sparse_mean(replicates):
    sparse = replicates.copy()
    sparse.X = sp.csr_matrix(replicates.X)
    out = pk.pp.aggregate(sparse, method="mean")
    assert sp.issparse(out.X)
    np.testing.assert_allclose(out.X.toarray(), pk.pp.aggregate(replicates).X)
    median = pk.pp.aggregate(sparse, method="median").X
    np.testing.assert_allclose(median, pk.pp.aggregate(replicates, method="median").X)


def test_aggregate_options(replicates):
    one = pk.pp.aggregate(replicates, by="drug", keep_obs=None)
    assert list(one.obs.columns) == ["drug", "n_profiles"]
    assert list(one.obs_names) == ["x", "y"]
    np.testing.assert_allclose(one.X[0], replicates.X[[0, 1, 2, 5]].mean(axis=0))
    listed = pk.pp.aggregate(replicates, keep_obs=["well"])
    assert listed.obs["well"].tolist() == ["w0", "w3", "w5", "w6"]  # first row's value
    replicates.layers["raw"] = replicates.X * 10
    from_layer = pk.pp.aggregate(replicates, layer="raw")
    np.testing.assert_allclose(from_layer.X, pk.pp.aggregate(replicates).X * 10, rtol=1e-6)
    # missing values in a 'by' column form their own group instead of being dropped
    replicates.obs["dose"] = [np.nan] * 3 + [1.0] * 7
    by_dose = pk.pp.aggregate(replicates, by=["dose"])
    assert by_dose.obs["n_profiles"].tolist() == [7, 3]
    assert list(by_dose.obs_names) == ["1.0", "nan"]


def test_aggregate_errors(replicates):
    snap = _snapshot(replicates)
    with pytest.raises(MissingColumnError, match="plate"):
        pk.pp.aggregate(replicates, by=("plate", "drug"))
    with pytest.raises(PerturbkitInputError, match="method='average'"):
        pk.pp.aggregate(replicates, method="average")
    with pytest.raises(PerturbkitInputError, match="by= is empty"):
        pk.pp.aggregate(replicates, by=[])
    with pytest.raises(MissingColumnError, match="nope"):
        pk.pp.aggregate(replicates, keep_obs=["nope"])
    _assert_unchanged(replicates, snap)
    bad = replicates.copy()
    bad.X[2, 1] = np.nan
    with pytest.raises(NonFiniteError, match="NaN"):
        pk.pp.aggregate(bad)
    with pytest.raises(EmptyGroupError):
        pk.pp.aggregate(replicates[:0].copy())


# --------------------------------------------------------------------------------------------------- Scaler


@pytest.fixture
def matrix():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 6)) * np.array([1, 2, 5, 0.5, 10, 1]) + np.array([0, 1, -3, 2, 0, 0])
    X[:, 5] = 4.0  # a constant feature
    return X


@pytest.mark.parametrize("method", ["maxabs", "minmax", "zscore"])
@pytest.mark.parametrize("per_feature", [True, False])
def test_scaler_round_trip_and_reapply(matrix, method, per_feature):
    scaler = pk.pp.Scaler(method, per_feature=per_feature)
    Z = scaler.fit_transform(matrix)
    assert np.isfinite(Z).all()
    np.testing.assert_allclose(scaler.inverse_transform(Z), matrix, atol=1e-12)
    new = matrix[:10] * 1.5 + 0.3
    # re-applying the stored fit to new data: same parameters, identical output
    again = pk.pp.Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert again == scaler
    np.testing.assert_array_equal(again.transform(new), scaler.transform(new))
    np.testing.assert_allclose(scaler.transform(new), (new - scaler.offset_) / scaler.scale_)


def test_scaler_ranges(matrix):
    Z = pk.pp.Scaler("maxabs").fit_transform(matrix)
    np.testing.assert_allclose(np.abs(Z).max(axis=0), 1.0)
    Zg = pk.pp.Scaler("maxabs", per_feature=False).fit_transform(matrix)
    assert np.abs(Zg).max() == pytest.approx(1.0)
    assert (np.abs(Zg).max(axis=0) < 1).sum() == 5  # one global max: only the widest feature reaches 1
    np.testing.assert_allclose(Zg, matrix / np.abs(matrix).max())
    M = pk.pp.Scaler("minmax").fit_transform(matrix)
    np.testing.assert_allclose(M[:, :5].min(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(M[:, :5].max(axis=0), 1)
    np.testing.assert_array_equal(M[:, 5], 0)  # constant feature → 0, no division by zero
    Mg = pk.pp.Scaler("minmax", per_feature=False).fit_transform(matrix)
    assert Mg.min() == pytest.approx(0) and Mg.max() == pytest.approx(1)
    S = pk.pp.Scaler("zscore").fit_transform(matrix)
    np.testing.assert_allclose(S[:, :5].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(S[:, :5].std(axis=0), 1)
    np.testing.assert_array_equal(S[:, 5], 0)


def test_scaler_torch_and_dtypes(matrix, tmp_path):
    torch = pytest.importorskip("torch")
    scaler = pk.pp.Scaler("zscore").fit(matrix)
    assert scaler.transform(matrix.astype(np.float32)).dtype == np.float32
    assert scaler.transform(matrix).dtype == np.float64
    t = torch.tensor(matrix, dtype=torch.float32, requires_grad=True)
    out = scaler.transform(t)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.detach().numpy(), scaler.transform(matrix), rtol=1e-5, atol=1e-5)
    out.sum().backward()  # differentiable
    assert t.grad is not None
    back = scaler.inverse_transform(out.detach().double())
    assert back.dtype == torch.float64
    np.testing.assert_allclose(back.numpy(), matrix, atol=1e-5)
    # fitting on a tensor equals fitting on the array; the dict survives torch.save(weights_only=True)
    assert pk.pp.Scaler("zscore").fit(torch.tensor(matrix)) == scaler
    torch.save({"scaler": scaler.to_dict()}, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    assert pk.pp.Scaler.from_dict(loaded["scaler"]) == scaler


def test_scaler_equality_repr_and_errors(matrix):
    a = pk.pp.Scaler("maxabs").fit(matrix)
    assert a != pk.pp.Scaler("maxabs", per_feature=False).fit(matrix)
    assert a != pk.pp.Scaler("maxabs").fit(matrix * 2)
    assert a != pk.pp.Scaler("minmax").fit(matrix)
    assert pk.pp.Scaler() == pk.pp.Scaler()
    assert "maxabs" in repr(a) and "6 features" in repr(a)
    assert "not fitted" in repr(pk.pp.Scaler())
    d = a.to_dict()
    assert d["method"] == "maxabs" and d["per_feature"] is True and d["n_features"] == 6
    assert all(isinstance(v, float) for v in d["scale"])
    with pytest.raises(PerturbkitInputError, match="not fitted"):
        pk.pp.Scaler().transform(matrix)
    with pytest.raises(GeneMismatchError, match="6 features but the data has 5"):
        a.transform(matrix[:, :5])
    with pytest.raises(GeneMismatchError):
        pk.pp.Scaler(per_feature=False).fit(matrix).inverse_transform(matrix[:, :5])
    with pytest.raises(PerturbkitInputError, match="method='robust'"):
        pk.pp.Scaler("robust")
    bad = matrix.copy()
    bad[0, 0] = np.inf
    with pytest.raises(NonFiniteError):
        pk.pp.Scaler().fit(bad)
    with pytest.raises(PerturbkitInputError, match="keys"):
        pk.pp.Scaler.from_dict({"method": "maxabs"})


# --------------------------------------------------------------------------------------------------- scale()


def test_scale_in_place_copy_and_uns(replicates):
    snap = _snapshot(replicates)
    out = pk.pp.scale(replicates, method="minmax", copy=True)
    _assert_unchanged(replicates, snap)
    assert out.X.dtype == np.float32
    np.testing.assert_allclose(out.X, pk.pp.Scaler("minmax").fit_transform(replicates.X.astype(np.float64)), rtol=1e-6)
    entry = out.uns["scale"]
    assert entry["method"] == "minmax" and entry["per_feature"] is True and entry["fitted_here"] is True
    assert entry["params"] == pk.pp.Scaler("minmax").fit(replicates.X).to_dict()
    assert pk.pp.Scaler.from_uns(out) == pk.pp.Scaler("minmax").fit(replicates.X)

    assert pk.pp.scale(replicates, per_feature=False, key_added="global") is None
    np.testing.assert_allclose(replicates.X, snap["X"] / 8.0)  # one global max |x| = 8
    assert replicates.uns["global"]["params"]["scale"] == 8.0
    pk.pp.unscale(replicates, key="global")
    np.testing.assert_allclose(replicates.X, snap["X"], rtol=1e-6)
    assert "global" not in replicates.uns
    with pytest.raises(PerturbkitInputError, match="pk.pp.scale"):
        pk.pp.unscale(replicates, key="global")


def test_scale_reapplies_stored_params_to_new_data(replicates, tmp_path):
    train = replicates[:6].copy()
    test = replicates[6:].copy()
    pk.pp.scale(train, method="zscore")
    # through an .h5ad round trip the stored dict comes back with numpy arrays; it still rebuilds the same Scaler
    train.write_h5ad(tmp_path / "train.h5ad")
    stored = ad.read_h5ad(tmp_path / "train.h5ad")
    assert pk.pp.Scaler.from_uns(stored) == pk.pp.Scaler.from_uns(train)
    fitted = pk.pp.Scaler("zscore").fit(replicates.X[:6].astype(np.float64))
    expected = fitted.transform(replicates.X[6:].astype(np.float64))
    for given in (stored.uns["scale"], pk.pp.Scaler.from_uns(train), train.uns["scale"]["params"]):
        out = pk.pp.scale(test, scaler=given, copy=True)
        np.testing.assert_allclose(out.X, expected, rtol=1e-5, atol=1e-6)
        assert out.uns["scale"]["fitted_here"] is False
    back = pk.pp.unscale(pk.pp.scale(test, scaler=train.uns["scale"], copy=True), copy=True)
    np.testing.assert_allclose(back.X, test.X, atol=1e-5)
    # the layer option reads from a layer and writes X
    test.layers["raw"] = test.X * 2
    out = pk.pp.scale(test, scaler=train.uns["scale"], layer="raw", copy=True)
    np.testing.assert_allclose(out.X, pk.pp.Scaler.from_uns(train).transform(test.X * 2.0), rtol=1e-5)


def test_scale_errors_leave_adata_unchanged(replicates):
    snap = _snapshot(replicates)
    other = pk.pp.Scaler().fit(np.ones((3, 5)))
    with pytest.raises(GeneMismatchError, match="5 features but the data has 4"):
        pk.pp.scale(replicates, scaler=other)
    with pytest.raises(PerturbkitInputError, match="not fitted"):
        pk.pp.scale(replicates, scaler=pk.pp.Scaler())
    with pytest.raises(PerturbkitInputError, match="scaler="):
        pk.pp.scale(replicates, scaler="maxabs")
    with pytest.raises(PerturbkitInputError, match="layers has no 'raw'"):
        pk.pp.scale(replicates, layer="raw")
    _assert_unchanged(replicates, snap)
    replicates.X[0, 0] = np.nan
    snap = _snapshot(replicates)
    with pytest.raises(NonFiniteError):
        pk.pp.scale(replicates)
    _assert_unchanged(replicates, snap)


# --------------------------------------------------------------------------------------------------- feature_select


@pytest.fixture
def morphology():
    """300 wells; five good features and one planted bad feature per reason."""
    rng = np.random.default_rng(7)
    n = 300
    good = [
        "Cells_AreaShape_Area",
        "Cells_Intensity_MeanIntensity_DNA",
        "Nuclei_Texture_Contrast_ER",
        "Cytoplasm_Granularity_1_Mito",
        "Cells_Correlation_Correlation_DNA_RNA",
    ]
    cols = {name: rng.normal(size=n) for name in good}
    cols["Cells_Constant"] = np.full(n, 3.0)  # zero variance
    near = np.zeros(n)
    near[0] = 1.0
    cols["Cells_NearConstant"] = near  # variance 0.0033 passes; freq ratio 1/299 < 0.05 fails
    missing = rng.normal(size=n)
    missing[:60] = np.nan  # 20% missing
    cols["Cells_Missing"] = missing
    outlier = rng.normal(size=n)
    outlier[5] = 40.0
    cols["Cells_Outlier"] = outlier
    cols["Nuclei_Correlation_Manders_AGP_DNA"] = rng.normal(size=n)  # in pycytominer's default blocklist
    cols["Nuclei_Granularity_16_RNA"] = rng.normal(size=n)  # in pycytominer's default blocklist
    X = np.column_stack(list(cols.values())).astype(np.float32)
    obs = pd.DataFrame({"plate": ["p1"] * n}, index=[f"w{i}" for i in range(n)])
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=list(cols))), good


ALL_BUT_CORRELATION = ["variance_threshold", "frequency_threshold", "drop_na_columns", "drop_outliers", "blocklist"]


def test_feature_select_drops_exactly_the_planted_features(morphology):
    adata, good = morphology
    snap = _snapshot(adata)
    out = pk.pp.feature_select(adata, operations=ALL_BUT_CORRELATION, outlier_cutoff=15, copy=True)  # NaN is fine
    _assert_unchanged(adata, snap)
    assert list(out.var_names) == good
    np.testing.assert_array_equal(out.X, adata[:, good].X)
    record = out.uns["feature_select"]
    assert record["dropped"] == {
        "variance_threshold": ["Cells_Constant"],
        "frequency_threshold": ["Cells_NearConstant"],
        "drop_na_columns": ["Cells_Missing"],
        "drop_outliers": ["Cells_Outlier"],
        "blocklist": ["Nuclei_Correlation_Manders_AGP_DNA", "Nuclei_Granularity_16_RNA"],
    }
    assert record["n_features_before"] == 11 and record["n_features_after"] == 5
    assert record["blocklist"] == "pycytominer default (55 features)" and record["outlier_cutoff"] == 15.0
    assert record["samples"] == "all" and record["n_samples"] == 300
    assert pk.pp.feature_select(adata, operations=ALL_BUT_CORRELATION, outlier_cutoff=15) is None  # in place
    assert list(adata.var_names) == good
    assert adata.uns["feature_select"]["dropped"] == record["dropped"]


def test_feature_select_options(morphology, tmp_path):
    adata, good = morphology
    with pytest.warns(UserWarning, match="60 missing"):  # Cells_Missing is kept when "drop_na_columns" is not run
        out = pk.pp.feature_select(
            adata, operations=["blocklist"], blocklist=["Cells_Outlier", "not_a_feature"], copy=True
        )
    assert "Cells_Outlier" not in out.var_names and out.n_vars == 10
    path = tmp_path / "block.txt"
    path.write_text("# problematic\nCells_Constant\n\nCells_Missing\n")
    out = pk.pp.feature_select(adata, operations="blocklist", blocklist=path, copy=True)
    assert out.uns["feature_select"]["dropped"]["blocklist"] == ["Cells_Constant", "Cells_Missing"]
    assert out.uns["feature_select"]["blocklist"] == str(path)
    with pytest.warns(UserWarning, match="60 missing"):
        out = pk.pp.feature_select(adata, operations=["drop_outliers"], outlier_cutoff=50, copy=True)
    assert out.n_vars == 11
    # a feature with one missing value: kept (with a warning) under the default na_cutoff, dropped with na_cutoff=0
    adata.X[3, 0] = np.nan
    with pytest.warns(UserWarning, match="na_cutoff=0"):
        kept = pk.pp.feature_select(adata, operations=ALL_BUT_CORRELATION, outlier_cutoff=15, copy=True)
    assert good[0] in kept.var_names
    dropped = pk.pp.feature_select(adata, operations=ALL_BUT_CORRELATION, outlier_cutoff=15, na_cutoff=0, copy=True)
    assert list(dropped.var_names) == good[1:]
    assert np.isfinite(dropped.X).all()


def test_feature_select_errors(morphology, tmp_path):
    adata, _ = morphology
    snap = _snapshot(adata)
    with pytest.raises(PerturbkitInputError, match="'varience'"):
        pk.pp.feature_select(adata, operations=["varience"])
    with pytest.raises(PerturbkitInputError, match="renamed.*'drop_outliers'"):
        pk.pp.feature_select(adata, operations=["outlier"])
    with pytest.raises(PerturbkitInputError, match="not a readable file"):
        pk.pp.feature_select(adata, operations="blocklist", blocklist=tmp_path / "missing.txt")
    with pytest.raises(PerturbkitInputError, match="drop all 11 features"):
        pk.pp.feature_select(adata, operations=["drop_outliers"], outlier_cutoff=0)
    _assert_unchanged(adata, snap)


# --------------------------------------------------------------------------------------------------- control_diff


@pytest.fixture
def plates():
    X = np.array(
        [
            [1, 2],  # p1 control
            [3, 4],  # p1 control
            [10, 10],  # p1 treated
            [0, 0],  # p2 control
            [5, 7],  # p2 treated
            [6, 6],  # p2 treated
        ],
        dtype=np.float32,
    )
    obs = pd.DataFrame(
        {
            "plate": ["p1", "p1", "p1", "p2", "p2", "p2"],
            "cell_line": ["A", "A", "B", "B", "A", "B"],
            "control": [True, True, False, True, False, False],
        },
        index=[f"w{i}" for i in range(6)],
    )
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=["g1", "g2"]))


def test_control_diff_per_plate(plates):
    snap = _snapshot(plates)
    out = pk.pp.control_diff(plates, copy=True)
    _assert_unchanged(plates, snap)
    # p1 control mean (2, 3); p2 control mean (0, 0)
    np.testing.assert_allclose(out.X, [[-1, -1], [1, 1], [8, 7], [0, 0], [5, 7], [6, 6]])
    for plate in ("p1", "p2"):
        rows = (out.obs["plate"] == plate) & out.obs["control"]
        np.testing.assert_allclose(out.X[rows.to_numpy()].mean(axis=0), 0, atol=1e-7)
    record = out.uns["control_diff"]
    assert record["groupby"] == "plate" and record["control_key"] == "control" and record["key_added"] is None
    assert record["groups"] == ["p1", "p2"]
    assert record["n_controls"].tolist() == [2, 1]
    np.testing.assert_allclose(record["control_means"], [[2, 3], [0, 0]])
    assert out.X.dtype == np.float32


def test_control_diff_other_groupings_and_layer(plates):
    snap = _snapshot(plates)
    out = pk.pp.control_diff(plates, groupby=None, copy=True)
    np.testing.assert_allclose(out.X, plates.X - np.array([4 / 3, 2]), rtol=1e-6)
    assert out.uns["control_diff"]["groups"] == ["all"]
    out = pk.pp.control_diff(plates, groupby="cell_line", copy=True)
    # A controls: rows 0, 1 → (2, 3); B controls: row 3 → (0, 0)
    np.testing.assert_allclose(out.X, [[-1, -1], [1, 1], [10, 10], [0, 0], [3, 4], [6, 6]])
    assert pk.pp.control_diff(plates, key_added="delta") is None
    np.testing.assert_array_equal(plates.X, snap["X"])  # X untouched when key_added is given
    np.testing.assert_allclose(plates.layers["delta"][2], [8, 7])
    # reading a layer: the delta layer's controls already average 0 per plate, so it comes back unchanged in X
    again = pk.pp.control_diff(plates, layer="delta", copy=True)
    np.testing.assert_allclose(again.X, plates.layers["delta"], atol=1e-6)
    assert again.uns["control_diff"]["layer"] == "delta"
    # several grouping columns: the group (p1, B) has no control
    with pytest.raises(EmptyGroupError, match=r"obs columns \['plate', 'cell_line'\].*p1\|B"):
        pk.pp.control_diff(plates, groupby=["plate", "cell_line"])


def test_control_diff_errors(plates):
    snap = _snapshot(plates)
    no_ctrl = plates.copy()
    no_ctrl.obs.loc["w3", "control"] = False  # plate p2 loses its only control
    snap_no = _snapshot(no_ctrl)
    with pytest.raises(EmptyGroupError, match=r"obs\['plate'\].*\['p2'\].*groupby='cell_line'"):
        pk.pp.control_diff(no_ctrl)
    _assert_unchanged(no_ctrl, snap_no)
    with pytest.raises(MissingColumnError, match="'batch'"):
        pk.pp.control_diff(plates, groupby="batch")
    with pytest.raises(MissingColumnError, match="'is_dmso'"):
        pk.pp.control_diff(plates, control_key="is_dmso")
    none = plates.copy()
    none.obs["control"] = False
    with pytest.raises(EmptyGroupError, match="No control rows"):
        pk.pp.control_diff(none)
    text = plates.copy()
    text.obs["control"] = ["yes", "yes", "no", "yes", "no", "no"]
    with pytest.raises(ColumnTypeError):
        pk.pp.control_diff(text)
    with pytest.raises(PerturbkitInputError, match="layers has no"):
        pk.pp.control_diff(plates, layer="raw")
    _assert_unchanged(plates, snap)
    plates.X[4, 1] = np.inf
    snap = _snapshot(plates)
    with pytest.raises(NonFiniteError):
        pk.pp.control_diff(plates)
    _assert_unchanged(plates, snap)


def test_pp_namespace_exports():
    for name in (
        "validate",
        "aggregate",
        "scale",
        "unscale",
        "Scaler",
        "feature_select",
        "control_diff",
        "annotate",
        "normalize",
        "drop_missing",
        "impute",
    ):
        assert name in pk.pp.__all__
    assert pk.pp.validate is pk._schema.validate
