"""Every task of ``pk.tl.benchmark`` on the simulators: each method on the same folds, with its training time.

At ``--scale paper`` (the default) the data have the papers' sizes: DeepCellState's MCF-7/PC-3 set (~1,750 drugs ×
978 genes, 3 folds ≈ its 30% test split) and its seven-cell-line tensor (10 folds); cycleCDR's L1000 task
(unseen drugs, 10 µM-like signatures); scGen's held-out cell type (single cells, 3 cell types); the VAE paper's
consensus Cell Painting profiles (A|B groups). ``--scale quick`` runs small versions in a few minutes.

    python benchmarks/comparison.py                         # every task, paper scale (hours on 2 CPU cores)
    python benchmarks/comparison.py --scale quick           # every task, small
    python benchmarks/comparison.py --task cross_cell --run-folds 0 --device cuda   # one of the 3 folds
    python benchmarks/comparison.py --task cross_cell --generator l1000 --scale quick   # the second generator

``--generator l1000`` draws the bulk tasks (cross_cell, tensor_completion, unseen_drug) from
``pk.datasets.simulate_l1000`` (4 cell lines, cell-specific gene modules, Student-t noise, missing drugs) instead of
``simulate_bulk``; cross_cell predicts MCF7 from PC3.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

import perturbkit as pk
from perturbkit.tl._benchmark import TASK_METHODS

#: The papers' own numbers for the same comparisons (mean PCC per drug; DeepCellState paper).
PAPER = {
    "cross_cell": {"deepcellstate": 0.61, "anchor_vae": 0.48, "scgen": 0.22, "dual_gan": 0.26, "naive": 0.28},
    "tensor_completion": {"deepcellstate": 0.65, "dnpp": 0.53, "falrtc": 0.49},
}

SCALES = {
    "paper": {
        "cross_cell": dict(n_drugs=1750, n_cell_lines=2, frac_missing=0.0, folds=3),
        "tensor_completion": dict(n_drugs=1000, n_cell_lines=7, frac_missing=0.1, folds=10),
        "unseen_drug": dict(n_drugs=300, n_cell_lines=4, folds=5),
        "held_out_cell_type": dict(n_cells=6000, n_genes=1000, n_drugs=4, folds=3),
        "polypharmacology": dict(n_compounds=480, n_features=300, folds=5),
    },
    "quick": {
        "cross_cell": dict(n_drugs=200, n_cell_lines=2, frac_missing=0.0, folds=2, n_genes=200),
        "tensor_completion": dict(n_drugs=120, n_cell_lines=4, frac_missing=0.1, folds=3, n_genes=200),
        "unseen_drug": dict(n_drugs=80, n_cell_lines=2, folds=2, n_genes=200),
        "held_out_cell_type": dict(n_cells=1500, n_genes=300, n_drugs=2, folds=2),
        "polypharmacology": dict(n_compounds=120, n_features=100, folds=2),
    },
}


def make_data(task: str, size: dict, seed: int, generator: str = "bulk"):
    """The simulated data of one task."""
    size = {k: v for k, v in size.items() if k != "folds"}
    if task in ("cross_cell", "tensor_completion", "unseen_drug"):
        if generator == "l1000":
            return pk.datasets.simulate_l1000(seed=seed, **{**size, "n_cell_lines": max(4, size["n_cell_lines"])})
        return pk.datasets.simulate_bulk(seed=seed, **size)
    if task == "held_out_cell_type":
        import scanpy as sc

        adata = pk.datasets.simulate_single_cell(n_moas=min(4, size["n_drugs"]), seed=seed, **size)
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
        return adata
    adata = pk.datasets.simulate_morphology(seed=seed, **size)
    pk.pp.scale(adata, method="minmax")
    return adata


def summarise(table: pd.DataFrame, task: str) -> pd.DataFrame:
    """Mean (and SD over groups) of every metric per method, the mean training time per fold, and the paper's."""
    metrics = [c for c in table.columns if c not in ("task", "method", "fold", "group", "train_seconds")]
    grouped = table.groupby("method", sort=False)
    summary = grouped[metrics].mean()
    primary = table.attrs["primary_metric"]
    summary.insert(1 + metrics.index(primary), f"{primary}_sd", grouped[primary].std())
    summary["s_per_fold"] = table.groupby(["method", "fold"])["train_seconds"].first().groupby("method").mean()
    if task in PAPER:
        summary["paper"] = [PAPER[task].get(m, np.nan) for m in summary.index]
    return summary.sort_values(primary, ascending=not table.attrs["higher_is_better"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="all", choices=["all", *TASK_METHODS])
    parser.add_argument("--scale", default="paper", choices=list(SCALES))
    parser.add_argument("--folds", type=int, default=None, help="override the number of folds")
    parser.add_argument("--run-folds", default=None, help="comma-separated folds to run (default: all)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the task's methods")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generator", default="bulk", choices=["bulk", "l1000"], help="simulator of the bulk tasks")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", default=None, help="write each task's tidy table to <save>_<task>.csv")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pk.settings.progress_bar = False
    tasks = list(TASK_METHODS) if args.task == "all" else [args.task]
    for task in tasks:
        size = SCALES[args.scale][task]
        adata = make_data(task, size, args.seed, args.generator)
        pair = {"source": "PC3", "target": "MCF7"} if task == "cross_cell" and args.generator == "l1000" else {}
        table = pk.tl.benchmark(
            adata,
            task=task,
            methods=args.methods.split(",") if args.methods else None,
            n_folds=args.folds or size["folds"],
            folds=[int(f) for f in args.run_folds.split(",")] if args.run_folds else None,
            seed=args.seed,
            device=args.device,
            **pair,
        )
        if args.save:
            table.to_csv(f"{args.save}_{task}.csv", index=False)
        data_name = f"{args.generator}, " if task in ("cross_cell", "tensor_completion", "unseen_drug") else ""
        print(f"\n{task} ({data_name}{args.scale} scale: {adata.n_obs} rows × {adata.n_vars} features, {size})")
        print(summarise(table, task).to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
