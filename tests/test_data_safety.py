"""The user's data, files and random state are never changed or lost; model files are checked on load."""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import subprocess
import sys
import warnings

import anndata as ad
import numpy as np
import pytest
import torch

import perturbkit as pk
from perturbkit.errors import ModelFileError, PerturbkitInputError
from perturbkit.models.deepcellstate import DeepCellState
from perturbkit.models.vae import VAE
from perturbkit.train import BaseModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def profiles():
    adata = pk.datasets.simulate_morphology(n_compounds=20, n_features=30, n_plates=2, seed=0)
    pk.pp.scale(adata, method="minmax")
    return adata


@pytest.fixture(scope="module")
def bulk():
    return pk.datasets.simulate_bulk(n_drugs=40, n_genes=60, seed=1)


def _tiny_vae(profiles, **kwargs):
    options = dict(latent_dim=3, hidden=(16,), max_epochs=6, patience=None, seed=0)
    return VAE.build_and_train(profiles, **{**options, **kwargs})


# ---------------------------------------------------------------------------------------------------------------
# 1. pp.scale / pp.unscale never change a parent through a view, nor a backed file
@pytest.mark.parametrize("method", ["maxabs", "minmax", "zscore"])
def test_scale_in_place_on_view_leaves_parent_unchanged(method):
    parent = ad.AnnData(np.random.default_rng(0).normal(size=(200, 12)).astype(np.float32))
    before = parent.X.copy()
    view = parent[:100]
    with pytest.warns(UserWarning, match="view"):
        pk.pp.scale(view, method=method)
    np.testing.assert_array_equal(parent.X, before)
    assert "scale" not in parent.uns
    assert not view.is_view and "scale" in view.uns
    expected = pk.pp.scale(ad.AnnData(before[:100]), method=method, copy=True).X
    np.testing.assert_array_equal(view.X, expected)
    with pytest.warns(UserWarning, match="view"):
        pk.pp.scale(parent[100:], method=method)
    np.testing.assert_array_equal(parent.X, before)


def test_unscale_on_view_leaves_parent_unchanged():
    parent = ad.AnnData(np.random.default_rng(1).normal(size=(60, 5)).astype(np.float32))
    pk.pp.scale(parent)
    scaled = parent.X.copy()
    view = parent[:30]
    with pytest.warns(UserWarning, match="view"):
        pk.pp.unscale(view)
    np.testing.assert_array_equal(parent.X, scaled)
    assert "scale" in parent.uns and "scale" not in view.uns


def test_scale_refuses_backed_in_place_and_copies_backed(tmp_path):
    path = tmp_path / "profiles.h5ad"
    ad.AnnData(np.random.default_rng(2).normal(size=(40, 8)).astype(np.float32)).write_h5ad(path)
    digest = _sha(path)
    backed = ad.read_h5ad(path, backed="r+")
    with pytest.raises(PerturbkitInputError, match="copy=True"):
        pk.pp.scale(backed)
    with pytest.raises(PerturbkitInputError, match="to_memory"):
        pk.pp.scale(backed[:10])
    scaled = pk.pp.scale(backed, method="zscore", copy=True)
    assert not scaled.isbacked and "scale" in scaled.uns
    np.testing.assert_allclose(scaled.X.mean(axis=0), 0, atol=1e-6)
    backed.file.close()
    assert _sha(path) == digest


def test_scale_large_values_match_float64_reference():
    rng = np.random.default_rng(3)
    X = (rng.normal(size=(5000, 7)) * 1e3 + 5e3).astype(np.float32)  # several blocks of rows
    out = pk.pp.scale(ad.AnnData(X), method="zscore", copy=True).X
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(out, ((X64 - X64.mean(0)) / X64.std(0)).astype(np.float32), rtol=0, atol=2e-6)


def test_scale_finds_nan_in_a_later_block():
    X = np.ones((5000, 4), dtype=np.float32)
    X[4500, 2] = np.nan
    with pytest.raises(pk.errors.NonFiniteError, match="1 NaN"):
        pk.pp.scale(ad.AnnData(X), copy=True)
    with pytest.raises(pk.errors.NonFiniteError):
        pk.pp.scale(ad.AnnData(X), scaler=pk.pp.Scaler("maxabs").fit(np.ones((2, 4))), copy=True)


# ---------------------------------------------------------------------------------------------------------------
# 1. saves are atomic
def test_failed_save_keeps_the_good_file(profiles, tmp_path):
    model = _tiny_vae(profiles)
    path = tmp_path / "model.pt"
    model.save(path)
    good = _sha(path)

    def failing_save(payload, target):
        with open(target, "wb") as fh:
            fh.write(b"half a model")
        raise OSError(28, "No space left on device")

    original = torch.save
    torch.save = failing_save
    try:
        with pytest.raises(OSError, match="No space"):
            model.save(path)
    finally:
        torch.save = original
    assert _sha(path) == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary file left behind
    assert isinstance(BaseModel.load(path), VAE)


# ---------------------------------------------------------------------------------------------------------------
# 1. the user's global random generators are left as they were
def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


