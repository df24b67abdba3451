"""cycleCDR's network: two encoder-decoders linked by the drug embedding, and two discriminators.

See the cycleCDR methods page.
"""

from __future__ import annotations

import torch
from torch import nn

from .._layers import mlp
from ._drug_encoders import DoseEncoder


class CycleCDRNetwork(nn.Module):
    """Encoders F, F' and decoders G, G' (ReLU MLPs with batch norm) and one discriminator per domain.

    control → treated: ``ŷ = G(F(x) + h)``; treated → control: ``x̂ = G'(F'(y) − h)``, where ``h`` is the drug
    embedding (times the dose embedding when doses are used). ``single_autoencoder=True`` ties F' = F and G' = G.
    The drug encoder (an ``nn.Module`` with ``embed(names, smiles_lookup)``) is a submodule, so it is trained and
    saved with the rest. The discriminators see a profile and the (detached) drug embedding.
    """

    def __init__(
        self,
        n_features: int,
        drug_encoder: nn.Module,
        *,
        hidden=(512, 512),
        latent_dim: int = 128,
        single_autoencoder: bool = False,
        use_dose: bool = False,
        discriminators: bool = False,
        discriminator_hidden=(256,),
    ):
        super().__init__()
        enc = [n_features, *hidden, latent_dim]
        dec = [latent_dim, *reversed(hidden), n_features]

        def make_encoder():
            return mlp(enc, activation_name="relu", batch_norm=True)

        def make_decoder():
            return mlp(dec, activation_name="relu", batch_norm=True)

        self.encoder_control = make_encoder()  # F
        self.decoder_treated = make_decoder()  # G
        self.single_autoencoder = bool(single_autoencoder)
        if not single_autoencoder:
            self.encoder_treated = make_encoder()  # F'
            self.decoder_control = make_decoder()  # G'
        self.drug_encoder = drug_encoder
        if use_dose:
            self.dose_encoder = DoseEncoder(latent_dim)
        else:
            self.dose_encoder = None
        if discriminators:
            sizes = [n_features + latent_dim, *discriminator_hidden, 1]
            self.discriminator_treated = mlp(sizes, activation_name="leaky_relu")
            self.discriminator_control = mlp(sizes, activation_name="leaky_relu")
        else:
            self.discriminator_treated = self.discriminator_control = None

    # the second pair (F', G'), which is the first one in the single-autoencoder ablation
    @property
    def f_prime(self) -> nn.Module:
        return self.encoder_control if self.single_autoencoder else self.encoder_treated

    @property
    def g_prime(self) -> nn.Module:
        return self.decoder_treated if self.single_autoencoder else self.decoder_control

    def generator_parameters(self) -> list[nn.Parameter]:
        skip = {
            id(p)
            for d in (self.discriminator_treated, self.discriminator_control)
            if d is not None
            for p in d.parameters()
        }
        return [p for p in self.parameters() if id(p) not in skip]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.discriminator_treated.parameters(), *self.discriminator_control.parameters()]

    def drug_embedding(self, names: list[str], index: torch.Tensor, smiles: dict, dose: torch.Tensor | None = None):
        """Embeddings of ``names[index]``, computed once per unique drug of the batch, times the dose factor."""
        unique, inverse = torch.unique(index, return_inverse=True)
        table = self.drug_encoder.embed([names[i] for i in unique.tolist()], smiles)
        h = table[inverse]
        if self.dose_encoder is not None and dose is not None:
            h = h * self.dose_encoder(dose)
        return h

    def to_treated(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.decoder_treated(self.encoder_control(x) + h)

    def to_control(self, y: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.g_prime(self.f_prime(y) - h)

    def reconstruct_control(self, x: torch.Tensor) -> torch.Tensor:
        """G(F(x)): the control → treated pair without a drug.

        It should return a control unchanged (reconstruction loss) and, applied to a treated profile, that profile
        (identity loss).
        """
        return self.decoder_treated(self.encoder_control(x))

    def reconstruct_treated(self, y: torch.Tensor) -> torch.Tensor:
        """G'(F'(y))."""
        return self.g_prime(self.f_prime(y))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.to_treated(x, h)


def generator_loss(
    net: CycleCDRNetwork, batch, *, names: list[str], smiles: dict, hparams: dict, adversarial: bool
) -> dict[str, torch.Tensor]:
    """The generators' loss on a batch ``(controls, treated, drug index, dose)``.

    Reconstruction, paired MSE (both ways, optionally weighted by each gene's |fold change|), cycle, identity and
    (unpaired) adversarial terms, each switched and weighted by ``hparams``.
    """
    h = hparams
    x, y, index, dose = batch
    emb = net.drug_embedding(names, index, smiles, dose)
    y_hat = net.to_treated(x, emb)
    x_hat = net.to_control(y, emb)
    zero = torch.zeros((), device=x.device)
    terms = {}
    terms["reconstruction"] = (
        torch.mean((net.reconstruct_control(x) - x) ** 2) + torch.mean((net.reconstruct_treated(y) - y) ** 2)
        if h["use_reconstruction"]
        else zero
    )
    if h["paired"]:
        weight = 1.0 + h["gene_weight_scale"] * (y - x).abs() if h["gene_weights"] else 1.0
        terms["mse"] = torch.mean(weight * (y_hat - y) ** 2) + torch.mean(weight * (x_hat - x) ** 2)
    if h["use_cycle"]:
        terms["cycle"] = h["cycle_weight"] * (
            torch.mean((net.to_control(y_hat, emb) - x) ** 2) + torch.mean((net.to_treated(x_hat, emb) - y) ** 2)
        )
    if h["identity_weight"]:
        terms["identity"] = h["identity_weight"] * torch.mean((net.reconstruct_control(y) - y) ** 2)
    if adversarial:
        cond = emb.detach()
        fake_t = net.discriminator_treated(torch.cat([y_hat, cond], 1))
        fake_c = net.discriminator_control(torch.cat([x_hat, cond], 1))
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        terms["adversarial"] = h["adversarial_weight"] * (
            bce(fake_t, torch.ones_like(fake_t)) + bce(fake_c, torch.ones_like(fake_c))
        )
    return {"loss": sum(terms.values()), **terms}


def discriminator_loss(net: CycleCDRNetwork, batch, *, names: list[str], smiles: dict) -> dict[str, torch.Tensor]:
    """The discriminators' loss: real treated/control profiles against the generators' (detached) fakes."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    x, y, index, dose = batch
    with torch.no_grad():
        emb = net.drug_embedding(names, index, smiles, dose)
        y_hat = net.to_treated(x, emb)
        x_hat = net.to_control(y, emb)
    terms = {}
    for name, disc, real, fake in (
        ("treated", net.discriminator_treated, y, y_hat),
        ("control", net.discriminator_control, x, x_hat),
    ):
        r = disc(torch.cat([real, emb], 1))
        f = disc(torch.cat([fake, emb], 1))
        terms[name] = bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))
    return {"loss": terms["treated"] + terms["control"], **terms}


def paired_validation_loss(net: CycleCDRNetwork, batch, *, names: list[str], smiles: dict) -> dict[str, torch.Tensor]:
    """The monitored loss of paired data: the MSE of the predicted treated profile."""
    x, y, index, dose = batch
    return {"loss": torch.mean((net.to_treated(x, net.drug_embedding(names, index, smiles, dose)) - y) ** 2)}
