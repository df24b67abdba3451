"""perturbkit at scale: the four measurements of "Running at scale", one table each.

1. ``scale_stream.py``: a VAE trained for one epoch streamed from stores 1×, 3× and 10× larger than the memory
   the run may use (an address-space limit set in the child process): peak RSS and rows per second.
2. ``scale_gctx.py``: converting a simulated LINCS GCTX of 12,328 genes × 200,000 signatures (the real file's
   layout and chunking) into zarr and h5ad stores, with peak memory.
3. ``scale_ddp.py``: one process against two gloo processes under ``torchrun``.
4. ``scale_sweep.py``: an Optuna study shared by two worker processes through one sqlite storage.

    python benchmarks/scale.py                       # everything at full size (tens of minutes, ~40 GB of disk)
    python benchmarks/scale.py --quick               # every section small, in a minute or two
    python benchmarks/scale.py --sections ddp sweep  # some sections

Each section is its own script (run it alone for its options); this one runs them in turn, so that no two
measurements share the cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

SECTIONS = {
    "stream": "scale_stream.py",
    "gctx": "scale_gctx.py",
    "ddp": "scale_ddp.py",
    "sweep": "scale_sweep.py",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes in every section")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    args = parser.parse_args()
    here = Path(__file__).parent
    failed = []
    for name in args.sections:
        command = [sys.executable, str(here / SECTIONS[name]), *(["--quick"] if args.quick else [])]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        if subprocess.run(command).returncode != 0:
            failed.append(name)
        print(f"=== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    if failed:
        sys.exit(f"sections that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
