"""How quickly the panels redraw: Python time from a control change to an updated figure (target: < 100 ms for a
978-gene profile on CPU).

Each panel is driven from code exactly as a slider or dropdown in the browser drives it (the same observers run),
and ``panel.last_update_s`` (decode + figure update) and the whole callback's wall time are recorded. The models are
trained for a few epochs only: redraw speed does not depend on how well they fit.

Run: python benchmarks/widgets.py [--repeats 50] [--in-kernel]

``--in-kernel`` runs the same script inside a Jupyter kernel (nbclient), where every widget has a live comm, so the
time includes serialising each figure update into the messages a browser would receive.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

import perturbkit as pk  # noqa: E402
from perturbkit import widgets as W  # noqa: E402


def timed(panel, action, repeats: int) -> dict:
    """Median / 95th percentile of the callback wall time and of the panel's own redraw time."""
    wall, redraw = [], []
    for i in range(repeats):
        start = time.perf_counter()
        action(i)
        wall.append(time.perf_counter() - start)
        redraw.append(panel.last_update_s)
    wall_ms, redraw_ms = np.array(wall) * 1e3, np.array(redraw) * 1e3
    return {
        "median_ms": np.median(wall_ms),
        "p95_ms": np.percentile(wall_ms, 95),
        "redraw_median_ms": np.median(redraw_ms),
        "max_ms": wall_ms.max(),
    }


def main(repeats: int) -> None:
    torch.set_num_threads(2)
    pk.settings.progress_bar = False
    bulk = pk.datasets.simulate_bulk(n_drugs=200, n_genes=978, seed=0)
    dcs = pk.tl.train_deepcellstate(bulk, max_epochs=2, max_rounds=1, device="cpu")
    cyc = pk.tl.train_cyclecdr(bulk, drug_encoder="onehot", max_epochs=2, device="cpu")
    expression = bulk[~bulk.obs["control"].to_numpy()].copy()
    pk.pp.scale(expression, method="minmax")
    vae = pk.tl.train_vae(expression, kind="beta", beta=0.3, hidden=(500,), max_epochs=2, device="cpu")
    morph = pk.datasets.simulate_morphology(seed=0)
    pk.pp.scale(morph, method="minmax")
    morph_vae = pk.tl.train_vae(morph, kind="mmd", max_epochs=2, device="cpu")

    rows = []

    def slider_moves(panel, feature):
        slider = panel.controls["sliders"][feature]
        positions = np.linspace(slider.min, slider.max, repeats)  # every move a new value, so every move redraws
        return lambda i: setattr(slider, "value", float(positions[i]))

    for name, model, data in (
        ("VAE (978 genes)", vae, expression),
        ("DeepCellState (978 genes, 128 latent)", dcs, bulk),
        ("cycleCDR (978 genes)", cyc, bulk),
    ):
        panel = W.LatentTraversal(data, model=model)
        feature = next(iter(panel.controls["sliders"]))
        rows.append(
            {
                "panel": "LatentTraversal",
                "model": name,
                "action": "slider",
                **timed(panel, slider_moves(panel, feature), repeats),
            }
        )
        panel.controls["order"].value = "sorted"
        rows.append(
            {
                "panel": "LatentTraversal",
                "model": name,
                "action": "slider (sorted bars)",
                **timed(panel, slider_moves(panel, feature), repeats),
            }
        )

    for name, model in (("DeepCellState", dcs), ("cycleCDR", cyc)):
        panel = W.ResponseExplorer(bulk, model=model)
        drugs = list(panel.controls["drug"].options)
        rows.append(
            {
                "panel": "ResponseExplorer",
                "model": f"{name} (978 genes)",
                "action": "pick drug",
                **timed(
                    panel,
                    lambda i, panel=panel, drugs=drugs: setattr(panel.controls["drug"], "value", drugs[i % len(drugs)]),
                    repeats,
                ),
            }
        )

    panel = W.LSAExplorer(morph, model=morph_vae)
    groups = list(panel.table.index)
    rows.append(
        {
            "panel": "LSAExplorer",
            "model": f"MMD-VAE ({morph.n_obs} wells, {morph.n_vars} features)",
            "action": "click table row",
            **timed(panel, lambda i: setattr(panel.controls["table"], "value", groups[i % len(groups)]), repeats),
        }
    )

    panel = W.EmbeddingExplorer(morph, basis="pca", color="moa")
    colours = ["moa", "dose", "drug", "plate"]
    rows.append(
        {
            "panel": "EmbeddingExplorer",
            "model": f"PCA of {morph.n_obs} wells",
            "action": "recolour",
            **timed(panel, lambda i: setattr(panel.controls["color"], "value", colours[i % 4]), min(repeats, 20)),
        }
    )
    rows.append(
        {
            "panel": "EmbeddingExplorer",
            "model": f"PCA of {morph.n_obs} wells",
            "action": "click point",
            **timed(panel, lambda i: panel.show_profile(i), repeats),
        }
    )
    print_table(
        rows,
        f"Panel redraw time on CPU ({torch.get_num_threads()} torch threads), {repeats} moves each; target < 100 ms",
    )


def in_kernel(repeats: int) -> None:
    """Run this script in a Jupyter kernel and print what it printed."""
    import nbformat
    from nbclient import NotebookClient

    cell = nbformat.v4.new_code_cell(f"%run {Path(__file__).resolve()} --repeats {repeats}")
    notebook = nbformat.v4.new_notebook(cells=[cell])
    NotebookClient(notebook, timeout=3600, kernel_name="python3").execute()
    print("(inside a Jupyter kernel: figure updates are serialised to the comm)")
    for output in cell.outputs:
        print(output.get("text", ""), end="")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--in-kernel", action="store_true")
    args = parser.parse_args()
    in_kernel(args.repeats) if args.in_kernel else main(args.repeats)
