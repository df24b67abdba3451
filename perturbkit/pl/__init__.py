"""pk.pl: plotly figures; every function returns a ``plotly.graph_objects.Figure`` and only reads results."""

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

__all__ = [
    "ablation",
    "embedding",
    "evaluation_curve",
    "fold_change_distribution",
    "gene_importance",
    "gene_scatter",
    "latent_correlation",
    "pcc_scatter",
    "profile",
]
