"""Clear perturbkit errors instead of silently wrong numbers or raw tracebacks (issue 10, sections 2 and 4).

Each test asserts the error class and that the message names the argument, column or input and the fix.
"""

from __future__ import annotations

import numpy as np
import pytest

import perturbkit as pk
from perturbkit import widgets as W
from perturbkit._schema import (
    EmptyGroupError,
    MissingColumnError,
    NonFiniteError,
    PerturbkitInputError,
    UnknownCategoryError,
)
from perturbkit.models._profiles import CellDrugProfiles
from perturbkit.models.cyclecdr import CycleCDR
from perturbkit.models.deepcellstate import DeepCellState
from perturbkit.models.vae import VAE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_VAE = dict(latent_dim=4, hidden=(16,), max_epochs=2, patience=None, device="cpu", seed=0)
TINY_DCS = dict(latent_dim=4, hidden=(8,), max_epochs=2, max_rounds=1, device="cpu", seed=0)
TINY_CDR = dict(
    drug_encoder="onehot", hidden=(8,), latent_dim=4, max_epochs=2, batch_size=64, patience=None, device="cpu"
)


@pytest.fixture(scope="module")
def vae(morph):
    return pk.tl.train_vae(morph.copy(), **TINY_VAE)


@pytest.fixture(scope="module")
def bulk():
    return pk.datasets.simulate_bulk(n_drugs=40, n_genes=20, seed=1)


@pytest.fixture(scope="module")
def dcs(bulk):
    return pk.tl.train_deepcellstate(bulk.copy(), **TINY_DCS)


@pytest.fixture(scope="module")
def cdr(bulk):
    return pk.tl.train_cyclecdr(bulk.copy(), **TINY_CDR)


def _without_control(adata):
    out = adata.copy()
    del out.obs["control"]
    return out


# --------------------------------------------------------------------------- DeepCellState without a control column
def test_deepcellstate_refuses_data_without_a_control_column(bulk):
    data = _without_control(bulk)
    with pytest.raises(MissingColumnError, match=r"no column 'control'.*control_key=None"):
        pk.tl.train_deepcellstate(data, **TINY_DCS)
    with pytest.raises(MissingColumnError, match="control_key=None"):
        CellDrugProfiles.from_adata(data)
    with pytest.raises(MissingColumnError, match="control_key=None"):
        pk.tl.cross_validate_deepcellstate(
            data,
            source="PC3",
            target="MCF7",
            n_folds=2,
            folds=[0],
            device="cpu",
            train_options=dict(latent_dim=4, hidden=(8,), max_epochs=2, max_rounds=1),
        )
    assert "deepcellstate" not in data.uns


def test_deepcellstate_control_key_none_treats_every_row_as_a_drug(bulk, dcs):
    model = pk.tl.train_deepcellstate(_without_control(bulk), control_key=None, **TINY_DCS)
    assert model.hparams["data_keys"]["control_key"] is None
    assert "DMSO" in set(model.predict(_without_control(bulk), target="MCF7").obs["drug"])
    # with the column, the controls are left out of training and prediction
    assert "DMSO" not in set(dcs.predict(bulk, target="MCF7").obs["drug"])


def test_deepcellstate_trained_with_controls_refuses_data_without_them(bulk, dcs):
    data = _without_control(bulk)
    for call in (
        lambda: dcs.predict(data, target="MCF7"),
        lambda: pk.tl.latent_embeddings(data, model=dcs),
        lambda: W.ResponseExplorer(data, model=dcs),
    ):
        with pytest.raises(MissingColumnError, match=r"trained with control_key='control'.*adata.obs\['control'\] ="):
            call()


# ------------------------------------------------------------------------------------------- NaN / inf in metrics
def _response_inputs(bulk):
    truth = bulk[bulk.obs["cell_line"] == "MCF7"].copy()
    pred = truth[~truth.obs["control"].to_numpy()].copy()
    pred.X = pred.X + 0.1
    return pred, truth


