"""DeepCellState: accuracy against baselines on simulated truth, prediction API, persistence, errors."""

import anndata
import numpy as np
import pandas as pd
import pytest

import perturbkit as pk
from perturbkit._schema import GeneMismatchError, MissingColumnError, UnknownCategoryError
from perturbkit.models._profiles import CellDrugProfiles
from perturbkit.models.deepcellstate import DeepCellState, compare_to_baseline

TINY = {"latent_dim": 16, "hidden": (64, 32), "max_epochs": 15, "max_rounds": 3}


@pytest.fixture(scope="module")
def bulk():
    return pk.datasets.simulate_bulk()


@pytest.fixture(scope="module")
def small():
    return pk.datasets.simulate_bulk(n_drugs=80, n_genes=60, seed=1)


@pytest.fixture(scope="module")
def cv(bulk):
    # two folds of the drug-held-out 10-fold split keep CI short; the full run is benchmarks/deepcellstate.py
    return pk.tl.cross_validate_deepcellstate(bulk, source="PC3", target="MCF7", n_folds=10, folds=[0, 1])


def test_cross_validation_beats_naive_baseline_and_ridge(cv):
    assert list(cv.columns) == ["fold", "drug", "moa", "pcc", "baseline_pcc", "ridge_pcc"]
    assert set(cv.fold) == {0, 1} and cv.drug.is_unique
    summary = compare_to_baseline(cv)
    assert summary.fold_increase >= 1.8, summary  # the paper: 2.14
    assert summary.p_value < 1e-6
    assert cv.pcc.mean() > cv.ridge_pcc.mean() + 0.02, cv[["pcc", "ridge_pcc"]].mean()


def test_moa_split_holds_out_whole_families(bulk):
    profiles = CellDrugProfiles.from_adata(bulk)
    from perturbkit.models.deepcellstate._evaluation import assign_folds

    candidates = np.flatnonzero(profiles.drugs_in_all(["PC3", "MCF7"]))
    folds = assign_folds(profiles, candidates, n_folds=5, split="moa", seed=0)
    frame = pd.DataFrame({"moa": profiles.moa.iloc[candidates].to_numpy(), "fold": folds})
    assert frame.groupby("moa").fold.nunique().max() == 1
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= frame.moa.value_counts().max()


def test_multi_source_beats_single_source():
    adata = pk.datasets.simulate_bulk(n_cell_lines=3, seed=2)
    profiles = CellDrugProfiles.from_adata(adata)
    cells = list(profiles.cell_lines)
    target, sources = "MCF7", [c for c in cells if c != "MCF7"]
    from perturbkit.models.deepcellstate import evaluate_holdout

    candidates = np.flatnonzero(profiles.drugs_in_all(cells))
    test = np.random.default_rng(0).permutation(candidates)[:40]
    one = evaluate_holdout(profiles, test, source=sources[0], target=target, ridge=False)
    several = evaluate_holdout(profiles, test, source=sources, target=target, ridge=False)
    assert several.pcc.mean() > one.pcc.mean() + 0.01, (several.pcc.mean(), one.pcc.mean())
    assert several.baseline_pcc.mean() > one.baseline_pcc.mean()  # averaging sources denoises the baseline too


@pytest.fixture(scope="module")
def trained(small):
    return pk.tl.train_deepcellstate(small, seed=0, **TINY)


def test_train_records_settings_and_history(small, trained):
    record = small.uns["deepcellstate"]
    assert record["params"]["cell_lines"] == ["MCF7", "PC3"] and record["params"]["latent_dim"] == 16
    assert record["n_epochs"] == len(trained.history_frame) > 0
    stages = set(trained.history_frame.stage.str.split(":").str[0])
    assert {"pretrain", "rounds", "decoder"} <= stages


def test_predict_returns_input_units_one_row_per_source_drug(small, trained):
    pred = trained.predict(small, target="MCF7", sources=["PC3"])
    pc3_drugs = set(small.obs.loc[(small.obs.cell_line == "PC3") & ~small.obs.control, "drug"])
    assert set(pred.obs_names) == pc3_drugs
    assert (pred.obs.sources == "PC3").all() and (pred.obs.n_sources == 1).all()
    assert list(pred.var_names) == list(small.var_names)
    # unscaled: the scale of the predictions matches the data's, not [-1, 1]
    data_scale = np.abs(small.X[~small.obs.control.to_numpy()]).max()
    assert np.abs(pred.X).max() > 0.2 * data_scale > 1.0
    # several sources: each decoded, outputs averaged
    both = trained.predict(small, target="MCF7", sources=["PC3", "MCF7"])
    one_a = trained.predict(small, target="MCF7", sources=["PC3"])
    one_b = trained.predict(small, target="MCF7", sources=["MCF7"])
    drug = both.obs_names[both.obs.n_sources == 2][0]
    np.testing.assert_allclose(both[drug].X, (one_a[drug].X + one_b[drug].X) / 2, rtol=1e-4, atol=1e-5)


