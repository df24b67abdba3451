"""pk.pl: plotly figures; every function returns a ``plotly.graph_objects.Figure`` and only reads results."""

from ._benchmark import benchmark
from ._cyclecdr import prediction_umap, response_bars, response_boxes
from ._deepcellstate import (
    ablation,
    embedding,
    evaluation_curve,
    fold_change_distribution,
    gene_importance,
    gene_scatter,
    latent_correlation,
    pcc_scatter,
    profile,
)
from ._vae import (
    l2_distributions,
    latent_correlation_heatmap,
    projection,
    training_curves,
    traversal_heatmap,
    zscore_scatter,
)

__all__ = [
    # DeepCellState
    "ablation",
    "embedding",
    "evaluation_curve",
    "fold_change_distribution",
    "gene_importance",
    "gene_scatter",
    "latent_correlation",
    "pcc_scatter",
    "profile",
    # VAEs and latent space arithmetic
    "training_curves",
    "projection",
    "latent_correlation_heatmap",
    "traversal_heatmap",
    "l2_distributions",
    "zscore_scatter",
    # cycleCDR
    "response_bars",
    "response_boxes",
    "prediction_umap",
    # comparisons
    "benchmark",
]
