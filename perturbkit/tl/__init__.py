"""Tools (``pk.tl``): train models and run analyses, scanpy-style."""

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

__all__ = [
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
]
