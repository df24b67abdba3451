"""DeepCellState's paper experiments: training size, latent size, ablation and fewer profiles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import pandas as pd

from .._schema import OBS_KEYS
from ..models._profiles import CellDrugProfiles
from ..models.deepcellstate import _evaluation as evaluation
from ..tl._options import doc_params, trainer_options

#: The ablation variants of :func:`deepcellstate_ablation`: name → DeepCellState settings changed.
DEEPCELLSTATE_ABLATIONS = evaluation.ABLATIONS

_DATA = """
    adata
        Level-5-like signatures with the cell-line and drug columns (see
        :func:`~perturbkit.tl.train_deepcellstate`).
    source
        The input cell line, or several (their decoded outputs are averaged).
    target
        The cell line whose profiles are predicted.
"""

_COMMON = """
    n_repeats
        Repeats, each with its own random test split (seed ``seed + repeat``); every condition of a repeat is
        scored on the same test drugs.
    test_fraction
        Fraction of the drugs measured in ``source`` and ``target`` held out as test drugs.
    seed
        Seeds the test split, the weights and the batching (CPU runs are reproducible).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``None`` means ``pk.settings.device``.
    train_options
        DeepCellState settings for every model, as keyword arguments of
        :func:`~perturbkit.tl.train_deepcellstate` (e.g. ``{"max_epochs": 50, "hidden": (512, 256)}``); its
        defaults apply to the rest.
    cell_key, drug_key, control_key, moa_key, average, layer
        How profiles are read from ``adata``, as in :func:`~perturbkit.tl.train_deepcellstate`.
"""

_RETURNS = """
    One row per condition and repeat: the condition's column, ``repeat``, ``n_test_drugs`` and the mean over the
    test drugs of ``pcc`` (DeepCellState), ``baseline_pcc`` (the source profile itself) and ``ridge_pcc`` (a ridge
    map between the cell lines). Plot with :func:`perturbkit.pl.evaluation_curve` or :func:`perturbkit.pl.ablation`.
