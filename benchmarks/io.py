"""Reading, writing and the first preprocessing steps at LINCS size (issue 10): 50,000 samples × 978 genes.

The data: random float32 profiles with LINCS-like sample metadata (``pert_iname``, ``pert_type``, ``cell_id``,
``pert_dose`` + ``pert_dose_unit`` in µM and nM, ``pert_idose``, ``pert_time`` + ``pert_time_unit``,
``pert_itime``) in replicate groups of 4, written once with :func:`pk.io.write_gctx`. Printed per step:

* ``seconds``: the best wall time of ``--repeats`` runs;
* ``peak_extra_mb``: the most memory the step held at once beyond what existed before it, traced with
  :mod:`tracemalloc` (which sees numpy and pandas buffers; HDF5's own small C buffers are not traced) in a
  separate run, since tracing slows Python code down;
* ``x_data``: that peak as a multiple of the size of ``X`` (float32).

Steps: GCTX write (the default, uncompressed, and ``compression="gzip"``, the old default), GCTX read,
:func:`pk.io.read_gct_metadata`, GCT text write/read (``--text``), ``pp.scale`` for each method next to its
scikit-learn equivalent (``maxabs`` ~ ``MaxAbsScaler``, ``minmax`` ~ ``MinMaxScaler``, ``zscore`` ~
``StandardScaler``; both on a copy), and ``pp.aggregate`` mean, median and MODZ over the replicate groups.
With ``--cmappy-python``, cmapPy's ``parse`` and ``write_gctx.write`` run on the same file in a subprocess of
that interpreter (a throwaway venv, e.g. ``python -m venv /tmp/ref-cmap && /tmp/ref-cmap/bin/pip install
'pandas<3' 'numpy<2' cmapPy==4.0.1``), timed and traced the same way.

    python benchmarks/io.py                                          # 50,000 × 978
    python benchmarks/io.py --n-obs 5000 --repeats 1                 # a quick look
    python benchmarks/io.py --cmappy-python /tmp/ref-cmap/bin/python --text
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _common import print_table

import perturbkit as pk

N_GENES = 978

CMAPPY_SCRIPT = r"""
import gc, json, sys, time, tracemalloc, warnings
warnings.filterwarnings("ignore")
from cmapPy.pandasGEXpress import parse, write_gctx
path, out, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])  # out "-": only read

def run(step):
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return best, peak / 2**20

results = {"read": run(lambda: parse.parse(path))}
if out != "-":
    g = parse.parse(path)
    results["write"] = run(lambda: write_gctx.write(g, out))
print(json.dumps(results))
"""


def make_data(n_obs: int, seed: int = 0):
    """Random LINCS-like level-4 data: replicate groups of 4 wells (same drug, dose, cell line, time)."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    n_groups = max(1, n_obs // 4)
    group = np.repeat(np.arange(n_groups), 4)[:n_obs]
    doses = np.array(["10.0", "3.33", "1.11", "0.37", "0.12", "500"])
    units = np.array(["um", "um", "um", "um", "um", "nm"])
    drugs = np.array(["DMSO"] + [f"BRD-K{i:08d}" for i in range(1, 400)])
    g_drug = rng.integers(0, len(drugs), n_groups)
    g_dose = rng.integers(0, len(doses), n_groups)
    g_cell = rng.choice(["A375", "MCF7", "PC3", "VCAP"], n_groups)
    g_time = rng.choice([6, 24], n_groups)
    dmso = drugs[g_drug][group] == "DMSO"
    dose = np.where(dmso, "-666", doses[g_dose][group])
    unit = np.where(dmso, "-666", units[g_dose][group])
    obs = pd.DataFrame(
        {
            "pert_iname": drugs[g_drug][group],
            "pert_type": np.where(dmso, "ctl_vehicle", "trt_cp"),
            "cell_id": g_cell[group],
            "pert_dose": dose,
            "pert_dose_unit": unit,
            "pert_idose": np.where(dmso, "-666", np.char.add(np.char.add(dose, " "), unit)),
            "pert_time": g_time[group],
            "pert_time_unit": "h",
            "pert_itime": np.char.add(g_time[group].astype(str), " h"),
            "det_plate": [f"PLATE{i // 384:04d}" for i in range(n_obs)],
        },
        index=[f"PLATE{i // 384:04d}:{i % 384:03d}" for i in range(n_obs)],
    )
    var = pd.DataFrame(
        {"pr_gene_symbol": [f"GENE{i}" for i in range(N_GENES)], "pr_is_lm": 1},
        index=[str(10_000 + i) for i in range(N_GENES)],
    )
    X = rng.normal(size=(n_obs, N_GENES)).astype(np.float32)
    return ad.AnnData(X=X, obs=obs, var=var)


