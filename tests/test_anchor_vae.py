"""The anchor VAE (the DeepCellState paper's competitor): accuracy against the naive baseline, API, saving, errors."""

import numpy as np
import pytest

import perturbkit as pk
from perturbkit._schema import MissingColumnError, PerturbkitInputError, UnknownCategoryError
from perturbkit._stats import pearson_rows
from perturbkit.models._profiles import CellDrugProfiles
from perturbkit.models.anchor_vae import AnchorVAE
from perturbkit.models.baselines import naive_cross_cell
from perturbkit.train import BaseModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"latent_dim": 4, "hidden": (16,), "max_epochs": 5}


@pytest.fixture(scope="module")
def small():
    return pk.datasets.simulate_bulk(n_drugs=40, n_genes=30, n_cell_lines=2, seed=1)


@pytest.fixture(scope="module")
def trained(small):
    return pk.tl.train_anchor_vae(small, seed=0, **TINY)


def test_beats_the_naive_baseline_on_held_out_drugs():
    # 978 genes, as L1000: with a few dozen genes the KL term outweighs what the genes can reconstruct and the
    # posterior collapses (on 60 genes the anchor VAE is at the naive baseline's level, ±0.05, over three seeds)
    adata = pk.datasets.simulate_bulk(n_drugs=150, n_genes=978, n_cell_lines=2, seed=0)
    profiles = CellDrugProfiles.from_adata(adata)
    both = np.flatnonzero(profiles.drugs_in_all(["PC3", "MCF7"]))
    test = np.sort(np.random.default_rng(0).permutation(both)[: int(0.2 * len(profiles.drugs))])
    is_test = np.zeros(len(profiles.drugs), dtype=bool)
    is_test[test] = True
    # the benchmark's call pattern (DeepCellState's evaluate_holdout): model from the profiles, train on profiles
    model = AnchorVAE(profiles.var_names, cell_lines=profiles.cell_lines, seed=0, latent_dim=16, hidden=(64, 32))
    model.train(profiles.subset(drugs=~is_test), seed=0)
    x = profiles.values[test, profiles.cell_index("PC3")]
    y = profiles.values[test, profiles.cell_index("MCF7")]
    predicted = model.predict_array(x, target="MCF7")
    assert np.isfinite(predicted).all()
    pcc, naive = np.nanmean(pearson_rows(predicted, y)), np.nanmean(pearson_rows(naive_cross_cell(x), y))
    # measured: 0.440 against 0.269 (margin 0.17); seeds 1 and 2 of the data: +0.07, +0.15
    assert pcc > naive + 0.08, (pcc, naive)
    history = model.history_frame
    assert {"train_self", "train_cross", "train_kl", "train_anchor", "validation_loss"} <= set(history.columns)


def test_record_prediction_shape_and_units(small, trained):
    record = small.uns["anchor_vae"]
    assert record["params"]["cell_lines"] == ["MCF7", "PC3"] and record["params"]["latent_dim"] == 4
    assert record["n_epochs"] == len(trained.history_frame) > 0
    pred = trained.predict(small, target="MCF7", sources=["PC3"])
    pc3 = set(small.obs.loc[(small.obs.cell_line == "PC3") & ~small.obs.control, "drug"])
    assert set(pred.obs_names) == pc3 and (pred.obs.n_sources == 1).all()
    assert list(pred.var_names) == list(small.var_names) and np.isfinite(pred.X).all()
    assert np.abs(pred.X).max() > 1.0  # the data's units, not the model's [-1, 1]
    both = trained.predict(small, target="MCF7", sources=["PC3", "MCF7"])
    a, b = (
        trained.predict(small, target="MCF7", sources=["PC3"]),
        trained.predict(small, target="MCF7", sources=["MCF7"]),
    )
    drug = both.obs_names[both.obs.n_sources == 2][0]
    np.testing.assert_allclose(both[drug].X, (a[drug].X + b[drug].X) / 2, rtol=1e-4, atol=1e-5)


def test_latent_interface_matches_prediction(small, trained):
    profiles = trained.profiles_from(small)
    x = profiles.values[profiles.present[:, 1], 1][:5]
    z = trained.encode_array(x)
    assert z.shape == (5, 4) and trained.decoder_names == ("MCF7", "PC3")
    np.testing.assert_allclose(
        trained.decode_array(z, decoder="MCF7"), trained.predict_array(x, target="MCF7"), rtol=1e-5
    )


def test_save_load_and_reversed_genes_give_identical_predictions(small, trained, tmp_path):
    loaded = BaseModel.load(trained.save(tmp_path / "anchor.pt"))
    assert type(loaded) is AnchorVAE and loaded.cell_lines == trained.cell_lines and loaded.scaler == trained.scaler
    first = trained.predict(small, target="MCF7")
    np.testing.assert_array_equal(loaded.predict(small, target="MCF7").X, first.X)
    reversed_genes = small[:, small.var_names[::-1]].copy()
    np.testing.assert_allclose(trained.predict(reversed_genes, target="MCF7").X, first.X, rtol=1e-5, atol=1e-6)


def test_same_seed_same_model(small):
    a = pk.tl.train_anchor_vae(small.copy(), seed=5, device="cpu", **TINY)
    b = pk.tl.train_anchor_vae(small.copy(), seed=5, device="cpu", **TINY)
    np.testing.assert_array_equal(a.predict(small, target="PC3").X, b.predict(small, target="PC3").X)


def test_bad_input_errors(small, trained):
    with pytest.raises(UnknownCategoryError, match=r"knows \['MCF7', 'PC3'\]"):
        trained.predict(small, target="A375")
    with pytest.raises(MissingColumnError, match="cell_key="):
        pk.tl.train_anchor_vae(small.copy(), cell_key="cell_type", **TINY)
    no_controls = small.copy()
    del no_controls.obs["control"]
    with pytest.raises(MissingColumnError, match="'control'"):
        trained.predict(no_controls, target="MCF7")
    with pytest.raises(PerturbkitInputError, match="kl_weight"):
        AnchorVAE(small.var_names, cell_lines=["MCF7"], kl_weight=-1.0)
    with pytest.raises(TypeError, match="learning_rate"):
        pk.tl.train_anchor_vae(small.copy(), learning_rate=1e-3)
