"""Tools (``pk.tl``): train models and run analyses, scanpy-style."""

from ..metrics import evaluate_response
from ._arithmetic import latent_arithmetic, lsa_groups, lsa_robustness
from ._cyclecdr import (
    control_means,
    cyclecdr_ablation,
    cyclecdr_baselines,
    mean_treated_response,
    predict_mean_response,
    predict_no_change,
    train_cyclecdr,
)
from ._deepcellstate import (
    cross_validate_deepcellstate,
    deepcellstate_ablation,
    deepcellstate_compare_to_baseline,
    deepcellstate_fewer_profiles,
    deepcellstate_latent_size_sweep,
    deepcellstate_training_size_curve,
    diagonal_summary,
    gene_importance,
    latent_correlation,
    latent_embeddings,
    pair_distance_ratio,
    tf_targets,
    train_deepcellstate,
)
from ._embedding import embed, project_reconstructions
from ._kang import kang_holdout, preprocess_pbmc
from ._response_embedding import embed_predictions
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
    vae_shuffled_control,
)

__all__ = [
    # DeepCellState
    "train_deepcellstate",
    "cross_validate_deepcellstate",
    "deepcellstate_compare_to_baseline",
    "deepcellstate_training_size_curve",
    "deepcellstate_latent_size_sweep",
    "deepcellstate_ablation",
    "deepcellstate_fewer_profiles",
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
    "tune_vae",
    "vae_shuffled_control",
    "vae_reconstruction_metrics",
    "vae_latent_correlation",
    "vae_feature_reconstruction",
    "latent_arithmetic",
    "lsa_groups",
    "lsa_robustness",
    # cycleCDR and response metrics
    "train_cyclecdr",
    "evaluate_response",
    "predict_no_change",
    "predict_mean_response",
    "mean_treated_response",
    "cyclecdr_baselines",
    "cyclecdr_ablation",
    "control_means",
    "preprocess_pbmc",
    "kang_holdout",
    # embeddings
    "embed",
    "project_reconstructions",
    "embed_predictions",
]
