"""Choosing DeepCellState's defaults on two independent L1000-like generators (issue 13).

Every candidate setting is scored with ``pk.tl.benchmark(task="cross_cell")`` (MCF7 from PC3, drugs held out in
every cell line, 5-fold split) on the same folds as the ridge map and the naive baseline, on
``pk.datasets.simulate_bulk`` and ``simulate_l1000``. Prints one row per (candidate, generator, seed): mean PCC of
DeepCellState, ridge and naive, the fold increase over naive, and seconds per fold.

    python benchmarks/deepcellstate_defaults.py                          # tuning: seed 0, folds 0-1, 250 genes
    python benchmarks/deepcellstate_defaults.py --seeds 1 2 --candidates defaults paper   # confirmation
    python benchmarks/deepcellstate_defaults.py --n-genes 978 --folds 0 1 2 3 4          # full size
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import perturbkit as pk  # noqa: E402
from perturbkit.datasets._simulate_l1000 import simulate_l1000  # noqa: E402

PAPER = {"lr": 1e-4, "decoder_lr": 1e-5, "input_dropout": 0.5, "l1": 1e-7, "decoder_dropout": 0.0, "skip_map": "full"}
CANDIDATES: dict[str, dict] = {
    # the defaults before issue 13 (tuned on simulate_bulk only)
    "old": {"lr": 1e-3, "decoder_lr": 1e-4, "decoder_dropout": 0.0, "skip_map": "full"},
    # the paper's settings
    "paper": PAPER,
    # the reference code for two cell lines: decoder dropout 0.8 (Keras rate), per-gene skip weight
    "reference": {**PAPER, "decoder_dropout": 0.8, "skip_map": "diagonal"},
    # the reference code's setting for more cell types
    "reference_many": {**PAPER, "input_dropout": 0.2, "l1": 1e-8, "decoder_dropout": 0.8, "skip_map": "diagonal"},
    # one reference-code difference at a time, at the faster learning rates
    "old+decoder_dropout": {"lr": 1e-3, "decoder_lr": 1e-4, "decoder_dropout": 0.8, "skip_map": "full"},
    "old+diagonal_skip": {"lr": 1e-3, "decoder_lr": 1e-4, "decoder_dropout": 0.0, "skip_map": "diagonal"},
    "fast_reference": {"lr": 1e-3, "decoder_lr": 1e-4, "decoder_dropout": 0.8, "skip_map": "diagonal"},
    # the reference code's regularisation for more cell types, at the faster learning rates
    "fast_many": {"lr": 1e-3, "decoder_lr": 1e-4, "input_dropout": 0.2, "l1": 1e-8, "decoder_dropout": 0.0},
    # the skip path as a fixed ridge map between cell lines (closed form); the network learns the residual
    "old+ridge_skip": {"lr": 1e-3, "decoder_lr": 1e-4, "decoder_dropout": 0.0, "skip_map": "ridge"},
    "paper+ridge_skip": {**PAPER, "skip_map": "ridge"},
    "old+ridge_skip+input_dropout_0.2": {"lr": 1e-3, "decoder_lr": 1e-4, "input_dropout": 0.2, "skip_map": "ridge"},
    "old+ridge_skip+latent_32": {"lr": 1e-3, "decoder_lr": 1e-4, "latent_dim": 32, "skip_map": "ridge"},
    "old+ridge_skip+patience_10": {"lr": 1e-3, "decoder_lr": 1e-4, "patience": 10, "skip_map": "ridge"},
    "old+ridge_skip+validation_0.1": {"lr": 1e-3, "decoder_lr": 1e-4, "validation_fraction": 0.1, "skip_map": "ridge"},
    "old+ridge_skip+decoder_dropout_0.5": {"lr": 1e-3, "decoder_lr": 1e-4, "decoder_dropout": 0.5, "skip_map": "ridge"},
}


def generate(kind: str, *, seed: int, n_drugs: int, n_genes: int):
    if kind == "bulk":
        return pk.datasets.simulate_bulk(n_drugs=n_drugs, n_genes=n_genes, seed=seed)
    return simulate_l1000(n_drugs=n_drugs, n_genes=n_genes, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--generators", nargs="+", default=["bulk", "l1000"], choices=["bulk", "l1000"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--folds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--n-drugs", type=int, default=500)
    parser.add_argument("--n-genes", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pk.settings.progress_bar = False
    header = f"{'candidate':34s} {'generator':9s} {'seed':>4s} {'DCS':>6s} {'ridge':>6s} {'naive':>6s} "
    header += f"{'fold×':>6s} {'s/fold':>7s}"
    print(header)
    print("-" * len(header), flush=True)
    for kind in args.generators:
        for seed in args.seeds:
            adata = generate(kind, seed=seed, n_drugs=args.n_drugs, n_genes=args.n_genes)
            baselines = None
            for name in args.candidates:
                methods = ["deepcellstate"] if baselines is not None else ["deepcellstate", "ridge", "naive"]
                table = pk.tl.benchmark(
                    adata,
                    task="cross_cell",
                    methods=methods,
                    source="PC3",
                    target="MCF7",
                    n_folds=5,
                    folds=args.folds,
                    seed=seed,
                    method_options={"deepcellstate": CANDIDATES[name]},
                )
                means = table.groupby("method")["pearson"].mean()
                if baselines is None:
                    baselines = means
                seconds = table[table.method == "deepcellstate"].groupby("fold")["train_seconds"].first().mean()
                dcs, ridge, naive = means["deepcellstate"], baselines["ridge"], baselines["naive"]
                print(
                    f"{name:34s} {kind:9s} {seed:4d} {dcs:6.3f} {ridge:6.3f} {naive:6.3f} {dcs / naive:6.2f} "
                    f"{seconds:7.1f}",
                    flush=True,
                )
    print(f"(n_drugs={args.n_drugs}, n_genes={args.n_genes}, folds {args.folds} of 5, MCF7 from PC3)")


if __name__ == "__main__":
    main()
