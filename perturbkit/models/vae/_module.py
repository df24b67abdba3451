"""The VAE network and its loss terms (Chow, Singh, Carpenter & Way 2022; see the VAE methods page)."""

from __future__ import annotations

import torch
from torch import nn

from .._layers import mlp

KINDS = ("vanilla", "beta", "mmd")
OUTPUTS = ("sigmoid", "linear")


def gaussian_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Kernel matrix ``k(x_i, y_j) = exp(-mean_d((x_id - y_jd)^2) / dim)`` (the reference code's form).

    Computed from squared norms and one matrix product, so it costs ``O(n m d)`` time and ``O(n m)`` memory and has
    a finite gradient where ``x_i == y_j``.
    """
    dim = x.shape[1]
    sq = (x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1).unsqueeze(0) - 2.0 * x @ y.T).clamp_min(0.0)
    return torch.exp(-(sq / dim) / dim)


def mmd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Biased estimate of the squared maximum mean discrepancy between the samples ``x`` and ``y``.

    ``mean k(x, x) + mean k(y, y) - 2 mean k(x, y)`` with :func:`gaussian_kernel`.
    """
    return gaussian_kernel(x, x).mean() + gaussian_kernel(y, y).mean() - 2.0 * gaussian_kernel(x, y).mean()


def kl_divergence(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(N(mean, exp(log_var)) || N(0, I)), summed over latent dimensions."""
    return (-0.5 * (1.0 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1)).mean()


class VAENetwork(nn.Module):
    """Encoder (hidden layers → mean and log-variance heads) and a mirrored decoder.

    Parameters
    ----------
    n_features
        Input (and output) size.
    latent_dim
        Size of the latent space.
    hidden
        Encoder hidden sizes (the decoder uses them reversed); ``()`` gives linear maps.
    batch_norm
        Batch normalisation after each encoder hidden layer (before the LeakyReLU).
    output
        ``"sigmoid"`` for data in [0, 1] (e.g. min-max scaled morphology) or ``"linear"``.
    """

    def __init__(
        self,
        n_features: int,
        latent_dim: int,
        *,
        hidden: tuple[int, ...] = (250,),
        batch_norm: bool = True,
        output: str = "sigmoid",
    ):
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        self.latent_dim = int(latent_dim)
        if hidden:
            self.encoder = mlp([n_features, *hidden], output_activation="leaky_relu", batch_norm=batch_norm)
            if batch_norm:  # mlp's last layer gets no batch norm: insert it before the final activation
                self.encoder.insert(len(self.encoder) - 1, nn.BatchNorm1d(hidden[-1]))
        else:
            self.encoder = nn.Identity()
        width = hidden[-1] if hidden else n_features
        self.mean_head = nn.Linear(width, self.latent_dim)
        self.log_var_head = nn.Linear(width, self.latent_dim)
        self.decoder = mlp(
            [self.latent_dim, *reversed(hidden), n_features],
            output_activation="sigmoid" if output == "sigmoid" else None,
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior (mean, log-variance)."""
        h = self.encoder(x)
        return self.mean_head(h), self.log_var_head(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (reconstruction, sampled code z, mean, log-variance), z drawn by the reparameterisation trick."""
        mean, log_var = self.encode(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        return self.decode(z), z, mean, log_var


def vae_loss(network: VAENetwork, x: torch.Tensor, *, kind: str, beta: float, lam: float) -> dict[str, torch.Tensor]:
    """The reference loss ``input_dim · MSE + β·KL + λ·MMD`` and its parts.

    ``"vanilla"``: β = 1, no MMD; ``"beta"``: the given β, no MMD; ``"mmd"``: no KL, λ·MMD between the sampled codes
    and as many draws from N(0, I). All three parts are returned for logging whatever the kind.
    """
    recon, z, mean, log_var = network(x)
    reconstruction = x.shape[1] * torch.mean((recon - x) ** 2)
    kl = kl_divergence(mean, log_var)
    mmd_term = mmd(z, torch.randn_like(z))
    if kind == "vanilla":
        loss = reconstruction + kl
    elif kind == "beta":
        loss = reconstruction + beta * kl
    else:
        loss = reconstruction + lam * mmd_term
    return {"loss": loss, "reconstruction": reconstruction, "kl": kl, "mmd": mmd_term}
