"""Command line: ``python -m perturbkit demo`` (also installed as ``perturbkit demo``)."""

from __future__ import annotations

import argparse
import sys
import time


def demo(args) -> int:
    """Simulate L1000-like data, train DeepCellState on held-out drugs, and print what it learned."""
    import numpy as np

    import perturbkit as pk
    from perturbkit.models._profiles import CellDrugProfiles
    from perturbkit.models.deepcellstate import compare_to_baseline, evaluate_holdout

    pk.settings.progress_bar = not args.quiet
    start = time.perf_counter()
    adata = pk.datasets.simulate_bulk(seed=args.seed, **({} if args.n_drugs is None else {"n_drugs": args.n_drugs}))
    profiles = CellDrugProfiles.from_adata(adata)
    print(
        f"Simulated {adata.n_obs} L1000-like signatures × {adata.n_vars} genes: "
        f"{len(profiles.drugs)} drugs in {', '.join(profiles.cell_lines)} (truth in adata.uns['simulation'])."
    )
    source, target = args.source, args.target
    both = np.flatnonzero(profiles.drugs_in_all([source, target]))
    test = np.sort(np.random.default_rng(args.seed).permutation(both)[: max(2, len(both) // 10)])
    print(
        f"Training DeepCellState on all drugs but {len(test)} held-out ones, then predicting their {target} "
        f"profiles from {source} ..."
    )
    results = evaluate_holdout(profiles, test, source=source, target=target, seed=args.seed)
    summary = compare_to_baseline(results)
    print(f"\nHeld-out drugs: {len(results)}   ({time.perf_counter() - start:.0f} s)")
    print(f"  DeepCellState  mean PCC {results.pcc.mean():.3f}")
    print(f"  ridge map      mean PCC {results.ridge_pcc.mean():.3f}")
    print(f"  naive baseline mean PCC {results.baseline_pcc.mean():.3f}  (the {source} profile itself)")
    print(f"  fold increase over baseline {summary.fold_increase:.2f}×, paired t-test p = {summary.p_value:.1e}")
    return 0


def main(argv=None) -> int:
    """Run the ``perturbkit`` command line (``argv`` defaults to ``sys.argv[1:]``); return the exit code."""
    parser = argparse.ArgumentParser(prog="perturbkit", description="perturbkit command line")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="simulate data, train DeepCellState, print model vs baseline PCC")
    p.add_argument("--source", default="PC3")
    p.add_argument("--target", default="MCF7")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-drugs", type=int, default=None, help="number of simulated drugs (default: the simulator's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
