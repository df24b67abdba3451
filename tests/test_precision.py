"""Mixed precision and torch.compile in the one training loop (``pk.settings.precision`` / ``pk.settings.compile``)."""

import numpy as np
import pytest
import torch

import perturbkit as pk
from perturbkit.errors import PerturbkitInputError
from perturbkit.train import Objective, fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def restore_settings():
    yield
    pk.settings.precision, pk.settings.compile = "float32", False


def train_regression(epochs: int = 30):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 16)).astype(np.float32)
    Y = np.tanh(X @ rng.normal(size=(16, 4))).astype(np.float32)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 4))

    def loss(batch):
        return {"loss": torch.nn.functional.mse_loss(net(batch[0]), batch[1])}

    history = fit(
        net,
        Objective(loss, net.parameters(), lr=3e-3),
        (X[:448], Y[:448]),
        validation=(X[448:], Y[448:]),
        max_epochs=epochs,
        batch_size=64,
        patience=None,
        device="cpu",
        seed=0,
    )
    return net, history.to_frame()


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_reaches_the_float32_loss(precision, restore_settings):
    _, full = train_regression()
    pk.settings.precision = precision
    net, mixed = train_regression()
    assert all(p.dtype == torch.float32 for p in net.parameters())  # autocast: the weights stay float32
    first, last = full["validation_loss"].iloc[0], full["validation_loss"].iloc[-1]
    assert last < 0.5 * first  # the float32 run learns ...
    # ... and the mixed-precision run ends within 5 % of it (bfloat16 keeps 8 bits of mantissa in the matmuls)
    assert mixed["validation_loss"].iloc[-1] == pytest.approx(last, rel=0.05)
    assert not np.array_equal(mixed["train_loss"], full["train_loss"])  # the setting really changed the arithmetic


def test_unknown_precision_is_refused_with_the_choices(restore_settings):
    with pytest.raises(PerturbkitInputError, match="precision='fp8'.*'bfloat16'"):
        pk.settings.precision = "fp8"
    assert pk.settings.precision == "float32"


@pytest.mark.slow
def test_compiled_losses_train_the_same_model(restore_settings):
    """torch.compile changes the kernels, not the maths: the same losses to float32 rounding (~40 s to compile)."""
    _, eager = train_regression(epochs=5)
    pk.settings.compile = True
    _, compiled = train_regression(epochs=5)
    np.testing.assert_allclose(compiled["validation_loss"], eager["validation_loss"], rtol=1e-4)
