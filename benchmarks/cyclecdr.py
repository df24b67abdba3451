"""cycleCDR at the L1000 10 µM scale: ~45,000 (control, treated) pairs × 978 genes, ~1,500 drugs.

Simulated paired bulk data (``pk.datasets.simulate_bulk`` with a cell-line baseline, so the controls matter):
1,500 drugs × 10 cell lines × 3 conditions = 45,000 treated profiles. 10 % of the drugs are held out by name and
predicted from their SMILES. For each drug encoder (fingerprint, GAT) and device (CPU, and CUDA when present)
cycleCDR trains for a fixed number of epochs (the paper trains 100; ``--epochs``) and the script prints wall time
per epoch, peak memory, how many drug embeddings are computed per epoch (the network embeds each *unique* drug of
a batch once), and the held-out metrics of ``evaluate_response`` beside the no-change and mean-response baselines.

    python benchmarks/cyclecdr.py                     # full scale, 2 epochs, CPU (+ GPU if present)
    python benchmarks/cyclecdr.py --scale 0.2         # a quicker look: 300 drugs, 9,000 pairs
    python benchmarks/cyclecdr.py --encoders fingerprint --device cpu --epochs 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import available_devices, measure, print_table

import perturbkit as pk
from perturbkit.metrics._response import evaluate_response
from perturbkit.models.baselines import control_means, response_baselines
from perturbkit.models.cyclecdr import _drug_encoders, _model
from perturbkit.models.cyclecdr._module import CycleCDRNetwork
from perturbkit.tl import train_cyclecdr

METRICS = ("r2", "r2_degs", "explained_variance", "explained_variance_degs")


class Probe:
    """Counts drug-encoder calls (and drugs embedded) and timestamps the start of training and every epoch.

    It wraps ``DrugEncoder.embed`` and the ``fit`` used by the model only for the benchmark; nothing in the
    library changes.
    """

    def __init__(self):
        self.calls = 0
        self.train_calls = 0
        self.drugs = 0
        self.samples = 0
        self.fit_start = None
        self.epoch_ends: list[float] = []

    def __enter__(self):
        self._embed, self._fit = _drug_encoders.DrugEncoder.embed, _model.fit
        self._drug_embedding = CycleCDRNetwork.drug_embedding
        probe = self

        def drug_embedding(net, names, index, smiles, dose=None):
            probe.samples += int(len(index))
            return probe._drug_embedding(net, names, index, smiles, dose)

        def embed(encoder, names, smiles=None):
            probe.calls += 1
            probe.train_calls += int(encoder.training)
            probe.drugs += len(names)
            return probe._embed(encoder, names, smiles)

        def fit(*args, history=None, **kwargs):
            append = history.append

            def timed_append(record):
                probe.epoch_ends.append(time.perf_counter())
                append(record)

            history.append = timed_append
            probe.fit_start = time.perf_counter()
            try:
                return probe._fit(*args, history=history, **kwargs)
            finally:
                del history.append

        _drug_encoders.DrugEncoder.embed = embed
        CycleCDRNetwork.drug_embedding = drug_embedding
        _model.fit = fit
        return self

    def __exit__(self, *exc):
        _drug_encoders.DrugEncoder.embed, _model.fit = self._embed, self._fit
        CycleCDRNetwork.drug_embedding = self._drug_embedding

    def epoch_seconds(self, device: str) -> list[float]:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        marks = [self.fit_start, *self.epoch_ends]
        return [float(v) for v in np.diff(marks)]


def simulate(scale: float, n_cell_lines: int, conditions: int, seed: int):
    n_drugs = max(20, int(round(1500 * scale)))
    adata = pk.datasets.simulate_bulk(
        n_drugs=n_drugs,
        n_cell_lines=n_cell_lines,
        conditions_per_drug=conditions,
        n_genes=978,
        baseline=1.0,
        frac_missing=0.0,
        seed=seed,
    )
    return adata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 1,500 drugs (0.2: a quick look)")
    parser.add_argument("--cell-lines", type=int, default=10)
    parser.add_argument("--conditions", type=int, default=3, help="(dose, time) conditions per drug and cell line")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--encoders", default="fingerprint,gat")
    parser.add_argument("--device", default="all", help="cpu, cuda or all")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--test-fraction", type=float, default=0.1, help="drugs held out by name")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pk.settings.progress_bar = False

    start = time.perf_counter()
    adata = simulate(args.scale, args.cell_lines, args.conditions, seed=0)
    is_control = adata.obs["control"].to_numpy()
    drugs = np.array(sorted(adata.obs.loc[~is_control, "drug"].unique()))
    test = set(
        np.random.default_rng(0).choice(drugs, max(1, int(round(args.test_fraction * len(drugs)))), replace=False)
    )
    is_test = adata.obs["drug"].isin(test).to_numpy() & ~is_control
    train = adata[~is_test].copy()
    truth = adata[is_test | is_control]
    sources = control_means(train)
    smiles = dict(zip(adata.obs.loc[is_test, "drug"], adata.obs.loc[is_test, "smiles"], strict=True))
    n_train = int((~train.obs["control"].to_numpy()).sum())
    print(
        f"data ({time.perf_counter() - start:.1f} s): {adata.n_obs} profiles ({int((~is_control).sum())} treated, "
        f"{int(is_control.sum())} controls) × {adata.n_vars} genes, {len(drugs)} drugs in {args.cell_lines} cell "
        f"lines; training on {n_train} pairs of {len(drugs) - len(test)} drugs, testing {len(test)} unseen drugs"
    )

    def score(pred) -> dict:
        table = evaluate_response(pred, truth, groupby=["cell_line", "drug"], control="control", n_degs=50)
        return {m: float(table[m].mean()) for m in METRICS}

    rows = []
    for name, pred in response_baselines(sources, drugs=list(smiles), training_data=train).items():
        rows.append({"model": f"baseline: {name}", "device": "-", **score(pred)})
    for device in available_devices(args.device):
        for encoder in [e.strip() for e in args.encoders.split(",") if e.strip()]:
            with Probe() as probe, measure(device) as m:
                model = train_cyclecdr(
                    train,
                    drug_encoder=encoder,
                    device=device,
                    max_epochs=args.epochs,
                    patience=None,
                    batch_size=args.batch_size,
                    seed=0,
                )
                epochs = probe.epoch_seconds(device)
            calls, embedded, samples = probe.calls, probe.drugs, probe.samples
            n_epochs = len(epochs)
            pred = model.predict(sources, drugs=smiles)
            rows.append(
                {
                    "model": f"cycleCDR {encoder}",
                    "device": device,
                    "epochs": n_epochs,
                    "setup s": m["seconds"] - sum(epochs),
                    "s/epoch": float(np.mean(epochs)),
                    "peak MB": m["peak_memory_mb"],
                    "train batches/epoch": probe.train_calls / max(n_epochs, 1),
                    "embed calls/epoch": calls / max(n_epochs, 1),
                    "samples/call": samples / max(calls, 1),
                    "drugs embedded/call": embedded / max(calls, 1),
                    **score(pred),
                }
            )
            print(
                f"  {encoder} on {device}: epochs {[round(e, 1) for e in epochs]} s, {calls} embed calls "
                f"({embedded} drugs embedded for {samples} samples; {len(drugs)} drugs, batch {args.batch_size})",
                flush=True,
            )
    print_table(
        rows,
        f"cycleCDR, L1000 10 µM scale × {args.scale:g}: {args.epochs} epochs, held-out drugs "
        f"(mean over cell line × drug groups; r² clipped at 0)",
    )
    print(
        "embed calls/epoch: one per training batch (= train batches/epoch) plus the validation pass; each call "
        "embeds the unique drugs of its batch once, so drugs embedded/call ≤ min(batch size, training drugs)."
    )


if __name__ == "__main__":
    main()
