"""scGen's variational autoencoder and its loss (Lotfollahi, Wolf & Theis 2019; see the scGen methods page)."""

from __future__ import annotations

import torch
from torch import nn

from ..vae._module import kl_divergence

#: Batch norm as in the reference (Flax momentum 0.99 is PyTorch momentum 0.01; epsilon 1e-3).
BATCH_NORM_MOMENTUM = 0.01
BATCH_NORM_EPS = 1e-3
#: Slope of the LeakyReLU for negative inputs (the Flax / PyTorch default the reference uses).
LEAKY_SLOPE = 0.01


def _hidden_block(n_in: int, n_out: int, dropout: float) -> list[nn.Module]:
    """Linear → batch norm → LeakyReLU → dropout: one hidden layer of scGen's encoder or decoder."""
    layers: list[nn.Module] = [
        nn.Linear(n_in, n_out),
        nn.BatchNorm1d(n_out, momentum=BATCH_NORM_MOMENTUM, eps=BATCH_NORM_EPS),
        nn.LeakyReLU(LEAKY_SLOPE),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


class ScGenNetwork(nn.Module):
    """scGen's VAE: an encoder to a Gaussian posterior and a mirrored decoder with a linear output.

    Parameters
    ----------
    n_features
        Number of genes (input and output size).
    latent_dim
        Size of the latent space (reference 100).
    hidden
        Hidden sizes of the encoder (reference 800, 800); the decoder uses them reversed.
    dropout
        Dropout after every hidden layer of the encoder and the decoder (reference 0.2).
    """

    def __init__(
        self, n_features: int, *, latent_dim: int = 100, hidden: tuple[int, ...] = (800, 800), dropout: float = 0.2
    ):
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        self.latent_dim = int(latent_dim)
        encoder: list[nn.Module] = []
        for n_in, n_out in zip((n_features, *hidden[:-1]), hidden, strict=True):
            encoder += _hidden_block(n_in, n_out, dropout)
        self.encoder = nn.Sequential(*encoder)
        width = hidden[-1] if hidden else n_features
        self.mean_head = nn.Linear(width, self.latent_dim)
        self.log_var_head = nn.Linear(width, self.latent_dim)
        decoder: list[nn.Module] = []
        sizes = (self.latent_dim, *reversed(hidden))
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            decoder += _hidden_block(n_in, n_out, dropout)
        decoder.append(nn.Linear(sizes[-1], n_features))
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean and log-variance."""
        h = self.encoder(x)
        return self.mean_head(h), self.log_var_head(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Expression decoded from latent codes (linear output, the data's units)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (reconstruction, sampled code z, mean, log-variance); z is drawn by the reparameterisation trick."""
        mean, log_var = self.encode(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        return self.decode(z), z, mean, log_var


def scgen_loss(network: ScGenNetwork, x: torch.Tensor, *, kl_weight: float) -> dict[str, torch.Tensor]:
    """The scGen loss on a batch: squared error summed over genes plus ``kl_weight`` times the KL divergence.

    Both terms are per cell (the KL summed over latent dimensions) and averaged over the batch. The reference halves
    both terms, which Adam's updates do not see.

    Returns
    -------
    ``{"loss", "reconstruction", "kl"}``, scalar tensors.
    """
    recon, _, mean, log_var = network(x)
    reconstruction = ((recon - x) ** 2).sum(dim=1).mean()
    kl = kl_divergence(mean, log_var)
    return {"loss": reconstruction + kl_weight * kl, "reconstruction": reconstruction, "kl": kl}
