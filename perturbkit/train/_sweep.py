"""Optuna studies shared by many processes: the one sweep helper of :func:`perturbkit.tl.tune` and ``tune_vae``.

:func:`sweep` makes (or joins) the study, runs this process's trials and reads the whole study back as a frame. A
study in a storage (an SQLAlchemy URL: ``sqlite:///sweep.db`` for the processes of one machine,
``postgresql+psycopg2://user:pw@host/db`` or MySQL for many machines) is shared by every process that runs the same
call: each trial's settings, value and worker are written there, the sampler sees every worker's trials, and the
budget ``n_trials`` is the study's total.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._schema import PerturbkitInputError, UnknownOptionError
from .._settings import settings

#: Seconds a process waits for a locked sqlite database before giving up (concurrent writers take turns).
SQLITE_TIMEOUT = 120
#: A worker records a heartbeat this often (seconds); a running trial silent for ``GRACE_PERIOD`` is marked failed
#: (its worker died) and re-queued with the same settings, at most ``MAX_RETRY`` times.
HEARTBEAT_INTERVAL = 30
GRACE_PERIOD = 120
MAX_RETRY = 2
#: Tries at opening the storage (workers starting together race to create a new database's tables).
_CONNECT_ATTEMPTS = 8
#: Study attribute holding what must agree between the workers of one study.
_SIGNATURE_KEY = "perturbkit_signature"
#: Trial attribute marking a trial started after the budget was used up (nothing trained).
_SURPLUS_KEY = "perturbkit_surplus"

# --------------------------------------------------------------------------------------------- search spaces
_RANGES = ("log", "float", "int", "logint")
_PRIMITIVE = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class Dimension:
    """One searched option: a range ``(kind, low, high)`` or a list of ``choices``."""

    name: str
    kind: str  # one of _RANGES, or "choice"
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def suggest(self, trial):
        if self.kind == "choice":
            if all(isinstance(c, _PRIMITIVE) for c in self.choices):
                return trial.suggest_categorical(self.name, list(self.choices))
            return self.decode(trial.suggest_categorical(self.name, [repr(c) for c in self.choices]))
        if self.kind in ("int", "logint"):
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.kind == "logint")
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.kind == "log")

    def decode(self, stored):
        """The option's value from what the study stores (choices that Optuna cannot store go as their repr)."""
        if self.kind == "choice" and not all(isinstance(c, _PRIMITIVE) for c in self.choices):
            return {repr(c): c for c in self.choices}.get(stored, stored)
        return stored

    def describe(self):
        return list(self.choices) if self.kind == "choice" else [self.kind, self.low, self.high]


def parse_space(space: Mapping[str, Any], *, searchable, argument: str = "search_space") -> list[Dimension]:
    """Check a search space ``{option: ("log"|"float"|"int"|"logint", low, high) or [choices]}``."""
    if not isinstance(space, Mapping) or not space:
        raise PerturbkitInputError(
            f"{argument} must be a non-empty dict of option → range, e.g. {{'lr': ('log', 1e-4, 1e-2), "
            f"'batch_size': [32, 64, 128], 'latent_dim': ('int', 5, 150)}}; got {space!r}."
        )
    unknown = [name for name in space if name not in searchable]
    if unknown:
        raise UnknownOptionError(
            f"{argument} names {unknown}, which the trainer does not take as a hyperparameter; its options are "
            f"{sorted(searchable)}."
        )
    dims = []
    for name, spec in space.items():
        where = f"{argument}[{name!r}]"
        if isinstance(spec, tuple) and len(spec) == 3 and isinstance(spec[0], str):
            kind, low, high = spec
            if kind not in _RANGES:
                raise PerturbkitInputError(f"{where}: range kind {kind!r} is not one of {list(_RANGES)}.")
            if not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in (low, high)):
                raise PerturbkitInputError(f"{where}: low and high must be numbers, got {low!r} and {high!r}.")
            if not low < high:
                raise PerturbkitInputError(f"{where}: low must be below high, got ({low!r}, {high!r}).")
            if kind in ("log", "logint") and low <= 0:
                raise PerturbkitInputError(f"{where}: a log range needs low > 0, got {low!r}; use ('float', ...).")
            if kind in ("int", "logint") and (int(low) != low or int(high) != high):
                raise PerturbkitInputError(f"{where}: an int range needs whole numbers, got ({low!r}, {high!r}).")
            cast = int if kind in ("int", "logint") else float
            dims.append(Dimension(name, kind, cast(low), cast(high)))
        elif isinstance(spec, (list, tuple)) and len(spec) > 0:
            dims.append(Dimension(name, "choice", choices=tuple(spec)))
        else:
            raise PerturbkitInputError(
                f"{where} must be a range (kind, low, high) with kind in {list(_RANGES)}, e.g. ('log', 1e-4, 1e-2), "
                f"or a non-empty list of choices, e.g. [32, 64, 128]; got {spec!r}. A fixed value goes in "
                f"train_options."
            )
    return dims


