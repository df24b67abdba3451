"""The shared training engine: early stopping, reproducibility, batching, save/load, errors."""

import anndata as ad
import numpy as np
import pytest
import torch
from torch import nn

import perturbkit as pk
from perturbkit._schema import GeneMismatchError, NonFiniteError
from perturbkit.models._layers import mlp
from perturbkit.train import BaseModel, EarlyStopping, Objective, fit, split_indices


class TinyAutoencoder(BaseModel):
    """A minimal model on the engine, as every real model is built."""

    def __init__(self, var_names, *, hidden=8, **kwargs):
        super().__init__(var_names, hidden=hidden, **kwargs)

    def _build_module(self):
        return nn.Sequential(mlp([self.n_vars, self.hparams["hidden"]]), mlp([self.hparams["hidden"], self.n_vars]))

    def loss(self, batch):
        (x,) = batch
        return {"loss": ((self.module(x) - x) ** 2).mean()}

    def train(self, X, *, seed=0, **kwargs):
        tr, va = split_indices(len(X), validation_fraction=0.2, seed=seed)
        fit(
            self.module,
            Objective(self.loss, self.module.parameters(), lr=1e-2),
            (X[tr],),
            validation=(X[va],),
            seed=seed,
            device=self.device,
            history=self.history,
            **kwargs,
        )
        return self

    @torch.no_grad()
    def predict(self, adata):
        x = torch.from_numpy(self.feature_matrix(adata)).to(self.device)
        return self.module(x).cpu().numpy()


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 3))
    X = (z @ rng.normal(size=(3, 12)) + 0.1 * rng.normal(size=(200, 12))).astype(np.float32)
    return ad.AnnData(X, var={"gene": [f"g{i}" for i in range(12)]}).copy()


def test_training_reduces_loss_and_records_history(data):
    model = TinyAutoencoder(data.var_names).train(data.X, max_epochs=40)
    h = model.history_frame
    assert {"stage", "epoch", "train_loss", "validation_loss"} <= set(h.columns)
    assert h.validation_loss.min() < 0.5 * h.validation_loss.iloc[0]


def test_seeded_cpu_runs_are_bitwise_identical(data):
    a = TinyAutoencoder(data.var_names, device="cpu", seed=3).train(data.X, max_epochs=5, seed=3)
    torch.manual_seed(123)  # disturb the global RNG between runs
    np.random.seed(7)
    b = TinyAutoencoder(data.var_names, device="cpu", seed=3).train(data.X, max_epochs=5, seed=3)
    for (ka, va), (_kb, vb) in zip(a.module.state_dict().items(), b.module.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    c = TinyAutoencoder(data.var_names, device="cpu", seed=4).train(data.X, max_epochs=5, seed=4)
    assert not np.array_equal(a.predict(data), c.predict(data))


def test_early_stopping_restores_best_weights():
    module = nn.Linear(1, 1)
    stopper = EarlyStopping(module, patience=2)
    values = [3.0, 1.0, 2.0, 5.0, 0.5]
    stops = []
    for step, value in enumerate(values):
        with torch.no_grad():
            module.weight.fill_(value)
        stops.append(stopper.step(value, step))
    assert stops == [False, False, False, True, False]
    stopper.restore_best()
    assert stopper.best_step == 4 and module.weight.item() == 0.5


def test_fit_stops_when_validation_stops_improving(data):
    model = TinyAutoencoder(data.var_names)
    # validation data unrelated to training: it stops improving quickly
    rng = np.random.default_rng(1)
    noise = rng.normal(size=data.shape).astype(np.float32)
    fit(
        model.module,
        Objective(model.loss, model.module.parameters(), lr=1e-2),
        (data.X,),
        validation=(noise,),
        max_epochs=200,
        patience=3,
        history=model.history,
    )
    h = model.history_frame
    assert len(h) < 200
    best = h.validation_loss.idxmin()
    assert len(h) - 1 - best == 3  # stopped exactly `patience` epochs after the best one


def test_large_data_is_minibatched_from_cpu_with_same_result(data):
    small = TinyAutoencoder(data.var_names).train(data.X, max_epochs=3, batch_size=32)
    old = pk.settings.max_device_bytes
    pk.settings.max_device_bytes = 0  # force the host-side batching path
    try:
        large = TinyAutoencoder(data.var_names).train(data.X, max_epochs=3, batch_size=32)
    finally:
        pk.settings.max_device_bytes = old
    np.testing.assert_array_equal(small.predict(data), large.predict(data))


def test_two_objectives_each_step(data):
    model = TinyAutoencoder(data.var_names)
    enc, dec = model.module[0], model.module[1]
    before = [p.detach().clone() for p in model.module.parameters()]
    history = fit(
        model.module,
        [
            Objective(model.loss, enc.parameters(), name="encoder"),
            Objective(model.loss, dec.parameters(), name="decoder"),
        ],
        (data.X,),
        max_epochs=2,
        patience=None,
    )
    assert {"train_encoder_loss", "train_decoder_loss"} <= set(history.to_frame().columns)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.module.parameters(), strict=True))


def test_nonfinite_loss_is_reported(data):
    model = TinyAutoencoder(data.var_names)
    X = data.X.copy()
    X[0, 0] = np.inf
    with pytest.raises(FloatingPointError, match="learning rate"):
        fit(model.module, Objective(model.loss, model.module.parameters()), (X,), max_epochs=2)


def test_save_load_round_trip_gives_identical_predictions(data, tmp_path):
    model = TinyAutoencoder(data.var_names, hidden=5).train(data.X, max_epochs=5)
    model.scaler = pk.pp.Scaler("maxabs").fit(data.X)
    path = model.save(tmp_path / "tiny.pt")
    loaded = BaseModel.load(path)
    assert type(loaded) is TinyAutoencoder and loaded.hparams == {
        "hidden": 5,
        "data_keys": {},
        "layer": None,
        "seed": 0,
    }
    np.testing.assert_array_equal(model.predict(data), loaded.predict(data))
    assert loaded.scaler == model.scaler
    assert list(loaded.var_names) == list(data.var_names)
    assert loaded.history_frame.equals(model.history_frame)
    assert loaded.saved_with_version == pk.__version__
    with pytest.raises(FileExistsError):
        model.save(path, overwrite=False)


def test_features_are_aligned_by_name_and_mismatches_refused(data):
    model = TinyAutoencoder(data.var_names)
    shuffled = data[:, data.var_names[::-1]].copy()
    np.testing.assert_allclose(model.predict(data), model.predict(shuffled), atol=1e-6)
    other = data.copy()
    other.var_names = [f"other{i}" for i in range(data.n_vars)]
    with pytest.raises(GeneMismatchError, match="12 of them are missing"):
        model.predict(other)
    bad = data.copy()
    bad.X[3, 2] = np.nan
    with pytest.raises(NonFiniteError, match="NaN"):
        model.predict(bad)


def test_split_indices_keeps_groups_together():
    groups = np.repeat(np.arange(20), 3)
    tr, va = split_indices(60, validation_fraction=0.25, seed=0, groups=groups)
    assert len(tr) + len(va) == 60
    assert not set(groups[tr]) & set(groups[va])
    assert len(set(groups[va])) == 5


def test_device_argument_validated():
    with pytest.raises(ValueError, match="not known"):
        pk.settings.device = "tpu"
    if not torch.cuda.is_available():
        with pytest.raises(pk.errors.DeviceError, match="CUDA is not available"):
            TinyAutoencoder(["a", "b"], device="cuda")
