"""Tools (``pk.tl``): train models and run the analyses of a study, scanpy-style.

Functions of data and a model take ``f(adata, *, model, ...)``; functions of a model alone (traversal, simulation,
TF targets) take the model first. The papers' experiments, which train many models to reproduce a figure, are in
:mod:`perturbkit.experiments`.
"""

from ..metrics import evaluate_response
from ..models.baselines import (
    control_means,
    mean_treated_response,
    predict_mean_response,
    predict_no_change,
    response_baselines,
)
from ._anchor_vae import train_anchor_vae
from ._arithmetic import latent_arithmetic, lsa_groups
from ._benchmark import benchmark
from ._cpa import train_cpa
from ._cyclecdr import train_cyclecdr
from ._deepcellstate import (
    cross_validate_deepcellstate,
    deepcellstate_compare_to_baseline,
    diagonal_summary,
    gene_importance,
    latent_correlation,
    latent_embeddings,
    pair_distance_ratio,
    tf_targets,
    train_deepcellstate,
)
from ._dual_gan import train_dual_gan
from ._embedding import embed, project_reconstructions
from ._kang import preprocess_pbmc
from ._pretrain import pretrain_drug_encoder
from ._response_embedding import embed_predictions
from ._scgen import train_scgen
from ._tensor_completion import complete_tensor
from ._tune import tune
from ._vae import (
    latent_traversal,
    pca_loadings_by_group,
    select_beta,
    simulate,
    train_vae,
    traversal_contributions,
    tune_vae,
    vae_feature_reconstruction,
    vae_latent_correlation,
    vae_reconstruction_metrics,
)

__all__ = [
    # DeepCellState
    "train_deepcellstate",
    "cross_validate_deepcellstate",
    "deepcellstate_compare_to_baseline",
    "latent_embeddings",
    "latent_correlation",
    "gene_importance",
    "pair_distance_ratio",
    "diagonal_summary",
    "tf_targets",
    # VAEs and latent space arithmetic
    "train_vae",
    "latent_traversal",
    "traversal_contributions",
    "pca_loadings_by_group",
    "simulate",
    "select_beta",
    "tune",
    "tune_vae",
    "vae_reconstruction_metrics",
    "vae_latent_correlation",
    "vae_feature_reconstruction",
    "latent_arithmetic",
    "lsa_groups",
    # cycleCDR and response metrics
    "train_cyclecdr",
    "evaluate_response",
    "predict_no_change",
    "predict_mean_response",
    "mean_treated_response",
    "response_baselines",
    "control_means",
    "preprocess_pbmc",
    # the papers' comparison methods
    "train_scgen",
    "pretrain_drug_encoder",
    "train_anchor_vae",
    "train_dual_gan",
    "train_cpa",
    "complete_tensor",
    "benchmark",
    # embeddings
    "embed",
    "project_reconstructions",
    "embed_predictions",
]
