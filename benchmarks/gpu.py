"""Training speed on the accelerator (or the CPU): each model at its paper's scale, cross-validation, a streamed epoch.

For every model a fixed number of epochs is trained with no early stopping, and the table gives samples per
second (training rows × epochs / seconds of ``train``, data preparation excluded), the device's utilisation
(sampled every 0.2 s with NVML during training, when a GPU and ``pynvml`` are there), and the peak memory
(``torch.cuda.max_memory_allocated`` on a GPU, the process's peak RSS on the CPU). ``--precision`` and
``--compile`` run every model under each setting (``pk.settings.precision`` / ``pk.settings.compile``), which is
how the defaults were chosen.

Sizes (``--scale`` multiplies the rows):

* DeepCellState: 1,750 drugs × 2 cell lines × 978 genes (the paper's MCF-7/PC-3 set), batch 128;
* VAE (L1000 settings): 100,000 signatures × 978 genes, hidden 500, latent 65, batch 512;
* cycleCDR (L1000, paired): ``simulate_bulk`` with 1,750 drugs, 978 genes, batch 512;
* scGen: 20,000 cells × 2,000 genes (Kang-sized), batch 32 as in scGen;
* CPA-style: 20,000 cells × 2,000 genes, batch 128;
* DeepCellState 10-fold cross-validation, fold by fold and the 10 folds stacked into one network
  (``stack_folds=True``: one vectorised step trains every fold);
* a VAE epoch streamed from an h5ad store on disk (``pk.io.read_store``).

    python benchmarks/gpu.py --device cuda                      # the GPU table of the README
    python benchmarks/gpu.py --device cuda --precision float32 bfloat16 float16 --compile off on
    python benchmarks/gpu.py --quick                             # CPU, small sizes: a check that it runs
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import torch
from _common import print_table

import perturbkit as pk


class Utilisation:
    """Mean GPU utilisation (%) sampled with NVML in a thread while the block runs (None without a GPU/pynvml)."""

    def __init__(self, device: str):
        self.samples: list[float] = []
        self.handle = None
        if device.startswith("cuda"):
            try:
                import pynvml

                pynvml.nvmlInit()
                index = torch.device(device).index or 0
                self.handle, self.nvml = pynvml.nvmlDeviceGetHandleByIndex(index), pynvml
            except Exception:
                self.handle = None

    def __enter__(self):
        self.stop = threading.Event()
        if self.handle is not None:
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop.is_set():
            self.samples.append(float(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu))
            time.sleep(0.2)

    def __exit__(self, *exc):
        self.stop.set()

    @property
    def mean(self):
        return float(np.mean(self.samples)) if self.samples else None


def timed(device: str, train):
    """Run ``train()`` (returns the number of samples it trained on); samples/s, utilisation and peak memory."""
    import resource

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with Utilisation(device) as utilisation:
        start = time.perf_counter()
        samples = train()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    memory = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "seconds": seconds,
        "samples/s": samples / seconds,
        "GPU util %": utilisation.mean,
        "peak memory MB": memory,
    }


def model_runs(args):
    """(name, data, train function) for every model at its paper's scale (rows × ``args.scale``)."""
    s, epochs, device = args.scale, args.epochs, args.device

    def rows(n):
        return max(50, int(n * s))

    runs = []
    bulk = pk.datasets.simulate_bulk(n_drugs=rows(1750), n_genes=978, n_cell_lines=2, seed=0)

    def deepcellstate():
        model = pk.tl.train_deepcellstate(
            bulk.copy(),
            max_epochs=epochs,
            max_rounds=1,
            epochs_per_round=epochs,
            decoder_epochs=epochs,
            patience=None,
            device=device,
        )
        return len(model.history) and bulk.n_obs * epochs

    runs.append(("DeepCellState (1,750 drugs × 2 lines × 978)", deepcellstate))
    l1000 = ad.AnnData(np.random.default_rng(0).random((rows(100_000), 978), dtype=np.float32))

    def vae():
        model = pk.models.vae.VAE.from_adata(l1000, latent_dim=65, hidden=(500,), output="sigmoid", device=device)
        model.train(l1000, batch_size=512, max_epochs=epochs, patience=None)
        return int(l1000.n_obs * 0.9) * epochs

    runs.append(("VAE (100,000 × 978, L1000 settings)", vae))

    def cyclecdr():
        pk.tl.train_cyclecdr(bulk.copy(), max_epochs=epochs, patience=None, batch_size=512, device=device)
        return bulk.n_obs * epochs

    runs.append(("cycleCDR paired (L1000)", cyclecdr))
    cells = pk.datasets.simulate_single_cell(n_cells=rows(20_000), n_genes=2000, seed=0)
    import scanpy as sc

    sc.pp.normalize_total(cells)
    sc.pp.log1p(cells)
    cell_key = "cell_type" if "cell_type" in cells.obs else "cell_line"

    def scgen():
        pk.tl.train_scgen(cells.copy(), cell_key=cell_key, max_epochs=epochs, patience=None, device=device)
        return cells.n_obs * epochs

    runs.append(("scGen (20,000 cells × 2,000)", scgen))

    def cpa():
        pk.tl.train_cpa(cells.copy(), cell_key=cell_key, max_epochs=epochs, patience=None, device=device)
        return cells.n_obs * epochs

    runs.append(("CPA-style (20,000 cells × 2,000)", cpa))

    for stacked, label in ((False, "fold by fold"), (True, "folds stacked")):

        def folds(stacked=stacked):
            pk.tl.cross_validate_deepcellstate(
                bulk.copy(), source="PC3", target="MCF7", n_folds=10, device=device, stack_folds=stacked
            )
            return bulk.n_obs * 10

        runs.append((f"DeepCellState 10-fold CV ({label})", folds))
    read_store = getattr(pk.io, "read_store", None)
    if read_store is not None:
        folder = Path(tempfile.mkdtemp(prefix="perturbkit-gpu-"))
        path = folder / "store.h5ad"
        l1000.write_h5ad(path)

        def streamed():
            backed = read_store(path)
            model = pk.models.vae.VAE.from_adata(backed, latent_dim=65, hidden=(500,), output="sigmoid", device=device)
            model.train(backed, batch_size=512, max_epochs=1, patience=None)
            return int(backed.n_obs * 0.9)

        runs.append(("VAE, one epoch streamed from h5ad", streamed))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every data set's rows")
    parser.add_argument("--precision", nargs="+", default=["float32"], choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--compile", nargs="+", default=["off"], choices=["off", "on"])
    parser.add_argument("--only", nargs="*", default=None, help="run the models whose name contains these words")
    parser.add_argument("--quick", action="store_true", help="1 epoch at 2%% of the rows")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.scale = 1, 0.02
    warnings.simplefilter("ignore")
    pk.settings.progress_bar = False
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    table = []
    for name_, train in model_runs(args):
        if args.only and not any(word.lower() in name_.lower() for word in args.only):
            continue
        for precision in args.precision:
            for compile_ in args.compile:
                pk.settings.precision, pk.settings.compile = precision, compile_ == "on"
                try:
                    row = timed(args.device, train)
                except Exception as error:  # report and go on: one model's failure should not hide the others
                    row = {"error": f"{type(error).__name__}: {str(error)[:80]}"}
                table.append({"model": name_, "precision": precision, "compile": compile_, **row})
                print(table[-1], flush=True)
    pk.settings.precision, pk.settings.compile = "float32", False
    print_table(table, f"training speed on {name} ({args.epochs} epochs, rows × {args.scale})")


if __name__ == "__main__":
    main()
