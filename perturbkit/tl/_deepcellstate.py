"""pk.tl faces of DeepCellState: training, cross-validation and interpretation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import anndata as ad
import pandas as pd

from .._schema import OBS_KEYS
from ..models._inputs import check_model_and_data, check_trained
from ..models._profiles import CellDrugProfiles
from ..models.deepcellstate import DeepCellState
from ..models.deepcellstate import _evaluation as evaluation
from ..models.deepcellstate import _interpretation as interpretation
from ..models.deepcellstate._model import DEFAULTS
from ._options import doc_params, trainer_options

#: How the cross-cell trainers (DeepCellState, the anchor VAE, the dual GAN) read the data: ``{cross_cell_data}``.
CROSS_CELL_DATA_DOC = """
    adata
        Level-5-like signatures with ``cell_key`` and ``drug_key`` in obs.
    cell_key, drug_key, moa_key
        obs columns of the cell line, the drug and (optional) its mechanism of action.
    control_key
        Boolean obs column flagging the vehicle (DMSO) controls, which are left out of training and prediction.
        A missing column raises :class:`~perturbkit.errors.MissingColumnError`; pass ``control_key=None`` when no
        row is a control (every row is then treated as a drug, also by ``model.predict``).
    average
        Average each (cell line, drug)'s profiles over doses, times and replicates; ``False`` needs one row each.