# ------------------------------------------------------------------------------------------------ the study
def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def data_fingerprint(adata) -> dict:
    """Shape and a hash of the obs and var names: enough to tell the workers of one study use the same data."""
    digest = hashlib.sha1()
    for names in (adata.obs_names, adata.var_names):
        digest.update("\n".join(map(str, names)).encode())
        digest.update(b"\0")
    return {"shape": [int(adata.n_obs), int(adata.n_vars)], "names_sha1": digest.hexdigest()}


def _canonical(value) -> Any:
    """JSON-safe, order-independent form of ``value`` (tuples become lists, unknown objects their repr)."""
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def _retry_callback(optuna):
    """Re-queue a trial whose worker died (Optuna ≥ 4.9 names the callback RetryHeartbeatStaleTrialCallback)."""
    retry = (
        getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    )
    return retry(max_retry=MAX_RETRY)


def _storage(url: str):
    import optuna
    import sqlalchemy.exc

    if not isinstance(url, str) or not url:
        raise PerturbkitInputError(
            f"storage must be an SQLAlchemy database URL such as 'sqlite:///sweep.db' or "
            f"'postgresql+psycopg2://user:pw@host/db', got {url!r}."
        )
    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}} if url.startswith("sqlite") else {}
    shown = f"{url.split('://')[0]}://…@{url.split('@')[-1]}" if "@" in url else url  # never echo a password
    # Optuna < 4.9 calls the stale-trial callback failed_trial_callback
    parameters = inspect.signature(optuna.storages.RDBStorage).parameters
    retry_argument = next(
        name for name in ("heartbeat_stale_trial_callback", "failed_trial_callback") if name in parameters
    )

    def connect():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_INTERVAL,
                grace_period=GRACE_PERIOD,
                **{retry_argument: _retry_callback(optuna)},
            )

    try:
        for attempt in range(_CONNECT_ATTEMPTS):
            try:
                return connect()
            except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as error:
                # workers starting together on a new database race to create its tables: the losers find them made
                racing = isinstance(error, sqlalchemy.exc.IntegrityError) or any(
                    text in str(error) for text in ("already exists", "locked", "duplicate", "Duplicate")
                )
                if not racing or attempt == _CONNECT_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
    except sqlalchemy.exc.ArgumentError as error:
        raise PerturbkitInputError(
            f"storage={shown!r} is not a database URL SQLAlchemy can use ({error}); write it as "
            f"'sqlite:///path/sweep.db' (one machine) or 'postgresql+psycopg2://user:pw@host/db' (several)."
        ) from None
    except ImportError as error:
        raise PerturbkitInputError(
            f"storage={shown!r}: the database driver is not installed ({error}); install it (e.g. `pip install "
            f"psycopg2-binary` for PostgreSQL, `pip install pymysql` for mysql+pymysql://) or use sqlite:///."
        ) from None
    except sqlalchemy.exc.SQLAlchemyError as error:
        hint = (
            "check that the folder of the sqlite file exists and is writable"
            if url.startswith("sqlite")
            else "check the host, port, user, password and database name, and that the server accepts connections"
        )
        raise PerturbkitInputError(
            f"storage={shown!r}: cannot open the database ({type(error).__name__}: {str(error).splitlines()[0]}); "
            f"{hint}."
        ) from None


