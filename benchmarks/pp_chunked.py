"""Out-of-core preprocessing (issue 14): each ``pk.pp`` step in memory vs on a backed ``.h5ad``, time and memory.

The data: random float32 profiles, ``--n-obs`` × ``--n-vars`` (default 270,000 × 978, about 1 GB), in 384-well
plates (``plate``; 10 % of the wells are controls) and replicate groups of 4 (``group``; the file is sorted by
it, as :func:`pk.pp.aggregate`'s docstring advises for median / MODZ), written once as a dense ``.h5ad``.

Per step and mode, printed:

* ``seconds``: wall time of one run, including writing a result that is an AnnData (``scale``, ``normalize``,
  ``control_diff``) to a new ``.h5ad`` — for the backed input this streams the lazy dask result block by block;
* ``peak_extra_mb``: the most memory the step held at once beyond what existed before it, traced with
  :mod:`tracemalloc` in a second run (NumPy and pandas buffers; HDF5's own C buffers are not traced). In memory,
  the loaded X itself (``x_mb``) is not counted;
* ``x_data``: that peak as a multiple of the size of X (float32).

With ``--sweep``, the time of one ``scale(method="zscore")`` fit + write on the backed file for several block
sizes (the measurement behind ``pk.pp._chunked.BLOCK_BYTES``).

    python benchmarks/pp_chunked.py                       # 270,000 × 978 (~1 GB); a few minutes
    python benchmarks/pp_chunked.py --quick               # 20,000 × 978
    python benchmarks/pp_chunked.py --n-obs 50000 --sweep
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from _common import print_table

import perturbkit as pk


def make_file(path: Path, n_obs: int, n_vars: int, seed: int = 0) -> None:
    import anndata as ad

    rng = np.random.default_rng(seed)
    group = np.arange(n_obs) // 4
    plate = rng.integers(0, max(1, n_obs // 384), n_obs)
    obs = pd.DataFrame(
        {
            "group": pd.Categorical(group.astype(str)),
            "plate": pd.Categorical(plate.astype(str)),
            "control": rng.random(n_obs) < 0.1,
        },
        index=[f"w{i}" for i in range(n_obs)],
    )
    obs.loc[obs.groupby("plate", observed=True).head(2).index, "control"] = True
    X = np.empty((n_obs, n_vars), dtype=np.float32)
    for start in range(0, n_obs, 10_000):  # bounded memory while making the data
        stop = min(start + 10_000, n_obs)
        X[start:stop] = rng.normal(size=(stop - start, n_vars))
    ad.AnnData(X, obs=obs).write_h5ad(path)


def steps(chunk_rows):
    kw = {} if chunk_rows is None else {"chunk_rows": chunk_rows}
    return {
        "aggregate mean": lambda a: pk.pp.aggregate(a, by="group", **kw),
        "aggregate median": lambda a: pk.pp.aggregate(a, by="group", method="median", **kw),
        "aggregate modz": lambda a: pk.pp.aggregate(a, by="group", method="modz", **kw),
        "scale zscore": lambda a: pk.pp.scale(a, method="zscore", copy=True, **kw),
        "scale maxabs": lambda a: pk.pp.scale(a, method="maxabs", copy=True, **kw),
        "normalize standardize": lambda a: pk.pp.normalize(a, groupby="plate", samples="control", copy=True, **kw),
        "normalize robust_zscore": lambda a: pk.pp.normalize(
            a, method="robust_zscore", groupby="plate", samples="control", copy=True, **kw
        ),
        "control_diff": lambda a: pk.pp.control_diff(a, groupby="plate", copy=True, **kw),
    }


def run(step, adata, out: Path, *, writes: bool) -> tuple[float, float]:
    def once():
        result = step(adata)
        if writes:
            result.write_h5ad(out)
        return result

    gc.collect()
    start = time.perf_counter()
    once()
    seconds = time.perf_counter() - start
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    once()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return seconds, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-obs", type=int, default=270_000)
    parser.add_argument("--n-vars", type=int, default=978)
    parser.add_argument("--chunk-rows", type=int, default=None, help="rows per block (default: 16 MiB blocks)")
    parser.add_argument("--only", default=None, help="comma-separated step names to run")
    parser.add_argument("--no-memory", action="store_true", help="skip the in-memory runs")
    parser.add_argument("--sweep", action="store_true", help="time block sizes for the chunk_rows default")
    parser.add_argument("--quick", action="store_true", help="20,000 rows: a quick look")
    args = parser.parse_args()
    if args.quick:
        args.n_obs = 20_000
    import anndata as ad

    pk.settings.progress_bar = False
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "profiles.h5ad"
        start = time.perf_counter()
        make_file(path, args.n_obs, args.n_vars)
        x_mb = args.n_obs * args.n_vars * 4 / 2**20
        print(f"{args.n_obs:,} × {args.n_vars} float32 ({x_mb:.0f} MB) written in {time.perf_counter() - start:.1f} s")
        rows = []
        chosen = steps(args.chunk_rows)
        if args.only:
            chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
        memory = None if args.no_memory else ad.read_h5ad(path)
        for name, step in chosen.items():
            writes = not name.startswith("aggregate")
            modes = [("backed", ad.read_h5ad(path, backed="r"))]
            if memory is not None:
                modes.insert(0, ("in memory", memory))
            for mode, adata in modes:
                seconds, peak = run(step, adata, tmp / "out.h5ad", writes=writes)
                rows.append(
                    {"step": name, "mode": mode, "seconds": seconds, "peak_extra_mb": peak, "x_data": peak / x_mb}
                )
                if mode == "backed":
                    adata.file.close()
        print_table(rows, f"pk.pp in memory vs backed (chunk_rows={args.chunk_rows or 'default'})")

        if args.sweep:
            sweep = []
            for mib in (1, 4, 16, 64):
                chunk = max(1, mib * 2**20 // (8 * args.n_vars))
                backed = ad.read_h5ad(path, backed="r")
                gc.collect()
                start = time.perf_counter()
                pk.pp.scale(backed, method="zscore", chunk_rows=chunk, copy=True).write_h5ad(tmp / "out.h5ad")
                sweep.append({"block_mib": mib, "chunk_rows": chunk, "seconds": time.perf_counter() - start})
                backed.file.close()
            print_table(sweep, "scale(method='zscore') fit + streamed write on the backed file, by block size")


if __name__ == "__main__":
    main()
