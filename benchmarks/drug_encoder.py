"""Drug encoders on unseen drugs: pretrained GAT (fine-tuned and frozen) vs GAT from scratch vs Morgan fingerprint.

``pk.tl.benchmark(task="unseen_drug")`` on paired bulk data from ``pk.datasets.simulate_bulk`` (real drug scaffolds
and analogs with valid SMILES; a cell-line baseline so the controls matter). Drugs are held out by SMILES; every
encoder is trained with the same cycleCDR settings on identical folds (one benchmark call per encoder, same seed).
The table shows r2 and r2_degs (mean ± SD over the folds' drug × cell-line groups averaged per fold) and seconds.

    python benchmarks/drug_encoder.py                    # simulator seed 0 (where the settings were chosen)
    python benchmarks/drug_encoder.py --sim-seed 1       # the held-out simulator seed the test asserts on
    python benchmarks/drug_encoder.py --encoders gat_pretrained fingerprint --epochs 20 --folds 3
    python benchmarks/drug_encoder.py --encoders gat_pretrained_graph_readout gat_pretrained_no_graph_dropout
    /tmp/pyg/bin/python benchmarks/drug_encoder.py --gatconv   # GAT layer timing (a venv with torch_geometric)

"frozen" keeps the pretrained trunk fixed (only the GAT's readout and cycleCDR train); the library's
``drug_encoder="gat_pretrained"`` fine-tunes it. The ablations (``--encoders gat_pretrained_graph_readout
gat_scratch_graph_readout gat_pretrained_no_graph_dropout``) take the paper's graph-only readout, or the hybrid
readout without its graph-branch dropout. Variants are run by patching the encoder factory for the benchmark only.
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import torch

import perturbkit as pk
from perturbkit.models.cyclecdr import _model

#: cycleCDR scaled down for a CPU run (the same for every encoder); the drug embedding size is latent_dim.
NET = dict(hidden=(128,), latent_dim=32, batch_size=64, patience=None)
#: name -> (benchmark method, drug_encoder, encoder options that differ from the library's defaults)
ENCODERS = {
    "gat_pretrained": ("cyclecdr_gat", "gat_pretrained", {}),
    "gat_pretrained_frozen": ("cyclecdr_gat", "gat_pretrained", {"freeze": True}),
    "gat_scratch": ("cyclecdr_gat", "gat", {}),
    "fingerprint": ("cyclecdr_fingerprint", "fingerprint", {}),
}
#: ablations of the GAT's readout (not run by default): the paper's graph-only readout, no graph-branch dropout
ABLATIONS = {
    "gat_pretrained_graph_readout": ("cyclecdr_gat", "gat_pretrained", {"readout": "graph"}),
    "gat_scratch_graph_readout": ("cyclecdr_gat", "gat", {"readout": "graph"}),
    "gat_pretrained_no_graph_dropout": ("cyclecdr_gat", "gat_pretrained", {"graph_dropout": 0.0}),
}
VARIANTS = {**ENCODERS, **ABLATIONS}


@contextmanager
def encoder_options(kind: str, options: dict):
    """Build every ``kind`` encoder with ``options`` (benchmark only: cycleCDR takes no encoder options)."""
    original = _model.make_drug_encoder

    def make(kind_, **kwargs):
        return original(kind_, **({**kwargs, **options} if kind_ == kind else kwargs))

    _model.make_drug_encoder = make
    try:
        yield
    finally:
        _model.make_drug_encoder = original


def simulate(seed: int, n_drugs: int):
    return pk.datasets.simulate_bulk(n_drugs=n_drugs, n_genes=100, n_cell_lines=2, baseline=1.0, seed=seed)


def run(adata, encoder: str, *, epochs: int, n_folds: int, seed: int = 0) -> pd.DataFrame:
    """The benchmark table (one row per fold × held-out drug × cell line) of one encoder."""
    method, kind, options = VARIANTS[encoder]
    kwargs = dict(
        task="unseen_drug",
        methods=[method],
        n_folds=n_folds,
        n_degs=20,
        seed=seed,
        method_options={method: {"drug_encoder": kind, **NET, "max_epochs": epochs}},
    )
    with encoder_options(kind, options):
        table = pk.tl.benchmark(adata, **kwargs)
    return table.assign(encoder=encoder)


def summarise(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """encoder × (r2, r2_degs as fold means: mean ± SD over folds; seconds per fold)."""
    rows = []
    for table in tables:
        per_fold = table.groupby("fold")[["r2", "r2_degs", "train_seconds"]].mean()
        rows.append(
            {
                "encoder": table["encoder"].iloc[0],
                "r2": f"{per_fold['r2'].mean():.3f} ± {per_fold['r2'].std(ddof=1):.3f}",
                "r2_degs": f"{per_fold['r2_degs'].mean():.3f} ± {per_fold['r2_degs'].std(ddof=1):.3f}",
                "seconds/fold": round(float(per_fold["train_seconds"].mean()), 1),
                "r2_degs_mean": per_fold["r2_degs"].mean(),
            }
        )
    return pd.DataFrame(rows).sort_values("r2_degs_mean", ascending=False).drop(columns="r2_degs_mean")


def gatconv_timing(n_molecules=(32, 256), repeats: int = 5) -> pd.DataFrame:
    """Milliseconds per forward (and forward + backward) of the two-layer GAT trunk + max pooling on batches of
    Repurposing Hub molecules: perturbkit's GraphAttentionLayer against torch_geometric's GATConv (same sizes,
    self loops added by the batcher). Needs torch_geometric (not a perturbkit dependency): run it in a venv.
    """
    from torch_geometric.nn import GATConv, global_max_pool

    from perturbkit.io._repurposing import _load
    from perturbkit.models.cyclecdr._drug_encoders import (
        N_ATOM_FEATURES,
        GraphAttentionLayer,
        batch_graphs,
        mol_graph,
        segment_max,
    )

    samples = Path(__file__).resolve().parents[2] / "shared/data/repurposing_hub/repurposing_samples_20200324.txt.gz"
    graphs = []
    for i, smiles in enumerate(_load(samples, "samples")["smiles"].dropna().unique()[: max(n_molecules) + 20]):
        try:
            graphs.append(mol_graph(str(i), smiles))
        except pk.errors.PerturbkitInputError:
            pass

    class Trunk(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.pyg = layer is GATConv
            extra = {"add_self_loops": False} if self.pyg else {}
            self.gat1 = layer(N_ATOM_FEATURES, 64, heads=10, **extra)
            self.gat2 = layer(640, 64, heads=1, concat=False, **extra)

        def forward(self, g):
            h = self.gat2(torch.nn.functional.elu(self.gat1(g.x, g.edge_index)), g.edge_index)
            return global_max_pool(h, g.batch, size=g.n_graphs) if self.pyg else segment_max(h, g.batch, g.n_graphs)

    rows = []
    for n in n_molecules:
        g = batch_graphs(graphs[:n])
        for name, layer in (
            ("perturbkit GraphAttentionLayer", GraphAttentionLayer),
            ("torch_geometric GATConv", GATConv),
        ):
            torch.manual_seed(0)
            net = Trunk(layer)
            row = {"molecules": n, "atoms": int(g.x.shape[0]), "layer": name}
            for mode in ("forward", "forward+backward"):
                for rep in range(repeats + 1):  # the first run warms up
                    start = time.perf_counter()
                    if mode == "forward":
                        with torch.no_grad():
                            net(g)
                    else:
                        net.zero_grad()
                        net(g).sum().backward()
                    if rep == 0:
                        total = 0.0
                    else:
                        total += time.perf_counter() - start
                row[f"{mode} ms"] = round(1000 * total / repeats, 1)
            rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-seed", type=int, default=0)
    parser.add_argument("--n-drugs", type=int, default=120)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(VARIANTS))
    parser.add_argument("--gatconv", action="store_true", help="only time GraphAttentionLayer against GATConv")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pk.settings.progress_bar = False
    if args.gatconv:
        print(gatconv_timing().to_string(index=False))
        return
    adata = simulate(args.sim_seed, args.n_drugs)
    tables = []
    for encoder in args.encoders:
        start = time.perf_counter()
        tables.append(run(adata, encoder, epochs=args.epochs, n_folds=args.folds))
        print(f"{encoder}: {time.perf_counter() - start:.0f} s", flush=True)
    per_fold = pd.concat(tables).groupby(["encoder", "fold"])["r2_degs"].mean().unstack()
    print("\nr2_degs per fold\n" + per_fold.round(3).to_string())
    print(
        f"\nunseen drugs, simulate_bulk(n_drugs={args.n_drugs}, seed={args.sim_seed}), {args.folds} folds, "
        f"{args.epochs} epochs, cycleCDR {NET}\n" + summarise(tables).to_string(index=False)
    )
    print(f"(numpy {np.__version__}, torch {torch.__version__}, {torch.get_num_threads()} thread)")


if __name__ == "__main__":
    main()
