"""cycleCDR's network: two encoder-decoders linked by the drug embedding, and two discriminators (methods.md §3)."""

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

    def __init__(self, n_features: int, drug_encoder: nn.Module, *, hidden=(512, 512), latent_dim: int = 128,
                 single_autoencoder: bool = False, use_dose: bool = False, discriminators: bool = False,
                 discriminator_hidden=(256,)):
        super().__init__()
        enc = [n_features, *hidden, latent_dim]
        dec = [latent_dim, *reversed(hidden), n_features]
        make_encoder = lambda: mlp(enc, activation_name="relu", batch_norm=True)
        make_decoder = lambda: mlp(dec, activation_name="relu", batch_norm=True)
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
        skip = {id(p) for d in (self.discriminator_treated, self.discriminator_control) if d is not None
                for p in d.parameters()}
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
        """G(F(x)): the control → treated pair without a drug. It should return a control unchanged
        (reconstruction loss) and, applied to a treated profile, that profile (identity loss)."""
        return self.decoder_treated(self.encoder_control(x))

    def reconstruct_treated(self, y: torch.Tensor) -> torch.Tensor:
        """G'(F'(y))."""
        return self.g_prime(self.f_prime(y))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.to_treated(x, h)
