"""The dual GAN's networks and losses, after MAGAN (Amodio & Krishnaswamy, ICML 2018); see the dual GAN methods page.

Two generators map profiles between cell lines ``a`` and ``b`` (``G_ab``, ``G_ba``), and one discriminator per cell
line tells its real profiles from generated ones. The generators' loss is MAGAN's: adversarial, cycle reconstruction
and correspondence terms, averaged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce

from .._layers import mlp


class DualGANNetwork(nn.Module):
    """Generators ``G_ab``, ``G_ba`` (linear output) and discriminators ``D_a``, ``D_b`` (one logit), LeakyReLU MLPs.

    Parameters
    ----------
    n_features
        Number of genes (both cell lines share them).
    generator_hidden
        Hidden sizes of each generator (MAGAN: 200, 100, 50).
    discriminator_hidden
        Hidden sizes of each discriminator (MAGAN: 800, 400, 200, 100, 50).
    """

    def __init__(
        self,
        n_features: int,
        *,
        generator_hidden: tuple[int, ...] = (200, 100, 50),
        discriminator_hidden: tuple[int, ...] = (800, 400, 200, 100, 50),
    ):
        super().__init__()
        generator = [n_features, *generator_hidden, n_features]
        discriminator = [n_features, *discriminator_hidden, 1]
        self.generator_ab = mlp(generator, activation_name="leaky_relu")
        self.generator_ba = mlp(generator, activation_name="leaky_relu")
        self.discriminator_a = mlp(discriminator, activation_name="leaky_relu")
        self.discriminator_b = mlp(discriminator, activation_name="leaky_relu")

    def generator(self, source: int, target: int) -> nn.Module:
        """The generator from cell line position ``source`` to ``target`` (0 is ``a``, 1 is ``b``)."""
        if (source, target) == (0, 1):
            return self.generator_ab
        if (source, target) == (1, 0):
            return self.generator_ba
        raise ValueError(f"no generator from position {source} to {target}; the positions are 0 and 1.")

    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.generator_ab.parameters(), *self.generator_ba.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.discriminator_a.parameters(), *self.discriminator_b.parameters()]

    def forward(self, x: torch.Tensor, source: int, target: int) -> torch.Tensor:
        return self.generator(source, target)(x)


def generator_loss(
    net: DualGANNetwork,
    batch,
    *,
    adversarial_weight: float,
    cycle_weight: float,
    correspondence_weight: float,
    paired: bool,
    adversarial: bool = True,
) -> dict[str, torch.Tensor]:
    """MAGAN's generator loss on a batch ``(x_a, x_b)``: the mean of its six terms, each times its weight.

    ``adversarial``: ``D_b(G_ab(x_a))`` and ``D_a(G_ba(x_b))`` against the label "real" (non-saturating BCE);
    ``cycle``: the MSE of ``G_ba(G_ab(x_a))`` against ``x_a`` and of ``G_ab(G_ba(x_b))`` against ``x_b``;
    ``correspondence``: the MSE of ``G_ab(x_a)`` against ``x_a`` and of ``G_ba(x_b)`` against ``x_b`` (every gene
    corresponds to itself), or, with ``paired``, against the same drug's profile in the other cell line (the
    DeepCellState paper's competitor code). The logged terms are the sums of their two directions, unweighted.
    ``adversarial=False`` leaves the adversarial terms out (the validation loss).
    """
    xa, xb = batch
    to_b, to_a = net.generator_ab(xa), net.generator_ba(xb)
    terms = {
        "cycle": torch.mean((net.generator_ba(to_b) - xa) ** 2) + torch.mean((net.generator_ab(to_a) - xb) ** 2),
        "correspondence": torch.mean((to_b - (xb if paired else xa)) ** 2)
        + torch.mean((to_a - (xa if paired else xb)) ** 2),
    }
    loss = cycle_weight * terms["cycle"] + correspondence_weight * terms["correspondence"]
    if adversarial:
        fake_b, fake_a = net.discriminator_b(to_b), net.discriminator_a(to_a)
        terms["adversarial"] = bce(fake_b, torch.ones_like(fake_b)) + bce(fake_a, torch.ones_like(fake_a))
        loss = loss + adversarial_weight * terms["adversarial"]
    return {"loss": loss / 6.0, **terms}


def discriminator_loss(net: DualGANNetwork, batch) -> dict[str, torch.Tensor]:
    """MAGAN's discriminator loss: the mean of the four BCE terms, real profiles "real", generated ones "fake"."""
    xa, xb = batch
    with torch.no_grad():
        to_b, to_a = net.generator_ab(xa), net.generator_ba(xb)
    real_a, real_b = net.discriminator_a(xa), net.discriminator_b(xb)
    fake_a, fake_b = net.discriminator_a(to_a), net.discriminator_b(to_b)
    terms = {
        "a": bce(real_a, torch.ones_like(real_a)) + bce(fake_a, torch.zeros_like(fake_a)),
        "b": bce(real_b, torch.ones_like(real_b)) + bce(fake_b, torch.zeros_like(fake_b)),
    }
    return {"loss": (terms["a"] + terms["b"]) / 4.0, **terms}


def paired_validation_loss(net: DualGANNetwork, batch) -> dict[str, torch.Tensor]:
    """The MSE of translating each drug's profile into the other cell line, both ways (paired data)."""
    xa, xb = batch
    return {"loss": 0.5 * (torch.mean((net.generator_ab(xa) - xb) ** 2) + torch.mean((net.generator_ba(xb) - xa) ** 2))}