def test_unknown_target_lists_known_and_unseen_source_is_allowed(small, trained):
    with pytest.raises(UnknownCategoryError, match=r"knows \['MCF7', 'PC3'\]"):
        trained.predict(small, target="A375")
    other = small[small.obs.cell_line == "PC3"].copy()
    other.obs["cell_line"] = "A375"  # a cell line the model never saw, used as input
    pred = trained.predict(other, target="MCF7")
    assert (pred.obs.sources == "A375").all() and pred.n_obs > 0


def test_save_load_gives_identical_predictions(small, trained, tmp_path):
    path = trained.save(tmp_path / "dcs.pt")
    loaded = DeepCellState.load(path)
    assert loaded.cell_lines == trained.cell_lines and loaded.scaler == trained.scaler
    a = trained.predict(small, target="MCF7", sources=["PC3"])
    b = loaded.predict(small, target="MCF7", sources=["PC3"])
    np.testing.assert_array_equal(a.X, b.X)


def test_model_refuses_other_genes(small, trained):
    other = small.copy()
    other.var_names = [f"X{i}" for i in range(small.n_vars)]
    with pytest.raises(GeneMismatchError, match="missing from this data"):
        trained.predict(other, target="MCF7")


def test_seeded_training_is_reproducible(small):
    a = pk.tl.train_deepcellstate(small.copy(), seed=5, device="cpu", **TINY)
    b = pk.tl.train_deepcellstate(small.copy(), seed=5, device="cpu", **TINY)
    np.testing.assert_array_equal(a.predict(small, target="MCF7").X, b.predict(small, target="MCF7").X)


def test_bad_input_errors(small):
    with pytest.raises(MissingColumnError, match="cell_key="):
        pk.tl.train_deepcellstate(small, cell_key="cell_type", **TINY)
    with pytest.raises(UnknownCategoryError, match="not found"):
        pk.tl.train_deepcellstate(small, cell_lines=["MCF7", "HELA"], **TINY)
    with pytest.raises(TypeError, match="learning_rate"):
        pk.tl.train_deepcellstate(small, learning_rate=1e-3)
    bad = small.copy()
    bad.uns.pop("deepcellstate", None)
    bad.X[3, 3] = np.nan
    before = bad.copy()
    with pytest.raises(pk._schema.NonFiniteError):
        pk.tl.train_deepcellstate(bad, **TINY)
    assert "deepcellstate" not in bad.uns and np.array_equal(bad.X, before.X, equal_nan=True)


def test_fine_tune_adds_a_decoder_for_a_new_cell_line(small, trained, tmp_path):
    model = DeepCellState.load(trained.save(tmp_path / "m.pt"))
    external = small[small.obs.cell_line == "MCF7"].copy()
    external.obs["cell_line"] = "HEPG2"
    external = anndata.concat([external, small[small.obs.cell_line == "PC3"]])
    model.fine_tune(external, max_epochs=3, max_rounds=2)
    assert model.cell_lines == ["MCF7", "PC3", "HEPG2"]
    pred = model.predict(external, target="HEPG2", sources=["PC3"])
    assert pred.n_obs > 0 and np.isfinite(pred.X).all()


def test_experiments_return_tidy_frames(small):
    kw = dict(source="PC3", target="MCF7", test_fraction=0.2, train_options=TINY)
    curve = pk.experiments.deepcellstate_training_size_curve(small, fractions=(0.3, 1.0), **kw)
    assert list(curve.fraction) == [0.3, 1.0] and {"pcc", "baseline_pcc", "ridge_pcc"} <= set(curve.columns)
    assert curve.baseline_pcc.nunique() == 1  # same test drugs for every condition
    no_latent_dim = {k: v for k, v in TINY.items() if k != "latent_dim"}
    sweep = pk.experiments.deepcellstate_latent_size_sweep(
        small, latent_dims=(4, 16), **{**kw, "train_options": no_latent_dim}
    )
    assert list(sweep.latent_dim) == [4, 16]
    abl = pk.experiments.deepcellstate_ablation(small, variants=("full", "none of the three"), **kw)
    assert list(abl.variant) == ["full", "none of the three"]
    fewer = pk.experiments.deepcellstate_fewer_profiles(small, **kw)
    assert list(fewer.removed) == ["none", "PC3", "MCF7", "both"]
    assert np.isfinite(fewer.pcc).all()


def test_loss_of_function_perturbations_are_scored_alone(small):
    adata = small.copy()
    drugs = adata.obs.loc[~adata.obs.control, "drug"].unique()
    knockdowns = set(drugs[:12])  # treat these as shRNA signatures: perturbation type is just data
    adata.obs["pert_type"] = np.where(adata.obs.drug.isin(knockdowns), "trt_sh", "trt_cp")
    lof = adata.obs.loc[adata.obs.pert_type == "trt_sh", "drug"].unique()
    cv = pk.tl.cross_validate_deepcellstate(
        adata, source="PC3", target="MCF7", n_folds=3, folds=[0], test_drugs=lof, train_options=TINY
    )
    assert set(cv.drug) <= knockdowns and len(cv) >= 2
    with pytest.raises(pk._schema.EmptyGroupError, match="test_drugs"):
        pk.tl.cross_validate_deepcellstate(adata, source="PC3", target="MCF7", test_drugs=["nope"], train_options=TINY)