@pytest.mark.parametrize("call", ["train_vae", "deepcellstate", "cyclecdr", "load"])
def test_user_rng_state_is_not_touched(profiles, bulk, tmp_path, call):
    path = tmp_path / "m.pt"
    _tiny_vae(profiles).save(path)

    def run():
        if call == "train_vae":
            pk.tl.train_vae(profiles.copy(), latent_dim=2, hidden=(8,), max_epochs=2, seed=0)
        elif call == "cyclecdr":
            pk.tl.train_cyclecdr(
                bulk.copy(), drug_encoder="onehot", hidden=(16, 16), latent_dim=4, max_epochs=2, seed=0
            )
        elif call == "deepcellstate":
            pk.tl.train_deepcellstate(
                bulk, latent_dim=4, hidden=(16,), max_epochs=2, max_rounds=1, decoder_epochs=1, seed=0
            )
        else:
            BaseModel.load(path)

    for seed in (11, 12):
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
        expected = _draws()
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
        run()
        assert _draws() == expected


def test_seeded_runs_stay_bitwise_reproducible(profiles):
    a, b = _tiny_vae(profiles), _tiny_vae(profiles)
    for key, value in a.module.state_dict().items():
        assert torch.equal(value, b.module.state_dict()[key])


# ---------------------------------------------------------------------------------------------------------------
# 1. Ctrl-C ends training cleanly; checkpoints and resume
def _interrupt_after(model, n_calls: int):
    """Make the model's loss raise KeyboardInterrupt on its (n_calls + 1)-th call."""
    original, calls = model.loss, {"n": 0}

    def loss(batch):
        calls["n"] += 1
        if calls["n"] > n_calls:
            raise KeyboardInterrupt
        return original(batch)

    model.loss = loss
    return original


def test_ctrl_c_returns_model_with_best_weights(profiles):
    X = profiles.X
    model = VAE(profiles.var_names, latent_dim=3, hidden=(16,), seed=0)
    _interrupt_after(model, 4 * int(np.ceil(len(X) / 96)))  # four whole epochs, then Ctrl-C
    with pytest.warns(UserWarning, match="interrupted.*best weights.*epoch 3"):
        returned = model.train(X, validation_fraction=0, max_epochs=50, patience=None, seed=0)
    assert returned is model and model.interrupted and not model.module.training
    history = model.history_frame
    assert len(history) == 4
    reference = VAE(profiles.var_names, latent_dim=3, hidden=(16,), seed=0)
    reference.train(X, validation_fraction=0, max_epochs=4, patience=None, seed=0)
    for key, value in reference.module.state_dict().items():
        assert torch.equal(value, model.module.state_dict()[key])


def test_ctrl_c_through_tl_face_returns_model(profiles, monkeypatch):
    def interrupted_loss(self, batch):
        raise KeyboardInterrupt

    monkeypatch.setattr(VAE, "loss", interrupted_loss)
    adata = profiles.copy()
    with pytest.warns(UserWarning, match="interrupted"):
        model = pk.tl.train_vae(adata, latent_dim=2, hidden=(8,), max_epochs=5)
    assert isinstance(model, VAE) and adata.uns["vae"]["interrupted"]
    assert adata.obsm["X_vae"].shape == (adata.n_obs, 2)


def test_vae_checkpoint_resume_is_exact(profiles, tmp_path):
    X = profiles.X
    uninterrupted = VAE(profiles.var_names, latent_dim=3, hidden=(16,), seed=0)
    uninterrupted.train(X, validation_fraction=0, max_epochs=7, seed=0, patience=None)
    first = VAE(profiles.var_names, latent_dim=3, hidden=(16,), seed=0)
    _interrupt_after(first, 5 * int(np.ceil(len(X) / 96)))
    with pytest.warns(UserWarning, match="interrupted"):
        first.train(
            X, validation_fraction=0, max_epochs=7, seed=0, patience=None, checkpoint_dir=tmp_path, checkpoint_every=3
        )
    assert (tmp_path / "checkpoint.pt").exists()
    assert len(BaseModel.load(tmp_path / "checkpoint.pt").history) == 3  # a checkpoint is a loadable model
    resumed = VAE(profiles.var_names, latent_dim=3, hidden=(16,), seed=0)
    resumed.train(X, validation_fraction=0, max_epochs=7, seed=0, patience=None, resume=tmp_path)
    for key, value in uninterrupted.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[key]), key
    assert len(resumed.history) == 7


def test_deepcellstate_checkpoint_resume_is_exact(bulk, tmp_path):
    options = dict(latent_dim=4, hidden=(16,), max_epochs=4, max_rounds=4, decoder_epochs=3, seed=0)
    reference = pk.tl.train_deepcellstate(bulk, **options)
    run = dict(options, checkpoint_dir=tmp_path, checkpoint_every=2)
    original = DeepCellState._validation_mse
    calls = {"n": 0}

    def interrupted_after_three_rounds(self, scaled, decoders):
        calls["n"] += 1
        if calls["n"] > 4:  # the initial check and three rounds
            raise KeyboardInterrupt
        return original(self, scaled, decoders)

    DeepCellState._validation_mse = interrupted_after_three_rounds
    try:
        with pytest.warns(UserWarning, match="interrupted"):
            pk.tl.train_deepcellstate(bulk, **run)
    finally:
        DeepCellState._validation_mse = original
    resumed = pk.tl.train_deepcellstate(bulk, **dict(options, resume=tmp_path / "checkpoint.pt"))
    for key, value in reference.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[key]), key
    assert len(resumed.history) == len(reference.history)


