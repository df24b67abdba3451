"""scGen: a held-out cell type (single cells), the cross-cell adaptation (bulk), arithmetic, errors, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
import torch

import perturbkit as pk
from perturbkit._schema import EmptyGroupError, MissingColumnError, PerturbkitInputError, UnknownCategoryError
from perturbkit.models._profiles import CellDrugProfiles
from perturbkit.models.baselines import control_means
from perturbkit.models.scgen import ScGen, ScGenNetwork, scgen_loss
from perturbkit.tl import predict_no_change, train_scgen
from perturbkit.tl._embedding import torch_threads_kept
from perturbkit.train import BaseModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(latent_dim=32, hidden=(128, 128))


@pytest.fixture(scope="module")
def cells():
    """Log-normalised single cells of 3 cell types and 2 drugs; one drug's K562 cells held out of training."""
    adata = pk.datasets.simulate_single_cell(
        n_cells=1500, n_genes=100, n_drugs=2, n_moas=2, doses=(10.0,), lfc_scale=1.5, frac_de_genes=0.25, seed=0
    )
    with torch_threads_kept():  # scanpy's numba resets the OpenMP thread count that torch shares
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
    drug, cell = sorted(adata.obs["drug"][~adata.obs["control"]].unique())[0], "K562"
    of_cell = (adata.obs["cell_line"] == cell).to_numpy()
    is_control = adata.obs["control"].to_numpy()
    held = of_cell & (adata.obs["drug"] == drug).to_numpy()
    return {
        "train": adata[~held].copy(),
        "controls": adata[of_cell & is_control].copy(),
        "truth": adata[of_cell & (is_control | held)].copy(),
        "drug": drug,
        "cell": cell,
    }


@pytest.fixture(scope="module")
def model(cells):
    return train_scgen(cells["train"], max_epochs=60, batch_size=64, **SMALL)


