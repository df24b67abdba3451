"""Hyperparameter search for any perturbkit trainer, in one process or shared by many through Optuna's storage.

One helper, :func:`perturbkit.train._sweep.sweep`, makes (or joins) the Optuna study, runs this process's trials and
reads the whole study back as a frame; :func:`perturbkit.tl.tune` (any trainer, by name) and
:func:`perturbkit.tl.tune_vae` both use it.

A study in a storage (an SQLAlchemy URL: ``sqlite:///sweep.db`` for the processes of one machine,
``postgresql+psycopg2://user:pw@host/db`` or MySQL for many machines) is shared by every process that runs the same
call: each trial's settings, value and worker are written there, the sampler sees every worker's trials, and the
budget ``n_trials`` is the study's total.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal

import anndata as ad
import pandas as pd

from .._schema import PerturbkitInputError, UnknownOptionError
from ..train._sweep import parse_space, sweep
from ._options import trainer_options

ModelName = Literal["vae", "deepcellstate", "cyclecdr", "scgen", "cpa"]


# ------------------------------------------------------------------------------------------ default search spaces
#: model → (trainer option → range). ``("log", lo, hi)`` is log-uniform, ``("int", lo, hi)`` an integer range,
#: ``("float", lo, hi)`` uniform, a list the choices. Every model searches the Adam learning rate over 1e-4 … 1e-2.
#:
#: ========== ============================================================================================
#: vae        Chow et al.'s sweep: batch size 32–512, latent size 5–150, encoder batch norm on or off
#: deepcellstate  latent 32–256 (the paper's 128; accuracy drops below 32), input dropout 0.2–0.8 (paper 0.5)
#: cyclecdr   latent 64–256 (paper 128), batch 128–512 (paper 512), cycle weight 1–100 (paper 10)
#: scgen      latent 50–200 (paper 100), batch 32–128 (paper 32), dropout 0.1–0.3 (paper 0.2), KL weight
#:            1e-6–1e-3 (paper 5e-5)
#: cpa        latent 128–512 (paper 256), batch 64–512 (paper 128), adversary weight 1–100 (paper 5) and
#:            learning rate 1e-5–1e-3 (paper 3e-4)
#: ========== ============================================================================================
DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "vae": {
        "lr": ("log", 1e-4, 1e-2),
        "batch_size": [32, 64, 128, 256, 512],
        "latent_dim": ("int", 5, 150),
        "batch_norm": [True, False],
    },
    "deepcellstate": {
        "lr": ("log", 1e-4, 1e-2),
        "batch_size": [32, 64, 128, 256],
        "latent_dim": [32, 64, 128, 256],
        "input_dropout": ("float", 0.2, 0.8),
    },
    "cyclecdr": {
        "lr": ("log", 1e-4, 1e-2),
        "batch_size": [128, 256, 512],
        "latent_dim": [64, 128, 256],
        "cycle_weight": ("log", 1.0, 100.0),
    },
    "scgen": {
        "lr": ("log", 1e-4, 1e-2),
        "batch_size": [32, 64, 128],
        "latent_dim": [50, 100, 200],
        "dropout": ("float", 0.1, 0.3),
        "kl_weight": ("log", 1e-6, 1e-3),
    },
    "cpa": {
        "lr": ("log", 1e-4, 1e-2),
        "batch_size": [64, 128, 256, 512],
        "latent_dim": [128, 256, 512],
        "reg_adversary": ("log", 1.0, 100.0),
        "adversary_lr": ("log", 1e-5, 1e-3),
    },
}
#: The history stages whose ``validation_loss`` scores a model (None: every row). DeepCellState: the translation
#: error of stage 2, the one its early stopping watches (pretraining reconstructs, the decoder stage is per line).
_SCORE_STAGES: dict[str, tuple[str, ...] | None] = {"deepcellstate": ("rounds",)}
#: Trainer arguments that are not hyperparameters: set by tune itself, or data keys (allowed in train_options only).
_NOT_SEARCHED = {"adata", "seed", "device", "validation_fraction", "checkpoint_dir", "checkpoint_every", "resume"}
_NOT_SEARCHED |= {"key_added", "layer", "cell_lines", "control_obs", "stratify"}


def _trainer(model: str) -> Callable:
    from . import _cpa, _cyclecdr, _deepcellstate, _scgen, _vae

    modules = {"vae": _vae, "deepcellstate": _deepcellstate, "cyclecdr": _cyclecdr, "scgen": _scgen, "cpa": _cpa}
    return getattr(modules[model], f"train_{model}")


def _trainer_parameters(model: str) -> dict:
    return dict(inspect.signature(_trainer(model)).parameters)


def best_validation_loss(history: pd.DataFrame, *, model: str) -> float:
    """A trained model's best validation loss (over the stages that score it)."""
    rows = history
    stages = _SCORE_STAGES.get(model)
    if stages is not None and "stage" in history:
        rows = history[history["stage"].isin(stages)]
    if "validation_loss" not in rows or not rows["validation_loss"].notna().any():
        raise PerturbkitInputError(
            f"pk.tl.tune scores trials by their best validation loss, but the {model} model recorded none; check "
            f"that validation_fraction leaves validation rows (or drugs) in the data."
        )
    return float(rows["validation_loss"].min())


