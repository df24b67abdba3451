"""One process against two gloo processes (``torchrun``) training the same VAE on CPU.

The rows are simulated (``--rows`` × ``--genes``, float32); the VAE is the L1000-sized one of the paper (hidden
500, latent 65, batch 512 per process, so two processes step with 1,024 rows). Each configuration trains
``--epochs`` epochs with no early stopping, and the table gives the wall time of the training, rows per second
(rows × epochs / seconds) and the peak RSS of a process. Configurations:

* 1 process, 1 torch thread; 1 process, 2 threads (one process using both cores);
* 2 processes × 1 thread, gloo (``torchrun --standalone --nproc_per_node=2``), each reading its half of every
  global batch; gradients all-reduced by DistributedDataParallel.

    python benchmarks/scale_ddp.py                 # 60,000 rows × 978 genes, 2 epochs
    python benchmarks/scale_ddp.py --quick

Under ``torchrun`` the script is its own worker (it reads ``WORLD_SIZE``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    import anndata as ad

    import perturbkit as pk
    from perturbkit.train import _distributed as distributed

    pk.settings.progress_bar = False
    rng = np.random.default_rng(0)
    X = rng.random((args.rows, args.genes), dtype=np.float32)
    adata = ad.AnnData(X)
    start = time.perf_counter()
    model = pk.models.vae.VAE.from_adata(adata, latent_dim=65, hidden=(500,), output="sigmoid", device="cpu")
    model.train(adata, batch_size=512, max_epochs=args.epochs, patience=None, validation_fraction=0.05)
    seconds = time.perf_counter() - start
    result = {
        "rank": distributed.rank(),
        "processes": distributed.world_size(),
        "threads per process": args.threads,
        "seconds": seconds,
        "rows/s": args.rows * 0.95 * args.epochs / seconds,
        "peak RSS MB (a process)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "final train loss": float(model.history_frame["train_loss"].iloc[-1]),
    }
    return result


def run(processes: int, threads: int, args) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    script = [str(Path(__file__).resolve()), "--worker", "--rows", str(args.rows), "--genes", str(args.genes)]
    script += ["--epochs", str(args.epochs), "--threads", str(threads)]
    if processes == 1:
        command = [sys.executable, *script]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command += script
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    main = next(r for r in results if r["rank"] == 0)
    main["peak RSS MB (a process)"] = max(r["peak RSS MB (a process)"] for r in results)
    return main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--genes", type=int, default=978)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="4,000 rows, 1 epoch")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.epochs = 4_000, 1
    if args.worker:
        print(json.dumps(worker(args)))
        return
    rows = [run(1, 1, args), run(1, 2, args), run(2, 1, args)]
    for row in rows:
        row.pop("rank")
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import print_table

    print_table(rows, f"VAE (hidden 500, latent 65, batch 512 per process): {args.rows:,} rows × {args.genes} genes")


if __name__ == "__main__":
    main()
