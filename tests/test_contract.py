"""Every model follows one contract: ``Model.from_adata(adata, ...)``, ``model.train(adata, ...)``,
``model.predict(adata, ...)``, ``save`` / ``load``, with the obs keys and layer recorded once and reused."""

from __future__ import annotations

import numpy as np
import pytest

import perturbkit as pk
from perturbkit.models.anchor_vae import AnchorVAE
from perturbkit.models.baselines import control_means
from perturbkit.models.cpa import CPA
from perturbkit.models.cyclecdr import CycleCDR
from perturbkit.models.deepcellstate import DeepCellState
from perturbkit.models.dual_gan import DualGAN
from perturbkit.models.scgen import ScGen
from perturbkit.models.vae import VAE
from perturbkit.train import BaseModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _bulk():
    adata = pk.datasets.simulate_bulk(n_drugs=30, n_genes=40, n_cell_lines=2, seed=3)
    adata.layers["signature"] = adata.X.copy()
    adata.X = np.zeros_like(adata.X)  # the models must read the layer they were built with
    adata.obs = adata.obs.rename(columns={"cell_line": "line", "drug": "compound"})
    return adata


def _morphology():
    adata = pk.datasets.simulate_morphology(n_compounds=20, n_features=30, n_plates=2, seed=3)
    pk.pp.scale(adata, method="minmax")
    adata.layers["signature"] = adata.X.copy()
    adata.X = np.zeros_like(adata.X)
    return adata


CASES = {
    "DeepCellState": (
        DeepCellState,
        _bulk,
        dict(cell_key="line", drug_key="compound", latent_dim=4, hidden=(16,)),
        dict(max_epochs=3, max_rounds=2, decoder_epochs=2),
        lambda model, adata: model.predict(adata, target="MCF7", sources=["PC3"]),
    ),
    "VAE": (
        VAE,
        _morphology,
        dict(latent_dim=3, hidden=(16,)),
        dict(max_epochs=3),
        lambda model, adata: model.predict(adata),
    ),
    "CycleCDR": (
        CycleCDR,
        _bulk,
        dict(drug_key="compound", cell_key="line", drug_encoder="onehot", latent_dim=8, hidden=(16, 16)),
        dict(max_epochs=3),
        lambda model, adata: model.predict(
            control_means(adata, cell_key="line", layer="signature"), drugs=model.drug_names[:3]
        ),
    ),
    "ScGen": (
        ScGen,
        _bulk,
        dict(cell_key="line", drug_key="compound", latent_dim=4, hidden=(16,)),
        dict(max_epochs=3),
        lambda model, adata: model.predict(adata, target="MCF7", sources=["PC3"]),
    ),
    "AnchorVAE": (
        AnchorVAE,
        _bulk,
        dict(cell_key="line", drug_key="compound", latent_dim=4, hidden=(16,)),
        dict(max_epochs=3),
        lambda model, adata: model.predict(adata, target="MCF7", sources=["PC3"]),
    ),
    "DualGAN": (
        DualGAN,
        _bulk,
        dict(cell_key="line", drug_key="compound", generator_hidden=(16,), discriminator_hidden=(16,)),
        dict(max_epochs=3),
        lambda model, adata: model.predict(adata, target="MCF7", sources=["PC3"]),
    ),
    "CPA": (
        CPA,
        _bulk,
        dict(drug_key="compound", cell_key="line", drug_encoder="onehot", latent_dim=8, hidden=(16, 16)),
        dict(max_epochs=3),
        lambda model, adata: model.predict(
            control_means(adata, cell_key="line", layer="signature"), drugs=model.drug_names[:3]
        ),
    ),
}

#: What each class needs besides its features to be built directly.
REQUIRED = {
    DeepCellState: {"cell_lines": ["A"]},
    AnchorVAE: {"cell_lines": ["A"]},
    DualGAN: {"cell_lines": ["A", "B"]},
    CycleCDR: {"drugs": {"d": ""}, "drug_encoder": "onehot"},
    CPA: {"drugs": {"d": ""}, "cell_lines": ["A"], "drug_encoder": "onehot"},
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_model_trains_predicts_and_reloads_through_the_same_calls(name, tmp_path):
    cls, make_data, build, train, predict = CASES[name]
    adata = make_data()
    model = cls.from_adata(adata, layer="signature", seed=0, **build)
    assert model.layer == "signature" and len(model.history) == 0
    assert set(model.data_keys) == set(cls.data_defaults)
    for key in ("cell_key", "drug_key"):
        if key in build:
            assert model.data_keys[key] == build[key]  # recorded once, reused at prediction time
    assert model.train(adata, seed=0, **train) is model
    assert len(model.history) > 0
    first = predict(model, adata)
    assert first.n_obs > 0 and list(first.var_names) == list(model.var_names)
    assert np.isfinite(first.X).all() and np.abs(first.X).max() > 0  # read from the layer, not the zeroed X

    reordered = adata[:, adata.var_names[::-1]].copy()  # features matched by name
    np.testing.assert_allclose(predict(model, reordered).X, first.X, rtol=1e-5, atol=1e-6)

    model.save(tmp_path / "model.pt")
    loaded = BaseModel.load(tmp_path / "model.pt")
    assert type(loaded) is cls and loaded.data_keys == model.data_keys and loaded.layer == "signature"
    np.testing.assert_array_equal(predict(loaded, adata).X, first.X)


@pytest.mark.parametrize("name", list(CASES))
def test_unknown_data_keys_are_refused(name):
    cls = CASES[name][0]
    with pytest.raises(pk.errors.PerturbkitInputError, match="reads no data key"):
        cls(["a", "b"], data_keys={"no_such_key": "x"}, **REQUIRED.get(cls, {}))


def test_trainers_record_under_key_added():
    adata = _morphology()
    pk.tl.train_vae(adata, layer="signature", latent_dim=2, hidden=(8,), max_epochs=2, key_added="vae_small")
    pk.tl.train_vae(adata, layer="signature", latent_dim=3, hidden=(8,), max_epochs=2, key_added="vae_large")
    assert adata.obsm["X_vae_small"].shape[1] == 2 and adata.obsm["X_vae_large"].shape[1] == 3
    small, large = adata.uns["vae_small"], adata.uns["vae_large"]
    assert small["params"]["latent_dim"] == 2 and large["params"]["latent_dim"] == 3
    assert {"device", "n_epochs", "interrupted", "final_train_loss", "best_validation_loss"} <= set(small)


@pytest.mark.parametrize("name", ["ScGen", "AnchorVAE", "CPA", "DeepCellState", "VAE"])
def test_models_with_a_latent_space_drive_the_traversal_panel(name):
    cls, make_data, build, train, _ = CASES[name]
    adata = make_data()
    model = cls.from_adata(adata, layer="signature", seed=0, **build).train(adata, seed=0, **train)
    X = model.feature_matrix(adata)[:5]
    Z = model.encode_array(X)
    decoded = model.decode_array(Z, decoder=model.decoder_names[-1], inputs=X)
    assert decoded.shape == X.shape and np.isfinite(decoded).all()
    panel = pk.widgets.LatentTraversal(adata, model=model, layer="signature")
    assert panel.model is model