def test_resume_refuses_a_plain_model_file(profiles, tmp_path):
    model = _tiny_vae(profiles)
    model.save(tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match="not a training checkpoint"):
        VAE(profiles.var_names, latent_dim=3, hidden=(16,)).train(profiles.X, resume=tmp_path / "m.pt")


# ---------------------------------------------------------------------------------------------------------------
# 2. model files are checked on load
def test_corrupted_model_file_is_refused(profiles, tmp_path):
    model = _tiny_vae(profiles)
    path = tmp_path / "m.pt"
    model.save(path)
    data = bytearray(path.read_bytes())
    weights = model.module.state_dict()["encoder.0.weight"].numpy().tobytes()
    at = bytes(data).index(weights[:64])  # inside the stored weights
    data[at + 8 : at + 40] = bytes(32)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="damaged"):
        BaseModel.load(path)


def test_foreign_and_malicious_files_get_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(2000))
    with pytest.raises(ModelFileError, match="garbage.pt.*damaged, truncated"):
        BaseModel.load(garbage)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    malicious = tmp_path / "malicious.pt"
    torch.save({"format": "perturbkit-model/2", "x": Exploit()}, malicious)
    with pytest.raises(ModelFileError, match="refused") as error:
        BaseModel.load(malicious)
    assert "weights_only=False" not in str(error.value)

    plain = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(2)}, plain)
    with pytest.raises(ModelFileError, match="not a perturbkit model file"):
        BaseModel.load(plain)
    with open(tmp_path / "pickled.pt", "wb") as fh:
        pickle.dump([1, 2], fh)
    with pytest.raises(ModelFileError):
        BaseModel.load(tmp_path / "pickled.pt")


def _rewrite_payload(path, change):
    from perturbkit.train._base import _digest

    payload = torch.load(path, weights_only=True)
    payload.pop("sha256")
    change(payload)
    payload["sha256"] = _digest(payload)
    torch.save(payload, path)


def test_format_versions(profiles, tmp_path):
    model = _tiny_vae(profiles)
    path = tmp_path / "m.pt"
    model.save(path)
    _rewrite_payload(path, lambda p: p.update(perturbkit_version="99.0.0"))
    with pytest.warns(UserWarning, match="newer"):
        BaseModel.load(path)
    model.save(path)
    _rewrite_payload(path, lambda p: p.update(format="perturbkit-model/7"))
    with pytest.raises(ModelFileError, match="format version '7'"):
        BaseModel.load(path)
    # format 1 files (no checksum, written before it existed) still load
    model.save(path)
    payload = torch.load(path, weights_only=True)
    payload.pop("sha256")
    payload.pop("module")
    payload["format"] = "perturbkit-model/1"
    torch.save(payload, path)
    loaded = BaseModel.load(path)
    np.testing.assert_array_equal(loaded.encode(profiles), model.encode(profiles))


def test_load_in_a_fresh_session(profiles, tmp_path):
    path = tmp_path / "m.pt"
    _tiny_vae(profiles).save(path)
    code = f"from perturbkit.train import BaseModel; m = BaseModel.load({str(path)!r}); print(type(m).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "VAE"


# ---------------------------------------------------------------------------------------------------------------
# 2. divergence without NaN is reported; 4. bad training arguments
def test_diverging_training_warns():
    adata = pk.datasets.simulate_bulk(n_drugs=30, n_genes=40, n_cell_lines=2, baseline=1.0, seed=0)
    small = dict(drug_encoder="onehot", max_epochs=15, hidden=(32, 32), latent_dim=8)
    with pytest.warns(UserWarning, match="diverged.*Lower the learning rate"):
        model = pk.tl.train_cyclecdr(adata.copy(), lr=10.0, **small)
    history = model.history_frame["validation_loss"]
    assert history.iloc[-1] > 10 * history.min()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pk.tl.train_cyclecdr(adata.copy(), lr=1e-3, **small)


@pytest.mark.parametrize("option", [{"batch_size": 0}, {"max_epochs": 0}, {"batch_size": -3}, {"max_epochs": 1.5}])
def test_bad_training_sizes_are_named(profiles, option):
    name = next(iter(option))
    with pytest.raises(PerturbkitInputError, match=f"{name} must be a positive integer"):
        pk.tl.train_vae(profiles.copy(), latent_dim=2, **option)


def test_unknown_layer_is_named(profiles):
    model = _tiny_vae(profiles)
    with pytest.raises(PerturbkitInputError, match="no 'counts'.*available layers"):
        model.encode(profiles, layer="counts")