@pytest.fixture(scope="module")
def bulk():
    """Bulk drug profiles of 2 cell lines without controls; 20% of the drugs held out of training."""
    adata = pk.datasets.simulate_bulk(n_drugs=120, n_genes=60, n_cell_lines=2, seed=0)
    adata = adata[~adata.obs["control"].to_numpy()].copy()
    drugs = np.array(sorted(adata.obs["drug"].unique()))
    held = np.random.default_rng(0).choice(drugs, len(drugs) // 5, replace=False)
    is_held = adata.obs["drug"].isin(held).to_numpy()
    return {"train": adata[~is_held].copy(), "test": adata[is_held].copy()}


@pytest.fixture(scope="module")
def bulk_model(bulk):
    return train_scgen(bulk["train"], control_key=None, max_epochs=60, **SMALL)


def _scores(pred, truth) -> dict:
    table = pk.metrics.evaluate_response(pred, truth, groupby=["cell_line", "drug"], control="control")
    # a prediction equal to the controls has no delta to correlate: its pearson_delta is NaN, counted as 0
    return {k: float(np.nan_to_num(table[k].mean())) for k in ("pearson_delta", "r2_degs")}


def test_held_out_cell_type_beats_no_change(cells, model):
    drug = cells["drug"]
    pred = model.predict(cells["controls"], drugs=[drug])
    assert pred.n_obs == cells["controls"].n_obs and list(pred.var_names) == list(model.var_names)
    assert {"drug", "control_row", "dose", "cell_line"} <= set(pred.obs.columns)
    assert (pred.obs["drug"] == drug).all() and (pred.obs["cell_line"] == cells["cell"]).all()
    assert np.isfinite(pred.X).all()
    scgen = _scores(pred, cells["truth"])
    no_change = _scores(predict_no_change(cells["controls"], drugs=[drug]), cells["truth"])
    # measured: scGen pearson_delta 0.637, r2_degs 0.807; no change 0 (NaN), 0.673
    print(f"held-out cell type: scGen {scgen}, no change {no_change}")
    assert scgen["pearson_delta"] > no_change["pearson_delta"] + 0.3, (scgen, no_change)
    assert scgen["r2_degs"] > no_change["r2_degs"] + 0.065, (scgen, no_change)


def test_drug_delta_is_the_cell_type_balanced_latent_difference(cells, model):
    train = cells["train"]
    Z = model.encode(train)
    obs = train.obs
    differences = []
    for cell in ("A549", "MCF7"):  # the cell types with controls and the drug (K562's drug cells were held out)
        treated = ((obs["cell_line"] == cell) & (obs["drug"] == cells["drug"])).to_numpy()
        control = ((obs["cell_line"] == cell) & obs["control"]).to_numpy()
        differences.append(Z[treated].mean(0) - Z[control].mean(0))
    np.testing.assert_allclose(model.drug_delta(cells["drug"]), np.mean(differences, axis=0), rtol=1e-4, atol=1e-5)
    controls = cells["controls"]
    manual = model.decode_array(model.encode(controls) + model.drug_delta(cells["drug"]))
    np.testing.assert_allclose(model.predict(controls, drugs=cells["drug"]).X, manual, rtol=1e-5, atol=1e-6)


def test_cross_cell_prediction_runs_and_is_finite(bulk, bulk_model):
    source, target = "PC3", "MCF7"
    pred = bulk_model.predict(bulk["test"], target=target, sources=[source])
    assert list(pred.obs.columns) == ["drug", "target", "sources", "n_sources"]
    assert (pred.obs["target"] == target).all() and (pred.obs["n_sources"] == 1).all()
    profiles = CellDrugProfiles.from_adata(bulk["test"], control_key=None)
    t, s = profiles.cell_index(target), profiles.cell_index(source)
    scgen, naive = [], []
    for drug in pred.obs_names:
        i = profiles.drugs.get_loc(drug)
        if profiles.present[i, t] and profiles.present[i, s]:
            truth = profiles.values[i, t]
            scgen.append(np.corrcoef(pred[drug].X.ravel(), truth)[0, 1])
            naive.append(np.corrcoef(profiles.values[i, s], truth)[0, 1])
    # measured: scGen 0.386, naive (the source profile itself) 0.295 over 22 held-out drugs
    print(f"cross-cell mean PCC over {len(scgen)} drugs: scGen {np.mean(scgen):.3f}, naive {np.mean(naive):.3f}")
    assert len(scgen) > 10 and np.isfinite(scgen).all() and np.isfinite(pred.X).all()
    # every cell line of the data other than the target is a source by default
    assert (bulk_model.predict(bulk["test"], target=target).obs["sources"] == source).all()


def test_save_load_gives_identical_predictions(cells, model, bulk, bulk_model, tmp_path):
    model.save(tmp_path / "scgen.pt")
    loaded = BaseModel.load(tmp_path / "scgen.pt")
    assert type(loaded) is ScGen and loaded.data_keys == model.data_keys
    assert loaded.latent_groups.equals(model.latent_groups)
    np.testing.assert_array_equal(loaded.latent_means, model.latent_means)
    drug = cells["drug"]
    np.testing.assert_array_equal(
        loaded.predict(cells["controls"], drugs=[drug]).X, model.predict(cells["controls"], drugs=[drug]).X
    )
    bulk_model.save(tmp_path / "bulk.pt")
    loaded = ScGen.load(tmp_path / "bulk.pt")
    assert loaded.data_keys["control_key"] is None
    np.testing.assert_array_equal(
        loaded.predict(bulk["test"], target="MCF7").X, bulk_model.predict(bulk["test"], target="MCF7").X
    )


def test_genes_in_reversed_order_give_the_same_predictions(cells, model, bulk, bulk_model):
    controls = cells["controls"]
    reordered = controls[:, controls.var_names[::-1]].copy()
    drug = cells["drug"]
    np.testing.assert_allclose(
        model.predict(reordered, drugs=[drug]).X, model.predict(controls, drugs=[drug]).X, rtol=1e-5, atol=1e-6
    )
    test = bulk["test"]
    np.testing.assert_allclose(
        bulk_model.predict(test[:, test.var_names[::-1]].copy(), target="MCF7").X,
        bulk_model.predict(test, target="MCF7").X,
        rtol=1e-5,
        atol=1e-6,
    )


def _layered_bulk():
    """Small bulk data with controls, renamed obs keys, and the profiles in a layer (X zeroed)."""
    adata = pk.datasets.simulate_bulk(n_drugs=30, n_genes=40, n_cell_lines=2, seed=3)
    adata.layers["signature"] = adata.X.copy()
    adata.X = np.zeros_like(adata.X)
    adata.obs = adata.obs.rename(columns={"cell_line": "line", "drug": "compound"})
    return adata


def test_same_seed_gives_identical_models_reading_their_layer_and_keys():
    adata = _layered_bulk()
    options = dict(cell_key="line", drug_key="compound", layer="signature", latent_dim=4, hidden=(16,), max_epochs=3)
    first, second = (train_scgen(adata, seed=0, **options) for _ in range(2))
    assert adata.uns["scgen"]["params"]["latent_dim"] == 4 and adata.uns["scgen"]["n_epochs"] == 3
    controls = control_means(adata, cell_key="line", layer="signature")
    drugs = first.drug_names[:3]
    a, b = first.predict(controls, drugs=drugs), second.predict(controls, drugs=drugs)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.n_obs == 6 and {"compound", "line", "control_row"} <= set(a.obs.columns)
    assert np.isfinite(a.X).all() and np.abs(a.X).max() > 0  # read from the layer, not the zeroed X
    cross = first.predict(adata, target="MCF7", sources=["PC3"])  # controls left out by the model's control_key
    np.testing.assert_array_equal(cross.X, second.predict(adata, target="MCF7", sources=["PC3"]).X)
    assert "DMSO" not in set(cross.obs["compound"])
    other = train_scgen(adata, seed=1, **options)
    assert not np.array_equal(other.predict(controls, drugs=drugs).X, a.X)


def test_bad_inputs_raise_clear_errors(cells, model, bulk, bulk_model):
    controls = cells["controls"]
    with pytest.raises(PerturbkitInputError, match="exactly one of drugs= .* and target="):
        model.predict(controls, drugs=[cells["drug"]], target="A549")
    with pytest.raises(PerturbkitInputError, match="got neither"):
        model.predict(controls)
    with pytest.raises(UnknownCategoryError, match=r"\['aspirin'\] were not seen in training.*" + cells["drug"]):
        model.predict(controls, drugs=["aspirin"])
    with pytest.raises(UnknownCategoryError, match="target cell line 'HeLa'.*'MCF7'"):
        bulk_model.predict(bulk["test"], target="HeLa")
    with pytest.raises(UnknownCategoryError, match="source cell line 'HeLa'"):
        bulk_model.predict(bulk["test"], target="MCF7", sources=["HeLa"])
    with pytest.raises(MissingColumnError, match="'cell_type'.*cell_key="):
        ScGen.from_adata(cells["train"], cell_key="cell_type")
    with pytest.raises(MissingColumnError, match="'treatment'"):
        train_scgen(cells["train"], drug_key="treatment", max_epochs=1)
    no_flag = cells["truth"].copy()
    del no_flag.obs["control"]
    with pytest.raises(MissingColumnError, match="'control'"):
        model.predict(no_flag, target="K562")
    with pytest.raises(EmptyGroupError, match="without control rows"):
        bulk_model.predict(bulk["test"], drugs=bulk_model.drug_names[:1])
    untrained = ScGen.from_adata(cells["train"], **SMALL)
    with pytest.raises(PerturbkitInputError, match="train it first"):
        untrained.predict(controls, drugs=[cells["drug"]])
    with pytest.raises(PerturbkitInputError, match="sources= goes with target="):
        model.predict(controls, drugs=[cells["drug"]], sources=["A549"])


def test_network_and_loss_follow_the_reference_layout():
    net = ScGenNetwork(50, latent_dim=10, hidden=(32, 32), dropout=0.2)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 4 and all(m.momentum == 0.01 and m.eps == 1e-3 for m in norms)
    assert isinstance(net.decoder[-1], torch.nn.Linear)  # linear output
    x = torch.randn(8, 50)
    losses = scgen_loss(net, x, kl_weight=0.5)
    assert set(losses) == {"loss", "reconstruction", "kl"}
    assert torch.isclose(losses["loss"], losses["reconstruction"] + 0.5 * losses["kl"])
