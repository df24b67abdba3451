# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Which method to trust: every method on the same folds
#
# `pk.tl.benchmark(adata, task=...)` runs the papers' methods and the methods they were compared against on the
# same folds, scores them the same way and returns one tidy table (method, fold, group, one column per metric, and
# the training time). `pk.pl.benchmark` draws the papers' box plots from it.
#
# | task | the question | methods |
# |---|---|---|
# | `cross_cell` | a drug's profile in cell line B from its profile in A (DeepCellState) | DeepCellState, anchor VAE, scGen adapted, dual GAN, ridge, naive |
# | `tensor_completion` | hidden (drug, cell line) profiles from everything else | DeepCellState, DNPP, FaLRTC, ridge, naive |
# | `unseen_drug` | control → treated for drugs never seen, from SMILES (cycleCDR) | cycleCDR (GAT, fingerprint), CPA-style, no change, mean response |
# | `held_out_cell_type` | one cell type's response from the others' (scGen) | scGen, cycleCDR, CPA-style, no change, mean shift |
# | `polypharmacology` | A\|B ≈ A − DMSO + B in a latent space (VAE paper) | vanilla, β and MMD VAEs, PCA, original space |
#
# Every method trains at its paper's defaults unless `method_options` says otherwise. To run in a few minutes on a
# CPU, this tutorial uses small data, caps the epochs of some methods (`SMALL` below) and, in FAST mode, runs one fold
# of each split (`folds=[0]`: the same split, fewer of its folds); `benchmarks/comparison.py` runs every task at the
# papers' scale.

# %%
import os
import warnings

import scanpy as sc
import torch

import perturbkit as pk

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
pk.settings.progress_bar = False
FAST = os.environ.get("PERTURBKIT_FAST", "1") == "1"

# The papers' defaults, except where a method needs many minutes on a CPU: fewer epochs for the single-cell models
# and smaller networks for the drug-structure encoders (FAST: seconds per fold). method_options=None runs them all
# at their defaults.
SMALL = {
    "scgen": dict(max_epochs=30),
    "dual_gan": dict(max_epochs=100),
    "cyclecdr": dict(hidden=(128,), latent_dim=32, max_epochs=30),
    "cyclecdr_gat": dict(hidden=(128,), latent_dim=32, max_epochs=30),
    "cyclecdr_fingerprint": dict(hidden=(128,), latent_dim=32, max_epochs=30),
    "cpa": dict(hidden=(128, 128), latent_dim=32, max_epochs=60),
}


def small(task):
    """The SMALL options of one task's methods."""
    return {m: SMALL[m] for m in pk.tl._benchmark.TASK_METHODS[task] if m in SMALL} if FAST else None


def summary(table):
    """Mean of every metric per method, and the mean training time per fold."""
    metrics = [c for c in table.columns if c not in ("task", "method", "fold", "group", "train_seconds")]
    out = table.groupby("method")[metrics].mean()
    out["seconds per fold"] = table.groupby(["method", "fold"])["train_seconds"].first().groupby("method").mean()
    return out.sort_values(table.attrs["primary_metric"], ascending=not table.attrs["higher_is_better"]).round(3)


# %% [markdown]
# ## 1. Cross-cell prediction (DeepCellState's table)
#
# Simulated L1000-like signatures in two cell lines. Each fold holds a third of the drugs out of training in **both**
# cell lines; every method predicts their MCF7 profiles from their PC3 profiles. The score is the Pearson correlation
# over genes, per drug. The paper (MCF-7 ← PC-3, 30% test) reports dual GAN 0.26, scGen adapted 0.22, anchor VAE
# 0.48 and DeepCellState 0.61 against a naive 0.28.

# %%
bulk = pk.datasets.simulate_bulk(n_drugs=150 if FAST else 1750, frac_missing=0.0, seed=0)  # 978 genes
cross = pk.tl.benchmark(
    bulk, task="cross_cell", n_folds=3, folds=[0] if FAST else None, method_options=small("cross_cell")
)
paper = {"deepcellstate": 0.61, "anchor_vae": 0.48, "scgen": 0.22, "dual_gan": 0.26, "naive": 0.28}
summary(cross).assign(paper=lambda t: t.index.map(paper))