"""


def _run(
    function,
    adata,
    *,
    name: str,
    cell_key,
    drug_key,
    control_key,
    moa_key,
    average,
    layer,
    device,
    train_options,
    reserved=(),
    **kwargs,
) -> pd.DataFrame:
    options = trainer_options(
        train_options,
        function=f"pk.experiments.{name}",
        trainer="pk.tl.train_deepcellstate",
        reserved=("seed", *reserved),
        device=device,
    )
    profiles = CellDrugProfiles.from_adata(
        adata,
        cell_key=cell_key,
        drug_key=drug_key,
        control_key=control_key,
        moa_key=moa_key,
        average=average,
        layer=layer,
    )
    return function(profiles, **kwargs, **options)


@doc_params(data=_DATA, common=_COMMON, returns=_RETURNS)
def deepcellstate_training_size_curve(
    adata: ad.AnnData,
    *,
    source: str | Sequence[str],
    target: str,
    fractions: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 1.0),
    n_repeats: int = 1,
    test_fraction: float = 0.1,
    seed: int = 0,
    device: str | None = None,
    train_options: Mapping[str, Any] | None = None,
    cell_key: str = OBS_KEYS.cell_key,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str | None = OBS_KEYS.control_key,
    moa_key: str | None = OBS_KEYS.moa_key,
    average: bool = True,
    layer: str | None = None,
) -> pd.DataFrame:
    """Accuracy against the fraction of training drugs kept (the paper's training-size curve).

    For each repeat, test drugs are held out once; each fraction of the remaining drugs trains a model, and every
    model predicts the same test drugs' ``target`` profiles from their ``source`` profiles.

    Parameters
    ----------
    {data}
    fractions
        Fractions of the training drugs kept (column ``fraction``).
    {common}

    Returns
    -------
    {returns}

    Examples
    --------
    >>> adata = pk.datasets.simulate_bulk()
    >>> curve = pk.experiments.deepcellstate_training_size_curve(adata, source="PC3", target="MCF7")
    >>> pk.pl.evaluation_curve(curve, x="fraction")
    """
    return _run(
        evaluation.training_size_curve,
        adata,
        name="deepcellstate_training_size_curve",
        source=source,
        target=target,
        fractions=fractions,
        n_repeats=n_repeats,
        test_fraction=test_fraction,
        seed=seed,
        device=device,
        train_options=train_options,
        cell_key=cell_key,
        drug_key=drug_key,
        control_key=control_key,
        moa_key=moa_key,
        average=average,
        layer=layer,
    )


@doc_params(data=_DATA, common=_COMMON, returns=_RETURNS)
def deepcellstate_latent_size_sweep(
    adata: ad.AnnData,
    *,
    source: str | Sequence[str],
    target: str,
    latent_dims: Sequence[int] = (8, 16, 32, 64, 128),
    n_repeats: int = 1,
    test_fraction: float = 0.1,
    seed: int = 0,
    device: str | None = None,
    train_options: Mapping[str, Any] | None = None,
    cell_key: str = OBS_KEYS.cell_key,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str | None = OBS_KEYS.control_key,
    moa_key: str | None = OBS_KEYS.moa_key,
    average: bool = True,
    layer: str | None = None,
) -> pd.DataFrame:
    """Accuracy against the latent size (the paper: it drops below 32).

    Parameters
    ----------
    {data}
    latent_dims
        Latent sizes compared (column ``latent_dim``); ``train_options`` may not set ``latent_dim``.
    {common}

    Returns
    -------
    {returns}

    Examples
    --------
    >>> sweep = pk.experiments.deepcellstate_latent_size_sweep(adata, source="PC3", target="MCF7")
    >>> pk.pl.evaluation_curve(sweep, x="latent_dim")
    """
    return _run(
        evaluation.latent_size_sweep,
        adata,
        name="deepcellstate_latent_size_sweep",
        reserved=("latent_dim",),
        source=source,
        target=target,
        latent_dims=latent_dims,
        n_repeats=n_repeats,
        test_fraction=test_fraction,
        seed=seed,
        device=device,
        train_options=train_options,
        cell_key=cell_key,
        drug_key=drug_key,
        control_key=control_key,
        moa_key=moa_key,
        average=average,
        layer=layer,
    )


@doc_params(data=_DATA, common=_COMMON, returns=_RETURNS)
def deepcellstate_ablation(
    adata: ad.AnnData,
    *,
    source: str | Sequence[str],
    target: str,
    variants: Sequence[str] = tuple(DEEPCELLSTATE_ABLATIONS),
    n_repeats: int = 1,
    test_fraction: float = 0.1,
    seed: int = 0,
    device: str | None = None,
    train_options: Mapping[str, Any] | None = None,
    cell_key: str = OBS_KEYS.cell_key,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str | None = OBS_KEYS.control_key,
    moa_key: str | None = OBS_KEYS.moa_key,
    average: bool = True,
    layer: str | None = None,
) -> pd.DataFrame:
    """The paper's ablation: DeepCellState without input dropout, the L1 penalty and the skip connection.

    Parameters
    ----------
    {data}
    variants
        Names of :data:`DEEPCELLSTATE_ABLATIONS` compared (column ``variant``): ``"full"``, ``"no input
        dropout"``, ``"no L1"``, ``"no skip"`` and ``"none of the three"``.
    {common}

    Returns
    -------
    {returns}

    Examples
    --------
    >>> abl = pk.experiments.deepcellstate_ablation(adata, source="PC3", target="MCF7", n_repeats=3)
    >>> pk.pl.ablation(abl)
    """
    return _run(
        evaluation.ablation,
        adata,
        name="deepcellstate_ablation",
        source=source,
        target=target,
        variants=variants,
        n_repeats=n_repeats,
        test_fraction=test_fraction,
        seed=seed,
        device=device,
        train_options=train_options,
        cell_key=cell_key,
        drug_key=drug_key,
        control_key=control_key,
        moa_key=moa_key,
        average=average,
        layer=layer,
    )


@doc_params(data=_DATA, common=_COMMON, returns=_RETURNS)
def deepcellstate_fewer_profiles(
    adata: ad.AnnData,
    *,
    source: str,
    target: str,
    fraction_removed: float = 0.7,
    n_repeats: int = 1,
    test_fraction: float = 0.1,
    seed: int = 0,
    device: str | None = None,
    train_options: Mapping[str, Any] | None = None,
    cell_key: str = OBS_KEYS.cell_key,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str | None = OBS_KEYS.control_key,
    moa_key: str | None = OBS_KEYS.moa_key,
    average: bool = True,
    layer: str | None = None,
) -> pd.DataFrame:
    """Accuracy with a fraction of the training profiles removed in the source, the target or both cell lines.

    The paper's "70% fewer profiles" experiment. The conditions (column ``removed``) are ``"none"``, ``source``,
    ``target`` and ``"both"``.

    Parameters
    ----------
    {data}
    fraction_removed
        Fraction of a cell line's training profiles removed (paper: 0.7).
    {common}

    Returns
    -------
    {returns}

    Examples
    --------
    >>> fewer = pk.experiments.deepcellstate_fewer_profiles(adata, source="PC3", target="MCF7")
    >>> pk.pl.ablation(fewer, x="removed")
    """
    return _run(
        evaluation.fewer_profiles,
        adata,
        name="deepcellstate_fewer_profiles",
        source=source,
        target=target,
        fraction_removed=fraction_removed,
        n_repeats=n_repeats,
        test_fraction=test_fraction,
        seed=seed,
        device=device,
        train_options=train_options,
        cell_key=cell_key,
        drug_key=drug_key,
        control_key=control_key,
        moa_key=moa_key,
        average=average,
        layer=layer,
    )
