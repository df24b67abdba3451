"""Latent space arithmetic (LSA) for polypharmacology: filtering rules, simulated truth, the real plate."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA

import perturbkit as pk
from perturbkit._schema import EmptyGroupError, MissingColumnError
from perturbkit.experiments import lsa_robustness
from perturbkit.models.vae._arithmetic import RESULT_COLUMNS, IdentityModel
from perturbkit.tl._arithmetic import latent_arithmetic, lsa_groups

PLATE = "cell_painting/SQ00015054_normalized_feature_select.csv.gz"


@pytest.fixture(scope="module")
def sim():
    return pk.datasets.simulate_morphology()


class OracleModel:
    """Transform = the simulator's true latent of each row; inverse = linear least squares from it to X."""

    def __init__(self, adata):
        self.latent = np.asarray(adata.obsm["latent_true"], dtype=np.float64)
        X = np.asarray(adata.X, dtype=np.float32)
        self.rows = {x.tobytes(): i for i, x in enumerate(X)}
        design = np.c_[self.latent, np.ones(len(X))]
        self.W = np.linalg.lstsq(design, X.astype(np.float64), rcond=None)[0]

    def transform(self, X):
        X = np.asarray(X, dtype=np.float32)
        return self.latent[[self.rows[x.tobytes()] for x in X]]

    def inverse_transform(self, Z):
        return np.c_[Z, np.ones(len(Z))] @ self.W


def _tiny():
    moas = (
        ["DMSO"] * 4
        + ["A"] * 3
        + ["B"] * 3
        + ["C"] * 2
        + ["A|B"] * 2
        + ["B|A"] * 2
        + ["A|B|C"] * 2
        + ["D|E"] * 2
        + ["E"] * 2
        + [None]
    )
    rng = np.random.default_rng(0)
    obs = pd.DataFrame({"moa": moas}, index=[f"r{i}" for i in range(len(moas))])
    return ad.AnnData(rng.normal(size=(len(moas), 5)).astype(np.float32), obs=obs)


# ---------------------------------------------------------------------------------------------------------------
# Filtering rules
# ---------------------------------------------------------------------------------------------------------------


def test_filtering_rules_on_handmade_data():
    g = lsa_groups(_tiny())
    kept = dict(zip(g.values["moa"], g.values["kept"], strict=True))
    assert kept["DMSO"] and kept["A"] and kept["B"]  # control; singles used by A|B
    assert not kept["C"]  # C is only used by the three-MOA compound
    assert not kept["A|B|C"]  # three MOAs dropped
    assert kept["D|E"] and kept["E"]  # kept, but D|E lacks D
    assert not kept[None]
    # B|A is the same group as A|B.
    assert g.pairs["group"].tolist() == ["A|B", "D|E"]
    assert g.pairs.set_index("group").loc["A|B", "n_rows"] == 4
    assert g.eligible == ["A|B"]
    assert "'D'" in g.pairs.set_index("group").loc["D|E", "reason"]
    assert int(g.kept.sum()) == 4 + 3 + 3 + 4 + 2 + 2
    assert list(g.row_group[14:16]) == ["A|B", "A|B"]


def test_tiny_result_columns_and_identity_arithmetic():
    adata = _tiny()
    res = latent_arithmetic(adata, n_shuffles=5)
    assert list(res.columns) == RESULT_COLUMNS
    assert res.index.tolist() == ["A|B"]
    row = res.loc["A|B"]
    X, moa = adata.X.astype(np.float64), adata.obs["moa"]
    pred = X[moa == "A"].mean(0) - X[moa == "DMSO"].mean(0) + X[moa == "B"].mean(0)
    real = X[moa.isin(["A|B", "B|A"]).to_numpy()].mean(0)
    assert row["l2"] == pytest.approx(np.linalg.norm(pred - real), rel=1e-6)
    assert row["pearson"] == pytest.approx(np.corrcoef(pred, real)[0, 1], rel=1e-6)
    assert (row["A"], row["B"], row["n_rows"], row["n_rows_A"]) == ("A", "B", 4, 3)
    shuffled = np.asarray(row["l2_shuffled"])
    assert shuffled.shape == (5,)
    assert row["z"] == pytest.approx((row["l2"] - shuffled.mean()) / shuffled.std(ddof=1))
    assert row["p_empirical"] == pytest.approx((1 + (shuffled <= row["l2"]).sum()) / 6)
    # Same seed, same shuffles; an identity model object gives the same numbers as model=None.
    again = latent_arithmetic(adata, model=IdentityModel(), n_shuffles=5)
    np.testing.assert_allclose(again["l2_shuffled"].iloc[0], shuffled)


# ---------------------------------------------------------------------------------------------------------------
# Simulated additive polypharmacology
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [None, "pca", "fitted_pca"])
def test_simulated_arithmetic_beats_shuffled(sim, model):
    if model == "fitted_pca":
        model = PCA(10, random_state=0).fit(sim.X)
    res = latent_arithmetic(sim, model=model)
    assert len(res) == 12
    assert (res["z"] < 0).mean() >= 0.75
    assert res["l2"].mean() < 0.7 * res["l2_shuffled_mean"].mean()
    assert res["pearson"].mean() > res["pearson_shuffled_mean"].mean() + 0.3
    assert np.isfinite(res[["l2", "pearson", "z", "p"]].to_numpy()).all()
    info = sim.uns["latent_arithmetic"]
    assert info["n_eligible"] == 12 and info["n_shuffles"] == 10


