"""Training from stores larger than memory (issue 14): a VAE streamed from .h5ad stores 1×, 3× and 10× its budget.

The run's memory is capped: each training runs in a CHILD process whose address space is limited with
``resource.setrlimit(RLIMIT_AS, ...)`` to what torch + anndata + perturbkit need to run (measured first, in a
child that imports them and streams one epoch of a tiny store) plus a stated working budget (``--budget-gb``). The
stores (float32, ``--genes`` columns, written as anndata ``.h5ad`` files with contiguous X) hold 1×, 3× and 10× that
budget, so they cannot be loaded. The child opens each with ``pk.io.read_store`` and trains a VAE
(``VAE.from_adata(output="linear")`` then ``train(max_epochs=1)``: one epoch streamed, the validation rows capped
by ``--max-validation-rows``, latent activity measured on a sample); it prints the store size, the limit, its peak
RSS (``resource.getrusage`` in the child, and ``VmHWM`` from /proc, which unlike ``ru_maxrss`` does not carry the
forking parent's peak across ``exec``), the part of it that obs and var take (read into memory by design: ~150 bytes
per row for the obs names), rows/s and seconds (of ``train``, after a warm-up that pays torch.optim's first import).
Memory must stay flat as the store grows (apart from obs).

Each store is deleted after its run, so at most the largest (10× the budget) is on disk at a time.

    python benchmarks/scale_stream.py                     # 2,000 genes, 0.75 GB budget: 0.75 / 2.25 / 7.5 GB stores
    python benchmarks/scale_stream.py --quick             # 100 genes, 60 MB budget, 1× and 3× only: seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import proc_status

CHILD_FLAG = "--child"


def write_store(path: Path, n_obs: int, n_genes: int, *, seed: int = 0, block: int = 8192) -> None:
    """An anndata .h5ad of ``n_obs`` × ``n_genes`` float32 in [0, 1), written block by block (flat memory)."""
    import h5py
    import pandas as pd
    from anndata.io import write_elem

    rng = np.random.default_rng(seed)
    obs = pd.DataFrame(index=pd.Index([f"cell{i}" for i in range(n_obs)]))
    var = pd.DataFrame(index=pd.Index([f"gene{j}" for j in range(n_genes)]))
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        write_elem(f, "obs", obs)
        write_elem(f, "var", var)
        for name in ("layers", "obsm", "obsp", "varm", "varp", "uns"):
            write_elem(f, name, {})
        X = f.create_dataset("X", shape=(n_obs, n_genes), dtype="float32")
        X.attrs["encoding-type"], X.attrs["encoding-version"] = "array", "0.2.0"
        for start in range(0, n_obs, block):
            stop = min(start + block, n_obs)
            X[start:stop] = rng.random((stop - start, n_genes), dtype=np.float32)


def child(args) -> None:
    """Runs in the capped process: stream one VAE epoch from ``args.store`` and print a JSON line."""
    import resource

    if args.limit_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (args.limit_bytes, args.limit_bytes))
    os.environ["OMP_NUM_THREADS"] = "1"
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    import perturbkit as pk
    from perturbkit.io._store import read_store
    from perturbkit.models.vae import VAE

    pk.settings.progress_bar = False
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first use imports ~3 s of modules: not timed
    imported = {"import_vm_mb": proc_status("VmPeak"), "import_rss_mb": proc_status("VmHWM")}
    before = proc_status("VmRSS")
    adata = read_store(args.store)
    imported["obs_mb"] = proc_status("VmRSS") - before  # obs and var, read into memory by design
    start = time.perf_counter()
    model = VAE.from_adata(adata, output="linear", seed=0)
    model.train(
        adata,
        max_epochs=1,
        patience=None,
        batch_size=args.batch_size,
        max_validation_rows=args.max_validation_rows,
        chunk_rows=args.chunk_rows,
        seed=0,
    )
    seconds = time.perf_counter() - start
    n_train = adata.n_obs - max(1, round(0.1 * adata.n_obs))  # split_indices' training rows (validation_fraction 0.1)
    result = {
        **imported,
        "seconds": seconds,
        "rows": adata.n_obs,
        "train_rows_per_s": n_train / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "vm_hwm_mb": proc_status("VmHWM"),
        "vm_peak_mb": proc_status("VmPeak"),
        "validation_loss": float(model.history_frame["validation_loss"].iloc[-1]),
    }
    print(json.dumps(result))


def run_child(store: Path, limit_bytes: int | None, args) -> dict:
    command = [
        sys.executable,
        __file__,
        CHILD_FLAG,
        "--store",
        str(store),
        "--limit-bytes",
        str(limit_bytes or 0),
        "--batch-size",
        str(args.batch_size),
        "--max-validation-rows",
        str(args.max_validation_rows),
    ]
    if args.chunk_rows:
        command += ["--chunk-rows", str(args.chunk_rows)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=2_000, help="columns of the stores (e.g. 2,000 HVGs)")
    parser.add_argument("--budget-gb", type=float, default=0.75, help="working memory above the measured baseline")
    parser.add_argument("--multiples", type=float, nargs="+", default=[1, 3, 10], help="store sizes / budget")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk-rows", type=int, default=None, help="rows per read (default: perturbkit's choice)")
    parser.add_argument("--max-validation-rows", type=int, default=5_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the stores (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="100 genes, a 60 MB budget, 1× and 3×: seconds")
    parser.add_argument(CHILD_FLAG, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--limit-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    if args.quick:
        args.genes, args.budget_gb, args.max_validation_rows, args.multiples = 100, 0.06, 500, [1, 3]
    folder = Path(tempfile.mkdtemp(prefix="pk-scale-stream-", dir=args.dir))
    row_bytes = 4 * args.genes
    try:
        # 1. what the child needs to import and run at all: a tiny store, no limit
        tiny = folder / "tiny.h5ad"
        write_store(tiny, 2_000, args.genes)
        base = run_child(tiny, None, args)
        tiny.unlink()
        if "error" in base:
            raise SystemExit(f"the baseline run failed: {base['error']}")
        budget = int(args.budget_gb * 1e9)
        limit = int(base["vm_peak_mb"] * 2**20) + budget
        print(
            f"baseline (imports): {base['import_vm_mb']:.0f} MB address space, {base['import_rss_mb']:.0f} MB RSS; "
            f"after streaming a tiny store: {base['vm_peak_mb']:.0f} MB address space, {base['vm_hwm_mb']:.0f} MB RSS."
            f"\nlimit (RLIMIT_AS) = {base['vm_peak_mb']:.0f} MB + budget {budget / 2**20:.0f} MB = "
            f"{limit / 2**30:.2f} GiB"
        )
        rows = []
        for multiple in args.multiples:
            n_obs = int(multiple * budget / row_bytes)
            store = folder / f"store_{multiple:g}x.h5ad"
            t0 = time.perf_counter()
            write_store(store, n_obs, args.genes)
            write_s = time.perf_counter() - t0
            result = run_child(store, limit, args)
            row = {
                "store_gb": store.stat().st_size / 1e9,
                "x_budget": multiple,
                "rows": n_obs,
                "limit_gb": limit / 1e9,
                "budget_gb": budget / 1e9,
            }
            store.unlink()
            if "error" in result:
                row["error"] = result["error"]
            else:
                row.update(
                    {
                        "peak_rss_mb": result["peak_rss_mb"],
                        "vm_hwm_mb": result["vm_hwm_mb"],
                        "rss_above_baseline_mb": result["vm_hwm_mb"] - base["vm_hwm_mb"],
                        "obs_mb": result["obs_mb"],
                        "rows/s": result["train_rows_per_s"],
                        "seconds": result["seconds"],
                        "write_s": write_s,
                    }
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
        from _common import print_table

        print_table(
            rows,
            f"One VAE epoch streamed from .h5ad stores ({args.genes} genes float32) in a child capped at "
            f"{limit / 1e9:.2f} GB of address space (baseline {base['vm_peak_mb'] / 1e3:.2f} GB + budget "
            f"{budget / 1e9:.2f} GB)",
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
