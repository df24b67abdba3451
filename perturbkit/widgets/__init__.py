"""Interactive Jupyter panels (``pk.widgets``): plotly FigureWidgets driven by ipywidgets.

Each panel is an ipywidgets container (display it as the last expression of a cell) and exposes ``figure`` (its
plotly FigureWidget) and ``controls`` (name → widget), so it can be driven from code as well as by hand. Like
``pk.tl``, panels take the data first and the model as ``model=``, e.g. ``LatentTraversal(adata, model=vae)``.

- :class:`LatentTraversal`: latent-feature sliders, the decoded profile redrawn live (VAE, DeepCellState, cycleCDR).
- :class:`EmbeddingExplorer`: UMAP / t-SNE / PCA of profiles or of a model's latent space; click a point to see it.
- :class:`LSAExplorer`: latent space arithmetic A − control + B against the real A|B and the shuffled control.
- :class:`ResponseExplorer`: input, predicted and measured profiles of a drug (DeepCellState, cycleCDR).
"""

from ._embedding import EmbeddingExplorer
from ._lsa import LSAExplorer
from ._response import ResponseExplorer
from ._traversal import LatentTraversal

__all__ = ["LatentTraversal", "EmbeddingExplorer", "LSAExplorer", "ResponseExplorer"]