def _trial_seeded_sampler(seed: int | None):
    """TPE whose random draws for trial ``k`` come from ``(seed, k)``.

    The storage hands out trial numbers, one per trial, so the workers of a shared study never draw the same random
    numbers, and no worker needs to know who it is. One worker on a fresh study is reproducible.
    """
    import optuna

    class TrialSeededSampler(optuna.samplers.BaseSampler):
        def __init__(self):
            self._samplers: dict[int, optuna.samplers.TPESampler] = {}

        def _for(self, trial):
            if trial.number not in self._samplers:
                trial_seed = None
                if seed is not None:
                    trial_seed = int(np.random.SeedSequence([int(seed), trial.number]).generate_state(1)[0])
                self._samplers[trial.number] = optuna.samplers.TPESampler(seed=trial_seed)
            return self._samplers[trial.number]

        def infer_relative_search_space(self, study, trial):
            return self._for(trial).infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._for(trial).sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

        def before_trial(self, study, trial):
            self._for(trial).before_trial(study, trial)

        def after_trial(self, study, trial, state, values):
            self._for(trial).after_trial(study, trial, state, values)
            self._samplers.pop(trial.number, None)

        def reseed_rng(self):  # the seeds come from the trial numbers
            pass

    return TrialSeededSampler()


def open_study(*, storage: str | None, study_name: str | None, seed: int | None, signature: dict, default_name: str):
    """A fresh in-memory study, or the storage's study ``study_name`` (created by the first worker, joined after).

    Joining checks that the study minimises and was made with the same ``signature`` (model, search space, fixed
    options, seed, data), raising an error naming the differences otherwise.
    """
    import optuna

    if study_name is not None and storage is None:
        raise PerturbkitInputError(
            f"study_name={study_name!r} names a study in a shared storage, but storage is None; pass storage= too "
            f"(e.g. storage='sqlite:///sweep.db'), or drop study_name for an in-memory study."
        )
    if study_name is not None and (not isinstance(study_name, str) or not study_name):
        raise PerturbkitInputError(f"study_name must be a non-empty string, got {study_name!r}.")
    if storage is None:
        return optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    name = default_name if study_name is None else study_name
    study = optuna.create_study(
        storage=_storage(storage),
        study_name=name,
        direction="minimize",
        sampler=_trial_seeded_sampler(seed),
        load_if_exists=True,
    )
    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        raise PerturbkitInputError(
            f"the study {name!r} in the storage maximises its value; perturbkit minimises validation losses. Pass "
            f"another study_name (a new study), or delete that study (optuna.delete_study)."
        )
    signature = _canonical(signature)
    stored = study.user_attrs.get(_SIGNATURE_KEY)
    if stored is None:
        study.set_user_attr(_SIGNATURE_KEY, signature)
        stored = optuna.load_study(study_name=name, storage=study._storage).user_attrs[_SIGNATURE_KEY]
    if stored != signature:
        differ = sorted(k for k in set(stored) | set(signature) if stored.get(k) != signature.get(k))
        details = "; ".join(f"{k}: study {stored.get(k)!r}, this call {signature.get(k)!r}" for k in differ)
        raise PerturbkitInputError(
            f"the study {name!r} in the storage was made with other settings ({details}); its trials are not "
            f"comparable with this call's. Pass another study_name for a new study, or the study's settings."
        )
    return study


def _claimed(study, *, before: int | None = None) -> int:
    """Trials that hold a slot of the budget: complete or running (optionally: numbered below ``before``).

    Failed and pruned trials hold none (a failed trial's slot is filled again); a queued (WAITING) trial, such as a
    dead worker's trial put back, is picked up by the next worker before it asks for a new one.
    """
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states) if before is None or t.number < before)


