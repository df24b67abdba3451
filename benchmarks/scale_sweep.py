"""One hyperparameter study run by 1 worker process and by N worker processes sharing an sqlite study.

Each worker is a separate ``python`` process (one torch thread) running the same ``pk.tl.tune_vae(...,
storage="sqlite:///...", study_name=...)`` call, as the tasks of a job array would. The workers start together
(after their imports); the study's budget ``--trials`` is shared, so N workers should finish it about N times
sooner when N cores are free. The table: workers, trials (and each worker's share), wall seconds (all processes,
imports included), sweep seconds (from the common start to the last worker's end), trials per minute (over the
sweep seconds), the workers' CPU seconds during the sweep and their CPU share (CPU seconds / (sweep seconds ×
workers): near 1 when every worker had a core to itself), best value. A first row runs the same trials in one
process without a storage (Optuna's in-memory study; its sampler draws other points, so its best value differs):
the cost of sharing is the difference to the 1-worker sqlite row.

    python benchmarks/scale_sweep.py                 # 8 trials, 1 vs 2 workers
    python benchmarks/scale_sweep.py --workers 1 2 4 --trials 32
    python benchmarks/scale_sweep.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _data(n_compounds: int, n_features: int):
    import perturbkit as pk

    adata = pk.datasets.simulate_morphology(n_compounds=n_compounds, n_features=n_features, n_plates=4, seed=0)
    pk.pp.scale(adata, method="minmax")
    return adata


def _sweep_options(args) -> dict:
    return dict(
        seed=0,
        latent_dims=(2, 16),
        batch_sizes=(32, 64, 128),
        train_options={"max_epochs": args.epochs, "patience": None, "hidden": (64,)},
    )


def worker(args) -> None:
    """One worker: build the data, wait for the others, run the shared study, report its timing as JSON."""
    import warnings

    import torch

    import perturbkit as pk

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # posterior-collapse warnings of the tiny VAEs
    pk.settings.progress_bar = False
    adata = _data(args.compounds, args.features)
    # pay the one-off imports (torch's optimiser machinery, the database layer) before the common start
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], fused=True)
    import alembic.migration  # noqa: F401
    import sqlalchemy.orm  # noqa: F401

    Path(args.ready, str(os.getpid())).touch()
    while len(os.listdir(args.ready)) < args.n_workers:  # start together
        time.sleep(0.02)
    start, cpu = time.time(), time.process_time()
    shared = dict(storage=args.storage, study_name="sweep") if args.storage != "memory" else {}
    trials = pk.tl.tune_vae(adata, n_trials=args.trials, **shared, **_sweep_options(args))
    mine = trials["worker"].str.endswith(f":{os.getpid()}") & trials["state"].eq("COMPLETE")
    report = {"start": start, "end": time.time(), "cpu": time.process_time() - cpu, "trials": int(mine.sum())}
    report["best"] = float(trials["value"].min())
    print(json.dumps(report))


def run(args, n_workers: int, folder: Path, *, in_memory: bool = False) -> dict:
    """Start ``n_workers`` worker processes on a fresh sqlite study (or one in-memory run); time them."""
    ready = folder / f"ready_{n_workers}_{in_memory}"
    ready.mkdir()
    storage = "memory" if in_memory else f"sqlite:///{folder / f'sweep_{n_workers}.db'}"
    command = [sys.executable, __file__, "--worker", "--storage", storage, "--ready", str(ready)]
    command += ["--n-workers", str(n_workers), "--trials", str(args.trials), "--epochs", str(args.epochs)]
    command += ["--compounds", str(args.compounds), "--features", str(args.features)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    begin = time.time()
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(n_workers)
    ]
    reports = []
    for process in processes:
        out, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"a worker failed:\n{err[-3000:]}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.time() - begin
    sweep = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    n_complete = sum(r["trials"] for r in reports)
    return {
        "workers": f"{n_workers} (in memory)" if in_memory else n_workers,
        "trials": n_complete,
        "per_worker": "/".join(str(r["trials"]) for r in reports),
        "wall_seconds": wall,
        "sweep_seconds": sweep,
        "trials_per_min": 60 * n_complete / sweep,
        "cpu_seconds": sum(r["cpu"] for r in reports),
        "cpu_share": sum(r["cpu"] for r in reports) / (sweep * n_workers),
        "best_value": min(r["best"] for r in reports),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8, help="the study's trial budget (shared by the workers)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per trial (tiny VAE, no early stopping)")
    parser.add_argument("--compounds", type=int, default=40, help="simulated compounds (about 20 profiles each)")
    parser.add_argument("--features", type=int, default=60, help="simulated features")
    parser.add_argument("--quick", action="store_true", help="4 trials of 5 epochs, a smoke run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the in-memory (no storage) single run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    parser.add_argument("--n-workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.trials, args.epochs = 4, 5
    rows = []
    with tempfile.TemporaryDirectory(prefix="scale_sweep_") as folder:
        if not args.no_baseline:
            rows.append(run(args, 1, Path(folder), in_memory=True))
        for n_workers in args.workers:
            rows.append(run(args, n_workers, Path(folder)))
    print_table(
        rows,
        f"One sqlite study of {args.trials} trials ({args.epochs} epochs each, tiny VAE, "
        f"{os.cpu_count()} CPU cores, 1 torch thread per worker)",
    )


if __name__ == "__main__":
    main()
