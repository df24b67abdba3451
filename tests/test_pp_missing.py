"""Missing values: pk.pp.drop_missing and pk.pp.impute, and the real P100 proteomics plate from file to model."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import perturbkit as pk
from perturbkit._schema import EmptyGroupError, NonFiniteError, PerturbkitInputError

P100 = "p100/P100_P-0029_MCF7_3h.gct.gz"


@pytest.fixture
def holes():
    """6 samples × 4 features; f1 misses 1 value, f2 misses 3, f3 is complete but one sample has +inf."""
    X = np.array(
        [
            [1.0, np.nan, 1.0, 0.5],
            [2.0, 4.0, np.nan, 1.5],
            [3.0, 6.0, np.nan, 2.5],
            [4.0, 8.0, np.nan, np.inf],
            [5.0, 10.0, 2.0, 4.5],
            [6.0, 12.0, 3.0, 5.5],
        ],
        dtype=np.float32,
    )
    obs = pd.DataFrame({"control": [True, True, True, False, False, False]}, index=[f"s{i}" for i in range(6)])
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=["f0", "f1", "f2", "f3"]))


def test_drop_missing_features_and_samples(holes):
    X0 = holes.X.copy()
    out = pk.pp.drop_missing(holes, copy=True)
    np.testing.assert_array_equal(holes.X, X0)  # copy=True leaves the input alone
    assert list(out.var_names) == ["f0"] and out.n_obs == 6
    record = out.uns["drop_missing"]
    assert record["dropped"] == ["f1", "f2", "f3"] and record["dropped_missing_counts"] == [1, 3, 1]
    assert record["n_missing_before"] == 5 and record["n_missing_after"] == 0
    assert record["n_features_before"] == 4 and record["n_features_after"] == 1
    # tolerate up to a fifth missing per feature: f2 (half missing) goes
    loose = pk.pp.drop_missing(holes, max_fraction=0.2, copy=True)
    assert list(loose.var_names) == ["f0", "f1", "f3"] and loose.uns["drop_missing"]["n_missing_after"] == 2
    assert pk.pp.drop_missing(holes, axis="samples") is None  # in place
    assert list(holes.obs_names) == ["s4", "s5"] and holes.n_vars == 4
    assert holes.uns["drop_missing"]["dropped"] == ["s0", "s1", "s2", "s3"]
    assert np.isfinite(holes.X).all()


def test_drop_missing_errors(holes):
    X = holes.X.copy()
    X[4, 0] = np.nan
    X[5, 2] = np.nan
    X[4:, 1] = np.nan
    full = ad.AnnData(X, obs=holes.obs)
    with pytest.raises(PerturbkitInputError, match="drop all 4 features.*impute"):
        pk.pp.drop_missing(full)
    with pytest.raises(PerturbkitInputError, match="axis='rows'"):
        pk.pp.drop_missing(holes, axis="rows")
    with pytest.raises(PerturbkitInputError, match="max_fraction=1"):
        pk.pp.drop_missing(holes, max_fraction=1)
    view = holes[:3]
    with pytest.warns(UserWarning, match="view"):
        pk.pp.drop_missing(view)
    assert list(view.var_names) == ["f0", "f3"] and holes.n_vars == 4
    assert list(pk.pp.drop_missing(holes[:3], copy=True).var_names) == ["f0", "f3"] and holes.n_vars == 4


def test_impute_median_mean_zero_constant(holes):
    med = pk.pp.impute(holes, copy=True)
    assert np.isfinite(med.X).all() and med.X.dtype == np.float32
    assert med.X[0, 1] == 8.0 and med.X[1, 2] == 2.0 and med.X[3, 3] == 2.5  # medians of the finite values
    record = med.uns["impute"]
    assert record["n_imputed"] == 5 and record["n_rows_imputed"] == 4
    assert record["features"] == ["f1", "f2", "f3"] and record["counts"] == [1, 3, 1]
    assert record["values"] == [8.0, 2.0, 2.5]
    np.testing.assert_array_equal(
        med.X[~np.isnan(holes.X) & np.isfinite(holes.X)], holes.X[np.isfinite(holes.X)]
    )  # nothing else changed
    ctrl = pk.pp.impute(holes, method="mean", samples="control", copy=True)
    assert ctrl.X[0, 1] == 5.0 and ctrl.X[1, 2] == 1.0 and ctrl.X[3, 3] == pytest.approx(1.5)
    assert ctrl.uns["impute"]["samples"] == "control (control)"
    assert pk.pp.impute(holes, method="zero", copy=True).X[1, 2] == 0.0
    const = pk.pp.impute(holes, method="constant", fill_value=-1.0, copy=True)
    assert const.X[3, 3] == -1.0 and const.uns["impute"]["fill_value"] == -1.0
    masked = pk.pp.impute(holes, samples=np.array([False, False, False, True, True, True]), copy=True)
    assert masked.X[0, 1] == 10.0


def test_impute_errors_and_in_place(holes, tmp_path):
    with pytest.raises(PerturbkitInputError, match="fill_value="):
        pk.pp.impute(holes, method="constant")
    with pytest.raises(PerturbkitInputError, match="only used with method='constant'"):
        pk.pp.impute(holes, fill_value=3.0)
    with pytest.raises(PerturbkitInputError, match="method='knn'"):
        pk.pp.impute(holes, method="knn")
    only_first = np.array([True, False, False, False, False, False])
    with pytest.raises(PerturbkitInputError, match=r"\['f1'\].*drop_missing"):
        pk.pp.impute(holes, samples=only_first)  # f1 has no value in sample s0
    with pytest.raises(EmptyGroupError, match="selects no rows"):
        pk.pp.impute(holes, samples=np.zeros(6, dtype=bool))
    before = holes.X.copy()
    with pytest.warns(UserWarning, match="view"):
        pk.pp.impute(holes[:4])
    np.testing.assert_array_equal(holes.X, before)  # the parent of the view is not changed
    assert pk.pp.impute(holes) is None
    assert np.isfinite(holes.X).all()
    holes.write_h5ad(tmp_path / "imputed.h5ad")  # the record is storable
    assert list(ad.read_h5ad(tmp_path / "imputed.h5ad").uns["impute"]["features"]) == ["f1", "f2", "f3"]


def test_impute_sparse_and_layer(holes):
    holes.layers["raw"] = holes.X.copy()
    out = pk.pp.impute(holes, layer="raw", copy=True)
    assert np.isnan(out.X).sum() == 4 and np.isfinite(out.layers["raw"]).all()
    sparse = holes.copy()
    sparse.X = sp.csr_matrix(np.nan_to_num(holes.X, nan=np.nan, posinf=np.nan))
    filled = pk.pp.impute(sparse, method="median", copy=True)
    assert sp.issparse(filled.X) and np.isfinite(filled.X.data).all()
    assert filled.uns["impute"]["n_imputed"] == 5


def test_p100_plate_to_model(shared_data, one_torch_thread):
    """The real P100 plate has a missing value: drop (or impute) it with a recorded choice, then normalise,
    aggregate and train."""
    plate = pk.io.read_gct(shared_data(P100))
    assert plate.shape == (96, 96) and int(np.isnan(plate.X).sum()) == 1
    with pytest.raises(NonFiniteError, match="1 NaN"):
        pk.pp.validate(plate)

    imputed = pk.pp.impute(plate, method="median", samples="control", copy=True)
    pk.pp.validate(imputed)
    record = imputed.uns["impute"]
    assert record["features"] == ["SMARCC1"] and record["counts"] == [1]
    controls = plate.X[plate.obs["control"].to_numpy(), list(plate.var_names).index("SMARCC1")]
    assert record["values"][0] == pytest.approx(float(np.median(controls)))

    pk.pp.drop_missing(plate)
    assert plate.uns["drop_missing"]["dropped"] == ["SMARCC1"] and plate.shape == (96, 95)
    pk.pp.validate(plate)
    pk.pp.normalize(plate, method="robust_zscore", samples="control")  # LINCS level 3 → 4 against DMSO
    assert plate.uns["normalize"]["n_fit_samples"] == 3
    np.testing.assert_allclose(np.median(plate.X[plate.obs["control"].to_numpy()], axis=0), 0, atol=1e-6)
    consensus = pk.pp.aggregate(plate, by=["drug", "dose"], method="modz")
    assert consensus.n_obs == 32 and set(consensus.uns) >= {"drop_missing", "normalize", "aggregate"}
    pk.pp.scale(consensus, method="minmax")
    vae = pk.tl.train_vae(consensus, latent_dim=2, hidden=(8,), max_epochs=3, patience=None, device="cpu", seed=0)
    assert vae is not None and consensus.obsm["X_vae"].shape == (32, 2)
    assert np.isfinite(consensus.obsm["X_vae"]).all()
