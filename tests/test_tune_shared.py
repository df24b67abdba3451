"""Sweeps shared across processes through Optuna's storage; pk.tl.tune over any trainer; folds as separate jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

import perturbkit as pk
from perturbkit.errors import PerturbkitInputError, UnknownOptionError
from perturbkit.tl import tune

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(pk.__file__).resolve().parents[1]
#: the settings every worker and reader of a shared VAE study uses (tiny: a few tenths of a second per trial)
VAE_SWEEP = dict(seed=3, latent_dims=(2, 8), batch_sizes=(32, 64), train_options={"max_epochs": 2, "patience": None})


def _tiny_profiles():
    """200 profiles × 20 features in [0, 1]: the workers build the same data (cheaper than simulating)."""
    import anndata as ad

    return ad.AnnData(np.random.default_rng(0).random((200, 20), dtype=np.float32))


@pytest.fixture(scope="module")
def small():
    return _tiny_profiles()


@pytest.fixture(scope="module")
def bulk():
    return pk.datasets.simulate_bulk(n_drugs=12, n_genes=20, n_cell_lines=2, n_moas=3, seed=2)


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # posterior-collapse warnings of the tiny VAEs
        return function(*args, **kwargs)


def _sqlite(tmp_path, name="s.db") -> str:
    return f"sqlite:///{tmp_path / name}"


# --------------------------------------------------------------------------------- (e) in memory: as before
def test_in_memory_tune_vae_is_unchanged(morph):
    """Same seed ⇒ the frame the code gave before the storage option (values recorded from that code)."""
    trials = _quiet(
        pk.tl.tune_vae,
        morph,
        n_trials=4,
        seed=3,
        train_options={"max_epochs": 3, "patience": None},
        latent_dims=(2, 8),
        batch_sizes=(16, 32),
    )
    before = pd.DataFrame(
        {
            "trial": [0, 1, 2, 3],
            "lr": [0.001263559813738167, 0.00017830791467464966, 0.001987412857879569, 0.0003299931263927809],
            "batch_size": [16, 16, 32, 16],
            "latent_dim": [5, 5, 6, 6],
            "batch_norm": [False, False, False, True],
            "value": [1.5186761617660522, 1.526989459991455, 1.5460362434387207, 1.5907871723175049],
            "n_epochs": [3, 3, 3, 3],
            "state": ["COMPLETE"] * 4,
        }
    )
    assert list(trials.columns) == [*before.columns, "worker"]  # the worker (host:pid) is the one new column
    pd.testing.assert_frame_equal(trials[before.columns], before, rtol=1e-6)
    assert trials.attrs["best_params"] == {
        "lr": 0.001263559813738167,
        "batch_size": 16,
        "latent_dim": 5,
        "batch_norm": False,
    }
    assert trials["worker"].nunique() == 1 and trials["worker"].iloc[0].endswith(f":{os.getpid()}")


# ------------------------------------------------------------------------- (a)+(b) two worker processes
WORKER = """
import json, os, sys, time, warnings
os.environ["OMP_NUM_THREADS"] = "1"
import torch
torch.set_num_threads(1)
import anndata as ad
import numpy as np
import perturbkit as pk
warnings.simplefilter("ignore")
pk.settings.progress_bar = False
storage, ready, n_workers, n_trials = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
adata = ad.AnnData(np.random.default_rng(0).random((200, 20), dtype=np.float32))  # as _tiny_profiles()
open(os.path.join(ready, str(os.getpid())), "w").close()
deadline = time.time() + 60
while len(os.listdir(ready)) < n_workers and time.time() < deadline:  # start together
    time.sleep(0.05)
