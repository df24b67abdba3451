"""Converting a LINCS-size GCTX into AnnData stores chunk by chunk (issue 14): 12,328 genes × 200,000 signatures.

A simulated GCTX in the layout of the real CMap files (:func:`perturbkit.datasets._gctx.write_simulated_gctx`:
contiguous float32 matrix of shape (signatures, genes), gzip-6 metadata) is written to ``--dir``, then converted
with :func:`perturbkit.io._convert.convert_gctx` to ``.zarr`` and to ``.h5ad`` (and, with ``--landmark``, to a
landmark-only ``.h5ad``). Each step runs in its own child process, so that its peak resident memory
(``resource.getrusage``) is its own. Printed per step:

* ``size_gb``: the file or store written (GB, 10^9 bytes);
* the ``read_gct_metadata`` row reads only the obs/var tables, which every conversion holds in memory too: its
  ``peak_rss_mb`` shows how much of a conversion's peak is metadata (it grows with the signatures, not the genes);
* ``seconds``: wall time of the step (one run: the files are too big to repeat);
* ``mb_s``: the GCTX matrix (signatures × genes × 4 bytes) written or converted per second;
* ``peak_rss_mb``: the child's peak resident memory; ``start_rss_mb``: its resident memory after the imports,
  before the step; ``bound_mb``: start + 4 × chunk_size × genes × 4 bytes + 2 KB per signature for the metadata
  tables (the bound the conversion promises; the GCTX writer works in 64 MiB blocks instead);
* ``check``: after the timing, rows drawn at random from the store (read back in backed mode) equal the GCTX rows.

Each output is deleted after it is measured, and the GCTX at the end (``--keep`` keeps them): the default run
needs about 2 × 9.9 GB free in ``--dir``. The machine's page cache may hold part of the input, which makes the
conversions look faster than from a cold disk.

    python benchmarks/scale_gctx.py                            # 12,328 × 200,000 (~9.9 GB per file)
    python benchmarks/scale_gctx.py --quick                    # 12,328 × 5,000
    python benchmarks/scale_gctx.py --n-signatures 50000 --chunk-size 256 --landmark
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_table, proc_status

CHILD = "--child"


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _check(gctx: Path, out: Path, landmark: bool, seed: int = 0) -> bool:
    """Random rows of the store (backed / lazily read) equal the same rows of the GCTX."""
    import anndata as ad
    import h5py
    import numpy as np
    import zarr

    with h5py.File(gctx, "r") as f:
        n = f["0/DATA/0/matrix"].shape[0]
        rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, 20), replace=False))
        source = f["0/DATA/0/matrix"][rows]
        if landmark:
            source = source[:, f["0/META/ROW/pr_is_lm"][()] == 1]
    if out.suffix == ".h5ad":
        backed = ad.read_h5ad(out, backed="r")
        stored = np.stack([backed.X[int(r)] for r in rows])
        backed.file.close()
    else:
        stored = zarr.open_group(out, mode="r")["X"].oindex[rows, :]
    return bool(np.array_equal(stored, source))


def child(args) -> None:
    """One step, run in a fresh process; prints a JSON line with its measurements."""
    import numpy as np

    from perturbkit.datasets._gctx import write_simulated_gctx
    from perturbkit.io._convert import convert_gctx

    np.zeros(1)
    start_rss = proc_status("VmRSS")
    gctx, out = Path(args.gctx), Path(args.out) if args.out else None
    t0 = time.perf_counter()
    if args.step == "write":
        n_landmark = min(978, args.n_genes)
        write_simulated_gctx(gctx, n_genes=args.n_genes, n_signatures=args.n_signatures, n_landmark=n_landmark, seed=0)
        target, ok = gctx, True
    elif args.step == "metadata":
        from perturbkit.io import read_gct_metadata

        obs, _ = read_gct_metadata(gctx)
        target, ok = gctx, len(obs) == args.n_signatures
    else:
        convert_gctx(gctx, out, landmark_only=args.step == "landmark", chunk_size=args.chunk_size, progress=False)
        target = out
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.step not in ("write", "metadata"):
        ok = _check(gctx, out, args.step == "landmark")
    print(
        json.dumps(
            {"seconds": seconds, "peak_rss_mb": peak, "start_rss_mb": start_rss, "bytes": _size(target), "check": ok}
        )
    )


def run_step(args, step: str, gctx: Path, out: Path | None) -> dict:
    command = [sys.executable, __file__, CHILD, "--step", step, "--gctx", str(gctx), "--out", str(out or ""),
               "--n-signatures", str(args.n_signatures), "--n-genes", str(args.n_genes),
               "--chunk-size", str(args.chunk_size)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"step {step} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-signatures", type=int, default=200_000)
    parser.add_argument("--n-genes", type=int, default=12_328)
    parser.add_argument("--chunk-size", type=int, default=None, help="signatures per step (convert_gctx's default)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the files go (needs ~2 × the GCTX)")
    parser.add_argument("--formats", default="zarr,h5ad", help="comma-separated: zarr, h5ad")
    parser.add_argument("--landmark", action="store_true", help="also convert the 978 landmark genes to .h5ad")
    parser.add_argument("--keep", action="store_true", help="keep the files written")
    parser.add_argument("--quick", action="store_true", help="a small run: 5,000 signatures")
    parser.add_argument(CHILD, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--gctx", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.chunk_size is None:
        from perturbkit.io._convert import DEFAULT_CHUNK_SIZE

        args.chunk_size = DEFAULT_CHUNK_SIZE
    if args.child:
        child(args)
        return
    if args.quick:
        args.n_signatures = 5_000
    matrix_bytes = args.n_signatures * args.n_genes * 4
    folder = Path(tempfile.mkdtemp(prefix="pk-scale-gctx-", dir=args.dir))
    needed = 2.1 * matrix_bytes
    free = shutil.disk_usage(folder).free
    if free < needed:
        shutil.rmtree(folder)
        raise SystemExit(f"{args.dir} has {free / 1e9:.1f} GB free; this run needs about {needed / 1e9:.1f} GB.")
    gctx = folder / f"sim_n{args.n_signatures}x{args.n_genes}.gctx"
    steps = [("write", "write GCTX", None), ("metadata", "read_gct_metadata", None)]
    for fmt in args.formats.split(","):
        steps.append((fmt, f"convert -> .{fmt}", folder / f"out.{fmt}"))
    if args.landmark:
        steps.append(("landmark", "convert landmark -> .h5ad", folder / "landmark.h5ad"))
    rows = []
    try:
        for step, label, out in steps:
            print(f"{label} ...", flush=True)
            m = run_step(args, step, gctx, out)
            bound = m["start_rss_mb"] + (4 * args.chunk_size * args.n_genes * 4 + 2048 * args.n_signatures) / 2**20
            rows.append({
                "step": label,
                "size_gb": m["bytes"] / 1e9 if step != "metadata" else float("nan"),
                "seconds": m["seconds"],
                "mb_s": matrix_bytes / 1e6 / m["seconds"],
                "start_rss_mb": m["start_rss_mb"],
                "peak_rss_mb": m["peak_rss_mb"],
                "bound_mb": bound if step not in ("write", "metadata") else float("nan"),
                "check": m["check"],
            })  # fmt: skip
            if out is not None and not args.keep:
                shutil.rmtree(out) if out.is_dir() else out.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print_table(
        rows,
        f"GCTX -> AnnData store, {args.n_signatures:,} signatures × {args.n_genes:,} genes "
        f"({matrix_bytes / 1e9:.2f} GB float32), chunk_size={args.chunk_size}",
    )


if __name__ == "__main__":
    main()
