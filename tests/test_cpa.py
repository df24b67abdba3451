"""CPA / chemCPA: unseen drugs (bulk), a held-out cell type (single cells), latent interface, errors, save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import perturbkit as pk
from perturbkit._schema import MissingColumnError, UnknownCategoryError
from perturbkit.metrics import evaluate_response
from perturbkit.models.cpa import CPA
from perturbkit.tl import train_cpa
from perturbkit.train import BaseModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: A small network for tests (the defaults are chemCPA's 256-dim latent and 4 × 512 autoencoder).
SMALL = dict(latent_dim=32, hidden=(64, 64), adversary_hidden=(32,), doser_hidden=(16,), batch_size=64, patience=None)
TINY_NET = dict(latent_dim=8, hidden=(16,), adversary_hidden=(8,), doser_hidden=(8,))
TINY = dict(TINY_NET, batch_size=32, patience=None)


def scores(pred, truth) -> dict[str, float]:
    """Mean over (cell line, drug) groups of pearson_delta, r2 and r2 on the DEGs.

    A prediction equal to the control ("no change") has no predicted change, so its pearson_delta is undefined
    (NaN) or float noise around 0; NaN counts as 0.
    """
    table = evaluate_response(pred, truth, groupby=["cell_line", "drug"], control="control")
    return {k: float(np.nan_to_num(table[k].to_numpy(), nan=0.0).mean()) for k in ("pearson_delta", "r2", "r2_degs")}


@pytest.fixture(scope="module")
def bulk():
    """Simulated L1000-like signatures of 100 drugs in 2 cell lines; 15% of the drugs held out by name."""
    adata = pk.datasets.simulate_bulk(n_drugs=100, n_genes=50, n_cell_lines=2, seed=0)
    drugs = np.array(sorted(adata.obs["drug"][~adata.obs["control"]].unique()))
    held = sorted(np.random.default_rng(0).choice(drugs, int(round(0.15 * len(drugs))), replace=False))
    is_held = adata.obs["drug"].isin(held).to_numpy()
    train = adata[~is_held].copy()
    truth = adata[is_held | adata.obs["control"].to_numpy()].copy()
    smiles = dict(zip(adata.obs["drug"], adata.obs["smiles"], strict=True))
    return {"all": adata, "train": train, "truth": truth, "held": held, "smiles": smiles}


@pytest.fixture(scope="module")
def fingerprint_model(bulk):
    return train_cpa(bulk["train"], drug_encoder="fingerprint", max_epochs=60, seed=0, **SMALL)


@pytest.fixture(scope="module")
def tiny_bulk():
    return pk.datasets.simulate_bulk(n_drugs=12, n_genes=20, n_cell_lines=2, n_moas=3, seed=2)


@pytest.fixture(scope="module")
def onehot_model(tiny_bulk):
    return train_cpa(tiny_bulk.copy(), drug_encoder="onehot", max_epochs=3, **TINY)


def test_fingerprint_predicts_unseen_drugs_better_than_no_change(bulk, fingerprint_model):
    means = pk.tl.control_means(bulk["train"])
    held = {d: bulk["smiles"][d] for d in bulk["held"]}
    pred = fingerprint_model.predict(means, drugs=held)
    assert pred.n_obs == means.n_obs * len(held) and np.isfinite(pred.X).all()
    assert list(pred.var_names) == list(fingerprint_model.var_names)
    assert set(pred.obs["cell_line"]) == set(means.obs["cell_line"]) and (pred.obs["dose"] == 1.0).all()
    model = scores(pred, bulk["truth"])
    no_change = scores(pk.tl.predict_no_change(means, drugs=list(held)), bulk["truth"])
    mean_response = scores(
        pk.tl.predict_mean_response(means, drugs=list(held), training_data=bulk["train"]), bulk["truth"]
    )
    # measured (seed 0, 60 epochs): pearson_delta CPA 0.31, no change -0.11 (float noise: it predicts no change),
    # mean treated response 0.16; r2 CPA 0.017, mean treated response 0.013, no change 0.003
    print(f"unseen drugs: CPA {model}, no change {no_change}, mean treated response {mean_response}")
    assert model["pearson_delta"] > no_change["pearson_delta"] + 0.2, (model, no_change)
    history = fingerprint_model.history_frame
    assert {"train_autoencoder_reconstruction", "train_adversary_penalty", "validation_loss"} <= set(history)
    record = bulk["train"].uns["cpa"]
    assert record["params"]["drug_encoder"] == "fingerprint" and record["n_drugs"] == 85
    assert np.isfinite(record["final_train_loss"]) and np.isfinite(record["best_validation_loss"])


def test_held_out_cell_type_single_cell_beats_no_change():
    import scanpy as sc

    counts = pk.datasets.simulate_single_cell(n_cells=1000, n_genes=100, n_drugs=4, doses=(10.0,), seed=0)
    adata = counts.copy()
    threads = torch.get_num_threads()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    torch.set_num_threads(threads)  # scanpy's normalize_total resets torch's (OpenMP) thread count
    cell, drug = "A549", sorted(adata.obs["drug"][~adata.obs["control"]].unique())[0]
    in_cell = (adata.obs["cell_line"] == cell).to_numpy()
    held = in_cell & (adata.obs["drug"] == drug).to_numpy()
    controls_of_cell = in_cell & adata.obs["control"].to_numpy()
    train = adata[~held].copy()
    controls, truth = adata[controls_of_cell].copy(), adata[held | controls_of_cell].copy()
    model = train_cpa(train, drug_encoder="onehot", max_epochs=100, seed=0, **SMALL)
    pred = model.predict(controls, drugs=[drug])
    assert pred.n_obs == controls.n_obs and np.isfinite(pred.X).all()
    cpa = scores(pred, truth)
    no_change = scores(pk.tl.predict_no_change(controls, drugs=[drug]), truth)
    mean_response = scores(pk.tl.predict_mean_response(controls, drugs=[drug], training_data=train), truth)
    # measured (seed 0): pearson_delta CPA 0.54, no change undefined (0), mean treated response 0.38;
    # r2_degs CPA 0.91, no change 0.87, mean treated response 0.89
    print(f"held-out cell type: CPA {cpa}, no change {no_change}, mean treated response {mean_response}")
    assert cpa["pearson_delta"] > no_change["pearson_delta"] + 0.25, (cpa, no_change)
    assert cpa["r2_degs"] > no_change["r2_degs"] + 0.02, (cpa, no_change)


def test_save_load_gives_identical_predictions(bulk, fingerprint_model, tmp_path):
    means = pk.tl.control_means(bulk["train"])
    held = {d: bulk["smiles"][d] for d in bulk["held"][:5]}
    before = fingerprint_model.predict(means, drugs=held)
    path = fingerprint_model.save(tmp_path / "cpa.pt")
    for loaded in (CPA.load(path, device="cpu"), BaseModel.load(path)):
        assert type(loaded) is CPA and loaded.data_keys == fingerprint_model.data_keys
        after = loaded.predict(means, drugs=held)
        np.testing.assert_array_equal(before.X, after.X)
        pd.testing.assert_frame_equal(before.obs, after.obs)


def test_reversed_genes_give_the_same_predictions(bulk, fingerprint_model):
    means = pk.tl.control_means(bulk["train"])
    drugs = fingerprint_model.drug_names[:5]
    first = fingerprint_model.predict(means, drugs=drugs)
    reversed_means = means[:, means.var_names[::-1]].copy()
    again = fingerprint_model.predict(reversed_means, drugs=drugs)
    assert list(again.var_names) == list(first.var_names)
    np.testing.assert_allclose(again.X, first.X, rtol=1e-5, atol=1e-6)


def test_same_seed_gives_identical_models(tiny_bulk):
    runs = [train_cpa(tiny_bulk.copy(), drug_encoder="fingerprint", max_epochs=3, seed=7, **TINY) for _ in range(2)]
    for key, value in runs[0].module.state_dict().items():
        assert torch.equal(value, runs[1].module.state_dict()[key]), key
    means = pk.tl.control_means(tiny_bulk)
    drugs = runs[0].drug_names[:3]
    np.testing.assert_array_equal(runs[0].predict(means, drugs=drugs).X, runs[1].predict(means, drugs=drugs).X)
    other = train_cpa(tiny_bulk.copy(), drug_encoder="fingerprint", max_epochs=3, seed=8, **TINY)
    assert not np.array_equal(other.predict(means, drugs=drugs).X, runs[0].predict(means, drugs=drugs).X)


def test_checkpoint_resume_is_exact(tiny_bulk, tmp_path):
    options = dict(drug_encoder="onehot", max_epochs=5, seed=0, **TINY)
    reference = train_cpa(tiny_bulk.copy(), **options)
    model = CPA.from_adata(tiny_bulk, drug_encoder="onehot", seed=0, **TINY_NET)
    original = model._adversary_loss

    def interrupted_after_three_epochs():
        loss = original()

        def wrapped(batch):
            if len(model.history) >= 3:  # one record per finished epoch
                raise KeyboardInterrupt
            return loss(batch)

        return wrapped

    model._adversary_loss = interrupted_after_three_epochs
    train_options = dict(max_epochs=5, seed=0, batch_size=TINY["batch_size"], patience=None)
    with pytest.warns(UserWarning, match="interrupted"):
        model.train(tiny_bulk, checkpoint_dir=tmp_path, checkpoint_every=3, **train_options)
    assert model.interrupted and len(BaseModel.load(tmp_path / "checkpoint.pt").history) == 3
    resumed = CPA.from_adata(tiny_bulk, drug_encoder="onehot", seed=0, **TINY_NET)
    resumed.train(tiny_bulk, resume=tmp_path, **train_options)
    for key, value in reference.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[key]), key
    assert len(resumed.history) == 5


def test_latent_interface_and_controls_get_no_drug_term(tiny_bulk):
    model = train_cpa(tiny_bulk.copy(), drug_encoder="fingerprint", dose_key="dose", max_epochs=2, **TINY)
    means = pk.tl.control_means(tiny_bulk)
    assert model.decoder_names == tuple(sorted(means.obs["cell_line"]))
    Z = model.encode_array(means.X)
    assert Z.shape == (means.n_obs, 8) and np.isfinite(Z).all()
    drug = model.drug_names[0]
    # dose 0: the drug term vanishes, so the prediction is the decoded control (basal state + cell line)
    at_zero = model.predict(means, drugs=[drug], doses=[0.0])
    for row, cell in enumerate(means.obs["cell_line"]):
        decoded = model.decode_array(Z[row], decoder=cell)
        np.testing.assert_allclose(at_zero.X[row], decoded[0], rtol=1e-5, atol=1e-6)
    at_ten = model.predict(means, drugs=[drug], doses=[10.0])
    assert (at_ten.obs["dose"] == 10.0).all() and not np.allclose(at_ten.X, at_zero.X)
    with pytest.raises(UnknownCategoryError, match="no such cell"):
        model.decode_array(Z, decoder="no such cell")
    with pytest.raises(pk.errors.PerturbkitInputError, match="doses"):
        model.predict(means, drugs=model.drug_names[:2], doses=[1.0, 2.0, 3.0])


def test_unknown_drug_without_smiles_is_refused(bulk, fingerprint_model):
    means = pk.tl.control_means(bulk["train"])
    unseen = bulk["held"][0]
    with pytest.raises(UnknownCategoryError, match=r"SMILES.*drugs=\{name: SMILES\}"):
        fingerprint_model.predict(means, drugs=[unseen])


def test_onehot_refuses_unseen_drugs(tiny_bulk, onehot_model):
    means = pk.tl.control_means(tiny_bulk)
    known = onehot_model.drug_names[0]
    assert np.isfinite(onehot_model.predict(means, drugs=[known]).X).all()
    with pytest.raises(UnknownCategoryError, match="onehot"):
        onehot_model.predict(means, drugs={"new drug": "CC(=O)Oc1ccccc1C(=O)O"})


def test_unknown_cell_line_in_the_controls_is_named(tiny_bulk, onehot_model):
    means = pk.tl.control_means(tiny_bulk)
    means.obs["cell_line"] = ["HeLa", means.obs["cell_line"].iloc[1]]
    with pytest.raises(UnknownCategoryError, match="HeLa"):
        onehot_model.predict(means, drugs=onehot_model.drug_names[:1])
    without = pk.tl.control_means(tiny_bulk)
    del without.obs["cell_line"]
    with pytest.raises(MissingColumnError, match="cell_key"):
        onehot_model.predict(without, drugs=onehot_model.drug_names[:1])


def test_missing_smiles_column_is_named(tiny_bulk):
    data = tiny_bulk.copy()
    data.obs = data.obs.rename(columns={"smiles": "structure"})
    with pytest.raises(MissingColumnError, match="'smiles'.*smiles_key"):
        train_cpa(data, drug_encoder="fingerprint", max_epochs=1, **TINY)
    model = train_cpa(data, drug_encoder="fingerprint", smiles_key="structure", max_epochs=1, **TINY)
    assert model.data_keys["smiles_key"] == "structure"
    onehot = train_cpa(data, drug_encoder="onehot", max_epochs=1, **TINY)  # the one-hot encoder needs no SMILES
    assert set(onehot.drug_names) == set(data.obs["drug"][~data.obs["control"]])
