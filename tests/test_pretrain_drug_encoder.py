"""Pretrained GAT drug encoder: pretraining learns, is reproducible and robust to bad SMILES; the shipped checkpoint
loads into cycleCDR's and CPA's GAT, round trips, and matches the fingerprint encoder on unseen drugs."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import shared_file

import perturbkit as pk
from perturbkit._schema import EmptyGroupError, PerturbkitInputError
from perturbkit.models.cyclecdr._drug_encoders import (
    ATOM_FEATURES_VERSION,
    N_ATOM_FEATURES,
    GATEncoder,
    make_drug_encoder,
)
from perturbkit.models.cyclecdr._pretrained_weights import SHIPPED_PATH, PretrainedDrugEncoder, load_pretrained
from perturbkit.tl._cpa import train_cpa
from perturbkit.tl._cyclecdr import train_cyclecdr
from perturbkit.tl._pretrain import pretrain_drug_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DRUGS = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "caffeine": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "ibuprofen": "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
}
#: A quick pretraining run: small batches and a higher learning rate so that 200 molecules teach something.
QUICK = dict(batch_size=32, lr=3e-3, validation_fraction=0.25, progress=False)


@pytest.fixture(scope="module")
def hub_smiles() -> list[str]:
    """200 unique SMILES of the Drug Repurposing Hub (real drugs), read with perturbkit's reader."""
    from perturbkit.io._repurposing import _load

    table = _load(shared_file("repurposing_hub/repurposing_samples_20200324.txt.gz"), "samples")
    return table["smiles"].dropna().drop_duplicates().head(200).tolist()


@pytest.fixture(scope="module")
def quick_run(hub_smiles) -> PretrainedDrugEncoder:
    return pretrain_drug_encoder(hub_smiles, max_epochs=15, **QUICK)


def test_pretraining_lowers_the_masked_atom_loss_and_beats_the_majority_class(quick_run):
    m = quick_run.metadata
    history = pd.DataFrame(quick_run.history)
    # measured: masked-atom loss 2.27 → 0.81 (train); held-out accuracy 0.794 vs majority (carbon) 0.718
    assert m["final_losses"]["masked_atom"] < 0.5 * m["first_losses"]["masked_atom"], m
    assert history["validation_masked_atom"].iloc[-1] < history["validation_masked_atom"].iloc[0]
    assert m["majority_accuracy"] > 0.6  # carbon dominates: a strong constant guess
    assert m["masked_accuracy"] > m["majority_accuracy"] + 0.04, m
    assert m["final_losses"]["contrastive"] < m["first_losses"]["contrastive"]
    assert m["n_smiles"] == 200 - m["n_invalid"] and m["epochs"] == 15 and m["seed"] == 0
    assert m["hidden"] == 64 and m["heads"] == 10 and m["atom_features_version"] == ATOM_FEATURES_VERSION


def test_the_same_seed_gives_identical_weights(hub_smiles):
    runs = [pretrain_drug_encoder(hub_smiles[:60], max_epochs=2, seed=s, **QUICK) for s in (3, 3, 4)]
    assert runs[0].state.keys() == runs[1].state.keys()
    for key in runs[0].state:
        torch.testing.assert_close(runs[0].state[key], runs[1].state[key], rtol=0, atol=0)
    assert any(not torch.equal(runs[0].state[k], runs[2].state[k]) for k in runs[0].state)
    assert runs[0].metadata["final_losses"] == runs[1].metadata["final_losses"]


def test_invalid_smiles_are_counted_and_all_invalid_raises():
    smiles = pd.Series([*DRUGS.values(), "C1CC(((", None, "", "not a molecule", "CCO", "CCO"])
    result = pretrain_drug_encoder(smiles, max_epochs=1, **QUICK)
    assert result.n_invalid == 4 and result.metadata["n_smiles"] == 4  # duplicates count once, not as invalid
    with pytest.raises(EmptyGroupError, match=r"none of the 3 SMILES is valid"):
        pretrain_drug_encoder(["C1CC(((", "xyz", None], max_epochs=1)
    with pytest.raises(PerturbkitInputError, match="smiles must be a sequence"):
        pretrain_drug_encoder("CCO", max_epochs=1)
    with pytest.raises(PerturbkitInputError, match="one column"):
        pretrain_drug_encoder(pd.DataFrame({"a": ["CCO"], "b": ["CCN"]}), max_epochs=1)
    with pytest.raises(PerturbkitInputError, match="mask_fraction"):
        pretrain_drug_encoder(["CCO"], mask_fraction=1.5)