def test_oracle_latent_beats_shuffled_by_wide_margin(sim):
    res = latent_arithmetic(sim, model=OracleModel(sim))
    assert (res["z"] < -3).all()
    assert res["l2"].mean() < 0.5 * res["l2_shuffled_mean"].mean()
    assert (res["p"] < 1e-3).all()
    pca = latent_arithmetic(sim, model="pca")
    assert res["l2"].mean() < pca["l2"].mean()


def test_robustness_with_pca(sim):
    res = latent_arithmetic(sim, model=PCA(10, random_state=0).fit(sim.X))
    rob = lsa_robustness(sim, train=lambda a: PCA(10, random_state=0).fit(a.X), result=res, n_remove=3)
    assert rob["removed"].sum() == 3
    assert set(rob.loc[rob["removed"], "group"]) == set(res.nsmallest(3, "z")["group"])
    assert np.isfinite(rob[["rank_before", "rank_after"]].to_numpy()).all()
    assert rob.attrs["n_compared"] == 9
    assert np.isfinite(rob.attrs["spearman"]) and rob.attrs["spearman"] > 0
    reduced = lsa_robustness(sim, train=lambda a: PCA(10, random_state=0).fit(a.X), result=res, evaluate_on="reduced")
    assert reduced["rank_after"].isna().sum() >= 3  # the removed groups (and those losing a part) drop out


# ---------------------------------------------------------------------------------------------------------------
# Real Cell Painting plate
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plate():
    from tests.conftest import shared_file

    adata = pk.io.read_cell_painting(shared_file(PLATE))
    adata = pk.pp.feature_select(adata, copy=True)
    pk.pp.scale(adata, method="minmax")
    return adata


@pytest.mark.parametrize("model", [None, "pca"])
def test_real_plate_reports_no_eligible_group(plate, model):
    adata = plate.copy()
    with pytest.warns(UserWarning, match="No A|B is eligible"):
        res = latent_arithmetic(adata, model=model)
    assert res.empty and list(res.columns) == RESULT_COLUMNS
    msg = res.attrs["message"]
    assert "NFkB pathway inhibitor" in msg and "platelet activating factor receptor antagonist" in msg
    assert adata.uns["latent_arithmetic"]["n_eligible"] == 0
    assert adata.uns["latent_arithmetic"]["message"] == msg
    g = lsa_groups(adata)
    assert len(g.pairs) == 7 and not g.pairs["eligible"].any()
    assert "Bcr-Abl kinase inhibitor|KIT inhibitor|PDGFR tyrosine kinase receptor inhibitor" in set(
        g.values.loc[g.values["kind"] == "multi", "moa"]
    )


def test_real_plate_aggregated_per_compound_dose(plate):
    level5 = pk.pp.aggregate(plate, by=["drug", "dose"])
    with pytest.warns(UserWarning, match="No A|B is eligible"):
        res = latent_arithmetic(level5, model="pca")
    assert res.empty and "lacks 'NFkB pathway inhibitor'" in res.attrs["message"]


@pytest.mark.parametrize("model", [None, "pca"])
def test_relabelled_plate_gives_finite_row(plate, model):
    adata = plate.copy()
    moa = adata.obs["moa"].astype(object).copy()
    moa[moa == "EGFR inhibitor"] = "RAF inhibitor"
    moa[moa.isin(["hepatocyte growth factor receptor inhibitor", "focal adhesion kinase inhibitor"])] = (
        "VEGFR inhibitor"
    )
    adata.obs["moa"] = moa
    res = latent_arithmetic(adata, model=model)
    assert res.index.tolist() == ["RAF inhibitor|VEGFR inhibitor"]
    row = res.iloc[0]
    assert (row["n_rows"], row["n_rows_A"], row["n_rows_B"]) == (6, 6, 12)
    assert np.isfinite([row["l2"], row["pearson"], row["z"], row["p"]]).all()
    assert len(row["l2_shuffled"]) == 10


# ---------------------------------------------------------------------------------------------------------------
# Errors and purity
# ---------------------------------------------------------------------------------------------------------------


def test_errors():
    adata = _tiny()
    with pytest.raises(MissingColumnError, match="moa"):
        latent_arithmetic(adata, moa_key="mechanism")
    with pytest.raises(EmptyGroupError, match="control="):
        latent_arithmetic(adata, control="vehicle")
    with pytest.raises(pk._schema.PerturbkitInputError, match="transform"):
        latent_arithmetic(adata, model=object())


def test_input_unchanged(sim):
    adata = sim[np.random.default_rng(0).permutation(sim.n_obs)[:2000]].copy()
    X, obs = adata.X.copy(), adata.obs.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        latent_arithmetic(adata, model="pca", n_shuffles=3)
    np.testing.assert_array_equal(adata.X, X)
    pd.testing.assert_frame_equal(adata.obs, obs)