@pytest.mark.parametrize("where", ["pred", "truth", "truth control row", "control"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_evaluate_response_refuses_non_finite_values(bulk, where, bad):
    pred, truth = _response_inputs(bulk)
    control = truth[truth.obs["control"].to_numpy()].copy()
    if where == "pred":
        pred.X[2, 3] = bad
    elif where == "truth":
        truth.X[np.flatnonzero(~truth.obs["control"].to_numpy())[0], 3] = bad
    elif where == "truth control row":
        truth.X[np.flatnonzero(truth.obs["control"].to_numpy())[0], 3] = bad
    else:
        control.X[0, 3] = bad
    name = {"pred": "pred", "truth": "truth", "truth control row": "truth", "control": "control"}[where]
    kind = "1 NaN" if np.isnan(bad) else "1 infinite"
    with pytest.raises(NonFiniteError, match=rf"^{name}\.X holds .*{kind}"):
        if where == "control":
            pk.metrics.evaluate_response(pred, truth[~truth.obs["control"].to_numpy()], groupby="drug", control=control)
        else:
            pk.metrics.evaluate_response(pred, truth, groupby="drug", control="control")


def test_evaluate_response_checks_the_chosen_layer_and_input_types(bulk):
    pred, truth = _response_inputs(bulk)
    truth.layers["raw"] = truth.X.copy()
    with pytest.raises(PerturbkitInputError, match="pred has no layer 'raw'; its layers are"):
        pk.metrics.evaluate_response(pred, truth, groupby="drug", layer="raw")
    pred.layers["raw"] = pred.X.copy()
    truth.layers["raw"][0, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"truth\.layers\['raw'\]"):
        pk.metrics.evaluate_response(pred, truth, groupby="drug", layer="raw", control="control")
    with pytest.raises(PerturbkitInputError, match="pred must be an AnnData"):
        pk.metrics.evaluate_response(pred.X, truth, groupby="drug")


def test_row_metrics_refuse_non_finite_values():
    good = np.ones((2, 4))
    bad = good.copy()
    bad[1, 2] = np.nan
    for f in (pk.metrics.r2_rows, pk.metrics.explained_variance_rows):
        with pytest.raises(NonFiniteError, match="^truth holds 1 NaN"):
            f(good, bad)
        with pytest.raises(NonFiniteError, match="^pred holds 1 NaN"):
            f(bad, good)


# ------------------------------------------------------------------------------------------------ cycleCDR predict
def test_cyclecdr_predict_on_zero_control_rows_says_what_to_pass(bulk, cdr):
    empty = pk.tl.control_means(bulk)[:0]
    with pytest.raises(EmptyGroupError, match=r"adata_controls has no rows.*pk\.tl\.control_means\(adata\)"):
        cdr.predict(empty, drugs=cdr.drug_names[:2])
    with pytest.raises(PerturbkitInputError, match="adata_controls must be an AnnData"):
        cdr.predict(cdr, drugs=cdr.drug_names[:2])
    assert cdr.predict_array(np.zeros((0, cdr.n_vars), np.float32), []).shape == (0, cdr.n_vars)


# ---------------------------------------------------------------------------------------------------- panels
def test_latent_traversal_on_empty_data(morph, vae):
    with pytest.raises(EmptyGroupError, match="adata has no rows.*leave adata out"):
        W.LatentTraversal(morph[:0], model=vae)


def test_embedding_explorer_with_swapped_arguments(morph, vae):
    with pytest.raises(PerturbkitInputError, match=r"swapped.*EmbeddingExplorer\(adata, model=model\)"):
        W.EmbeddingExplorer(vae, model=morph)
    with pytest.raises(PerturbkitInputError, match=r"adata is a VAE, a model, not data.*model=model\)"):
        W.EmbeddingExplorer(vae)


def test_other_panels_refuse_swapped_arguments(morph, vae, bulk, dcs):
    with pytest.raises(PerturbkitInputError, match=r"swapped.*LatentTraversal\(adata, model=model\)"):
        W.LatentTraversal(vae, model=morph)
    with pytest.raises(PerturbkitInputError, match=r"swapped.*LSAExplorer\(adata, model=model\)"):
        W.LSAExplorer(vae, model=morph)
    with pytest.raises(PerturbkitInputError, match=r"swapped.*ResponseExplorer\(adata, model=model\)"):
        W.ResponseExplorer(dcs, model=bulk)
    for panel in (W.LatentTraversal, W.LSAExplorer, W.ResponseExplorer):  # the model is keyword-only
        with pytest.raises(TypeError):
            panel(morph, vae)


def test_panels_refuse_untrained_models(morph, bulk):
    untrained_vae = VAE(morph.var_names, latent_dim=4, hidden=(8,), device="cpu")
    untrained_dcs = DeepCellState(bulk.var_names, cell_lines=["MCF7", "PC3"], latent_dim=4, hidden=(8,), device="cpu")
    untrained_cdr = CycleCDR(
        bulk.var_names, drugs={"a": ""}, drug_encoder="onehot", hidden=(8,), latent_dim=4, device="cpu"
    )
    calls = [
        (lambda: W.LatentTraversal(morph, model=untrained_vae), "VAE", r"pk\.tl\.train_vae"),
        (lambda: W.LatentTraversal(model=untrained_dcs), "DeepCellState", r"pk\.tl\.train_deepcellstate"),
        (lambda: W.EmbeddingExplorer(morph, model=untrained_vae, basis="pca"), "VAE", r"pk\.tl\.train_vae"),
        (lambda: W.LSAExplorer(morph, model=untrained_vae), "VAE", r"pk\.tl\.train_vae"),
        (lambda: W.ResponseExplorer(bulk, model=untrained_dcs), "DeepCellState", r"pk\.tl\.train_deepcellstate"),
        (lambda: W.ResponseExplorer(bulk, model=untrained_cdr), "CycleCDR", r"pk\.tl\.train_cyclecdr"),
    ]
    for call, name, hint in calls:
        with pytest.raises(PerturbkitInputError, match=rf"model is an untrained {name}.*Train the model first.*{hint}"):
            call()


# ---------------------------------------------------------------------------------- pk.tl model/data arguments
@pytest.mark.parametrize(
    "function", ["vae_reconstruction_metrics", "vae_latent_correlation", "vae_feature_reconstruction"]
)
def test_vae_tools_refuse_swapped_or_untrained_models(morph, vae, function):
    f = getattr(pk.tl, function)
    with pytest.raises(PerturbkitInputError, match=rf"swapped.*pk\.tl\.{function}\(adata, model=vae\)"):
        f(vae, model=morph)
    with pytest.raises(TypeError, match="model"):  # the model is keyword-only and required
        f(morph)
    with pytest.raises(TypeError):
        f(morph, vae)
    with pytest.raises(PerturbkitInputError, match=rf"pk\.tl\.{function}: model must be a trained VAE, got None"):
        f(morph, model=None)
    with pytest.raises(PerturbkitInputError, match=r"untrained VAE.*pk\.tl\.train_vae"):
        f(morph, model=VAE(morph.var_names, latent_dim=4, hidden=(8,), device="cpu"))


def test_model_first_tools_refuse_data(morph, bulk, vae, dcs):
    with pytest.raises(PerturbkitInputError, match=r"latent_traversal needs a trained VAE.*got a AnnData"):
        pk.tl.latent_traversal(morph, feature=0)
    with pytest.raises(PerturbkitInputError, match=r"swapped.*pk\.tl\.latent_embeddings\(adata, model=model\)"):
        pk.tl.latent_embeddings(dcs, model=bulk)
    from perturbkit.models.deepcellstate import gene_importance

    with pytest.raises(PerturbkitInputError, match=r"gene_importance takes a trained DeepCellState first"):
        gene_importance(bulk, dcs, target="MCF7", source="PC3")
    with pytest.raises(PerturbkitInputError, match=r"swapped.*latent_arithmetic\(adata, model=model\)"):
        pk.tl.latent_arithmetic(vae, model=morph)
    with pytest.raises(PerturbkitInputError, match=r"swapped"):
        pk.tl.project_reconstructions(vae, model=morph)


# --------------------------------------------------------------------------- perturbkit errors, not bare ones
def test_bad_options_raise_perturbkit_errors(bulk):
    profiles = CellDrugProfiles.from_adata(bulk)
    from perturbkit.models.deepcellstate import ablation, cross_validate
    from perturbkit.models.deepcellstate._evaluation import split_options

    with pytest.raises(PerturbkitInputError, match=r"split must be 'drug'.*'moa'.*got split='plate'"):
        cross_validate(profiles, source="PC3", target="MCF7", n_folds=2, split="plate")
    with pytest.raises(UnknownCategoryError, match=r"\['no dropout'\] in variants="):
        ablation(profiles, source="PC3", target="MCF7", variants=["no dropout"])
    with pytest.raises(PerturbkitInputError, match=r"learning_rate.*lr=") as info:
        split_options({"learning_rate": 1e-3})
    assert isinstance(info.value, TypeError)  # still the TypeError of an unexpected keyword
    with pytest.raises(PerturbkitInputError, match=r"layer sizes must be positive.*hidden="):
        VAE(bulk.var_names, hidden=(0,), device="cpu")
    from perturbkit.models._layers import activation

    with pytest.raises(PerturbkitInputError, match="unknown activation 'gelu2'"):
        activation("gelu2")


def test_model_entry_points_name_a_missing_layer(morph, vae):
    for call in (
        lambda: pk.tl.latent_arithmetic(morph.copy(), model=vae, layer="nope"),
        lambda: W.LatentTraversal(morph, model=vae, layer="nope"),
        lambda: pk.tl.project_reconstructions(morph, model=vae, layer="nope"),
    ):
        with pytest.raises(PerturbkitInputError, match=r"adata has no layer 'nope'; its layers are \['noise_free'\]"):
            call()
