"""The CPA / chemCPA network: an autoencoder whose latent code sums basal state, drug and cell line; two adversaries.

See the CPA methods page.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .._layers import mlp

#: Floor of the decoded variance (CPA's ``softplus(v) + 1e-3``).
MIN_VARIANCE = 1e-3


class CPANetwork(nn.Module):
    """Encoder, decoder, drug encoder, dose encoder, cell-line embedding and the two adversarial classifiers.

    ``z_b = E(x)`` is the basal latent state; the treated latent state is ``z = z_b + s(h_d, dose) · h_d + e_c``,
    where ``h_d`` is the drug's embedding (from the drug encoder, an ``nn.Module`` with ``embed(names, smiles)``),
    ``s`` a scalar in (0, 1) from the dose encoder (an MLP on ``[h_d, log(1 + dose)]``, sigmoid output; 0 for a
    dose of 0, i.e. for the controls) and ``e_c`` the cell line's embedding. The decoder maps ``z`` to a mean and a
    variance per gene. The encoder, decoder and adversaries are ReLU MLPs with batch norm (as CPA's); the dose
    encoder has no batch norm. The drug adversary has one class per training drug plus one for the controls (the
    last); the cell adversary one class per cell line.
    """

    def __init__(
        self,
        n_features: int,
        drug_encoder: nn.Module,
        *,
        n_drugs: int,
        n_cells: int,
        latent_dim: int = 256,
        hidden=(512, 512, 512, 512),
        adversary_hidden=(128, 128, 128),
        doser_hidden=(64, 64),
    ):
        super().__init__()
        self.n_features, self.latent_dim = int(n_features), int(latent_dim)
        self.encoder = mlp([n_features, *hidden, latent_dim], activation_name="relu", batch_norm=True)
        self.decoder = mlp([latent_dim, *hidden, 2 * n_features], activation_name="relu", batch_norm=True)
        self.drug_encoder = drug_encoder
        self.doser = mlp([latent_dim + 1, *doser_hidden, 1], activation_name="relu")
        self.cell_embedding = nn.Embedding(n_cells, latent_dim)
        self.drug_adversary = mlp([latent_dim, *adversary_hidden, n_drugs + 1], activation_name="relu", batch_norm=True)
        self.cell_adversary = mlp([latent_dim, *adversary_hidden, n_cells], activation_name="relu", batch_norm=True)

    def adversary_parameters(self) -> list[nn.Parameter]:
        return [*self.drug_adversary.parameters(), *self.cell_adversary.parameters()]

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        skip = {id(p) for p in self.adversary_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def drug_term(self, names: list[str], index: torch.Tensor, smiles: dict, dose: torch.Tensor) -> torch.Tensor:
        """``s(h_d, dose) · h_d`` per row; rows with ``index < 0`` (controls) or a dose of 0 get zeros.

        Each unique drug of the batch is embedded once (``names[index]``, SMILES from ``smiles``).
        """
        out = torch.zeros((len(index), self.latent_dim), device=dose.device)
        rows = torch.nonzero(index >= 0).flatten()
        if len(rows) == 0:
            return out
        unique, inverse = torch.unique(index[rows], return_inverse=True)
        h = self.drug_encoder.embed([names[i] for i in unique.tolist()], smiles)[inverse]
        d = dose[rows].reshape(-1, 1)
        scale = torch.sigmoid(self.doser(torch.cat([h, torch.log1p(d)], dim=1))) * (d > 0)
        return out.index_put((rows,), scale * h)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance (``softplus + 1e-3``) of every gene."""
        out = self.decoder(z)
        return out[:, : self.n_features], F.softplus(out[:, self.n_features :]) + MIN_VARIANCE

    def latent(self, x, names, index, smiles, dose, cell) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_b, z)``: the basal latent state of ``x`` and the state with the drug and cell line added."""
        z_basal = self.encoder(x)
        return z_basal, z_basal + self.drug_term(names, index, smiles, dose) + self.cell_embedding(cell)

    def forward(self, x, names, index, smiles, dose, cell) -> torch.Tensor:
        """The decoded mean for profiles ``x`` given drug, dose and cell line."""
        return self.decode(self.latent(x, names, index, smiles, dose, cell)[1])[0]


def gaussian_nll(mean: torch.Tensor, variance: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """CPA's reconstruction loss: ``log(var) / 2 + (x − mean)² / (2 var)``, averaged over genes and rows."""
    return (0.5 * torch.log(variance) + (x - mean) ** 2 / (2 * variance)).mean()


def _drug_labels(index: torch.Tensor, n_drugs: int) -> torch.Tensor:
    """The drug adversary's classes: the drug's index, or ``n_drugs`` for a control row."""
    return torch.where(index >= 0, index, torch.full_like(index, n_drugs))


def autoencoder_loss(net: CPANetwork, batch, *, names: list[str], smiles: dict, reg_adversary: float) -> dict:
    """The autoencoder's loss on a batch ``(x, drug index, dose, cell index)``.

    Gaussian NLL of the reconstruction minus ``reg_adversary`` times the adversaries' cross-entropy on ``z_b`` (the
    autoencoder is rewarded when the adversaries cannot tell the drug or the cell line from the basal state).
    """
    x, index, dose, cell = batch
    z_basal, z = net.latent(x, names, index, smiles, dose, cell)
    nll = gaussian_nll(*net.decode(z), x)
    adv_drug = F.cross_entropy(net.drug_adversary(z_basal), _drug_labels(index, len(names)))
    adv_cell = F.cross_entropy(net.cell_adversary(z_basal), cell)
    return {
        "loss": nll - reg_adversary * (adv_drug + adv_cell),
        "reconstruction": nll,
        "adversary_drug": adv_drug,
        "adversary_cell": adv_cell,
    }


def adversary_loss(net: CPANetwork, batch, *, n_drugs: int, penalty_adversary: float) -> dict:
    """The adversaries' loss: cross-entropy of drug and cell line from the (detached) basal state, plus a penalty.

    The penalty is ``penalty_adversary`` times the gradient penalty: the mean squared gradient of each adversary's
    summed logits with respect to ``z_b``.
    """
    x, index, _dose, cell = batch
    with torch.no_grad():
        z_basal = net.encoder(x)
    z_basal.requires_grad_(True)
    drug_logits = net.drug_adversary(z_basal)
    cell_logits = net.cell_adversary(z_basal)
    ce_drug = F.cross_entropy(drug_logits, _drug_labels(index, n_drugs))
    ce_cell = F.cross_entropy(cell_logits, cell)
    penalty = sum(
        torch.autograd.grad(logits.sum(), z_basal, create_graph=True)[0].pow(2).mean()
        for logits in (drug_logits, cell_logits)
    )
    return {
        "loss": ce_drug + ce_cell + penalty_adversary * penalty,
        "drug": ce_drug,
        "cell": ce_cell,
        "penalty": penalty,
    }


def reconstruction_loss(net: CPANetwork, batch, *, names: list[str], smiles: dict) -> dict:
    """The monitored (validation) loss: the Gaussian NLL of the reconstruction."""
    x, index, dose, cell = batch
    _, z = net.latent(x, names, index, smiles, dose, cell)
    return {"loss": gaussian_nll(*net.decode(z), x)}