def test_a_saved_run_initialises_the_gat_trunk(quick_run, tmp_path):
    path = quick_run.save(tmp_path / "encoder.pt")
    loaded = PretrainedDrugEncoder.load(path)
    assert loaded.metadata == quick_run.metadata
    encoder = GATEncoder(DRUGS, 8, pretrained=path)
    for key, value in quick_run.state.items():
        torch.testing.assert_close(encoder.state_dict()[key], value, rtol=0, atol=0)
    frozen = GATEncoder(DRUGS, 8, pretrained=loaded, freeze=True)
    assert not any(p.requires_grad for p in frozen.gat1.parameters())
    assert all(p.requires_grad for p in frozen.out.parameters())
    with pytest.raises(PerturbkitInputError, match="hidden=64, heads=10.*hidden=8"):
        GATEncoder(DRUGS, 8, hidden=8, pretrained=loaded)
    with pytest.raises(PerturbkitInputError, match="pretrained=int"):
        GATEncoder(DRUGS, 8, pretrained=3)


def test_the_shipped_checkpoint_matches_the_layer_config():
    # 2.25 MB: the first layer reads 808 atom features (40 + 3 × 256 hashed Morgan environments) into 10 × 64
    assert SHIPPED_PATH.exists() and SHIPPED_PATH.stat().st_size < 3_000_000
    shipped = load_pretrained("shipped")
    m = shipped.metadata
    assert m["atom_features_version"] == ATOM_FEATURES_VERSION and m["n_atom_features"] == N_ATOM_FEATURES
    reference = GATEncoder(DRUGS, 16)  # cycleCDR's GAT sizes
    assert (m["hidden"], m["heads"]) == (reference.options["hidden"], reference.gat1.heads)
    trunk = {k: v for k, v in reference.state_dict().items() if k.startswith(("gat1.", "gat2."))}
    assert {k: tuple(v.shape) for k, v in shipped.state.items()} == {k: tuple(v.shape) for k, v in trunk.items()}
    assert m["n_smiles"] > 6000 and m["source"].startswith("repurposing_samples")
    # measured: held-out masked-atom accuracy 0.748 against 0.699 for always guessing carbon
    assert m["masked_accuracy"] > m["majority_accuracy"] + 0.03, m
    assert set(m["final_losses"]) >= {"masked_atom", "contrastive"} and m["epochs"] >= 1 and m["seed"] == 0
    encoder = make_drug_encoder("gat_pretrained", dim=16, drugs=DRUGS)
    for key, value in shipped.state.items():
        torch.testing.assert_close(encoder.state_dict()[key], value, rtol=0, atol=0)
    rebuilt = make_drug_encoder(**encoder.config())  # the config rebuilds the same architecture
    assert rebuilt.kind == "gat_pretrained" and rebuilt.state_dict().keys() == encoder.state_dict().keys()


# --- cycleCDR and CPA with the pretrained GAT -------------------------------------------------------------------
SMALL = dict(hidden=(32,), latent_dim=16, batch_size=64, max_epochs=3, patience=None)


@pytest.fixture(scope="module")
def bulk():
    return pk.datasets.simulate_bulk(n_drugs=24, n_moas=4, n_genes=30, n_cell_lines=2, baseline=1.0, seed=3)


def _unseen(adata) -> dict:
    return {"aspirin": DRUGS["aspirin"], "caffeine": DRUGS["caffeine"]}


@pytest.mark.parametrize("trainer", [train_cyclecdr, train_cpa], ids=["cyclecdr", "cpa"])
def test_gat_pretrained_round_trips_and_ignores_gene_order(trainer, bulk, tmp_path):
    model = trainer(bulk, drug_encoder="gat_pretrained", seed=1, **SMALL)
    assert model.hparams["drug_encoder"] == "gat_pretrained"
    controls = pk.tl.control_means(bulk)
    pred = model.predict(controls, drugs=_unseen(bulk))
    assert np.isfinite(pred.X).all() and list(pred.var_names) == list(model.var_names)
    loaded = pk.train.BaseModel.load(model.save(tmp_path / "model.pt"))
    np.testing.assert_array_equal(loaded.predict(controls, drugs=_unseen(bulk)).X, pred.X)
    # the trunk was fine-tuned: it moved away from the shipped weights
    shipped = load_pretrained("shipped").state["gat1.lin.weight"]
    assert not torch.equal(model.module.drug_encoder.state_dict()["gat1.lin.weight"].cpu(), shipped)
    reversed_genes = ad.AnnData(controls.X[:, ::-1].copy(), obs=controls.obs, var=controls.var.iloc[::-1])
    np.testing.assert_allclose(model.predict(reversed_genes, drugs=_unseen(bulk)).X, pred.X, rtol=1e-5, atol=1e-6)
    again = trainer(bulk, drug_encoder="gat_pretrained", seed=1, **SMALL)
    np.testing.assert_array_equal(again.predict(controls, drugs=_unseen(bulk)).X, pred.X)


