"""pk.pp against the field's reference tools: MODZ (cmapPy 4.0.1, pycytominer 1.7.1), feature_select and normalize
(pycytominer 1.7.1), LINCS robust z-score (cmapPy), on the real LINCS Cell Painting plate.

The reference outputs are stored in tests/fixtures/reference (see its README for how they were made); the tools
themselves are never imported here.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import perturbkit as pk
from perturbkit._schema import EmptyGroupError, NonFiniteError, PerturbkitInputError
from perturbkit.pp._aggregate import _modz_weights
from perturbkit.pp._feature_select import default_blocklist

REF = Path(__file__).parent / "fixtures" / "reference"
PLATE = "cell_painting/SQ00015054_normalized_feature_select.csv.gz"
CONTROL_QUERY = "Metadata_broad_sample_type == 'control'"


def _ref(name: str, **kwargs) -> pd.DataFrame:
    return pd.read_csv(REF / name, **kwargs)


@pytest.fixture(scope="module")
def plate_frame():
    from tests.conftest import shared_file

    return pd.read_csv(shared_file(PLATE))


def _as_adata(frame: pd.DataFrame, X=None) -> ad.AnnData:
    """The plate as pycytominer sees it: float64 features, the Metadata_* columns in obs, wells as obs names."""
    features = [c for c in frame.columns if not c.startswith("Metadata_")]
    obs = frame[[c for c in frame.columns if c.startswith("Metadata_")]].copy()
    obs.index = obs["Metadata_Well"].astype(str).to_numpy()
    obs["control"] = obs["Metadata_broad_sample_type"].eq("control")
    X = frame[features].to_numpy(np.float64) if X is None else X
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=features))


@pytest.fixture
def plate(plate_frame):
    return _as_adata(plate_frame)


def test_fixtures_are_small_and_documented():
    files = [p for p in REF.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 400_000
    readme = (REF / "README.md").read_text()
    assert "pycytominer==1.7.1" in readme and "cmapPy==4.0.1" in readme
    assert json.loads((REF / "versions_pycytominer.json").read_text())["pycytominer"] == "1.7.1"
    assert json.loads((REF / "versions_cmappy.json").read_text())["cmapPy"] == "4.0.1"


# --------------------------------------------------------------------------------------------------- MODZ
def test_modz_clips_anticorrelated_replicates():
    """LINCS clips correlations at 0: an anticorrelated replicate no longer drags its partners' weights down."""
    a = np.array([1.0, 2, 3, 4, 5, 6])
    block = np.stack([a, a + [0, 0.1, 0, 0.1, 0, 0.1], a[::-1]])[None]  # two concordant, one reversed
    w = _modz_weights(block, decimals=None)[0]
    # clipped: the concordant pair have mean correlation (1 + 0)/2, the reversed one max(0, 0.01)
    np.testing.assert_allclose(w, np.array([0.5, 0.5, 0.01]) / 1.01)
    assert w[2] < 0.01  # without clipping, every mean correlation is <= 0 and all three got weight 1/3
    np.testing.assert_array_equal(_modz_weights(block)[0], np.round(w, 4))
    # a constant replicate has no defined correlation: weight 0, the others share the weight
    flat = np.stack([a, a * 2, np.full(6, 3.0)])[None]
    np.testing.assert_array_equal(_modz_weights(flat)[0], [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(_modz_weights(np.full((1, 3, 4), 2.0))[0], np.full(3, 1 / 3))


def test_modz_matches_pycytominer_and_cmappy_by_compound_and_dose(plate):
    out = pk.pp.aggregate(plate, by=["Metadata_broad_sample", "Metadata_mmoles_per_liter"], method="modz")
    got = out.to_df()
    got.index = [
        f"{s}|{d}" for s, d in zip(out.obs["Metadata_broad_sample"], out.obs["Metadata_mmoles_per_liter"], strict=True)
    ]
    ref = _ref("modz_pycytominer_compound_dose.csv.gz")
    ref.index = [
        f"{s}|{d}" for s, d in zip(ref["Metadata_broad_sample"], ref["Metadata_mmoles_per_liter"], strict=True)
    ]
    assert list(ref.index) == ["BRD-K50691590-001-02-2|20.0", "BRD-K60230970-001-10-0|19.999", "DMSO|0.0"]
    assert ref["n_profiles"].tolist() == [12, 12, 24]
    diff = np.abs(got.loc[ref.index, plate.var_names].to_numpy() - ref[plate.var_names].to_numpy())
    assert diff.max() < 1e-6  # was 0.745 on the DMSO wells before clipping (134 anticorrelated pairs)
    cmap = _ref("modz_cmappy_compound_dose.csv.gz", index_col=0)
    np.testing.assert_allclose(
        got.loc[cmap.index, plate.var_names].to_numpy(), cmap[plate.var_names].to_numpy(), atol=1e-6
    )
    # single wells are their own consensus
    single = out.obs["n_profiles"].to_numpy() == 1
    assert single.sum() == 336
    well = plate.obs_names[
        plate.obs["Metadata_broad_sample"].eq(out.obs["Metadata_broad_sample"].iloc[np.flatnonzero(single)[0]])
        & plate.obs["Metadata_mmoles_per_liter"].eq(
            out.obs["Metadata_mmoles_per_liter"].iloc[np.flatnonzero(single)[0]]
        )
    ]
    np.testing.assert_array_equal(out.X[np.flatnonzero(single)[0]], plate[well].X[0])


def test_modz_weights_equal_cmappy_for_every_group(plate):
    weights = _ref("modz_cmappy_weights.csv.gz")
    assert weights.groupby("grouping")["group"].nunique().to_dict() == {"compound": 59, "compound_dose": 3}
    for _, group in weights.groupby(["grouping", "group"]):
        block = plate[group["well"].to_numpy()].X[None]
        np.testing.assert_array_equal(_modz_weights(block)[0], group["weight"].to_numpy())


def test_modz_matches_pycytominer_by_compound(plate):
    out = pk.pp.aggregate(plate, by="Metadata_broad_sample", method="modz")
    ref = _ref("modz_pycytominer_compound.csv.gz", index_col=0)
    got = out.to_df()
    got.index = out.obs["Metadata_broad_sample"].astype(str).to_numpy()
    assert len(ref) == 59 and set(ref.index) == set(got.index)
    diff = np.abs(got.loc[ref.index, ref.columns].to_numpy() - ref.to_numpy())
    assert diff.max() < 1e-6
    # the exact (unrounded) weights are a documented option; they move the consensus by up to ~4e-3 here
    exact = pk.pp.aggregate(plate, by="Metadata_broad_sample", method="modz", modz_weight_decimals=None).to_df()
    exact.index = got.index
    assert 1e-4 < np.abs(exact.loc[ref.index, ref.columns].to_numpy() - ref.to_numpy()).max() < 1e-2


def test_modz_options_are_checked(plate):
    with pytest.raises(PerturbkitInputError, match="modz_weight_decimals"):
        pk.pp.aggregate(plate, by="Metadata_Plate", method="modz", modz_weight_decimals=2.5)
    with pytest.raises(PerturbkitInputError, match="modz_min_weight"):
        pk.pp.aggregate(plate, by="Metadata_Plate", method="modz", modz_min_weight=-1)


# --------------------------------------------------------------------------------------------------- feature_select
_CASES = json.loads((REF / "feature_select_cases.json").read_text())
_KEYWORDS = {
    "operation": "operations",
    "noise_removal_perturb_groups": "noise_groups",
    "noise_removal_stdev_cutoff": "noise_stdev_cutoff",
}


def _with_planted_nan(X: np.ndarray) -> np.ndarray:
    X = X.copy()
    for j in range(40):
        X[: 2 * j, j] = np.nan
    return X


@pytest.mark.parametrize("case", sorted(_CASES))
def test_feature_select_keeps_what_pycytominer_keeps(plate, case):
    kwargs = dict(_CASES[case])
    if kwargs.pop("nan_plate", False):
        plate.X = _with_planted_nan(plate.X)
    kwargs = {_KEYWORDS.get(k, k): v for k, v in kwargs.items()}
    kept = _ref("feature_select_kept.csv.gz", index_col=0)[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # NaN left in the kept features
        out = pk.pp.feature_select(plate, copy=True, **kwargs)
    assert list(out.var_names) == kept.index[kept == 1].tolist()
    record = out.uns["feature_select"]
    assert record["n_features_after"] == int(kept.sum())
    assert sum(len(v) for v in record["dropped"].values()) == 454 - int(kept.sum())


def test_feature_select_real_plate_counts(shared_data):
    """The numbers of issue 10, read the way a user reads the plate (float32, perturbkit's obs columns)."""
    plate = pk.io.read_cell_painting(shared_data(PLATE))
    kept = _ref("feature_select_kept.csv.gz", index_col=0)
    # perturbkit 0.1's default operations, run by pycytominer: 311 kept (perturbkit 0.1 kept 309)
    old_defaults = ["frequency_threshold", "drop_na_columns", "drop_outliers", "blocklist"]
    out = pk.pp.feature_select(plate, operations=old_defaults, outlier_cutoff=15, copy=True)
    assert out.n_vars == 311 and list(out.var_names) == kept.index[kept["issue10__all"] == 1].tolist()
    # pycytominer's fixed blocklist drops nothing here; the old name-pattern rule dropped two Location features
    assert out.uns["feature_select"]["dropped"]["blocklist"] == []
    assert "Cytoplasm_Location_MaxIntensity_X_DNA" in out.var_names
    # the default is pycytominer's: variance_threshold only
    default = pk.pp.feature_select(plate, copy=True)
    assert default.uns["feature_select"]["operations"] == ["variance_threshold"] and default.n_vars == 454
    # samples="control" (obs['control']) equals pycytominer's query on the controls
    control = pk.pp.feature_select(plate, operations="correlation_threshold", samples="control", copy=True)
    assert control.n_vars == 264
    assert list(control.var_names) == kept.index[kept["correlation_threshold__control"] == 1].tolist()


def test_feature_select_samples_forms_agree(plate):
    by_name = pk.pp.feature_select(plate, operations="correlation_threshold", samples="control", copy=True)
    by_mask = pk.pp.feature_select(
        plate, operations="correlation_threshold", samples=plate.obs["control"].to_numpy(), copy=True
    )
    by_query = pk.pp.feature_select(plate, operations="correlation_threshold", samples=CONTROL_QUERY, copy=True)
    assert list(by_name.var_names) == list(by_mask.var_names) == list(by_query.var_names)
    assert by_query.uns["feature_select"]["samples"] == CONTROL_QUERY
    assert by_mask.uns["feature_select"]["n_samples"] == 24
    with pytest.raises(PerturbkitInputError, match="samples='controls'"):
        pk.pp.feature_select(plate, samples="controls")
    with pytest.raises(PerturbkitInputError, match="boolean array of length 384"):
        pk.pp.feature_select(plate, samples=np.ones(10, dtype=bool))
    with pytest.raises(EmptyGroupError, match="selects no rows"):
        pk.pp.feature_select(plate, samples=np.zeros(384, dtype=bool))


def test_frequency_threshold_drops_a_feature_failing_either_test():
    n = 1000
    rng = np.random.default_rng(0)
    dominant = np.zeros(n)
    dominant[:100] = rng.normal(size=100)  # 101 distinct values (unique 0.101 passes), freq ratio 1/900 fails
    two_values = np.repeat([0.0, 1.0], n // 2)  # freq ratio 1 passes, unique 2/1000 < 0.01 fails
    good = rng.normal(size=n)
    adata = ad.AnnData(
        np.column_stack([dominant, two_values, good]), var=pd.DataFrame(index=["dominant", "two_values", "good"])
    )
    out = pk.pp.feature_select(adata, operations="frequency_threshold", copy=True)
    assert list(out.var_names) == ["good"]  # perturbkit 0.1 dropped a feature only when BOTH tests failed
    assert out.uns["feature_select"]["dropped"] == {"frequency_threshold": ["dominant", "two_values"]}
    loose = pk.pp.feature_select(adata, operations="frequency_threshold", freq_cut=0.001, unique_cut=0.001, copy=True)
    assert loose.n_vars == 3


def test_correlation_threshold_by_hand():
    rng = np.random.default_rng(1)
    a, c = rng.normal(size=(2, 200))
    b = a + 0.1 * rng.normal(size=200)  # corr(a, b) ≈ 0.995
    d = -a  # anticorrelated: the rule is signed, so d stays
    e = 0.7 * a + 0.7 * c  # correlated 0.7 with a: below 0.9
    X = np.column_stack([a, b, c, d, e])
    adata = ad.AnnData(X, var=pd.DataFrame(index=list("abcde")))
    out = pk.pp.feature_select(adata, operations="correlation_threshold", copy=True)
    # of the pair (a, b), the one with the larger summed |correlation| with all five features goes
    total = np.abs(np.corrcoef(X, rowvar=False)).sum(axis=0)
    dropped = "a" if total[0] > total[1] else "b"
    assert out.uns["feature_select"]["dropped"]["correlation_threshold"] == [dropped]
    assert set(out.var_names) == set("abcde") - {dropped}


def test_default_blocklist_is_pycytominers_fixed_list():
    names = default_blocklist()
    assert len(names) == len(set(names)) == 55
    assert names[0] == "Nuclei_Correlation_Manders_AGP_DNA" and names[-1] == "Nuclei_Granularity_16_RNA"
    assert sum(n.startswith("Nuclei_Correlation_") for n in names) == 40
    adata = ad.AnnData(
        np.random.default_rng(0).normal(size=(20, 3)),
        var=pd.DataFrame(index=["Nuclei_Granularity_14_ER", "Nuclei_Location_Center_X", "Cells_Parent_Nuclei"]),
    )
    out = pk.pp.feature_select(adata, operations="blocklist", copy=True)
    assert list(out.var_names) == ["Nuclei_Location_Center_X", "Cells_Parent_Nuclei"]


def test_feature_select_noise_removal_needs_groups(plate):
    with pytest.raises(PerturbkitInputError, match="noise_groups="):
        pk.pp.feature_select(plate, operations="noise_removal")
    with pytest.raises(pk.errors.MissingColumnError, match="'compound'"):
        pk.pp.feature_select(plate, operations="noise_removal", noise_groups="compound", noise_stdev_cutoff=0.8)
    labels = plate.obs["Metadata_broad_sample"].to_numpy()
    by_array = pk.pp.feature_select(
        plate, operations="noise_removal", noise_groups=labels, noise_stdev_cutoff=0.8, copy=True
    )
    assert by_array.n_vars == 137 and by_array.uns["feature_select"]["noise_groups"] == "array"


def test_feature_select_keeps_parents_of_views_and_refuses_backed_in_place(plate, tmp_path):
    out = pk.pp.feature_select(plate[:100], operations="correlation_threshold", copy=True)
    assert plate.n_vars == 454 and "feature_select" not in plate.uns and out.n_vars < 454
    view = plate[:100]
    with pytest.warns(UserWarning, match="view"):  # made an actual AnnData first; the parent is not changed
        pk.pp.feature_select(view, operations="correlation_threshold")
    assert view.n_vars == out.n_vars and plate.n_vars == 454 and "feature_select" not in plate.uns
    path = tmp_path / "plate.h5ad"
    plate.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    with pytest.raises(PerturbkitInputError, match="backed|file"):
        pk.pp.feature_select(backed, operations="correlation_threshold")
    out = pk.pp.feature_select(backed, operations="correlation_threshold", samples="control", copy=True)
    assert out.n_vars == 264 and not out.isbacked
    assert ad.read_h5ad(path).n_vars == 454


# --------------------------------------------------------------------------------------------------- normalize
_NORMALIZE = {
    "standardize": {"method": "standardize"},
    "robustize": {"method": "robustize"},
    "mad_robustize": {"method": "mad_robustize"},
    "spherize": {"method": "spherize"},
    "spherize_zca": {"method": "spherize", "spherize_method": "ZCA"},
    "spherize_pca": {"method": "spherize", "spherize_method": "PCA"},
    "spherize_pca_cor": {"method": "spherize", "spherize_method": "PCA-cor"},
}


@pytest.mark.parametrize("samples", ["all", "control"])
@pytest.mark.parametrize("name", sorted(_NORMALIZE))
def test_normalize_matches_pycytominer(plate, name, samples):
    ref = _ref(f"normalize_{name}_{samples}.csv.gz", index_col=0)
    out = pk.pp.normalize(plate, samples=samples, copy=True, **_NORMALIZE[name])
    assert out.uns["normalize"]["n_fit_samples"] == (384 if samples == "all" else 24)
    if "pca" in name:  # components, not features: obsm
        np.testing.assert_array_equal(out.X, plate.X)
        got = pd.DataFrame(out.obsm["X_normalize"][:, :20], index=out.obs_names, columns=ref.columns)
    else:
        got = out.to_df()
    diff = np.abs(got.loc[ref.index, ref.columns].to_numpy() - ref.to_numpy())
    assert diff.max() < 1e-6 * max(1.0, np.abs(ref.to_numpy()).max())


@pytest.mark.parametrize(
    "fixture, samples, min_mad",
    [
        ("all", "all", 0.1),
        ("control", "control", 0.1),
        ("control_min_mad_06", "control", 0.6),
    ],
)
def test_robust_zscore_matches_cmappy(plate, fixture, samples, min_mad):
    ref = _ref(f"robust_zscore_cmappy_{fixture}.csv.gz", index_col=0)
    out = pk.pp.normalize(plate, method="robust_zscore", samples=samples, min_mad=min_mad, copy=True)
    got = out.to_df().loc[ref.index, ref.columns].to_numpy()
    np.testing.assert_array_equal(np.round(got, 4), ref.to_numpy())  # cmapPy rounds to 4 decimals
    assert np.abs(got - ref.to_numpy()).max() <= 5e-5 + 1e-12
    params = out.uns["normalize"]["params"]
    F = plate.X[plate.obs["control"].to_numpy()] if samples == "control" else plate.X
    median = np.median(F, axis=0)
    np.testing.assert_allclose(params["center"], median)
    np.testing.assert_allclose(params["scale"], np.maximum(np.median(np.abs(F - median), axis=0), min_mad) * 1.4826)


def test_normalize_read_from_disk_float32_within_float_precision(shared_data):
    plate = pk.io.read_cell_painting(shared_data(PLATE))
    assert plate.X.dtype == np.float32
    ref = _ref("normalize_mad_robustize_control.csv.gz", index_col=0)
    pk.pp.normalize(plate, method="mad_robustize", samples="control")
    assert plate.X.dtype == np.float32 and plate.uns["normalize"]["samples"] == "control (control)"
    got = plate.to_df()
    got.index = plate.obs["well"].astype(str).to_numpy()
    assert np.abs(got.loc[ref.index, ref.columns].to_numpy() - ref.to_numpy()).max() < 1e-5


def test_normalize_in_place_copy_and_record(plate, tmp_path):
    X0 = plate.X.copy()
    out = pk.pp.normalize(plate, method="standardize", samples="control", copy=True)
    np.testing.assert_array_equal(plate.X, X0)
    assert "normalize" not in plate.uns
    assert pk.pp.normalize(plate, method="standardize", samples="control") is None
    np.testing.assert_array_equal(plate.X, out.X)
    controls = X0[plate.obs["control"].to_numpy()]
    np.testing.assert_allclose(plate.X[plate.obs["control"].to_numpy()].mean(axis=0), 0, atol=1e-12)
    record = plate.uns["normalize"]
    assert record["method"] == "standardize" and record["groupby"] == "None" and record["n_fit_samples"] == 24
    np.testing.assert_allclose(record["params"]["center"], controls.mean(axis=0))
    np.testing.assert_allclose(record["params"]["scale"], controls.std(axis=0))
    plate.write_h5ad(tmp_path / "normalized.h5ad")  # the record is storable
    back = ad.read_h5ad(tmp_path / "normalized.h5ad")
    np.testing.assert_array_equal(back.uns["normalize"]["params"]["scale"], record["params"]["scale"])


def test_normalize_groupby_fits_each_group_separately(plate):
    plate.obs["half"] = np.where(np.arange(plate.n_obs) < 192, "first", "second")
    both = pk.pp.normalize(plate, method="robust_zscore", groupby="half", copy=True)
    for _label, rows in (("first", slice(0, 192)), ("second", slice(192, None))):
        alone = pk.pp.normalize(plate[rows].copy(), method="robust_zscore", copy=True)
        np.testing.assert_array_equal(both.X[rows], alone.X)
    assert both.uns["normalize"]["groups"] == ["first", "second"]
    assert np.asarray(both.uns["normalize"]["params"]["center"]).shape == (2, 454)
    assert both.uns["normalize"]["n_fit_samples"] == [192, 192]
    with pytest.raises(EmptyGroupError, match="group 'first'"):
        pk.pp.normalize(plate, method="standardize", groupby="half", samples=np.arange(384) >= 192)
    with pytest.raises(PerturbkitInputError, match="groupby= is not available"):
        pk.pp.normalize(plate, method="spherize", groupby="half")


def test_normalize_missing_values_and_errors(plate):
    X = plate.X.copy()
    X[:50, 0] = np.nan
    plate.X = X
    out = pk.pp.normalize(plate, method="standardize", copy=True)
    assert np.isnan(out.X[:50, 0]).all() and np.isfinite(out.X[50:]).all()
    np.testing.assert_allclose(out.uns["normalize"]["params"]["center"][0], X[50:, 0].mean())
    with pytest.raises(NonFiniteError, match="drop_missing"):
        pk.pp.normalize(plate, method="spherize")
    X[:, 1] = np.nan
    with pytest.raises(PerturbkitInputError, match="no value among the 384"):
        pk.pp.normalize(plate, method="mad_robustize")
    X[:, 1] = np.inf
    with pytest.raises(NonFiniteError, match="infinite"):
        pk.pp.normalize(plate, method="standardize")
    with pytest.raises(PerturbkitInputError, match="method='zscore'"):
        pk.pp.normalize(plate, method="zscore")
    with pytest.raises(PerturbkitInputError, match="spherize_method='ZCA-corr'"):
        pk.pp.normalize(plate, method="spherize", spherize_method="ZCA-corr")


def test_normalize_spherize_refuses_rank_deficient_and_constant(plate):
    X = plate.X[:, :50].copy()
    X[:, 1] = X[:, 0] + X[:, 2]  # an exact linear dependency
    dependent = ad.AnnData(X, obs=plate.obs)
    with pytest.raises(PerturbkitInputError, match="rank 49"):
        pk.pp.normalize(dependent, method="spherize", spherize_method="ZCA")
    X[:, 1] = 3.0
    with pytest.raises(PerturbkitInputError, match="constant"):
        pk.pp.normalize(ad.AnnData(X, obs=plate.obs), method="spherize")
    # full rank with more samples than features: whitened, unit covariance
    fine = pk.pp.normalize(ad.AnnData(plate.X[:, :50].copy(), obs=plate.obs), method="spherize", copy=True)
    np.testing.assert_allclose(np.cov(fine.X, rowvar=False), np.eye(50), atol=1e-4)


def test_normalize_mad_zero_warns(plate):
    X = plate.X.copy()
    X[:300, 3] = 1.0  # the median is 1 and most deviations 0: MAD 0
    plate.X = X
    with pytest.warns(UserWarning, match="MAD 0"):
        pk.pp.normalize(plate, method="mad_robustize", copy=True)
    floored = pk.pp.normalize(plate, method="robust_zscore", copy=True)  # the LINCS floor keeps it bounded
    assert np.abs(floored.X[:, 3]).max() < 1e3


def test_normalize_keeps_parents_of_views_and_refuses_backed_in_place(plate, tmp_path):
    X0 = plate.X.copy()
    out = pk.pp.normalize(plate[:100], copy=True)
    np.testing.assert_array_equal(plate.X, X0)
    assert out.n_obs == 100 and "normalize" not in plate.uns
    view = plate[:100]
    with pytest.warns(UserWarning, match="view"):
        pk.pp.normalize(view)
    np.testing.assert_array_equal(plate.X, X0)
    np.testing.assert_array_equal(view.X, out.X)
    assert "normalize" not in plate.uns and "normalize" in view.uns
    path = tmp_path / "plate.h5ad"
    plate.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    with pytest.raises(PerturbkitInputError, match="backed AnnData.*copy=True"):
        pk.pp.normalize(backed)
    out = pk.pp.normalize(backed, method="robustize", copy=True)
    assert not out.isbacked
    np.testing.assert_array_equal(out.X, pk.pp.normalize(plate, method="robustize", copy=True).X)
    np.testing.assert_array_equal(ad.read_h5ad(path).X, X0)  # the file is untouched