def _sandbox(adata: ad.AnnData) -> ad.AnnData:
    """An AnnData sharing ``adata``'s matrices but with its own annotations, for trainers to write into."""
    return ad.AnnData(
        X=adata.X,
        obs=adata.obs.copy(),
        var=adata.var.copy(),
        uns=dict(adata.uns),
        obsm=dict(adata.obsm),
        varm=dict(adata.varm),
        layers=dict(adata.layers),
    )


def tune(
    adata: ad.AnnData,
    *,
    model: ModelName,
    search_space: Mapping[str, Any] | None = None,
    n_trials: int = 20,
    storage: str | None = None,
    study_name: str | None = None,
    timeout: float | None = None,
    validation_fraction: float | None = None,
    seed: int | None = 0,
    device: str | None = None,
    train_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Bayesian hyperparameter search (Optuna TPE) for one of perturbkit's trainers, alone or across many workers.

    Each trial trains ``pk.tl.train_<model>`` with the searched settings on the same train/validation split (the
    trainer's, seeded by ``seed``) and is scored by its best validation loss (lower is better; DeepCellState: the
    cross-cell-line translation error of its stage 2). The trainers run on a stand-in that shares ``adata``'s
    matrices, so ``adata`` is left unchanged.

    With ``storage`` the study lives in a database, and every process (on any machine) that runs the same call joins
    it: each samples with the others' trials in view, and together they stop at ``n_trials``. The sampler's random
    draws for trial *k* come from ``(seed, k)``, so the workers never propose the same random points and one worker
    on a fresh study is reproducible; with several workers the trial order depends on timing, so a shared sweep is
    not bitwise reproducible (each trial's training is: re-train its settings with the same seed).

    Parameters
    ----------
    adata
        The training data, as for the trainer (e.g. ``pk.pp.scale``-d profiles for ``"vae"``).
    model
        The trainer: ``"vae"`` (:func:`train_vae`), ``"deepcellstate"``, ``"cyclecdr"``, ``"scgen"`` or ``"cpa"``.
    search_space
        ``{option: range}`` over the trainer's options: ``("log", low, high)`` (log-uniform), ``("float", low,
        high)``, ``("int", low, high)``, ``("logint", low, high)``, or a list of choices, e.g. ``{"lr": ("log",
        1e-4, 1e-2), "batch_size": [32, 64, 128], "latent_dim": ("int", 5, 150)}``. None: the model's default
        space (:data:`perturbkit.tl._tune.DEFAULT_SPACES`: learning rate, batch size, latent size and one or two
        model weights, around the papers' settings).
    n_trials
        The study's trial budget. In memory: the trials this call runs. With ``storage``: the total over every
        worker; each stops once the study's complete and running trials reach it (calling again on a finished study
        trains nothing and returns its trials; ``0`` only reads the study).
    storage
        An SQLAlchemy database URL holding a study shared by workers: ``"sqlite:///sweep.db"`` (the processes of
        one machine; concurrent writers wait for each other) or ``"postgresql+psycopg2://user:pw@host/db"`` (many
        machines). None: an in-memory study for this call only.
    study_name
        The shared study's name (only with ``storage``); default ``"perturbkit-tune-<model>"``. Joining a study made
        with another search space, options, seed or data raises an error naming the differences.
    timeout
        This worker stops starting trials after this many seconds.
    validation_fraction
        The held-out part that scores the trials (must be > 0); None: the trainer's default.
    seed
        Seeds every trial's training (the same split for all) and the sampler.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (None: ``pk.settings.device``); may differ per worker.
    train_options
        Further keyword arguments of the trainer, fixed for every trial (e.g. ``{"max_epochs": 50}``, data keys such
        as ``cell_key``); the searched options may not be among them.

    Returns
    -------
    pandas.DataFrame
        One row per trial of the study (every worker's): ``trial``, the searched options, ``value`` (best validation
        loss), ``n_epochs`` (history rows), ``state`` (``COMPLETE``; ``PRUNED`` for a trial started after the budget
        was used up, which trained nothing; ``RUNNING`` for other workers' trials in flight) and ``worker``
        (``host:pid``). ``attrs``: ``best_params``, ``best_value``, ``study_name``.

    Examples
    --------
    >>> trials = pk.tl.tune(adata, model="vae", n_trials=30, train_options={"max_epochs": 100})
    >>> pk.tl.train_vae(adata, **trials.attrs["best_params"], max_epochs=100)

    The same sweep shared by every process that runs it (e.g. the tasks of a SLURM job array):

    >>> pk.tl.tune(adata, model="scgen", n_trials=100, storage="sqlite:///sweep.db", study_name="scgen-kang")
    """
    if model not in DEFAULT_SPACES:
        raise PerturbkitInputError(f"model={model!r} is not a tunable trainer; choose one of {list(DEFAULT_SPACES)}.")
    trainer = _trainer(model)
    parameters = _trainer_parameters(model)
    options = trainer_options(
        train_options,
        function="pk.tl.tune",
        trainer=f"pk.tl.train_{model}",
        reserved=("seed", "validation_fraction", "key_added", "checkpoint_dir", "checkpoint_every", "resume"),
        device=device,
    )
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise UnknownOptionError(
            f"train_options names {unknown}, which pk.tl.train_{model} does not take; its options are "
            f"{sorted(set(parameters) - {'adata'})}."
        )
    searchable = sorted(set(parameters) - _NOT_SEARCHED - {p for p in parameters if p.endswith("_key")})
    space = parse_space(DEFAULT_SPACES[model] if search_space is None else search_space, searchable=searchable)
    clash = sorted({dim.name for dim in space} & set(options))
    if clash:
        raise PerturbkitInputError(
            f"{clash} are searched (search_space) and fixed (train_options) at once; remove them from one of the two."
        )
    if validation_fraction is None:
        validation_fraction = parameters["validation_fraction"].default
    if not 0 < validation_fraction < 1:
        raise PerturbkitInputError(
            f"pk.tl.tune scores trials on held-out data; validation_fraction must be in (0, 1), got "
            f"{validation_fraction!r}."
        )
    sandbox = _sandbox(adata)

    def train_and_score(params):
        trained = trainer(sandbox, **options, **params, seed=seed, validation_fraction=validation_fraction)
        history = trained.history_frame
        return best_validation_loss(history, model=model), len(history)

    fixed = {k: v for k, v in options.items() if k != "device"}
    return sweep(
        train_and_score,
        space=space,
        n_trials=n_trials,
        storage=storage,
        study_name=study_name,
        seed=seed,
        timeout=timeout,
        default_name=f"perturbkit-tune-{model}",
        adata=adata,
        validation_fraction=validation_fraction,
        study_settings={"model": model, "options": fixed},
    )
