"""DeepCellState 10-fold cross-validation at the paper's scale: time and accuracy of each speed lever (issue 14).

Simulated L1000-like data (``simulate_bulk``: 1,750 drugs, PC3 and MCF7, 978 genes), MCF7 predicted from PC3,
the same folds for every variant. Prints, per variant: seconds for 10 folds (the folds run, × 10 / their number
when fewer are run: the table says which), mean PCC of DeepCellState, of the ridge map and of the naive
baseline, and the fold increase over naive.

    python benchmarks/deepcellstate_cv.py                          # 10 folds, every variant (long)
    python benchmarks/deepcellstate_cv.py --quick                  # 2 folds, 500 drugs × 250 genes
    python benchmarks/deepcellstate_cv.py --variants final --threads 2 --jobs 2   # 2 cores: 2 folds at once
    python benchmarks/deepcellstate_cv.py --variants final --threads 2 --stack off on  # the folds as one stack
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from _common import print_table  # noqa: E402

import perturbkit as pk  # noqa: E402
from perturbkit.datasets._simulate_l1000 import simulate_l1000  # noqa: E402
from perturbkit.models.deepcellstate import DeepCellState  # noqa: E402

#: training options of each variant (the exact speed-ups of issue 14 are always on: the ridge path computed once
#: per stage, decoder fine-tuning without encoder gradients and only for the target's decoder)
VARIANTS: dict[str, dict] = {
    # the schedule of the issue-13 defaults: patience 5 for the rounds, pretraining up to max_epochs, 2 epochs per
    # cell line per round
    "schedule before": {"round_patience": 5, "pretrain_steps": None, "epochs_per_round": 2},
    # one schedule lever at a time
    "round patience 3": {"round_patience": 3, "pretrain_steps": None, "epochs_per_round": 2},
    "pretraining ≤ 240 steps": {"round_patience": 5, "pretrain_steps": 240, "epochs_per_round": 2},
    "both": {"round_patience": 3, "pretrain_steps": 240, "epochs_per_round": 2},
    "both + batch 256": {"round_patience": 3, "pretrain_steps": 240, "epochs_per_round": 2, "batch_size": 256},
    "round patience 3 + 1 epoch per round": {"round_patience": 3, "pretrain_steps": None, "epochs_per_round": 1},
    # the defaults (issue 14): round patience 3, pretraining at most 240 steps (10 epochs at the paper's scale),
    # 1 epoch per cell line per round
    "final": {},
}


def _epoch_counter() -> list:
    """Record each trained model's epochs per stage (pretraining, rounds, decoder fine-tuning)."""
    counts: list = []
    train = DeepCellState.train

    def counted(self, *args, **kwargs):
        out = train(self, *args, **kwargs)
        stage = self.history_frame.stage.astype(str)
        counts.append(
            {
                "pretrain": int((stage == "pretrain").sum()),
                "round": int(stage.str.startswith("round ").sum()),
                "decoder": int(stage.str.startswith("decoder").sum()),
            }
        )
        return out

    DeepCellState.train = counted
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--generator", default="bulk", choices=["bulk", "l1000"])
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated data and of the split")
    parser.add_argument("--n-drugs", type=int, default=1750)
    parser.add_argument("--n-genes", type=int, default=978)
    parser.add_argument("--folds", nargs="+", type=int, default=list(range(10)), help="which of the 10 folds to run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (split between the --jobs processes)")
    parser.add_argument("--jobs", type=int, default=1, help="folds trained at once, one process each (n_jobs=)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stack", nargs="+", default=["off"], choices=["off", "on"], help="stack_folds= of each run")
    parser.add_argument("--quick", action="store_true", help="2 folds of 500 drugs × 250 genes")
    args = parser.parse_args()
    if args.quick:
        args.n_drugs, args.n_genes, args.folds = 500, 250, [0, 1]
    torch.set_num_threads(args.threads)
    pk.settings.progress_bar = False
    if args.generator == "bulk":
        adata = pk.datasets.simulate_bulk(n_drugs=args.n_drugs, n_genes=args.n_genes, frac_missing=0.0, seed=args.seed)
    else:
        adata = simulate_l1000(n_drugs=args.n_drugs, n_genes=args.n_genes, seed=args.seed)
    rows = []
    counts = _epoch_counter()
    runs = [(name, stack) for name in args.variants for stack in args.stack]
    for name, stack in runs:
        counts.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        cv = pk.tl.cross_validate_deepcellstate(
            adata,
            source="PC3",
            target="MCF7",
            n_folds=10,
            folds=args.folds,
            seed=args.seed,
            device=args.device,
            n_jobs=args.jobs,
            stack_folds=stack == "on",
            train_options=VARIANTS[name] or None,
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        scale = 10 / len(args.folds)
        summary = pk.tl.deepcellstate_compare_to_baseline(cv)
        rows.append(
            {
                "variant": name + (" (folds stacked)" if stack == "on" else ""),
                "folds run": len(args.folds),
                "s (10 folds)": wall * scale,
                "CPU s (10 folds)": cpu * scale,
                "PCC": cv.pcc.mean(),
                "ridge PCC": cv.ridge_pcc.mean(),
                "naive PCC": cv.baseline_pcc.mean(),
                "fold increase": summary.fold_increase,
                "epochs/fold (pre+rounds+dec)": "+".join(
                    f"{sum(c[k] for c in counts) / len(counts):.0f}" for k in ("pretrain", "round", "decoder")
                )
                if counts
                else "(not counted: workers or stack)",
                "per-fold PCC": " ".join(f"{v:.3f}" for v in cv.groupby("fold").pcc.mean()),
            }
        )
        print(rows[-1], flush=True)
    extrapolated = "" if len(args.folds) == 10 else f"; seconds = {len(args.folds)} folds measured × {scale:g}"
    print_table(
        rows,
        f"DeepCellState {len(args.folds)} of 10 folds, MCF7 ← PC3, {args.generator} seed {args.seed}, "
        f"{args.n_drugs} drugs × {args.n_genes} genes, {args.threads} thread(s), {args.jobs} job(s){extrapolated}"
        + (" (CPU s: this process only)" if args.jobs > 1 else ""),
    )


if __name__ == "__main__":
    main()
