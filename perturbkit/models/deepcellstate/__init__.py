"""DeepCellState (Umarov, Li & Arner, PLOS Comput Biol 2021)."""

from ._evaluation import (
    ABLATIONS,
    ablation,
    compare_to_baseline,
    cross_validate,
    evaluate_holdout,
    fewer_profiles,
    latent_size_sweep,
    training_size_curve,
)
from ._interpretation import (
    TFTargets,
    diagonal_summary,
    gene_importance,
    latent_correlation,
    latent_embeddings,
    pair_distance_ratio,
    tf_targets,
)
from ._model import DeepCellState
from ._module import DeepCellStateNetwork

__all__ = [
    "ABLATIONS",
    "DeepCellState",
    "DeepCellStateNetwork",
    "ablation",
    "compare_to_baseline",
    "cross_validate",
    "evaluate_holdout",
    "fewer_profiles",
    "latent_size_sweep",
    "training_size_curve",
    "TFTargets",
    "diagonal_summary",
    "gene_importance",
    "latent_correlation",
    "latent_embeddings",
    "pair_distance_ratio",
    "tf_targets",
]