trials = pk.tl.tune_vae(adata, n_trials=n_trials, storage=storage, study_name="s", **{sweep})
print(json.dumps({{"pid": os.getpid(), "n_rows": len(trials)}}))
"""


def _workers(storage: str, tmp_path: Path, *, n_workers: int, n_trials: int) -> list[dict]:
    ready = tmp_path / "ready"
    ready.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER).format(sweep=repr(VAE_SWEEP)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])  # the checkout under test
    command = [sys.executable, str(script), storage, str(ready), str(n_workers), str(n_trials)]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(n_workers)
    ]
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def test_two_worker_processes_share_one_study_and_stop_at_the_total(small, tmp_path):
    storage = _sqlite(tmp_path)
    start = time.perf_counter()
    reports = _workers(storage, tmp_path, n_workers=2, n_trials=8)
    wall = time.perf_counter() - start
    # a final reader (n_trials reached: it trains nothing) sees every worker's trials
    trials = _quiet(pk.tl.tune_vae, small, n_trials=8, storage=storage, study_name="s", **VAE_SWEEP)
    complete = trials[trials.state == "COMPLETE"]
    assert len(complete) == 8  # the study's total budget, whichever worker ran them
    assert set(trials.state) <= {"COMPLETE", "PRUNED"}  # PRUNED: a start after the budget was used, trained nothing
    assert trials["value"][trials.state == "PRUNED"].isna().all()
    assert trials["trial"].is_unique and sorted(trials["trial"]) == list(range(len(trials)))
    pids = {f":{r['pid']}" for r in reports}
    per_worker = complete["worker"].str.extract(r"(:\d+)$")[0].value_counts()
    assert set(per_worker.index) == pids and (per_worker >= 1).all()  # both workers trained
    assert per_worker.sum() == 8  # total = sum of the workers' trials
    # the workers never proposed the same point (their samplers draw from (seed, trial number))
    points = complete[["lr", "batch_size", "latent_dim", "batch_norm"]].apply(tuple, axis=1)
    assert points.is_unique
    # each worker's returned frame covered the study as it stood when it stopped
    assert all(r["n_rows"] >= per_worker[f":{r['pid']}"] for r in reports)
    # the storage itself agrees
    study = optuna.load_study(study_name="s", storage=storage)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 8
    assert trials.attrs["best_value"] == pytest.approx(complete["value"].min())
    # trial k's random draw depends on (seed, k) alone: within TPE's 10 random start-up trials, one worker on a
    # fresh study proposes the same settings, and (training being seeded) reaches the same values
    alone = _quiet(
        pk.tl.tune_vae, small, n_trials=8, storage=_sqlite(tmp_path, "alone.db"), study_name="s", **VAE_SWEEP
    )
    columns = ["trial", "lr", "batch_size", "latent_dim", "batch_norm", "value", "n_epochs"]
    # (check_dtype=False: a PRUNED slot in the shared study, which holds no settings, makes its integer columns
    # nullable Int64)
    pd.testing.assert_frame_equal(
        complete[columns].reset_index(drop=True), alone[columns], rtol=1e-6, check_dtype=False
    )
    import resource

    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"two workers, 8 trials: {wall:.1f} s wall, workers' CPU {cpu.ru_utime + cpu.ru_stime:.1f} s")


def test_two_worker_processes_share_a_postgresql_study(small, tmp_path):
    """The page's PostgreSQL recipe, on a throwaway server (pgserver): the same sharing as with sqlite.

    Not dependencies; install them to run this test: ``pip install -c constraints.txt pgserver psycopg2-binary``.
    """
    pgserver = pytest.importorskip("pgserver", reason="pip install -c constraints.txt pgserver psycopg2-binary")
    pytest.importorskip("psycopg2", reason="pip install -c constraints.txt pgserver psycopg2-binary")
    server = pgserver.get_server(tmp_path / "pgdata", cleanup_mode="stop")
    storage = server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1)
    reports = _workers(storage, tmp_path, n_workers=2, n_trials=6)
    trials = _quiet(pk.tl.tune_vae, small, n_trials=6, storage=storage, study_name="s", **VAE_SWEEP)
    complete = trials[trials.state == "COMPLETE"]
    assert len(complete) == 6
    per_worker = complete["worker"].str.extract(r"(:\d+)$")[0].value_counts()
    assert set(per_worker.index) == {f":{r['pid']}" for r in reports}  # both workers trained
    assert complete[["lr", "batch_size", "latent_dim", "batch_norm"]].apply(tuple, axis=1).is_unique


def test_budget_is_the_study_total_and_a_shared_worker_is_reproducible(small, tmp_path):
    storage = _sqlite(tmp_path)
    first = _quiet(pk.tl.tune_vae, small, n_trials=3, storage=storage, study_name="s", **VAE_SWEEP)
    assert len(first) == 3 and first["state"].eq("COMPLETE").all()
    more = _quiet(pk.tl.tune_vae, small, n_trials=5, storage=storage, study_name="s", **VAE_SWEEP)
    assert len(more) == 5 and more["state"].eq("COMPLETE").all()  # the second call ran the missing 2
    pd.testing.assert_frame_equal(more.iloc[:3].drop(columns="worker"), first.drop(columns="worker"))
    done = _quiet(pk.tl.tune_vae, small, n_trials=5, storage=storage, study_name="s", **VAE_SWEEP)
    pd.testing.assert_frame_equal(done, more)  # a finished study: nothing trained, the same frame read back
    read = pk.tl.tune_vae(small, n_trials=0, storage=storage, study_name="s", **VAE_SWEEP)
    assert len(read) == 5
    # one worker on a fresh study is reproducible, and its random draws differ from the in-memory sampler's
    again = _quiet(pk.tl.tune_vae, small, n_trials=5, storage=_sqlite(tmp_path, "t.db"), study_name="s", **VAE_SWEEP)
    pd.testing.assert_frame_equal(again.drop(columns="worker"), more.drop(columns="worker"))
    # a trial another worker is running holds its slot: with the budget claimed, this worker trains nothing
    study = optuna.load_study(study_name="s", storage=storage)
    study.ask()  # "another worker" starts trial 5
    claimed = pk.tl.tune_vae(small, n_trials=6, storage=storage, study_name="s", **VAE_SWEEP)
    assert list(claimed["state"]) == ["COMPLETE"] * 5 + ["RUNNING"]


def test_a_dead_workers_trial_is_failed_and_rerun_with_its_settings(small, tmp_path, monkeypatch):
    from perturbkit.train import _sweep as _tune

    monkeypatch.setattr(_tune, "HEARTBEAT_INTERVAL", 1)
    monkeypatch.setattr(_tune, "GRACE_PERIOD", 1)
    storage = _sqlite(tmp_path)
    pk.tl.tune_vae(small, n_trials=0, storage=storage, study_name="s", **VAE_SWEEP)  # makes the study
    # a worker starts a trial, beats once, and dies
    study = optuna.load_study(study_name="s", storage=_tune._storage(storage))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "heartbeat is supposed to be used with Study.optimize"
        dead = study.ask()
    lr = dead.suggest_float("lr", 1e-4, 1e-2, log=True)
    study._storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)
    trials = _quiet(pk.tl.tune_vae, small, n_trials=2, storage=storage, study_name="s", **VAE_SWEEP)
    assert list(trials["state"]) == ["FAIL", "COMPLETE", "COMPLETE"]  # the stale trial failed, then re-queued
    assert trials["lr"].iloc[1] == lr  # the re-run kept the dead trial's settings
    assert trials["value"].iloc[1:].notna().all()


# --------------------------------------------------------------------------------------------- (c) pk.tl.tune
def test_tune_vae_default_and_user_space_retrain_to_the_reported_value(small):
    before = small.copy()
    options = {"max_epochs": 3, "patience": None}
    default = _quiet(tune, small, model="vae", n_trials=2, seed=1, train_options=options)
    assert list(default.columns) == [
        "trial",
        "lr",
        "batch_size",
        "latent_dim",
        "batch_norm",
        "value",
        "n_epochs",
        "state",
        "worker",
    ]
    assert default["lr"].between(1e-4, 1e-2).all() and default["latent_dim"].between(5, 150).all()
    assert set(default["batch_size"]) <= {32, 64, 128, 256, 512}
    space = {"lr": ("log", 1e-3, 1e-2), "batch_size": [32, 64], "latent_dim": ("int", 2, 6)}
    space["hidden"] = [(16,), (32, 16)]  # choices Optuna cannot store (tuples)
    user = _quiet(tune, small, model="vae", search_space=space, n_trials=3, seed=1, train_options=options)
    assert list(user.columns[1:5]) == ["lr", "batch_size", "latent_dim", "hidden"]
    assert user["lr"].between(1e-3, 1e-2).all() and user["latent_dim"].between(2, 6).all()
    assert set(user["hidden"]) <= {(16,), (32, 16)}  # tuples go through the storage and come back as tuples
    for trials in (default, user):
        best = trials.attrs["best_params"]
        model = _quiet(pk.tl.train_vae, small.copy(), **best, **options, seed=1, validation_fraction=0.1)
        assert float(model.history_frame["validation_loss"].min()) == trials.attrs["best_value"]  # identical
        assert trials.attrs["best_value"] == trials["value"].min()
    # the trainers wrote into a stand-in: the user's AnnData is unchanged
    np.testing.assert_array_equal(small.X, before.X)
    assert small.uns.keys() == before.uns.keys() and small.obsm.keys() == before.obsm.keys()
    pd.testing.assert_frame_equal(small.obs, before.obs)


MODEL_OPTIONS = {
    "deepcellstate": dict(hidden=(16,), max_epochs=2, max_rounds=2, epochs_per_round=1),
    "scgen": dict(hidden=(16,), max_epochs=3),
    "cyclecdr": dict(drug_encoder="onehot", hidden=(16,), max_epochs=3),
    "cpa": dict(drug_encoder="onehot", hidden=(16,), adversary_hidden=(8,), doser_hidden=(8,), max_epochs=3),
}


@pytest.mark.parametrize("model", list(MODEL_OPTIONS))
def test_tune_every_trainer_scores_by_its_validation_loss(bulk, model):
    before = bulk.copy()
    space = {"lr": ("log", 1e-3, 1e-2), "latent_dim": [4, 8]}
    trials = _quiet(tune, bulk, model=model, search_space=space, n_trials=1, seed=2, train_options=MODEL_OPTIONS[model])
    assert trials["state"].eq("COMPLETE").all() and np.isfinite(trials["value"]).all()
    trainer = getattr(pk.tl, f"train_{model}")
    best = trials.attrs["best_params"]
    history = _quiet(trainer, bulk.copy(), **best, **MODEL_OPTIONS[model], seed=2).history_frame
    if model == "deepcellstate":  # scored on stage 2's translation error, the one its early stopping watches
        history = history[history["stage"] == "rounds"]
    assert float(history["validation_loss"].min()) == pytest.approx(trials["value"].iloc[0], rel=1e-6)
    np.testing.assert_array_equal(bulk.X, before.X)
    assert bulk.uns.keys() == before.uns.keys()


# ----------------------------------------------------------------------------------------------- (d) errors
def test_bad_input_raises_clear_errors(small, bulk, tmp_path):
    with pytest.raises(UnknownOptionError, match=r"search_space names \['latent_size'\].*'latent_dim'"):
        tune(small, model="vae", search_space={"latent_size": ("int", 2, 8)})
    with pytest.raises(PerturbkitInputError, match=r"search_space\['lr'\]: a log range needs low > 0"):
        tune(small, model="vae", search_space={"lr": ("log", 0, 1e-2)})
    with pytest.raises(PerturbkitInputError, match=r"search_space\['batch_size'\] must be a range"):
        tune(small, model="vae", search_space={"batch_size": 64})
    with pytest.raises(PerturbkitInputError, match=r"\['lr'\] are searched \(search_space\) and fixed"):
        tune(small, model="vae", search_space={"lr": ("log", 1e-4, 1e-2)}, train_options={"lr": 1e-3})
    with pytest.raises(UnknownOptionError, match=r"train_options names \['epochs'\].*max_epochs"):
        tune(small, model="vae", train_options={"epochs": 3})
    with pytest.raises(PerturbkitInputError, match="model='gan' is not a tunable trainer"):
        tune(small, model="gan")
    with pytest.raises(PerturbkitInputError, match="validation_fraction must be in"):
        tune(small, model="vae", validation_fraction=0)
    with pytest.raises(PerturbkitInputError, match="study_name='s' names a study in a shared storage.*storage="):
        pk.tl.tune_vae(small, study_name="s")
    with pytest.raises(PerturbkitInputError, match="storage='notaurl' is not a database URL.*sqlite:///"):
        pk.tl.tune_vae(small, storage="notaurl")
    with pytest.raises(PerturbkitInputError, match="folder of the sqlite file exists"):
        pk.tl.tune_vae(small, storage=f"sqlite:///{tmp_path}/missing/s.db")
    with pytest.raises(PerturbkitInputError, match="postgresql") as error:  # no driver or no server here
        pk.tl.tune_vae(small, storage="postgresql+psycopg2://user:secret@127.0.0.1:1/db")
    assert "secret" not in str(error.value)
    # joining a study made with another search space, or one that maximises
    storage = _sqlite(tmp_path)
    pk.tl.tune_vae(small, n_trials=0, storage=storage, study_name="s", **VAE_SWEEP)
    with pytest.raises(PerturbkitInputError, match=r"study 's' .*other settings \(space: .*another study_name"):
        pk.tl.tune_vae(small, n_trials=0, storage=storage, study_name="s", **{**VAE_SWEEP, "latent_dims": (2, 9)})
    with pytest.raises(PerturbkitInputError, match=r"other settings \(data:"):
        pk.tl.tune_vae(small[:-1].copy(), n_trials=0, storage=storage, study_name="s", **VAE_SWEEP)
    optuna.create_study(storage=storage, study_name="up", direction="maximize")
    with pytest.raises(PerturbkitInputError, match="'up' in the storage maximises"):
        pk.tl.tune_vae(small, n_trials=0, storage=storage, study_name="up", **VAE_SWEEP)
    with pytest.raises(PerturbkitInputError, match="n_trials must be a whole number"):
        pk.tl.tune_vae(small, n_trials=-1)


# ------------------------------------------------------------------------- folds and methods as separate jobs
def test_benchmark_jobs_concatenate_to_the_one_process_run():
    data = pk.datasets.simulate_bulk(n_drugs=40, n_genes=30, n_cell_lines=2, seed=5)
    methods = ["deepcellstate", "naive"]
    options = {"deepcellstate": MODEL_OPTIONS["deepcellstate"]}
    common = dict(task="cross_cell", n_folds=2, seed=1)
    whole = _quiet(pk.tl.benchmark, data, methods=methods, method_options=options, **common)
    jobs = [  # one job per (fold, method), as a job array would run them
        _quiet(
            pk.tl.benchmark,
            data,
            methods=[m],
            folds=[k],
            method_options={m: options[m]} if m in options else None,
            **common,
        )
        for k in (0, 1)
        for m in methods
    ]
    joined = pd.concat(jobs, ignore_index=True)
    key = ["method", "fold", "group"]
    tidy = [t.drop(columns="train_seconds").sort_values(key).reset_index(drop=True) for t in (whole, joined)]
    pd.testing.assert_frame_equal(tidy[0], tidy[1])  # each (fold, method) job gives exactly its rows
    assert len(whole) == len(joined) > 0 and whole["fold"].nunique() == 2 and whole["method"].nunique() == 2
    assert tidy[0]["pearson"].notna().all()


def test_cross_validation_folds_as_jobs_concatenate_to_the_one_process_run():
    data = pk.datasets.simulate_bulk(n_drugs=40, n_genes=30, n_cell_lines=2, seed=5)
    common = dict(source="PC3", target="MCF7", n_folds=3, seed=1, train_options=MODEL_OPTIONS["deepcellstate"])
    whole = _quiet(pk.tl.cross_validate_deepcellstate, data, folds=[0, 2], **common)
    jobs = pd.concat([_quiet(pk.tl.cross_validate_deepcellstate, data, folds=[k], **common) for k in (0, 2)])
    pd.testing.assert_frame_equal(whole.reset_index(drop=True), jobs.reset_index(drop=True))
    assert set(whole["fold"]) == {0, 2} and whole["pcc"].notna().all()