# %%
pk.pl.benchmark(cross, paper=paper)

# %% [markdown]
# ## 2. Tensor completion across cell lines
#
# Random (drug, cell line) profiles are hidden (a third of them per fold in FAST mode; 10% over seven cell lines in
# the full run), and predicted from everything else. FaLRTC completes
# the cell line × drug × gene tensor by low rank; DNPP averages the profiles of the drug's nearest neighbours in the
# target cell line; DeepCellState decodes the drug's other profiles into the target. The paper: DNPP 0.53, FaLRTC
# 0.49, DeepCellState 0.65.

# %%
lines = pk.datasets.simulate_bulk(n_drugs=120 if FAST else 1000, n_genes=200, n_cell_lines=4 if FAST else 7, seed=1)
tensor = pk.tl.benchmark(lines, task="tensor_completion", n_folds=3 if FAST else 10)
summary(tensor).assign(paper=lambda t: t.index.map({"deepcellstate": 0.65, "dnpp": 0.53, "falrtc": 0.49}))

# %%
pk.pl.benchmark(tensor, kind="violin")

# %% [markdown]
# ## 3. Unseen drugs (cycleCDR's comparison)
#
# Drugs are held out by SMILES and predicted from each cell line's control mean. cycleCDR and the CPA-style model
# embed each drug from its structure, so they can predict a drug they never saw. Scores per (cell line, drug):
# r² over all genes and over the 50 most changed genes, scGen's R² of mean expression, and the rank of the true
# drug among all predictions (0 is best; 0.5 is what a model that predicts the same response for every drug gets).

# %%
unseen = pk.tl.benchmark(
    bulk, task="unseen_drug", n_folds=3, folds=[0] if FAST else None, method_options=small("unseen_drug")
)
summary(unseen)

# %%
pk.pl.benchmark(unseen, metric="r2_degs")

# %% [markdown]
# ## 4. A held-out cell type (scGen's benchmark)
#
# Simulated single cells of three cell types. Each fold holds out one cell type's treated cells and predicts them
# from its control cells (FAST mode: one cell type). scGen shifts each control cell in latent space by the cell-type-balanced drug effect.

# %%
cells = pk.datasets.simulate_single_cell(
    n_cells=1500 if FAST else 6000, n_genes=300, n_drugs=4, lfc_scale=1.5, frac_de_genes=0.25, seed=2
)
sc.pp.normalize_total(cells, target_sum=1e4)
sc.pp.log1p(cells)
torch.set_num_threads(1)  # scanpy's compiled code resets torch's thread count
held = pk.tl.benchmark(
    cells, task="held_out_cell_type", n_folds=1 if FAST else 3, method_options=small("held_out_cell_type")
)
summary(held)

# %%
pk.pl.benchmark(held)

# %% [markdown]
# ## 5. Polypharmacology by latent space arithmetic (the VAE paper)
#
# Simulated consensus Cell Painting profiles with compounds of one or two mechanisms. Each fold leaves its A|B
# compounds out of training and predicts them as decode(mean(A) − mean(DMSO) + mean(B)). Lower L2 is better. The
# paper's mean L2 on Cell Painting: VAE 1.26, β-VAE 1.25, MMD-VAE 1.22, PCA 1.50, original space 1.55.

# %%
morphology = pk.datasets.simulate_morphology(n_compounds=160, n_features=100, seed=3)
pk.pp.scale(morphology, method="minmax")
poly = pk.tl.benchmark(morphology, task="polypharmacology", n_folds=2)
summary(poly)

# %%
pk.pl.benchmark(poly)

# %% [markdown]
# ## What to take from it
#
# - The tables are the same shape for every task: `table.groupby("method")[metric].mean()` compares methods,
#   `table.groupby(["method", "fold"])` gives the spread across folds, and `pk.pl.benchmark` draws them.
# - Methods that predict the same profile for every drug show it in `perturbation_rank` (≈ 0.5).
# - Fewer epochs for some methods and small data keep these runs to minutes; rerun with `method_options=None` (every
#   method at its defaults) and `FAST = False`, or run `benchmarks/comparison.py`, for the full-size comparison.
