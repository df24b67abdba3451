"""The VAE family (vanilla, β, MMD; methods.md §2) at the paper's data sizes.

Two simulated sets, min-max scaled to [0, 1] like the paper's inputs (sigmoid output):

* Cell Painting level-5-sized: ~10,000 wells × 588 CellProfiler-like features (``simulate_morphology``), the paper's
  CP level-5 settings: latent 10, lr 1e-3, batch 96, hidden 250, β 0.3, λ 1e3.
* L1000-sized: ~100,000 signatures × 978 genes (``simulate_bulk``), the paper's L1000 settings: latent 65,
  lr 1e-3, batch 512, hidden 500, β 40, λ 1e7.

Each variant trains for a fixed number of epochs (no early stopping, 10% validation rows) on CPU and on a GPU
when one is present. Printed per run: wall time per epoch (the whole ``train_vae`` call divided by the epochs, so
it includes the split and the final encoding of every row; a one-epoch warm-up on a few rows runs first on each
device and is not reported), peak memory (CPU: the highest resident set size of the process sampled during the
run, data set included, and its growth over the start of the run; GPU: ``torch.cuda.max_memory_allocated``),
and the last epoch's training and validation losses with the reconstruction and KL / MMD parts.

    python benchmarks/vae.py                              # both sets, 3 epochs, CPU (+ GPU if present)
    python benchmarks/vae.py --epochs 1 --scale 0.1       # a quick look at a tenth of the rows
    python benchmarks/vae.py --data l1000 --device cuda --kinds mmd
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
import torch
from _common import available_devices, measure, print_table, proc_status

import perturbkit as pk

KINDS = ("vanilla", "beta", "mmd")
SETTINGS = {  # methods.md §2: best (latent, lr, batch), hidden layer size, β and λ per data set
    "cell_painting": dict(latent_dim=10, lr=1e-3, batch_size=96, hidden=(250,), beta=0.3, lam=1e3),
    "l1000": dict(latent_dim=65, lr=1e-3, batch_size=512, hidden=(500,), beta=40.0, lam=1e7),
}


class RSSPeak:
    """Sample the resident set size every 20 ms in a thread: ``peak_mb`` (the highest seen, data included) and
    ``growth_mb`` (over the size at the start)."""

    def __enter__(self):
        self.start = proc_status("VmRSS")
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, proc_status("VmRSS"))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, proc_status("VmRSS"))
        self.peak_mb = self.peak
        self.growth_mb = self.peak - self.start


def cell_painting_set(scale: float, seed: int = 0):
    """~10,000 × 588 at scale 1: 550 compounds × 6 doses × 3 replicate wells + 12 plates × 24 DMSO wells."""
    n_compounds = max(24, int(round(550 * scale)))
    adata = pk.datasets.simulate_morphology(
        n_compounds=n_compounds, n_features=588, n_replicates=3, n_plates=max(2, int(round(12 * scale))), seed=seed
    )
    pk.pp.scale(adata, method="minmax")
    return adata


def l1000_set(scale: float, seed: int = 0):
    """~100,000 × 978 at scale 1: 5,000 drugs × 2 cell lines × 10 (dose, time) conditions + DMSO signatures."""
    n_drugs = max(40, int(round(5000 * scale)))
    adata = pk.datasets.simulate_bulk(
        n_drugs=n_drugs, n_cell_lines=2, conditions_per_drug=10, frac_missing=0.0, seed=seed
    )
    pk.pp.scale(adata, method="minmax")
    return adata


DATASETS = {"cell_painting": cell_painting_set, "l1000": l1000_set}


def run_one(adata, *, name: str, kind: str, device: str, epochs: int, seed: int) -> dict:
    settings = dict(SETTINGS[name])
    data = adata.copy()  # train_vae writes obsm / uns; keep the shared set untouched
    with RSSPeak() as host, measure(device) as m:
        model = pk.tl.train_vae(
            data,
            kind=kind,
            device=device,
            seed=seed,
            max_epochs=epochs,
            patience=None,
            validation_fraction=0.1,
            **settings,
        )
    history = model.history_frame
    last = history.iloc[-1]
    penalty = "train_mmd" if kind == "mmd" else "train_kl"
    return {
        "data": name,
        "rows": data.n_obs,
        "features": data.n_vars,
        "kind": kind,
        "device": device,
        "epochs": int(len(history)),
        "s/epoch": m["seconds"] / max(1, len(history)),
        "wall s": m["seconds"],
        "peak MB": m["peak_memory_mb"] if device.startswith("cuda") else host.peak_mb,
        "RSS growth MB": host.growth_mb,
        "train loss": float(last.get("train_loss", np.nan)),
        "val loss": float(last.get("validation_loss", np.nan)),
        "train recon": float(last.get("train_reconstruction", np.nan)),
        "train KL/MMD": f"{float(last.get(penalty, np.nan)):.3g}",  # MMDs are ~1e-4: keep the digits
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the paper-sized row counts")
    parser.add_argument("--data", default="all", choices=["all", *DATASETS])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--device", default="all", help="cpu, cuda or all")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pk.settings.progress_bar = False
    names = list(DATASETS) if args.data == "all" else [args.data]
    devices = available_devices(args.device)
    print(f"devices: {devices}; torch threads {torch.get_num_threads()}; epochs {args.epochs}; scale {args.scale}")
    warm = cell_painting_set(0.0, args.seed)[:200].copy()  # simulated and scaled once, for every device
    for device in devices:  # warm-up: imports, thread pools, CUDA context
        pk.tl.train_vae(
            warm.copy(), kind="mmd", device=device, max_epochs=1, patience=None, hidden=(16,), latent_dim=2
        )  # a copy: train_vae writes obsm / uns
    rows = []
    for name in names:
        start = time.perf_counter()
        adata = DATASETS[name](args.scale, args.seed)
        print(
            f"{name}: {adata.n_obs} rows × {adata.n_vars} features, simulated and min-max scaled in "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
        for device in devices:
            for kind in args.kinds:
                row = run_one(adata, name=name, kind=kind, device=device, epochs=args.epochs, seed=args.seed)
                print(
                    f"  {kind:8s} {device:5s} {row['s/epoch']:8.2f} s/epoch  peak {row['peak MB']:8.1f} MB  "
                    f"train {row['train loss']:.4g}  val {row['val loss']:.4g}",
                    flush=True,
                )
                rows.append(row)
        del adata
    print_table(
        rows,
        f"VAE training, {args.epochs} epoch(s) at scale {args.scale} (peak MB: process RSS on CPU, "
        f"allocated GPU memory on CUDA)",
    )


if __name__ == "__main__":
    main()
