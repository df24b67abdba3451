"""cycleCDR: pairing, training on paired bulk and unpaired single-cell data, unseen drugs, errors, save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import perturbkit as pk
from perturbkit._schema import EmptyGroupError, UnknownCategoryError
from perturbkit.models.baselines import control_means, predict_no_change, response_baselines
from perturbkit.models.cyclecdr import CycleCDR, control_profiles
from perturbkit.tl import train_cyclecdr

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(hidden=(128,), latent_dim=32, batch_size=64, patience=None)


def deg_r2(pred, data, *, cell_key="cell_line", n_degs=50) -> float:
    """Mean over (cell line, drug) of r² (clipped at 0) between the predicted and measured mean profiles on the
    top-``n_degs`` genes by |mean(drug) − mean(control)| (``evaluate_response`` when it is there)."""
    try:
        from perturbkit.metrics._response import evaluate_response
    except ImportError:
        return _local_deg_r2(pred, data, cell_key=cell_key, n_degs=n_degs)
    keep = data.obs["control"].to_numpy() | data.obs["drug"].isin(set(pred.obs["drug"])).to_numpy()
    truth = data[keep & data.obs[cell_key].isin(set(pred.obs[cell_key])).to_numpy()]
    table = evaluate_response(pred, truth, groupby=[cell_key, "drug"], control="control", n_degs=n_degs)
    return float(table["r2_degs"].mean())


def _local_deg_r2(pred, data, *, cell_key="cell_line", n_degs=50) -> float:
    scores = []
    for (drug, cell), rows in pred.obs.groupby(["drug", cell_key], observed=True).indices.items():
        measured = data[(data.obs["drug"] == drug).to_numpy() & (data.obs[cell_key] == cell).to_numpy()]
        if measured.n_obs == 0:
            continue
        control = data[data.obs["control"].to_numpy() & (data.obs[cell_key] == cell).to_numpy()]
        truth = np.asarray(measured.X.mean(0)).ravel()
        top = np.argsort(-np.abs(truth - np.asarray(control.X.mean(0)).ravel()))[:n_degs]
        p, t = np.asarray(pred.X[rows].mean(0)).ravel()[top], truth[top]
        scores.append(max(0.0, 1.0 - ((p - t) ** 2).sum() / ((t - t.mean()) ** 2).sum()))
    return float(np.mean(scores))


@pytest.fixture(scope="module")
def bulk():
    """Paired bulk data with a cell-line baseline (so the controls matter); 20 drugs held out by name."""
    adata = pk.datasets.simulate_bulk(n_drugs=120, n_genes=100, n_cell_lines=2, baseline=1.0, seed=0)
    drugs = np.array(sorted(adata.obs["drug"][~adata.obs["control"]].unique()))
    held = sorted(np.random.default_rng(0).choice(drugs, 20, replace=False))
    train = adata[~adata.obs["drug"].isin(held).to_numpy()].copy()
    smiles = dict(zip(adata.obs["drug"], adata.obs["smiles"], strict=True))
    seen = sorted(set(drugs) - set(held))[:30]
    return {"all": adata, "train": train, "held": held, "seen": seen, "smiles": smiles}


@pytest.fixture(scope="module")
def onehot_model(bulk):
    return train_cyclecdr(bulk["train"], drug_encoder="onehot", max_epochs=30, **SMALL)


def test_control_profiles_cell_line_plate_and_named_rows():
    adata = pk.datasets.simulate_bulk(n_drugs=10, n_genes=8, n_cell_lines=2, n_moas=3, frac_missing=0.0, seed=1)
    X = adata.X
    treated, controls = control_profiles(adata, X)
    first = treated[0]
    cell = adata.obs["cell_line"].iloc[first]
    expected = X[(adata.obs["control"] & (adata.obs["cell_line"] == cell)).to_numpy()].mean(0)
    np.testing.assert_allclose(controls[0], expected, rtol=1e-5)
    _, by_plate = control_profiles(adata, X, plate_key="plate")
    plate = adata.obs["plate"].iloc[first]
    np.testing.assert_allclose(
        by_plate[0], X[(adata.obs["control"] & (adata.obs["plate"] == plate)).to_numpy()].mean(0), rtol=1e-5
    )
    # a user-given column naming each treated row's control row
    first_control = adata.obs_names[adata.obs["control"].to_numpy()][0]
    adata.obs["my_control"] = first_control
    _, named = control_profiles(adata, X, control_obs="my_control")
    np.testing.assert_array_equal(named[0], X[adata.obs_names.get_loc(first_control)])


def test_missing_controls_raise_naming_the_group(bulk):
    data = bulk["train"]
    lonely = data.obs["cell_line"].iloc[0]
    no_controls = data[~(data.obs["control"] & (data.obs["cell_line"] == lonely)).to_numpy()].copy()
    with pytest.raises(EmptyGroupError, match=lonely):
        train_cyclecdr(no_controls, drug_encoder="onehot", max_epochs=1, **SMALL)
    plate = data.obs["plate"][data.obs["control"]].iloc[0]
    no_plate_controls = data[~(data.obs["control"] & (data.obs["plate"] == plate)).to_numpy()].copy()
    with pytest.raises(EmptyGroupError, match="plate_key=None"):
        control_profiles(no_plate_controls, no_plate_controls.X, plate_key="plate")


def test_onehot_learns_seen_drugs_and_refuses_unseen(bulk, onehot_model):
    means = control_means(bulk["all"])
    pred = onehot_model.predict(means, drugs=bulk["seen"])
    assert pred.n_obs == means.n_obs * len(bulk["seen"])
    assert set(pred.obs["cell_line"]) == set(means.obs["cell_line"])
    model_r2 = deg_r2(pred, bulk["all"])
    no_change = deg_r2(predict_no_change(means, drugs=bulk["seen"]), bulk["all"])
    print(f"seen-drug DEG r2: one-hot cycleCDR {model_r2:.3f}, no change {no_change:.3f}")
    assert model_r2 > no_change + 0.05, (model_r2, no_change)
    unseen = bulk["held"][0]
    with pytest.raises(UnknownCategoryError, match="onehot"):
        onehot_model.predict(means, drugs={unseen: bulk["smiles"][unseen]})
    with pytest.raises(UnknownCategoryError, match="SMILES"):
        onehot_model.predict(means, drugs=[unseen])
    assert bulk["train"].uns["cyclecdr"]["params"]["drug_encoder"] == "onehot"


def test_save_load_gives_identical_predictions(bulk, onehot_model, tmp_path):
    means = control_means(bulk["all"])
    before = onehot_model.predict(means, drugs=bulk["seen"][:5])
    path = onehot_model.save(tmp_path / "cyclecdr.pt")
    loaded = CycleCDR.load(path, device="cpu")
    after = loaded.predict(means, drugs=bulk["seen"][:5])
    np.testing.assert_array_equal(before.X, after.X)
    pd.testing.assert_frame_equal(before.obs, after.obs)


def test_fingerprint_predicts_unseen_drugs_better_than_baselines(bulk):
    model = train_cyclecdr(bulk["train"], drug_encoder="fingerprint", max_epochs=30, **SMALL)
    means = control_means(bulk["all"])
    held = {d: bulk["smiles"][d] for d in bulk["held"]}
    model_r2 = deg_r2(model.predict(means, drugs=held), bulk["all"])
    baselines = {
        name: deg_r2(pred, bulk["all"])
        for name, pred in response_baselines(means, drugs=list(held), training_data=bulk["train"]).items()
    }
    # measured: cycleCDR 0.29, no change 0.16, mean treated response 0.23
    print(f"unseen-drug DEG r2: cycleCDR {model_r2:.3f}, baselines {baselines}")
    assert model_r2 > baselines["no change"] + 0.05, (model_r2, baselines)
    assert model_r2 > baselines["mean treated response"] + 0.03, (model_r2, baselines)


def test_gat_ablation_dose_and_gene_weight_variants_train_and_predict():
    adata = pk.datasets.simulate_bulk(n_drugs=12, n_genes=20, n_cell_lines=1, n_moas=3, seed=2)
    tiny = dict(hidden=(16,), latent_dim=8, batch_size=32, patience=None, max_epochs=2)
    held = {"new drug": adata.obs["smiles"][~adata.obs["control"]].iloc[0]}
    means = control_means(adata)
    gat = train_cyclecdr(adata, drug_encoder="gat", **tiny)
    out = gat.predict(means, drugs=held)
    assert out.shape == (1, 20) and np.isfinite(out.X).all() and out.obs["drug"].iloc[0] == "new drug"
    variant = train_cyclecdr(
        adata,
        drug_encoder="fingerprint",
        dose_key="dose",
        single_autoencoder=True,
        use_reconstruction=False,
        use_cycle=True,
        gene_weights=True,
        **tiny,
    )
    assert not hasattr(variant.module, "encoder_treated")
    assert "train_generator_cycle" not in variant.history_frame  # one objective: no prefix
    assert {"train_cycle", "train_mse"} <= set(variant.history_frame.columns)
    out = variant.predict(means, drugs=held, doses=[10.0])
    assert np.isfinite(out.X).all()
    with pytest.raises(pk._schema.PerturbkitInputError, match="doses"):
        variant.predict(means, drugs=held)

    from perturbkit.experiments import cyclecdr_ablation

    test_drugs = sorted(adata.obs["drug"][~adata.obs["control"]].unique())[:2]
    table = cyclecdr_ablation(
        adata,
        test_drugs=test_drugs,
        variants=["dual AE"],
        drug_encoder="fingerprint",
        dose_key="dose",
        baselines=False,
        train_options=tiny,
    )  # every measured dose is predicted
    n_doses = adata.obs.loc[adata.obs["drug"].isin(test_drugs), ["drug", "dose"]].drop_duplicates().shape[0]
    assert n_doses > 2 and table.loc["cycleCDR: dual AE", "n_groups"] == 2
    assert np.isfinite(table.loc["cycleCDR: dual AE", "r2"])


def test_unpaired_single_cell_gan_beats_no_change():
    adata = pk.datasets.simulate_single_cell(
        n_cells=1200,
        n_genes=200,
        n_drugs=4,
        cell_types=("A549", "K562"),
        doses=(10.0,),
        lfc_scale=1.5,
        frac_de_genes=0.25,
        seed=0,
    )
    counts = adata.X.toarray()
    adata.X = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)
    model = train_cyclecdr(adata, paired=False, drug_encoder="onehot", max_epochs=30, **SMALL)
    history = model.history_frame
    assert {"train_discriminator_loss", "train_generator_adversarial", "train_generator_cycle"} <= set(history)
    controls = adata[adata.obs["control"].to_numpy()].copy()
    drugs = sorted(adata.obs["drug"][~adata.obs["control"]].unique())
    model_r2 = deg_r2(model.predict(controls, drugs=drugs), adata)
    no_change = deg_r2(predict_no_change(controls, drugs=drugs), adata)
    # measured: cycleCDR 0.94, no change 0.37
    print(f"unpaired DEG r2: cycleCDR {model_r2:.3f}, no change {no_change:.3f}")
    assert model_r2 > no_change + 0.2, (model_r2, no_change)


def test_ablation_table_runs_variants_and_baselines(bulk):
    from perturbkit.experiments import cyclecdr_ablation

    table = cyclecdr_ablation(
        bulk["all"],
        test_drugs=bulk["held"][:8],
        variants=["dual AE", "single AE"],
        drug_encoder="fingerprint",
        train_options=dict(SMALL, max_epochs=3),
    )
    assert list(table.index) == [
        "cycleCDR: dual AE",
        "cycleCDR: single AE",
        "baseline: no change",
        "baseline: mean treated response",
    ]
    assert {"r2", "r2_degs", "explained_variance", "explained_variance_degs"} <= set(table.columns)
    assert (table["n_groups"] > 0).all() and table["r2_degs"].between(0, 1).all()


def test_invalid_smiles_error_names_the_drug(bulk):
    data = bulk["train"].copy()
    data.obs["smiles"] = data.obs["smiles"].astype(str)
    victim = data.obs["drug"][~data.obs["control"]].iloc[0]
    data.obs.loc[data.obs["drug"] == victim, "smiles"] = "C1CC(not a molecule"
    with pytest.raises(pk._schema.PerturbkitInputError, match=victim):
        train_cyclecdr(data, drug_encoder="fingerprint", max_epochs=1, **SMALL)