def sweep(
    train_and_score: Callable[[dict], tuple[float, int]],
    *,
    space: list[Dimension],
    n_trials: int,
    storage: str | None,
    study_name: str | None,
    seed: int | None,
    timeout: float | None,
    default_name: str,
    adata,
    validation_fraction: float,
    study_settings: dict,
) -> pd.DataFrame:
    """Run this process's trials of a (possibly shared) study and return the frame of all its trials.

    ``train_and_score(params)`` trains one model with the searched ``params`` and returns ``(value, n_epochs)``.
    A shared study records what it was made with (``study_settings``: the model and its fixed options; the search space,
    seed, validation fraction and a fingerprint of ``adata``), and a worker with other ones is refused.
    Without a storage the study is in memory and runs ``n_trials`` trials. With one, ``n_trials`` is the study's
    total: this worker stops once the study's complete and running trials reach it, and a trial that started after
    the last slot was taken (two workers asking at the same instant) is recorded PRUNED without training.
    """
    import optuna

    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 0:
        raise PerturbkitInputError(f"n_trials must be a whole number ≥ 0 (0 only reads the study), got {n_trials!r}.")
    if timeout is not None and not timeout > 0:
        raise PerturbkitInputError(f"timeout must be a positive number of seconds or None, got {timeout!r}.")
    n_trials = int(n_trials)
    signature = {
        **study_settings,
        "space": {dim.name: dim.describe() for dim in space},
        "seed": seed,
        "validation_fraction": validation_fraction,
        "data": data_fingerprint(adata),
    }
    shared = storage is not None
    worker = _worker_name()
    previous_verbosity = optuna.logging.get_verbosity()
    if settings.verbosity <= 1:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = open_study(
            storage=storage, study_name=study_name, seed=seed, signature=signature, default_name=default_name
        )

        def objective(trial):
            trial.set_user_attr("worker", worker)
            if shared and _claimed(study, before=trial.number) >= n_trials:
                trial.set_user_attr(_SURPLUS_KEY, True)
                study.stop()
                raise optuna.TrialPruned("the study's trial budget was used up by other workers")
            params = {dim.name: dim.suggest(trial) for dim in space}
            value, n_epochs = train_and_score(params)
            trial.set_user_attr("n_epochs", int(n_epochs))
            return value

        if not shared:
            study.optimize(objective, n_trials=n_trials, timeout=timeout, show_progress_bar=False)
            return trials_frame(study, space)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial frees its slot (and is put back)
        if _claimed(study) < n_trials:
            budget = optuna.study.MaxTrialsCallback(
                n_trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(objective, timeout=timeout, callbacks=[budget], show_progress_bar=False)
    finally:
        optuna.logging.set_verbosity(previous_verbosity)
    return trials_frame(study, space)


def trials_frame(study, space: list[Dimension]) -> pd.DataFrame:
    """One row per trial of the study (every worker's), settings decoded; ``attrs['best_params']``."""
    import optuna

    dims = {dim.name: dim for dim in space}
    rows = []
    for t in study.get_trials(deepcopy=False):
        params = {name: dims[name].decode(value) if name in dims else value for name, value in t.params.items()}
        rows.append(
            {
                "trial": t.number,
                **params,
                "value": t.value,
                "n_epochs": t.user_attrs.get("n_epochs"),
                "state": t.state.name,
                "worker": t.user_attrs.get("worker"),
            }
        )
    out = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["trial", *dims, "value", "n_epochs", "state", "worker"])
    for column in [*dims, "n_epochs"]:  # a PRUNED slot (no settings) would turn whole-number columns into floats
        values = [row[column] for row in rows if row.get(column) is not None]
        whole = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
        if values and whole and len(values) < len(rows):
            out[column] = out[column].astype("Int64")
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = min(complete, key=lambda t: t.value)
        out.attrs["best_params"] = {k: dims[k].decode(v) if k in dims else v for k, v in best.params.items()}
        out.attrs["best_value"] = float(best.value)
    else:
        out.attrs["best_params"], out.attrs["best_value"] = {}, None
    out.attrs["study_name"] = study.study_name
    return out


# ------------------------------------------------------------------------------------------------- pk.tl.tune
