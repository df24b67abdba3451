"""Variational autoencoders of profiles: vanilla, β and MMD (Chow, Singh, Carpenter & Way 2022)."""

from ._model import VAE, PosteriorCollapseWarning
from ._module import KINDS, VAENetwork, gaussian_kernel, kl_divergence, mmd, vae_loss

__all__ = [
    "KINDS",
    "VAE",
    "PosteriorCollapseWarning",
    "VAENetwork",
    "gaussian_kernel",
    "kl_divergence",
    "mmd",
    "vae_loss",
]
from ._analysis import (
    feature_groups,
    feature_reconstruction,
    hausdorff,
    latent_correlation,
    latent_traversal,
    pca_loadings_by_group,
    reconstruction_metrics,
    reconstruction_summary,
    select_beta,
    shuffle_columns,
    shuffled_control,
    simulate,
    traversal_contributions,
    tune_vae,
    wasserstein_rows,
)

__all__ += [
    "feature_groups",
    "feature_reconstruction",
    "hausdorff",
    "latent_correlation",
    "latent_traversal",
    "pca_loadings_by_group",
    "reconstruction_metrics",
    "reconstruction_summary",
    "select_beta",
    "shuffle_columns",
    "shuffled_control",
    "simulate",
    "traversal_contributions",
    "tune_vae",
    "wasserstein_rows",
]
