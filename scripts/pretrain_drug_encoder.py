"""Build perturbkit's shipped pretrained GAT drug encoder (perturbkit/data/drug_encoder_gat.pt).

Pretrains the GAT trunk of cycleCDR's drug encoder (pk.tl.pretrain_drug_encoder: masked atom prediction plus a
contrastive view) on the unique SMILES of the Broad Drug Repurposing Hub sample table, on one CPU thread, and
writes the checkpoint (trunk weights + metadata) into the package::

    python scripts/pretrain_drug_encoder.py                     # ../shared/data/repurposing_hub/... by default
    python scripts/pretrain_drug_encoder.py SAMPLES.txt.gz --max-epochs 20 --output /tmp/encoder.pt

The defaults are those of ``pk.tl.pretrain_drug_encoder`` (the seed 0, all unique SMILES); the run takes about
ten CPU-minutes.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLES = ROOT.parent / "shared" / "data" / "repurposing_hub" / "repurposing_samples_20200324.txt.gz"
DEFAULT_OUTPUT = ROOT / "perturbkit" / "data" / "drug_encoder_gat.pt"


def main() -> None:
    """Parse the arguments and run."""
    import torch

    from perturbkit.io._repurposing import _load
    from perturbkit.models.cyclecdr._pretrain import DEFAULTS
    from perturbkit.tl._pretrain import pretrain_drug_encoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", nargs="?", default=str(DEFAULT_SAMPLES), help="repurposing_samples_*.txt(.gz)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--max-epochs", type=int, default=DEFAULTS.max_epochs)
    parser.add_argument("--max-molecules", type=int, default=None, help="subsample the unique SMILES (seeded)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    table = _load(args.samples, "samples")  # perturbkit's Repurposing Hub reader ('!' lines are comments)
    smiles = table["smiles"].dropna().astype(str).str.strip()
    unique = smiles[smiles != ""].drop_duplicates().tolist()
    if args.max_molecules is not None and args.max_molecules < len(unique):
        import numpy as np

        keep = np.sort(np.random.default_rng(args.seed).choice(len(unique), args.max_molecules, replace=False))
        unique = [unique[i] for i in keep]
    print(f"{len(table)} samples, {len(unique)} unique SMILES")
    start = time.perf_counter()
    result = pretrain_drug_encoder(unique, max_epochs=args.max_epochs, seed=args.seed, device="cpu", progress=True)
    result.metadata["source"] = Path(args.samples).name
    result.metadata["cpu_threads"] = torch.get_num_threads()
    result.save(args.output)
    m = result.metadata
    print(f"done in {time.perf_counter() - start:.0f} s: {result!r}")
    print(f"first losses {m['first_losses']}")
    print(f"final losses {m['final_losses']}")
    print(f"held-out masked-atom accuracy {m['masked_accuracy']:.3f} vs majority class {m['majority_accuracy']:.3f}")
    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
