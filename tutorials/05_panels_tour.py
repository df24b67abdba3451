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
# # A tour of the panels
#
# `pk.widgets` holds four interactive panels. Each is an ipywidgets container around a plotly `FigureWidget`: show it
# as the last line of a cell, then move its sliders, pick from its dropdowns and click its points. Each panel also
# exposes `panel.figure` and `panel.controls`, so anything you can do by hand you can do from code.
#
# | panel | for | what you see |
# |---|---|---|
# | `LatentTraversal(adata, model=model)` | VAE, DeepCellState, cycleCDR | one slider per latent feature; the decoded profile and its change |
# | `EmbeddingExplorer(adata, basis=...)` | any profiles | UMAP / t-SNE / PCA of the input or the latent space; click a point to see it |
# | `LSAExplorer(adata, model=model)` | VAE, PCA, original space | A − control + B next to the real A\|B, with the shuffled control |
# | `ResponseExplorer(adata, model=model)` | DeepCellState, cycleCDR | a drug's input, predicted and measured profiles |
#
# The models here are trained for a few epochs on simulated data so the tour runs in a minute or two on a CPU; train
# properly (tutorials 2–4) before reading anything into the pictures.

# %%
import warnings

import perturbkit as pk

warnings.filterwarnings("ignore")
pk.settings.progress_bar = False

morph = pk.datasets.simulate_morphology(n_compounds=60, n_features=120, n_plates=4, seed=0)
pk.pp.scale(morph, method="minmax")  # the VAE paper's scaling: every feature to [0, 1]
vae = pk.tl.train_vae(morph, kind="mmd", latent_dim=8, max_epochs=40, seed=0)
morph

# %% [markdown]
# ## Latent traversal
#
# Each slider sets one of the VAE's latent features; the panel decodes the latent vector and redraws the profile
# (top) and its difference from the start point (bottom). Choose **grouped** to order the features by their
# CellProfiler compartment × channel group (the colours), or start from the mean encoding of a MOA with
# **encode group**. Moving one slider from −3 to +3 is exactly `pk.tl.latent_traversal`.

# %%
traversal = pk.widgets.LatentTraversal(morph, model=vae, groupby=["moa", "drug"])
traversal

# %% [markdown]
# The panel can be driven from code too, e.g. to reproduce a view:

# %%
traversal.controls["order"].value = "grouped"
traversal.set_latent({0: 2.5})
traversal.profile.sort_values().tail()  # the features latent feature 0 raises most

# %% [markdown]
# ## Embeddings
#
# A UMAP of the wells, coloured by MOA. Switch the **space** to the VAE's latent space, the **basis** to t-SNE or
# PCA (computed once with scanpy and cached in `morph.obsm`), colour by any obs column, and click a point to see its
# profile below. The **overlay** list adds the VAE's reconstructions and simulations (decoded prior samples),
# projected into a UMAP fitted on the original wells: the VAE paper's check that the model covers the data.

# %%
explorer = pk.widgets.EmbeddingExplorer(morph, basis="umap", model=vae, color="moa")
explorer

# %% [markdown]
# ## Latent space arithmetic
#
# Pick two MOAs and the control: the panel decodes mean z(A) − mean z(DMSO) + mean z(B) and, where compounds with
# both MOAs were measured, compares it with the real A|B profile: its L2 distance against the distances from
# shuffled labels (grey), the z-score, and the latent vectors involved. Click a row of the table at the bottom to
# jump to a pair. The numbers are those of `pk.tl.latent_arithmetic`.

# %%
lsa = pk.widgets.LSAExplorer(morph, model=vae)
lsa

# %% [markdown]
# ## Responses: DeepCellState and cycleCDR
#
# DeepCellState translates a drug's profile from one cell line (the source) into another (the target). Pick a
# drug, a source and a target: the bars show the genes the drug moves most, the scatter every gene, predicted
# against measured, with the Pearson correlation of the prediction and of the untranslated input.

# %%
bulk = pk.datasets.simulate_bulk(n_drugs=150, n_genes=200, seed=0)
dcs = pk.tl.train_deepcellstate(bulk, latent_dim=32, hidden=(128, 64), max_epochs=40, max_rounds=4, seed=0)
pk.widgets.ResponseExplorer(bulk, model=dcs)

# %% [markdown]
# The same traversal panel works on DeepCellState: one decoder per cell line (the **decoder** dropdown).
# With 32 latent features it shows sliders for the 16 that vary most over the data.

# %%
pk.widgets.LatentTraversal(bulk, model=dcs)

# %% [markdown]
# cycleCDR predicts a treated profile from a cell line's control profile and the drug's embedding; drugs it
# never saw are embedded from their SMILES (`obs['smiles']`).

# %%
cyc = pk.tl.train_cyclecdr(
    bulk, drug_encoder="fingerprint", hidden=(128,), latent_dim=32, max_epochs=20, patience=None, seed=0
)
pk.widgets.ResponseExplorer(bulk, model=cyc)