def measure(step, repeats: int) -> tuple[float, float]:
    """(best seconds of ``repeats`` untraced runs, peak traced MiB of one more run beyond the memory before it)."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return best, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-obs", type=int, default=50_000, help="samples (rows of X); genes are always 978")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per step (the best is shown)")
    parser.add_argument("--text", action="store_true", help="also write and read GCT text (slow)")
    parser.add_argument("--cmappy-python", default=None, help="python of a venv with cmapPy, to time it too")
    parser.add_argument("--skip-pp", action="store_true", help="only the readers and writers")
    parser.add_argument("--workdir", default=None, help="folder for the files (default: a temporary one)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    pk.settings.progress_bar = False

    adata = make_data(args.n_obs)
    data_mb = adata.X.nbytes / 2**20
    print(
        f"data: {adata.n_obs:,} samples × {adata.n_vars} genes, X float32 = {data_mb:.1f} MiB; "
        f"{adata.obs['pert_iname'].nunique()} drugs, replicate groups of 4"
    )
    rows = []

    def add(step, impl, result):
        seconds, peak = result
        rows.append(
            {"step": step, "implementation": impl, "seconds": seconds, "peak_extra_mb": peak, "x_data": peak / data_mb}
        )
        print(f"  {step:<28} {impl:<22} {seconds:8.3f} s  {peak:9.1f} MiB", flush=True)

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        gctx = Path(tmp) / "bench.gctx"
        add("write GCTX", "perturbkit", measure(lambda: pk.io.write_gctx(adata, gctx), args.repeats))
        add(
            "write GCTX gzip",
            "perturbkit",
            measure(lambda: pk.io.write_gctx(adata, Path(tmp) / "gzip.gctx", compression="gzip"), 1),
        )
        add("read GCTX", "perturbkit", measure(lambda: pk.io.read_gct(gctx), args.repeats))
        add("read GCTX metadata only", "perturbkit", measure(lambda: pk.io.read_gct_metadata(gctx), args.repeats))
        if args.text:
            text = Path(tmp) / "bench.gct"
            add("write GCT text", "perturbkit", measure(lambda: pk.io.write_gct(adata, text), 1))
            add("read GCT text", "perturbkit", measure(lambda: pk.io.read_gct(text), 1))
        if args.cmappy_python:
            jobs = [("GCTX", gctx, Path(tmp) / "cmap.gctx")] + ([("GCT text", text, "-")] if args.text else [])
            for kind, source, out in jobs:
                done = subprocess.run(
                    [
                        args.cmappy_python,
                        "-c",
                        CMAPPY_SCRIPT,
                        str(source),
                        str(out),
                        str(args.repeats if kind == "GCTX" else 1),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                for step, result in json.loads(done.stdout.strip().splitlines()[-1]).items():
                    add(f"{step} {kind}", "cmapPy 4.0.1", tuple(result))
        bench = pk.io.read_gct(gctx)  # the pipeline goes on from what was read: schema columns are there

    if not args.skip_pp:
        from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler

        X = bench.X
        for method, scaler in (("maxabs", MaxAbsScaler), ("minmax", MinMaxScaler), ("zscore", StandardScaler)):
            add(
                f"scale {method}",
                "perturbkit",
                measure(lambda method=method: pk.pp.scale(bench, method=method, copy=True), args.repeats),
            )
            add(
                f"scale {method}",
                f"sklearn {scaler.__name__}",
                measure(lambda scaler=scaler: scaler().fit_transform(X), args.repeats),
            )
        by = ["cell_line", "drug", "dose", "time"]
        for method in ("mean", "median", "modz"):
            add(
                f"aggregate {method}",
                "perturbkit",
                measure(
                    lambda method=method: pk.pp.aggregate(bench, by=by, method=method),
                    1 if method == "modz" else args.repeats,
                ),
            )

    print_table(rows, f"pk.io and pk.pp at {adata.n_obs:,} × {adata.n_vars} (X = {data_mb:.1f} MiB)")


if __name__ == "__main__":
    sys.exit(main())
