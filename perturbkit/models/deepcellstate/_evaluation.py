"""DeepCellState's evaluations: cross-validation and the paper's experiments, each returning a tidy DataFrame.

Every experiment holds out test drugs (unseen in every cell line), trains on the rest and scores the prediction
of each test drug's ``target`` profile from its ``source`` profile by Pearson correlation (PCC) over genes,
next to the naive baseline (the source profile itself) and a ridge map between the two cell lines.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..._schema import EmptyGroupError, PerturbkitInputError, UnknownCategoryError, check_positive_int
from ..._settings import settings
from ..._stats import pearson_rows
from .._inputs import UnknownOptionError
from .._profiles import CellDrugProfiles
from ..baselines import naive_cross_cell
from ._model import DeepCellState, ridge_loo
from ._stacked import STACKED_OPTIONS, train_stacked

MODEL_OPTIONS = ("latent_dim", "hidden", "input_dropout", "l1", "skip", "skip_map", "decoder_dropout", "device")
TRAIN_OPTIONS = (
    "validation_fraction",
    "lr",
    "decoder_lr",
    "batch_size",
    "max_epochs",
    "patience",
    "epochs_per_round",
    "max_rounds",
    "decoder_epochs",
    "pretrain_steps",
    "round_patience",
    "pretrain",
    "checkpoint_dir",
    "checkpoint_every",
    "resume",
)


def split_options(options: dict) -> tuple[dict, dict]:
    """Split keyword options into model and training options; unknown names are an error."""
    unknown = set(options) - set(MODEL_OPTIONS) - set(TRAIN_OPTIONS)
    if unknown:
        raise UnknownOptionError(
            f"unknown DeepCellState option(s) {sorted(unknown)}; model options: "
            f"{list(MODEL_OPTIONS)}, training options: {list(TRAIN_OPTIONS)}. Check the spelling "
            f"(e.g. lr=, not learning_rate=)."
        )
    return (
        {k: v for k, v in options.items() if k in MODEL_OPTIONS},
        {k: v for k, v in options.items() if k in TRAIN_OPTIONS},
    )


def assign_folds(
    profiles: CellDrugProfiles, candidates: np.ndarray, *, n_folds: int, split: str, seed: int
) -> np.ndarray:
    """Fold number (0..n_folds-1) for each candidate drug position; ``split="moa"`` keeps MOA families together."""
    rng = np.random.default_rng(seed)
    if split == "drug":
        groups = np.arange(len(candidates))
    elif split == "moa":
        if profiles.moa is None:
            raise PerturbkitInputError("split='moa' needs MOA annotations: pass moa_key= naming the obs column.")
        groups = pd.factorize(profiles.moa.iloc[candidates].fillna("unknown").to_numpy())[0]
    else:
        raise PerturbkitInputError(
            f"split must be 'drug' (hold out single drugs) or 'moa' (hold out whole MOA families), got split={split!r}."
        )
    unique = rng.permutation(np.unique(groups))
    if len(unique) < n_folds:
        raise EmptyGroupError(f"only {len(unique)} {split} groups for {n_folds} folds; lower n_folds.")
    # deal groups, largest first, to the currently smallest fold: balanced fold sizes
    sizes = pd.Series(groups).value_counts().reindex(unique)
    order = sizes.sort_values(ascending=False, kind="stable").index
    fold_of_group, load = {}, np.zeros(n_folds)
    for g in order:
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += sizes[g]
    return np.array([fold_of_group[g] for g in groups])


def _as_list(cell_lines) -> list[str]:
    return [str(c) for c in np.atleast_1d(cell_lines)]


def evaluate_holdout(
    profiles: CellDrugProfiles,
    test: np.ndarray,
    *,
    source,
    target: str,
    seed: int = 0,
    model_options: dict | None = None,
    train_options: dict | None = None,
    drop_training: Callable[[CellDrugProfiles, np.random.Generator], CellDrugProfiles] | None = None,
    ridge: bool = True,
) -> pd.DataFrame:
    """Train on all drugs except ``test`` (positions) and score the test drugs' ``source → target`` predictions.

    ``source`` may list several cell lines: each is decoded and the outputs averaged (the baseline is then the
    mean of the source profiles). ``drop_training`` may thin out the training profiles (e.g. remove 70% of one
    cell line's profiles). Returns one row per test drug: drug, moa, pcc, baseline_pcc (and ridge_pcc).
    """
    model, train = _holdout_model(profiles, test, seed=seed, model_options=model_options, drop_training=drop_training)
    # only the target's decoder is used for the scores, so only it gets the decoder fine-tuning stage
    model.train(train, seed=seed, tune_decoders=[target], **(train_options or {}))
    return _score_holdout(model, profiles, train, test, source=source, target=target, ridge=ridge)


def _holdout_model(profiles, test, *, seed, model_options=None, drop_training=None):
    """An untrained model for a holdout, and the training profiles: every drug but ``test`` (positions)."""
    is_test = np.zeros(len(profiles.drugs), dtype=bool)
    is_test[test] = True
    train = profiles.subset(drugs=~is_test)
    if drop_training is not None:
        train = drop_training(train, np.random.default_rng(seed))
    model = DeepCellState(profiles.var_names, cell_lines=profiles.cell_lines, seed=seed, **(model_options or {}))
    return model, train


def _score_holdout(model, profiles, train, test, *, source, target: str, ridge: bool = True) -> pd.DataFrame:
    """The trained model's, the naive baseline's and (``ridge``) a ridge map's PCC on each test drug."""
    s, t = [profiles.cell_index(c) for c in _as_list(source)], profiles.cell_index(target)
    x, y = profiles.values[test][:, s], profiles.values[test, t]
    predicted = np.mean([model.predict_array(x[:, j], target=target) for j in range(len(s))], axis=0)
    rows = {
        "drug": profiles.drugs[test].to_numpy(),
        "moa": profiles.moa.iloc[test].to_numpy() if profiles.moa is not None else None,
        "pcc": pearson_rows(predicted, y),
        "baseline_pcc": pearson_rows(naive_cross_cell(x), y),
    }
    if ridge:
        ridge_predictions = []
        for j, c in enumerate(s):
            both = train.present[:, c] & train.present[:, t]
            # RidgeMap's fit (the same penalty grid and leave-one-out choice), in half its time
            weight, bias = ridge_loo(train.values[both, c], train.values[both, t])
            ridge_predictions.append(x[:, j] @ weight + bias)
        rows["ridge_pcc"] = pearson_rows(np.mean(ridge_predictions, axis=0), y)
    return pd.DataFrame(rows)


def _stacked_holdouts(profiles: CellDrugProfiles, jobs: list[dict]) -> list[pd.DataFrame]:
    """Every job's :func:`evaluate_holdout`, the models trained together as one stack (:func:`train_stacked`)."""
    built = [
        _holdout_model(profiles, job["test"], seed=job["seed"], model_options=job["model_options"]) for job in jobs
    ]
    train_stacked(
        [model for model, _ in built],
        [train for _, train in built],
        seeds=[job["seed"] for job in jobs],
        tune_decoders=[jobs[0]["target"]],
        **{k: v for k, v in jobs[0]["train_options"].items() if k in STACKED_OPTIONS},
    )
    return [
        _score_holdout(model, profiles, train, job["test"], source=job["source"], target=job["target"])
        for (model, train), job in zip(built, jobs, strict=True)
    ]


def _paired_candidates(profiles: CellDrugProfiles, source, target: str) -> np.ndarray:
    cells = [*_as_list(source), str(target)]
    candidates = np.flatnonzero(profiles.drugs_in_all(cells))
    if len(candidates) < 2:
        raise EmptyGroupError(
            f"only {len(candidates)} drugs are measured in all of {cells}; cross-cell evaluation "
            f"needs drugs measured in the source(s) and the target."
        )
    return candidates


def cross_validate(
    profiles: CellDrugProfiles,
    *,
    source: str,
    target: str,
    n_folds: int = 10,
    split: str = "drug",
    folds=None,
    test_drugs=None,
    seed: int = 0,
    n_jobs: int = 1,
    stack_folds: bool | None = None,
    **options,
) -> pd.DataFrame:
    """K-fold cross-validation over the drugs measured in the source(s) and the target.

    Test drugs are unseen in every cell line. ``source`` may list several cell lines (decoded outputs averaged).

    ``folds`` runs only some folds (e.g. ``[0, 1]``) of the same K-fold split. ``test_drugs`` restricts the
    perturbations that are held out and scored (the others always train), e.g. the loss-of-function ones. Returns
    one row per test drug with columns fold, drug, moa, pcc, baseline_pcc, ridge_pcc.

    ``n_jobs`` trains that many folds at once, each in its own process on ``torch.get_num_threads() // n_jobs``
    threads (at least one): the same numbers as ``n_jobs=1`` on that many threads.

    ``stack_folds`` trains the folds together as one stacked network (:func:`train_stacked`); ``None`` stacks
    them on a GPU and trains them one by one elsewhere (on a CPU one by one is faster).
    """
    check_positive_int(n_jobs, "n_jobs")
    model_options, train_options = split_options(options)
    stack_folds = _resolve_stack_folds(stack_folds, model_options.get("device"), n_jobs, train_options)
    candidates = _paired_candidates(profiles, source, target)
    if test_drugs is not None:
        candidates = candidates[profiles.drugs[candidates].isin([str(d) for d in test_drugs])]
        if len(candidates) < n_folds:
            raise EmptyGroupError(
                f"only {len(candidates)} of test_drugs are measured in {source} and {target}; "
                f"need at least n_folds={n_folds}."
            )
    fold_of = assign_folds(profiles, candidates, n_folds=n_folds, split=split, seed=seed)
    run = range(n_folds) if folds is None else [int(f) for f in folds]
    jobs = [
        dict(
            test=candidates[fold_of == fold],
            source=source,
            target=target,
            seed=seed + fold,
            model_options=model_options,
            train_options=train_options,
        )
        for fold in run
    ]
    if stack_folds and len(jobs) > 1:
        frames = _stacked_holdouts(profiles, jobs)
    elif n_jobs > 1 and len(jobs) > 1:
        frames = _folds_in_processes(profiles, jobs, n_jobs=min(int(n_jobs), len(jobs)))
    else:
        frames = [
            evaluate_holdout(profiles, **job) for job in tqdm(jobs, desc="folds", disable=not settings.progress_bar)
        ]
    out = pd.concat([frame.assign(fold=fold) for fold, frame in zip(run, frames, strict=True)], ignore_index=True)
    return out[["fold", *[c for c in out.columns if c != "fold"]]]


def _resolve_stack_folds(stack_folds, device, n_jobs: int, train_options: dict) -> bool:
    """Whether the folds train as one stack: ``None`` means on a GPU; checks what stacking cannot combine with."""
    if stack_folds is None:
        from ..._settings import resolve_device

        return resolve_device(device).type == "cuda" and n_jobs == 1 and not _checkpointing(train_options)
    if stack_folds and n_jobs > 1:
        raise PerturbkitInputError(
            "stack_folds=True trains the folds as one network in one process; drop n_jobs= (or pass "
            "stack_folds=False to train the folds in n_jobs processes)."
        )
    if stack_folds and _checkpointing(train_options):
        raise PerturbkitInputError(
            "stacked folds are not checkpointed; drop checkpoint_dir= / resume= from the training options, or pass "
            "stack_folds=False."
        )
    return bool(stack_folds)


def _checkpointing(train_options: dict) -> bool:
    return train_options.get("checkpoint_dir") is not None or train_options.get("resume") is not None


def _fold_in_process(threads: int, profiles: CellDrugProfiles, job: dict) -> pd.DataFrame:
    import torch

    torch.set_num_threads(threads)
    settings.progress_bar = False
    return evaluate_holdout(profiles, **job)


def _folds_in_processes(profiles: CellDrugProfiles, jobs: list[dict], *, n_jobs: int) -> list[pd.DataFrame]:
    """Run each fold's :func:`evaluate_holdout` in one of ``n_jobs`` fresh processes ("spawn": safe with torch)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    threads = max(1, torch.get_num_threads() // n_jobs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=context) as pool:
        futures = [pool.submit(_fold_in_process, threads, profiles, job) for job in jobs]
        return [f.result() for f in tqdm(futures, desc="folds", disable=not settings.progress_bar)]


def compare_to_baseline(cv: pd.DataFrame, *, model: str = "pcc", baseline: str = "baseline_pcc") -> pd.Series:
    """Paired comparison of per-drug PCCs: means, paired t-test and fold increase (mean model / mean baseline)."""
    from scipy import stats

    paired = cv[[model, baseline]].dropna()
    if len(paired) < 2:
        raise EmptyGroupError("need at least two drugs with both PCCs for a paired comparison.")
    test = stats.ttest_rel(paired[model], paired[baseline])
    positive = paired[baseline] > 0
    return pd.Series(
        {
            "n_drugs": len(paired),
            f"mean_{model}": paired[model].mean(),
            f"mean_{baseline}": paired[baseline].mean(),
            "fold_increase": paired[model].mean() / paired[baseline].mean(),
            "median_per_drug_fold_increase": (paired[model][positive] / paired[baseline][positive]).median(),
            "fraction_improved": (paired[model] > paired[baseline]).mean(),
            "t_statistic": test.statistic,
            "p_value": test.pvalue,
        }
    )


def _single_split(profiles, source, target, test_fraction, seed):
    candidates = _paired_candidates(profiles, source, target)
    rng = np.random.default_rng(seed)
    n_test = max(1, int(round(len(candidates) * test_fraction)))
    return np.sort(rng.permutation(candidates)[:n_test])


def _summarise(frame: pd.DataFrame, **labels) -> dict:
    return {
        **labels,
        "n_test_drugs": len(frame),
        "pcc": frame["pcc"].mean(),
        "baseline_pcc": frame["baseline_pcc"].mean(),
        **({"ridge_pcc": frame["ridge_pcc"].mean()} if "ridge_pcc" in frame else {}),
    }


def _keep_training_fraction(fraction: float):
    def drop(train: CellDrugProfiles, rng) -> CellDrugProfiles:
        n = len(train.drugs)
        keep = np.sort(rng.permutation(n)[: max(2, int(round(n * fraction)))])
        return train.subset(drugs=keep)

    return drop


def _remove_profiles(cell_positions: list[int], fraction: float):
    def drop(train: CellDrugProfiles, rng) -> CellDrugProfiles:
        present = train.present.copy()
        for c in cell_positions:
            have = np.flatnonzero(present[:, c])
            present[rng.permutation(have)[: int(round(len(have) * fraction))], c] = False
        keep = present.any(axis=1)
        thinned = CellDrugProfiles(train.values, present, train.drugs, train.cell_lines, train.var_names, train.moa)
        return thinned.subset(drugs=keep)

    return drop


def _experiment(
    profiles,
    *,
    source,
    target,
    conditions: dict,
    n_repeats: int,
    test_fraction: float,
    seed: int,
    options: dict,
    desc: str,
) -> pd.DataFrame:
    """Run each condition (name → (labels, model_options, drop_training)) on the same test split per repeat."""
    model_options, train_options = split_options(options)
    rows = []
    jobs = [(r, name) for r in range(n_repeats) for name in conditions]
    for repeat, name in tqdm(jobs, desc=desc, disable=not settings.progress_bar):
        labels, extra_model, drop = conditions[name]
        test = _single_split(profiles, source, target, test_fraction, seed + repeat)
        frame = evaluate_holdout(
            profiles,
            test,
            source=source,
            target=target,
            seed=seed + repeat,
            model_options={**model_options, **extra_model},
            train_options=train_options,
            drop_training=drop,
        )
        rows.append(_summarise(frame, **labels, repeat=repeat))
    return pd.DataFrame(rows)


def training_size_curve(
    profiles,
    *,
    source,
    target,
    fractions=(0.1, 0.25, 0.5, 0.75, 1.0),
    n_repeats: int = 1,
    test_fraction: float = 0.1,
    seed: int = 0,
    **options,
) -> pd.DataFrame:
    """Accuracy as a function of the fraction of training drugs kept (same test drugs per repeat)."""
    conditions = {f: ({"fraction": float(f)}, {}, _keep_training_fraction(float(f))) for f in fractions}
    return _experiment(
        profiles,
        source=source,
        target=target,
        conditions=conditions,
        n_repeats=n_repeats,
        test_fraction=test_fraction,
        seed=seed,
        options=options,
        desc="training sizes",
    )


def latent_size_sweep(
    profiles,
    *,
    source,
    target,
    latent_dims=(8, 16, 32, 64, 128),
    n_repeats: int = 1,
    test_fraction: float = 0.1,
    seed: int = 0,
    **options,
) -> pd.DataFrame:
    """Accuracy as a function of the latent size (paper: drops below 32)."""
    conditions = {d: ({"latent_dim": int(d)}, {"latent_dim": int(d)}, None) for d in latent_dims}
    return _experiment(
        profiles,
        source=source,
        target=target,
        conditions=conditions,
        n_repeats=n_repeats,
        test_fraction=test_fraction,
        seed=seed,
        options=options,
        desc="latent sizes",
    )


ABLATIONS = {
    "full": {},
    "no input dropout": {"input_dropout": 0.0},
    "no L1": {"l1": 0.0},
    "no skip": {"skip": False},
    "none of the three": {"input_dropout": 0.0, "l1": 0.0, "skip": False},
}


def ablation(
    profiles,
    *,
    source,
    target,
    variants=tuple(ABLATIONS),
    n_repeats: int = 1,
    test_fraction: float = 0.1,
    seed: int = 0,
    **options,
) -> pd.DataFrame:
    """The paper's ablation: the model without input dropout, the L1 penalty and the skip connection."""
    unknown = set(variants) - set(ABLATIONS)
    if unknown:
        raise UnknownCategoryError(
            f"unknown ablation variant(s) {sorted(unknown)} in variants=; choose from {list(ABLATIONS)}."
        )
    conditions = {v: ({"variant": v}, ABLATIONS[v], None) for v in variants}
    return _experiment(
        profiles,
        source=source,
        target=target,
        conditions=conditions,
        n_repeats=n_repeats,
        test_fraction=test_fraction,
        seed=seed,
        options=options,
        desc="ablation",
    )


def fewer_profiles(
    profiles,
    *,
    source,
    target,
    fraction_removed: float = 0.7,
    n_repeats: int = 1,
    test_fraction: float = 0.1,
    seed: int = 0,
    **options,
) -> pd.DataFrame:
    """The paper's "70% fewer profiles" experiment.

    Remove a fraction of the training profiles in the source, the target or both cell lines.
    """
    s, t = profiles.cell_index(source), profiles.cell_index(target)
    conditions = {
        "none": ({"removed": "none"}, {}, None),
        source: ({"removed": source}, {}, _remove_profiles([s], fraction_removed)),
        target: ({"removed": target}, {}, _remove_profiles([t], fraction_removed)),
        "both": ({"removed": "both"}, {}, _remove_profiles([s, t], fraction_removed)),
    }
    return _experiment(
        profiles,
        source=source,
        target=target,
        conditions=conditions,
        n_repeats=n_repeats,
        test_fraction=test_fraction,
        seed=seed,
        options=options,
        desc="fewer profiles",
    )
