"""Network building blocks shared by the models."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .._schema import PerturbkitInputError

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
}


def activation(name: str | None) -> nn.Module:
    """An activation module by name (``None`` or ``"linear"`` gives identity)."""
    if name in (None, "linear", "identity"):
        return nn.Identity()
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise PerturbkitInputError(
            f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)} or 'linear'."
        ) from None


def mlp(
    sizes: Sequence[int],
    *,
    activation_name: str = "leaky_relu",
    output_activation: str | None = None,
    batch_norm: bool = False,
    dropout: float = 0.0,
    bias: bool = True,
    last_bias: bool = True,
) -> nn.Sequential:
    """Dense layers ``sizes[0] → sizes[1] → … → sizes[-1]``.

    Hidden layers get (optional) batch norm, the activation and (optional) dropout; the last layer gets
    ``output_activation`` only.
    """
    if len(sizes) < 2:
        raise PerturbkitInputError(f"an MLP needs at least an input and an output size, got {list(sizes)}.")
    bad = [s for s in sizes if int(s) < 1]
    if bad:
        raise PerturbkitInputError(
            f"layer sizes must be positive integers, got {list(sizes)}; check hidden= and "
            f"latent_dim= (e.g. hidden=(512, 256), latent_dim=128) and that the data has "
            f"features."
        )
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        layers.append(nn.Linear(n_in, n_out, bias=last_bias if last else bias))
        if last:
            layers.append(activation(output_activation))
        else:
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(activation(activation_name))
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
