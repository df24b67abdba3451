"""The anchor VAE's network and loss: one shared VAE encoder, one decoder per cell line, paired codes pulled together.

The DeepCellState paper's (Umarov, Li & Arner 2021) "VAE with anchor loss" competitor; see the anchor VAE methods page.
"""

from __future__ import annotations

import torch
from torch import nn

from .._layers import mlp


class AnchorVAENetwork(nn.Module):
    """Input dropout → shared encoder (LeakyReLU 0.2) → mean and log-variance heads; one tanh decoder per cell line.

    Parameters
    ----------
    n_features
        Input (and output) size.
    n_cell_lines
        Number of decoders.
    latent_dim
        Size of the latent space.
    hidden
        Encoder hidden sizes (each decoder uses them reversed); ``()`` gives linear maps.
    input_dropout
        Dropout on the input (denoising), active only in training.
    """

    def __init__(
        self,
        n_features: int,
        n_cell_lines: int,
        *,
        latent_dim: int = 128,
        hidden: tuple[int, ...] = (512, 256),
        input_dropout: float = 0.5,
    ):
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        self.n_features = int(n_features)
        self.input_dropout = nn.Dropout(input_dropout)
        self.encoder = mlp([n_features, *hidden], output_activation="leaky_relu") if hidden else nn.Identity()
        width = hidden[-1] if hidden else n_features
        self.mean_head = nn.Linear(width, latent_dim)
        self.log_var_head = nn.Linear(width, latent_dim)
        self.decoders = nn.ModuleList(
            mlp([latent_dim, *reversed(hidden), n_features], output_activation="tanh") for _ in range(n_cell_lines)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior (mean, log-variance) of profiles ``x``; the input dropout acts only in training mode."""
        h = self.encoder(self.input_dropout(x))
        return self.mean_head(h), self.log_var_head(h)

    def decode(self, z: torch.Tensor, cell: int) -> torch.Tensor:
        """Profiles in cell line ``cell`` (a decoder position) from latent codes ``z``."""
        return self.decoders[cell](z)

    def decode_rows(self, z: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """Decode each row of ``z`` with the decoder of its own cell line ``cells[i]``."""
        out = z.new_zeros((len(z), self.n_features))
        for cell, decoder in enumerate(self.decoders):
            rows = cells == cell
            if bool(rows.any()):
                out[rows] = decoder(z[rows])
        return out

    def forward(self, x: torch.Tensor, cell: int) -> torch.Tensor:
        """Predict the profile in cell line ``cell`` from the latent mean of ``x``."""
        return self.decode(self.encode(x)[0], cell)


def kl_per_dimension(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)), averaged over rows and latent dimensions."""
    return -0.5 * torch.mean(1.0 + log_var - mean.pow(2) - log_var.exp())


def anchor_vae_loss(
    net: AnchorVAENetwork,
    batch,
    *,
    kl_weight: float,
    anchor_weight: float,
    cross: bool,
) -> dict[str, torch.Tensor]:
    """The loss of a batch of pairs ``(x_a, x_b, a, b)``: one drug's profiles in cell lines ``a`` and ``b``.

    ``reconstruction`` is the mean squared error of the decoded profiles (averaged over genes), averaged over the
    decoded terms: decoder ``a`` from the sampled code of ``x_a`` (target ``x_a``) and decoder ``b`` from that of
    ``x_b``; with ``cross`` also decoder ``b`` from ``x_a``'s code (target ``x_b``) and decoder ``a`` from ``x_b``'s
    (target ``x_a``). ``kl`` is the KL divergence and ``anchor`` the squared Euclidean distance between the two latent
    means, both summed over latent dimensions and divided by the number of genes: the ELBO of a Gaussian decoder
    divided by the number of genes, so the weights do not change meaning with the latent size. A drug measured in
    one cell line only comes as a pair with ``a == b``: its anchor term is zero.
    """
    xa, xb, ca, cb = batch
    n = len(xa)
    mean, log_var = net.encode(torch.cat([xa, xb]))
    z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
    za, zb = z[:n], z[n:]
    own = 0.5 * (torch.mean((net.decode_rows(za, ca) - xa) ** 2) + torch.mean((net.decode_rows(zb, cb) - xb) ** 2))
    terms = {"self": own}
    if cross:
        terms["cross"] = 0.5 * (
            torch.mean((net.decode_rows(za, cb) - xb) ** 2) + torch.mean((net.decode_rows(zb, ca) - xa) ** 2)
        )
        reconstruction = 0.5 * (terms["self"] + terms["cross"])
    else:
        reconstruction = own
    per_gene = mean.shape[1] / xa.shape[1]  # (mean over latent dimensions) × latent_dim / n_genes
    kl = kl_per_dimension(mean, log_var) * per_gene
    anchor = torch.mean((mean[:n] - mean[n:]) ** 2) * per_gene
    loss = reconstruction + kl_weight * kl + anchor_weight * anchor
    return {"loss": loss, "reconstruction": reconstruction, **terms, "kl": kl, "anchor": anchor}


def cross_prediction_loss(net: AnchorVAENetwork, batch) -> dict[str, torch.Tensor]:
    """The monitored loss: MSE of predicting ``x_b`` from ``x_a``'s latent mean with decoder ``b``, and vice versa."""
    xa, xb, ca, cb = batch
    n = len(xa)
    mean = net.encode(torch.cat([xa, xb]))[0]
    error = 0.5 * (
        torch.mean((net.decode_rows(mean[:n], cb) - xb) ** 2) + torch.mean((net.decode_rows(mean[n:], ca) - xa) ** 2)
    )
    return {"loss": error}
