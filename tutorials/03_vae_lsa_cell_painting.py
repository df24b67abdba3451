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
# # VAEs and latent space arithmetic on Cell Painting
#
# This tutorial follows Chow, Singh, Carpenter & Way (2022) on one real LINCS Cell Painting plate (A549 cells):
# read the plate, select features, min-max scale, build compound-dose consensus profiles, train the three VAE
# variants, see which CellProfiler compartment × channel groups each latent feature drives, project reconstructions
# and simulations into a UMAP, and run latent space arithmetic (LSA) for polypharmacology. On this single plate no
# "A|B" compound has both of its parts as single-MOA compounds, so LSA says so. The second half proves the method on
# simulated data where polypharmacology is additive by construction. It runs in a few minutes on a CPU.

# %%
# Parameters: point DATA_DIR at the folder holding cell_painting/ (e.g. the full LINCS consensus files);
# FAST trains few epochs so the notebook runs in minutes.
import os

DATA_DIR = os.environ.get("PERTURBKIT_SHARED_DATA", "../../shared/data")
PLATE = "cell_painting/SQ00015054_normalized_feature_select.csv.gz"
FAST = True
EPOCHS = 30 if FAST else 300

# %%
import warnings

from sklearn.decomposition import PCA

import perturbkit as pk

pk.settings.progress_bar = False
if os.path.exists(os.path.join(DATA_DIR, PLATE)):
    plate = pk.io.read_cell_painting(os.path.join(DATA_DIR, PLATE))
else:  # a fresh clone without the shared data: one simulated plate of A549-like wells instead
    print(f"Real data not found at {os.path.join(DATA_DIR, PLATE)}; using the simulator instead.")
    plate = pk.datasets.simulate_morphology(n_compounds=59, n_replicates=1, n_plates=1, n_controls=24, seed=0)
plate

# %% [markdown]
# Feature selection (pycytominer's variance threshold, missing values and blocklist), then min-max scaling to [0, 1] (the VAEs' sigmoid output), then one consensus profile per compound and dose.

# %%
pk.pp.feature_select(plate, operations=["variance_threshold", "drop_na_columns", "blocklist"])
pk.pp.scale(plate, method="minmax")
consensus = pk.pp.aggregate(plate, by=["drug", "dose"])
print(
    plate.uns["feature_select"]["n_features_before"],
    "→",
    plate.n_vars,
    "features;",
    consensus.n_obs,
    "consensus profiles",
)
consensus.var[["compartment", "channel", "group"]].head()

# %% [markdown]
# ## Train the three VAEs
# The loss is `input_dim · MSE + β · KL + λ · MMD` (vanilla: β = 1; β-VAE: β = 0.3, the paper's value for level-5 Cell Painting; MMD-VAE: no KL, λ · MMD against prior samples).

# %%
models = {
    "vanilla": pk.tl.train_vae(consensus, kind="vanilla", latent_dim=10, max_epochs=EPOCHS, key_added="vae_vanilla"),
    "beta": pk.tl.train_vae(consensus, kind="beta", beta=0.3, latent_dim=10, max_epochs=EPOCHS, key_added="vae_beta"),
    "mmd": pk.tl.train_vae(consensus, kind="mmd", latent_dim=10, max_epochs=EPOCHS, key_added="vae_mmd"),
}
pk.pl.training_curves(models["mmd"].history_frame)

# %% [markdown]
# Control: the same model trained on column-shuffled data (each feature permuted on its own) cannot learn structure, so its loss stays higher.

# %%
control = pk.experiments.vae_shuffled_control(consensus, kind="beta", train_options={"beta": 0.3, "max_epochs": EPOCHS})
pk.pl.training_curves(control)

# %% [markdown]
# ## What each latent feature does
# Set one latent feature to +3 and −3 (the others 0), decode both, and average |difference| per CellProfiler compartment × channel.

# %%
contributions = pk.tl.traversal_contributions(models["mmd"], groupby="group")
pk.pl.traversal_heatmap(contributions)

# %%
pk.pl.latent_correlation_heatmap(pk.tl.vae_latent_correlation(consensus, model=models["mmd"]))

# %% [markdown]
# ## Reconstructions and simulations in one UMAP
# The UMAP is fitted on the original profiles only; reconstructions and profiles decoded from prior samples are projected into it.

# %%
projected = pk.tl.project_reconstructions(consensus, model=models["mmd"], n_simulated=consensus.n_obs)
pk.pl.projection(projected)

# %% [markdown]
# ## Latent space arithmetic on the real plate
# Prediction for A|B = decode(mean(A) − mean(DMSO) + mean(B)). The filtering keeps compounds with one or two MOAs, single-MOA groups that some A|B uses, and DMSO.

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    real = pk.tl.latent_arithmetic(consensus, model=models["mmd"])
print(real.attrs["message"])

# %% [markdown]
# ## Proving the method on simulated polypharmacology
# `simulate_morphology` makes A|B compounds whose latent effect is exactly the sum of A's and B's. Train on everything except the A|B compounds, then predict them.

# %%
sim = pk.datasets.simulate_morphology()
pk.pp.scale(sim, method="minmax")
train = sim[~sim.obs.moa.str.contains("|", regex=False)].copy()
mmd = pk.tl.train_vae(train, kind="mmd", lam=1e4, max_epochs=2 * EPOCHS, patience=20)
results = {
    "MMD-VAE": pk.tl.latent_arithmetic(sim, model=mmd),
    "PCA": pk.tl.latent_arithmetic(sim, model=PCA(10, random_state=0).fit(train.X)),
    "original space": pk.tl.latent_arithmetic(sim, model=None),
}
for name, r in results.items():
    print(
        f"{name:15s} mean L2 {r.l2.mean():.3f} (shuffled {r.l2_shuffled_mean.mean():.3f}), "
        f"{(r.z < 0).mean():.0%} of A|B with z < 0, mean z {r.z.mean():.1f}"
    )
pk.pl.l2_distributions(results)

# %%
results["MMD-VAE"][["group", "l2", "pearson", "z", "p"]].head(10)
