"""Which reader should stream an on-disk AnnData matrix into training (issue 14)? Measured, per format.

Builds a dense and a CSR store of ``--n-obs`` × ``--n-genes`` float32 (CSR at ``--density``) in a temporary folder
(or ``--dir``), each written by anndata both as ``.h5ad`` and as a ``.zarr`` store, and reads them with every reader
that can serve rows:

* ``backed``: anndata's backed mode (``read_h5ad(backed="r")``: an ``h5py.Dataset``, or anndata's ``CSRDataset``);
* ``zarr``: the zarr array itself (dense), or anndata's ``sparse_dataset`` over the zarr group (CSR);
* ``dask``: ``anndata.experimental.read_elem_lazy`` (a dask array over the same element).

Printed per (format, reader): rows/s for contiguous chunk reads of several sizes, visited in a shuffled chunk order
(the way :class:`~perturbkit.train.StreamedBatches` reads), rows/s for random-row reads (sorted random indices,
``--random-batch`` per read: what a per-row shuffled loader does), and the peak RSS (``VmHWM``) of a child process that
only imports, opens the store and reads (so each reader's peak is its own; ``import_rss_mb`` is the same child
right after its imports). Sparse chunks are densified, as training needs.

    python benchmarks/stream_readers.py            # 40,000 × 2,000
    python benchmarks/stream_readers.py --quick    # 4,000 × 500, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from _common import print_table

CHILD = r"""
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, scipy.sparse as sp, anndata as ad, h5py, zarr
from anndata.experimental import read_elem_lazy
from anndata.io import sparse_dataset
path, reader, sizes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
random_batch, seconds = int(sys.argv[4]), float(sys.argv[5])
def peak_mb():  # VmHWM: the peak RSS of this process image (ru_maxrss would carry the parent's over exec)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
base = peak_mb()
if reader == "backed":
    X = ad.read_h5ad(path, backed="r").X
elif reader == "zarr":
    g = zarr.open_group(path, mode="r")["X"]
    X = g if isinstance(g, zarr.Array) else sparse_dataset(g)
else:
    elem = h5py.File(path, "r")["X"] if path.endswith(".h5ad") else zarr.open_group(path, mode="r")["X"]
    X = read_elem_lazy(elem)

def read(sel):
    out = X[sel]
    if hasattr(out, "compute"):
        out = out.compute()
    return out.toarray() if sp.issparse(out) else np.asarray(out)

n = X.shape[0]
rng = np.random.default_rng(0)
result = {}
for size in sizes:
    starts = rng.permutation(np.arange(0, n, size))
    rows, t0 = 0, time.perf_counter()
    for s in starts:
        rows += read(slice(int(s), int(min(s + size, n)))).shape[0]
        if time.perf_counter() - t0 > seconds:
            break
    result[f"chunk_{size}"] = rows / (time.perf_counter() - t0)
rows, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    idx = np.sort(rng.choice(n, random_batch, replace=False))
    rows += read(idx).shape[0]
result["random"] = rows / (time.perf_counter() - t0)
result["peak_rss_mb"] = peak_mb()
result["import_rss_mb"] = base
print(json.dumps(result))
"""


def build(folder: Path, n_obs: int, n_genes: int, density: float, seed: int = 0) -> dict[str, Path]:
    """Write the dense and CSR stores (h5ad and zarr) in ``folder``; return {name: path}."""
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    paths = {}
    dense = rng.standard_normal((n_obs, n_genes), dtype=np.float32)
    adata = ad.AnnData(dense)
    paths["dense.h5ad"] = folder / "dense.h5ad"
    adata.write_h5ad(paths["dense.h5ad"])
    paths["dense.zarr"] = folder / "dense.zarr"
    adata.write_zarr(paths["dense.zarr"])
    del adata, dense
    csr = sp.random(n_obs, n_genes, density=density, format="csr", dtype=np.float32, random_state=seed)
    adata = ad.AnnData(csr)
    paths["csr.h5ad"] = folder / "csr.h5ad"
    adata.write_h5ad(paths["csr.h5ad"])
    paths["csr.zarr"] = folder / "csr.zarr"
    adata.write_zarr(paths["csr.zarr"])
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-obs", type=int, default=40_000)
    parser.add_argument("--n-genes", type=int, default=2_000)
    parser.add_argument("--density", type=float, default=0.1, help="fraction of non-zeros in the CSR store")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[64, 512, 4096, 16384])
    parser.add_argument("--random-batch", type=int, default=256, help="rows per random-row read")
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent on each measurement (at most)")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the stores (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="4,000 × 500, 0.5 s per measurement")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_obs, args.n_genes, args.seconds, args.chunk_sizes = 4_000, 500, 0.5, [64, 512, 2048]
    warnings.filterwarnings("ignore")
    folder = Path(tempfile.mkdtemp(prefix="pk-stream-readers-", dir=args.dir))
    try:
        paths = build(folder, args.n_obs, args.n_genes, args.density)
        rows = []
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        for name, path in paths.items():
            readers = ["backed", "dask"] if name.endswith(".h5ad") else ["zarr", "dask"]
            size_gb = sum(f.stat().st_size for f in ([path] if path.is_file() else path.rglob("*"))) / 1e9
            for reader in readers:
                out = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        CHILD,
                        str(path),
                        reader,
                        json.dumps(args.chunk_sizes),
                        str(args.random_batch),
                        str(args.seconds),
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                row = {"store": name, "disk_gb": size_gb, "reader": reader}
                row.update({f"{k}_rows/s": int(v) for k, v in result.items() if k.startswith(("chunk", "random"))})
                row["peak_rss_mb"] = result["peak_rss_mb"]
                row["import_rss_mb"] = result["import_rss_mb"]
                rows.append(row)
        print_table(
            rows,
            f"Streaming reads of {args.n_obs:,} × {args.n_genes:,} float32 (CSR density {args.density}); "
            f"rows/s per chunk size (shuffled chunk order) and for random rows ({args.random_batch} per read)",
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
