"""The VAE paper's shuffled-data control."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import anndata as ad
import pandas as pd

from ..models.vae import _analysis as analysis
from ..tl._options import trainer_options


def vae_shuffled_control(
    adata: ad.AnnData,
    *,
    kind: Literal["vanilla", "beta", "mmd"] = "vanilla",
    seed: int = 0,
    device: str | None = None,
    train_options: Mapping[str, Any] | None = None,
    layer: str | None = None,
) -> pd.DataFrame:
    """Training curves of the same VAE on the real profiles and on column-shuffled ones (each feature permuted).

    Both runs use the same settings and the same train/validation rows. A model that learns real structure reaches
    a lower loss on the real data than on the shuffled data, whose features keep their distributions but lose
    their relations.

    Parameters
    ----------
    adata
        Profiles (rows × features), scaled as for :func:`~perturbkit.tl.train_vae`.
    kind
        The VAE variant: ``"vanilla"``, ``"beta"`` or ``"mmd"``.
    seed
        Seeds the column shuffle, the weights, the split and the batching.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``None`` means ``pk.settings.device``.
    train_options
        Further keyword arguments of :func:`~perturbkit.tl.train_vae` for both runs (e.g. ``{"beta": 0.3,
        "max_epochs": 50}``); its defaults apply to the rest.
    layer
        Read the profiles from ``adata.layers[layer]`` instead of X.

    Returns
    -------
    Both training curves: ``data`` (``"real"`` / ``"shuffled"``), ``epoch``, ``train_loss``, ``validation_loss``
    and the loss parts (``train_reconstruction``, ``train_kl``, ``train_mmd``, ...). Plot with
    :func:`perturbkit.pl.training_curves`.

    Examples
    --------
    >>> curves = pk.experiments.vae_shuffled_control(adata, kind="beta", train_options={"beta": 0.3})
    >>> pk.pl.training_curves(curves)
    """
    options = trainer_options(
        train_options,
        function="pk.experiments.vae_shuffled_control",
        trainer="pk.tl.train_vae",
        reserved=("kind", "seed", "layer"),
        device=device,
    )
    return analysis.shuffled_control(adata, kind=kind, seed=seed, layer=layer, **options)