def test_public_function_follows_the_api_conventions(monkeypatch):
    import test_conventions as conventions

    # the SMILES are this function's data (the lead adds "smiles" to DATA_ARGUMENTS)
    monkeypatch.setattr(conventions, "DATA_ARGUMENTS", conventions.DATA_ARGUMENTS | {"smiles"})
    function = pretrain_drug_encoder
    assert conventions._violations("pk.tl.pretrain_drug_encoder", function, function) == []


# --- the headline: unseen drugs ---------------------------------------------------------------------------------
#: benchmarks/drug_encoder.py's setting (120 drugs, 100 genes, 3 folds, 30 epochs), where the GAT's readout was chosen
#: on simulator seeds 0 and 2; seed 1 is held out for this test
HEADLINE_NET = dict(hidden=(128,), latent_dim=32, batch_size=64, patience=None, max_epochs=30)


def _unseen_drug_r2_degs(adata, method: str, encoder: str | None = None) -> pd.Series:
    options = {method: {"drug_encoder": encoder, **HEADLINE_NET}} if encoder else None
    table = pk.tl.benchmark(
        adata, task="unseen_drug", methods=[method], n_folds=3, n_degs=20, seed=0, method_options=options
    )
    return table.groupby("fold")["r2_degs"].mean()


@pytest.fixture(scope="module")
def unseen_drug_scores(one_torch_thread) -> dict[str, pd.Series]:
    """Held-out simulator seed 1, on identical folds for every encoder (one thread, as the benchmark)."""
    adata = pk.datasets.simulate_bulk(n_drugs=120, n_genes=100, n_cell_lines=2, baseline=1.0, seed=1)
    return {
        "gat_pretrained": _unseen_drug_r2_degs(adata, "cyclecdr_gat", "gat_pretrained"),
        "fingerprint": _unseen_drug_r2_degs(adata, "cyclecdr_fingerprint", "fingerprint"),
        "no_change": _unseen_drug_r2_degs(adata, "no_change"),
    }


def test_pretrained_gat_on_unseen_drugs_beats_no_change(unseen_drug_scores):
    scores = {k: round(float(v.mean()), 3) for k, v in unseen_drug_scores.items()}
    print(f"unseen-drug r2_degs (simulator seed 1): {scores}")
    assert np.isfinite(list(scores.values())).all()
    assert scores["gat_pretrained"] > scores["no_change"] + 0.1, scores


def test_pretrained_gat_matches_the_fingerprint_on_unseen_drugs(unseen_drug_scores):
    """The issue's headline: the pretrained GAT (hybrid readout) at least matches the Morgan fingerprint.

    Measured (benchmarks/drug_encoder.py --sim-seed 1): pretrained GAT 0.340, fingerprint 0.328 DEG r2. On the
    development seeds 0 and 2 it was 0.351 / 0.337 and 0.375 / 0.368; with the paper's graph-only readout the GAT
    trailed by 0.12 to 0.20 (cycleCDR methods page).
    """
    pretrained, fingerprint = unseen_drug_scores["gat_pretrained"], unseen_drug_scores["fingerprint"]
    assert pretrained.mean() >= fingerprint.mean(), (pretrained.to_dict(), fingerprint.to_dict())


def test_a_masked_atoms_neighbourhood_loses_its_environments_not_its_own_features():
    from perturbkit.models.cyclecdr._drug_encoders import N_OWN_ATOM_FEATURES, mol_graph
    from perturbkit.models.cyclecdr._pretrain import graph_view

    graph = mol_graph("hexane", "CCCCCC")  # a chain: atom k is |k - j| bonds from atom j
    view, masked, _ = graph_view([graph], np.random.default_rng(0), mask_fraction=0.01, edge_drop=0.0)
    (atom,) = masked.tolist()
    x = view.x.numpy()
    for k in range(6):
        distance = abs(k - atom)
        assert (x[k] == 0).all() == (distance == 0)  # only the masked atom loses everything
        own_kept = np.array_equal(x[k, :N_OWN_ATOM_FEATURES], graph.x[k, :N_OWN_ATOM_FEATURES])
        environments_kept = np.array_equal(x[k, N_OWN_ATOM_FEATURES:], graph.x[k, N_OWN_ATOM_FEATURES:])
        assert own_kept == (distance > 0) and environments_kept == (distance > 2)