"""


def _profiles(adata, *, cell_key, drug_key, control_key, moa_key, average, layer, cell_lines=None):
    return CellDrugProfiles.from_adata(
        adata,
        cell_key=cell_key,
        drug_key=drug_key,
        control_key=control_key,
        moa_key=moa_key,
        average=average,
        layer=layer,
        cell_lines=cell_lines,
    )


@doc_params(cross_cell_data=CROSS_CELL_DATA_DOC)
def train_deepcellstate(
    adata,
    *,
    cell_key: str = OBS_KEYS.cell_key,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str | None = OBS_KEYS.control_key,
    moa_key: str | None = OBS_KEYS.moa_key,
    average: bool = True,
    cell_lines=None,
    layer: str | None = None,
    latent_dim: int = DEFAULTS.latent_dim,
    hidden: tuple[int, ...] = DEFAULTS.hidden,
    input_dropout: float = DEFAULTS.input_dropout,
    l1: float = DEFAULTS.l1,
    skip: bool = DEFAULTS.skip,
    skip_map: Literal["full", "diagonal", "ridge"] = DEFAULTS.skip_map,
    decoder_dropout: float = DEFAULTS.decoder_dropout,
    validation_fraction: float = DEFAULTS.validation_fraction,
    lr: float = DEFAULTS.lr,
    decoder_lr: float = DEFAULTS.decoder_lr,
    batch_size: int = DEFAULTS.batch_size,
    max_epochs: int = DEFAULTS.max_epochs,
    patience: int = DEFAULTS.patience,
    epochs_per_round: int = DEFAULTS.epochs_per_round,
    max_rounds: int = DEFAULTS.max_rounds,
    decoder_epochs: int | None = None,
    pretrain_steps: int | None = DEFAULTS.pretrain_steps,
    round_patience: int | None = DEFAULTS.round_patience,
    pretrain: bool = True,
    device: str | None = None,
    seed: int | None = 0,
    checkpoint_dir=None,
    checkpoint_every: int = 10,
    resume=None,
    key_added: str = "deepcellstate",
) -> DeepCellState:
    """Train DeepCellState to translate drug responses between cell lines.

    Profiles of the same (cell line, drug) are averaged over doses and times (``average=True``), control rows are
    left out, and all profiles are scaled to [-1, 1] by one global max |x| (kept in the model). Training is staged:
    autoencoder pretraining, per-cell-line decoder rounds, then decoder fine-tuning (see
    :meth:`DeepCellState.train`). Equivalent to ``DeepCellState.from_adata(adata, ...).train(adata, ...)``.

    Parameters
    ----------
    {cross_cell_data}
    cell_lines
        Cell lines to model (default all in the data); each gets a decoder.
    layer
        Read ``adata.layers[layer]`` instead of X (recorded with the model).
    latent_dim, hidden, input_dropout, l1, skip, skip_map, decoder_dropout
        The network (paper: latent 128, hidden 512 and 256, input dropout 0.5); see :class:`DeepCellState`.
    validation_fraction, lr, decoder_lr, batch_size, max_epochs, patience, epochs_per_round, max_rounds
        Training (see :meth:`DeepCellState.train`); the learning rates are 10× the paper's (1e-4 and 1e-5 are as
        accurate with the ridge skip, and about twice as slow).
    decoder_epochs, pretrain_steps, pretrain
        Most epochs of the decoder fine-tuning stage (default ``max_epochs``; 0 skips it); the pretraining stage's
        budget in minibatch steps (rounded up to whole epochs, at most ``max_epochs``; 240 = 10 epochs at the
        paper's scale; ``None``: ``max_epochs``); and whether to pretrain.
    round_patience
        Rounds without improvement before the cell-line rounds stop (``None``: ``patience``; the reference code's
        3 by default).
    device, seed
        ``"auto"|"cpu"|"cuda"`` (None: ``pk.settings.device``); the seed makes CPU runs reproducible.
    checkpoint_dir, checkpoint_every, resume
        Write a checkpoint every ``checkpoint_every`` epochs (rounds) and after each stage; ``resume=`` that
        checkpoint continues the run exactly. Ctrl-C ends training with the best weights so far, and the model is
        returned.
    key_added
        ``adata.uns[key_added]`` records the settings and a training summary.

    Returns
    -------
    The trained :class:`~perturbkit.models.deepcellstate.DeepCellState`.

    Examples
    --------
    >>> adata = pk.datasets.simulate_bulk()
    >>> model = pk.tl.train_deepcellstate(adata)
    >>> pred = model.predict(adata, target="MCF7", sources=["PC3"])
    """
    architecture = dict(
        latent_dim=latent_dim,
        hidden=tuple(hidden),
        input_dropout=input_dropout,
        l1=l1,
        skip=skip,
        skip_map=skip_map,
        decoder_dropout=decoder_dropout,
    )
    training = dict(
        validation_fraction=validation_fraction,
        lr=lr,
        decoder_lr=decoder_lr,
        batch_size=batch_size,
        max_epochs=max_epochs,
        patience=patience,
        epochs_per_round=epochs_per_round,
        max_rounds=max_rounds,
        decoder_epochs=decoder_epochs,
        pretrain_steps=pretrain_steps,
        round_patience=round_patience,
        pretrain=pretrain,
    )
    model = DeepCellState.from_adata(
        adata,
        cell_key=cell_key,
        drug_key=drug_key,
        control_key=control_key,
        moa_key=moa_key,
        average=average,
        cell_lines=cell_lines,
        layer=layer,
        device=device,
        seed=seed,
        **architecture,
    )
    profiles = model.profiles_from(adata, cell_lines=model.cell_lines)  # built once: for training and the record
    model.train(
        profiles, seed=seed, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume, **training
    )
    adata.uns[key_added] = model.training_record(
        {**model.data_keys, "cell_lines": model.cell_lines, "layer": layer, "seed": seed, **architecture, **training},
        n_drugs={c: int(n) for c, n in zip(profiles.cell_lines, profiles.present.sum(axis=0), strict=True)},
    )
    return model


def _evaluation_call(function, adata, *, cell_key, drug_key, control_key, moa_key, average, layer, **kwargs):
    profiles = _profiles(
        adata,
        cell_key=cell_key,
        drug_key=drug_key,
        control_key=control_key,
        moa_key=moa_key,
        average=average,
        layer=layer,
    )
    return function(profiles, **kwargs)


def cross_validate_deepcellstate(
    adata: ad.AnnData,
    *,
    source: str | Sequence[str],
    target: str,
    n_folds: int = 10,
    split: Literal["drug", "moa"] = "drug",
    folds: Sequence[int] | None = None,
    test_drugs: Sequence[str] | None = None,
    seed: int = 0,
    device: str | None = None,
    n_jobs: int = 1,
    stack_folds: bool | None = None,
    train_options: Mapping[str, Any] | None = None,
    cell_key: str = OBS_KEYS.cell_key,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str | None = OBS_KEYS.control_key,
    moa_key: str | None = OBS_KEYS.moa_key,
    average: bool = True,
    layer: str | None = None,
) -> pd.DataFrame:
    """Cross-validate DeepCellState, holding out drugs (``split="drug"``) or whole MOA families (``"moa"``).

    Test drugs are unseen in every cell line; 5% of the rest validate early stopping. Each fold trains a model and
    predicts its test drugs' ``target`` profiles from their ``source`` profiles.

    Loss-of-function workflow: DeepCellState treats every perturbation alike, so shRNA/CRISPR signatures (LINCS
    ``pert_type == "trt_sh"``) join the compounds as rows whose ``drug_key`` names the perturbation (e.g.
    ``"sh:TP53"``). Train on compounds and knockdowns together, and score the knockdowns alone with
    ``test_drugs=adata.obs.loc[adata.obs.pert_type == "trt_sh", "drug"].unique()`` (paper: PCC 0.56 on LoF).

    Parameters
    ----------
    adata
        Level-5-like signatures with the cell-line and drug columns (see :func:`train_deepcellstate`).
    source
        The input cell line, or several (their decoded outputs are averaged).
    target
        The cell line whose profiles are predicted.
    n_folds
        Number of folds of the split.
    split
        ``"drug"``: hold out single drugs; ``"moa"``: hold out whole MOA families (needs ``moa_key``).
    folds
        Run only these folds (e.g. ``[0, 1]``) of the same ``n_folds`` split; default all.
    test_drugs
        Restrict the held-out and scored perturbations to these (the others always train).
    seed
        Seeds the split (fold ``f`` trains with ``seed + f``).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``None`` means ``pk.settings.device``.
    n_jobs
        Folds trained at once, each in its own process on ``torch.get_num_threads() // n_jobs`` threads (at least
        one); the results equal ``n_jobs=1`` on that many threads. On a CPU, ``n_jobs`` = the number of cores is
        the fastest (small networks use one core well, several poorly); ``pk.settings`` changes made in this
        session do not reach the worker processes.
    stack_folds
        Train the folds together as one stacked network: one vectorised step trains every fold
        (:class:`~perturbkit.train.ModuleStack`), which fills a GPU that one small network leaves idle. Each fold
        keeps its own data, split, ridge maps, cell-line order and early stopping; the folds share one shuffling
        and dropout stream, so the numbers match the one-by-one run as another seed's would (mean PCC within 0.01
        in the tests). ``None`` (default): stacked on a GPU, one by one on a CPU, where that is faster.
    train_options
        DeepCellState settings for every fold, as keyword arguments of :func:`train_deepcellstate` (e.g.
        ``{"max_epochs": 50}``); its defaults apply to the rest.
    cell_key, drug_key, control_key, moa_key, average, layer
        How profiles are read from ``adata``, as in :func:`train_deepcellstate`.

    Returns
    -------
    One row per test drug: ``fold``, ``drug``, ``moa``, ``pcc`` (model), ``baseline_pcc`` (the source profile
    itself), ``ridge_pcc`` (a ridge map between the cell lines). Summarise with
    :func:`deepcellstate_compare_to_baseline`; plot with :func:`perturbkit.pl.pcc_scatter`.

    Examples
    --------
    >>> adata = pk.datasets.simulate_bulk()
    >>> cv = pk.tl.cross_validate_deepcellstate(adata, source="PC3", target="MCF7", folds=[0, 1])
    >>> pk.tl.deepcellstate_compare_to_baseline(cv)
    """
    options = trainer_options(
        train_options,
        function="pk.tl.cross_validate_deepcellstate",
        trainer="pk.tl.train_deepcellstate",
        reserved=("seed",),
        device=device,
    )
    return _evaluation_call(
        evaluation.cross_validate,
        adata,
        source=source,
        target=target,
        n_folds=n_folds,
        split=split,
        seed=seed,
        folds=folds,
        test_drugs=test_drugs,
        n_jobs=n_jobs,
        stack_folds=stack_folds,
        cell_key=cell_key,
        drug_key=drug_key,
        control_key=control_key,
        moa_key=moa_key,
        average=average,
        layer=layer,
        **options,
    )


def deepcellstate_compare_to_baseline(
    cv: pd.DataFrame, *, model: str = "pcc", baseline: str = "baseline_pcc"
) -> pd.Series:
    """Paired comparison of per-drug PCCs: the model's against a baseline's.

    Parameters
    ----------
    cv
        One row per test drug, e.g. from :func:`cross_validate_deepcellstate`.
    model, baseline
        The columns compared (default the model's ``pcc`` and the naive ``baseline_pcc``; ``"ridge_pcc"`` compares
        with the ridge map).

    Returns
    -------
    ``n_drugs``, ``mean_<model>``, ``mean_<baseline>``, ``fold_increase`` (mean model / mean baseline),
    ``median_per_drug_fold_increase``, ``fraction_improved``, and the paired t-test's ``t_statistic`` and
    ``p_value``.

    Examples
    --------
    >>> pk.tl.deepcellstate_compare_to_baseline(cv, baseline="ridge_pcc")
    """
    return evaluation.compare_to_baseline(cv, model=model, baseline=baseline)


def _checked(adata, model, name: str) -> None:
    check_model_and_data(
        adata, model, function=f"pk.tl.{name}", call=f"pk.tl.{name}(adata, model=model)", model_class=DeepCellState
    )
    check_trained(model)


def latent_embeddings(
    adata: ad.AnnData,
    *,
    model: DeepCellState,
    cell_lines: Sequence[str] | None = None,
    drugs: Sequence[str] | None = None,
    layer: str | None = None,
) -> ad.AnnData:
    """Latent codes of every (drug, cell line) profile, with the input profiles beside them.

    Profiles are built as in training (averaged over doses, times and replicates; controls left out).

    Parameters
    ----------
    adata
        Profiles with the model's genes and its cell-line and drug columns.
    model
        A trained :class:`~perturbkit.models.deepcellstate.DeepCellState`.
    cell_lines, drugs
        Restrict to these (default: all in ``adata``). Cell lines the model never saw are allowed.
    layer
        Read profiles from this layer instead of X.

    Returns
    -------
    anndata.AnnData
        One row per (drug, cell line) profile present. X holds the latent codes (vars ``latent_0`` …),
        ``obsm['X_input']`` the input profiles (the data's units, model gene order), obs the drug, cell line and
        (when known) MOA columns under the model's obs keys, and ``uns['latent_embeddings']`` those keys. Plot
        with :func:`perturbkit.pl.embedding` after ``pk.tl.embed(emb, use_rep="X")``.

    Examples
    --------
    >>> emb = pk.tl.latent_embeddings(adata, model=model)
    >>> pk.tl.pair_distance_ratio(emb, space="X"), pk.tl.pair_distance_ratio(emb, space="X_input")
    """
    _checked(adata, model, "latent_embeddings")
    return interpretation.latent_embeddings(model, adata, cell_lines=cell_lines, drugs=drugs, layer=layer)


def latent_correlation(
    adata: ad.AnnData,
    *,
    model: DeepCellState,
    cell_lines: Sequence[str],
    drugs: Sequence[str] | None = None,
    layer: str | None = None,
) -> pd.DataFrame:
    """Drug × drug Pearson correlation of latent codes between two cell lines.

    Parameters
    ----------
    adata
        Profiles with the model's genes.
    model
        A trained :class:`~perturbkit.models.deepcellstate.DeepCellState`.
    cell_lines
        ``(a, b)``: rows are the drugs' latent codes from cell line ``a``, columns from ``b``.
    drugs
        Restrict to these drugs (default: every drug measured in both).
    layer
        Read profiles from this layer instead of X.

    Returns
    -------
    ``corr.loc[d1, d2]`` = correlation of ``d1``'s code in ``a`` with ``d2``'s code in ``b``; index and columns are
    the drugs measured in both (same order). ``attrs`` holds :func:`diagonal_summary` of the matrix and the two
    cell lines. A strong diagonal means each drug lands at the same place in latent space whichever cell line it
    was measured in. Plot with :func:`perturbkit.pl.latent_correlation`.

    Examples
    --------
    >>> corr = pk.tl.latent_correlation(adata, model=model, cell_lines=("MCF7", "PC3"))
    >>> pk.pl.latent_correlation(corr)
    """
    _checked(adata, model, "latent_correlation")
    return interpretation.latent_correlation(model, adata, cell_lines=cell_lines, drugs=drugs, layer=layer)


def gene_importance(
    adata: ad.AnnData,
    *,
    model: DeepCellState,
    target: str,
    source: str,
    n_subsets: int = 100,
    subset_size: int = 100,
    top: int = 10,
    drugs: Sequence[str] | None = None,
    compare_with: Literal["auto", "measured", "prediction"] = "auto",
    seed: int = 0,
    layer: str | None = None,
    batch_rows: int = 8192,
) -> pd.DataFrame:
    """Input genes that a decoder relies on, by random gene subsets (the paper's method).

    For each drug's profile in ``source``: draw ``n_subsets`` random subsets of ``subset_size`` genes, keep only
    those genes of the scaled input (the others set to 0, "no change" on the model's scale), predict the profile in
    ``target`` from each, and keep the ``top`` subsets whose prediction correlates best with the reference profile.
    Genes are ranked by how often they appear in the kept subsets, over all drugs.

    Parameters
    ----------
    adata
        Profiles with the model's genes.
    model
        A trained :class:`~perturbkit.models.deepcellstate.DeepCellState`.
    target
        The decoder's cell line (one the model knows).
    source
        The cell line whose profiles are fed in (may be one the model never saw, or ``target`` itself).
    n_subsets, subset_size, top
        The paper's 100 subsets of 100 genes, 10 kept (``subset_size`` is clamped to the number of genes, ``top``
        to ``n_subsets``).
    drugs
        Restrict to these drugs (default: every drug measured in ``source``).
    compare_with
        The reference each subset's prediction is scored against: ``"measured"``, the drug's measured profile in
        ``target`` (the paper's choice; drugs not measured there are skipped); ``"prediction"``, the model's
        prediction from the full input; ``"auto"``, the measured profile where there is one, else the prediction.
    seed
        Seed of the random subsets.
    layer
        Read profiles from this layer instead of X.
    batch_rows
        How many subset inputs go through the network at once (a memory bound).

    Returns
    -------
    Columns ``gene``, ``count`` (times in a kept subset) and ``frequency`` (count / (profiles × top)), one row per
    gene, most frequent first; ``attrs`` holds the settings and ``expected_frequency`` (= subset_size / n_genes,
    the frequency of a gene that does not matter). Plot with :func:`perturbkit.pl.gene_importance`.

    Examples
    --------
    >>> gi = pk.tl.gene_importance(adata, model=model, target="MCF7", source="PC3")
    >>> pk.pl.gene_importance(gi, n=30)
    """
    _checked(adata, model, "gene_importance")
    return interpretation.gene_importance(
        model,
        adata,
        target=target,
        source=source,
        n_subsets=n_subsets,
        subset_size=subset_size,
        top=top,
        drugs=drugs,
        compare_with=compare_with,
        seed=seed,
        layer=layer,
        batch_rows=batch_rows,
    )


def pair_distance_ratio(
    emb: ad.AnnData,
    *,
    space: Literal["X", "X_input"] | str = "X",
    n_random: int = 10000,
    seed: int = 0,
    drug_key: str | None = None,
    cell_key: str | None = None,
) -> float:
    """How close the same drug's profiles from different cell lines are, relative to different drugs.

    The mean Euclidean distance between points of the same drug in different cell lines, divided by the mean
    distance between random pairs of points of *different* drugs in *different* cell lines. About 1 means the space
    does not pair a drug's profiles across cell lines; near 0 means it places them together (the paper's latent
    space, unlike its input space).

    Parameters
    ----------
    emb
        From :func:`latent_embeddings` (or any AnnData with drug and cell-line obs columns).
    space
        ``"X"`` (latent codes), ``"X_input"`` (input profiles) or any other ``obsm`` key (e.g. ``"X_umap"``).
    n_random
        Number of random different-drug pairs drawn for the denominator.
    seed
        Seed of those draws.
    drug_key, cell_key
        obs columns; default those recorded by :func:`latent_embeddings`.

    Returns
    -------
    The ratio (≥ 0).

    Examples
    --------
    >>> emb = pk.tl.latent_embeddings(adata, model=model)
    >>> pk.tl.pair_distance_ratio(emb, space="X_input")
    """
    return interpretation.pair_distance_ratio(
        emb, space, n_random=n_random, seed=seed, drug_key=drug_key, cell_key=cell_key
    )


def diagonal_summary(corr: pd.DataFrame) -> dict[str, float]:
    """How strong the diagonal of a square drug × drug matrix is.

    Parameters
    ----------
    corr
        A square matrix with the same drugs, in the same order, as index and columns (e.g. from
        :func:`latent_correlation`).

    Returns
    -------
    ``mean_diagonal``, ``mean_off_diagonal`` and their difference ``diagonal_minus_off_diagonal``;
    ``mean_diagonal_rank``, the mean rank of each row's diagonal value within its row (1 = the highest; random is
    about (n + 1) / 2); ``top1_fraction``, the fraction of rows whose diagonal is the row's highest value. NaN
    entries are ignored.

    Examples
    --------
    >>> pk.tl.diagonal_summary(pk.tl.latent_correlation(adata, model=model, cell_lines=("MCF7", "PC3")))
    """
    return interpretation.diagonal_summary(corr)


tf_targets = interpretation.tf_targets
