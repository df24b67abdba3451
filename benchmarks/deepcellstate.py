"""DeepCellState at the paper's scale: full 10-fold cross-validation, MCF7 from PC3.

Simulated L1000-like data with ~1,750 drugs measured in 2 cell lines × 978 genes (the paper's MCF-7/PC-3 set).
Prints wall time, peak memory, and mean PCC of the model, the ridge map and the naive baseline, on CPU and on a
GPU when one is present.

    python benchmarks/deepcellstate.py                 # CPU (+ GPU if present), 10 folds
    python benchmarks/deepcellstate.py --folds 2       # a quicker look
"""

from __future__ import annotations

import argparse

import torch
from _common import available_devices, measure, print_table

import perturbkit as pk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-drugs", type=int, default=1750)
    parser.add_argument("--folds", type=int, default=10, help="how many of the 10 folds to run")
    parser.add_argument("--device", default="all", help="cpu, cuda or all")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pk.settings.progress_bar = False
    adata = pk.datasets.simulate_bulk(n_drugs=args.n_drugs, frac_missing=0.0, seed=0)
    print(
        f"data: {adata.n_obs} signatures × {adata.n_vars} genes, "
        f"{adata.obs.loc[~adata.obs.control, 'drug'].nunique()} drugs, "
        f"cell lines {sorted(adata.obs.cell_line.unique())}"
    )
    rows = []
    for device in available_devices(args.device):
        with measure(device) as m:
            cv = pk.tl.cross_validate_deepcellstate(
                adata, source="PC3", target="MCF7", n_folds=10, folds=range(args.folds), device=device
            )
        summary = pk.tl.deepcellstate_compare_to_baseline(cv)
        rows.append(
            {
                "device": device,
                "folds": args.folds,
                "test drugs": len(cv),
                "wall s": m["seconds"],
                "s/fold": m["seconds"] / args.folds,
                "peak MB": m["peak_memory_mb"],
                "PCC": cv.pcc.mean(),
                "ridge PCC": cv.ridge_pcc.mean(),
                "baseline PCC": cv.baseline_pcc.mean(),
                "fold increase": summary.fold_increase,
            }
        )
    print_table(rows, "DeepCellState 10-fold cross-validation, MCF7 ← PC3 (paper: PCC 0.60 vs baseline 0.28)")


if __name__ == "__main__":
    main()
