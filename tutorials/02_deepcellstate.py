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
# # DeepCellState: a drug's response in one cell line from its response in another
#
# DeepCellState (Umarov, Li & Arner 2021) encodes a drug's expression signature from any cell line into one shared
# latent space and decodes it with one decoder per cell line, so a drug measured only in PC3 can be predicted in MCF7.
# This tutorial runs it end to end on simulated L1000-like signatures, where the truth is known:
#
# 1. simulate signatures in three cell lines and hold out drugs;
# 2. train, predict the held-out drugs' MCF7 profiles from PC3, and compare with the naive baseline (the PC3 profile
#    itself) and a ridge map between the cell lines;
# 3. cross-validate and test the gain;
# 4. look inside the model: latent embeddings and latent correlation;
# 5. save and load the model, and fine-tune it on a new cell line with few drugs.
#
# It runs in about a minute on two CPU cores, with a smaller network than the paper's.

# %%
import os
import tempfile

import numpy as np
import pandas as pd

import perturbkit as pk
from perturbkit.models.baselines import RidgeMap
from perturbkit.models.deepcellstate import DeepCellState

pk.settings.progress_bar = False
# The paper's network is latent_dim=128, hidden=(512, 256) (the defaults); a smaller one keeps this notebook fast.
OPTIONS = dict(latent_dim=64, hidden=(256, 128))

# %% [markdown]
# ## 1. Simulated signatures
#
# `pk.datasets.simulate_bulk` draws level-5-like signatures: each drug has a latent effect (its mechanism of action's
# prototype plus a deviation set by its structure), scaled by dose and time; each cell line maps that effect to genes
# through a part shared by all cell lines and a nonlinear part of its own; then measurement noise. So a drug's
# profiles in two cell lines are related, but not simply equal (the naive baseline's PCC is about 0.3, as in LINCS).
# The truth is kept in `uns["simulation"]` and `layers["noise_free"]`.
#
# 300 drugs, 300 genes, three cell lines, each drug measured at three (dose, time) conditions; DMSO controls per
# plate.

# %%
adata = pk.datasets.simulate_bulk(n_drugs=300, n_genes=300, n_cell_lines=3, seed=0)
pk.pp.validate(adata, moa_key="moa")
print(adata)
display(adata.obs[["cell_line", "drug", "dose", "time", "moa", "control"]].head(3))
pd.crosstab(adata.obs["cell_line"], adata.obs["control"].map({False: "treated", True: "DMSO"}))

# %% [markdown]
# Keep A375 aside for section 5 and work with PC3 and MCF7. Hold out 30 drugs entirely (in both cell lines): the
# model never sees them.

# %%
lab = adata[adata.obs["cell_line"].isin(["PC3", "MCF7"]).to_numpy()].copy()
treated_drugs = np.array(sorted(lab.obs.loc[~lab.obs["control"], "drug"].unique()))
held_out = np.random.default_rng(0).choice(treated_drugs, 30, replace=False)
is_test = lab.obs["drug"].isin(held_out).to_numpy()
train, test = lab[~is_test].copy(), lab[is_test].copy()
print(
    f"training: {train.n_obs} signatures of {train.obs['drug'].nunique() - 1} drugs | "
    f"test: {test.n_obs} signatures of {len(held_out)} drugs"
)

# %% [markdown]
# ## 2. Train and predict
#
# `pk.tl.train_deepcellstate` averages each (cell line, drug)'s signatures over doses and times, leaves out the
# controls, scales everything to [-1, 1] with one global max |x| (stored in the model) and trains in stages:
# an autoencoder on all profiles, then rounds over the cell lines (a drug's profile in any cell line → its profile in
# this one), then each decoder alone; every stage stops early on held-out validation drugs. A summary goes to
# `uns["deepcellstate"]`.

# %%
model = pk.tl.train_deepcellstate(train, seed=0, **OPTIONS)
summary = train.uns["deepcellstate"]
print(
    f"{summary['n_epochs']} epochs on {summary['device']}; drugs per cell line {summary['n_drugs']}; "
    f"best validation MSE {summary['best_validation_loss']:.4f} (scaled units)"
)
model


# %% [markdown]
# `model.predict(data, target=..., sources=[...])` returns one row per drug measured in a source cell line, in the
# data's units. Compare with the held-out drugs' measured MCF7 profiles (averaged over their conditions, the way the
# model averages its inputs) and with two baselines: the naive prediction (the drug's PC3 profile itself) and a ridge
# regression from PC3 to MCF7 fitted on the training drugs. The noise-free simulated MCF7 profile shows how high a
# perfect prediction could score against noisy measurements.


# %%
def per_drug(data, cell_line, layer=None):
    """One averaged profile per drug of a cell line (obs_names are the drug names)."""
    rows = data[(data.obs["cell_line"] == cell_line).to_numpy() & ~data.obs["control"].to_numpy()]
    return pk.pp.aggregate(rows, by="drug", layer=layer)


pred = model.predict(test, target="MCF7", sources=["PC3"])
measured, source = per_drug(test, "MCF7"), per_drug(test, "PC3")
drugs = pred.obs_names.intersection(measured.obs_names)  # held-out drugs measured in both cell lines

train_pc3, train_mcf7 = per_drug(train, "PC3"), per_drug(train, "MCF7")
both = train_pc3.obs_names.intersection(train_mcf7.obs_names)
ridge = RidgeMap().fit(train_pc3[both].X, train_mcf7[both].X)

pcc = pk.metrics.pearson_rows
scores = pd.DataFrame(
    {
        "DeepCellState": pcc(pred[drugs].X, measured[drugs].X),
        "ridge map": pcc(ridge.predict(source[drugs].X), measured[drugs].X),
        "naive (PC3 profile)": pcc(source[drugs].X, measured[drugs].X),
        "ceiling (noise-free truth)": pcc(per_drug(test, "MCF7", layer="noise_free")[drugs].X, measured[drugs].X),
    },
    index=drugs,
)
print(f"{len(drugs)} held-out drugs; PCC with the measured MCF7 profile:")
scores.agg(["mean", "median", "min"]).round(3)

# %% [markdown]
# One drug up close: every gene's predicted against measured value, then the 30 genes that change most, with the PC3
# input beside the prediction.

# %%
example = (scores["DeepCellState"] - scores["DeepCellState"].median()).abs().idxmin()  # typical
pk.pl.gene_scatter(pred, measured, drug=example)

# %%
pk.pl.profile(pred, drug=example, measured=measured, inputs=source, n_genes=30)

# %% [markdown]
# ## 3. Cross-validation
#
# `pk.tl.cross_validate_deepcellstate` splits the drugs measured in both cell lines into folds, trains one model per
# fold without that fold's drugs, and scores each held-out drug's prediction next to the naive and ridge baselines
# (the paper uses 10 folds; 3 here). `split="moa"` would hold out whole MOA families instead.

# %%
cv = pk.tl.cross_validate_deepcellstate(lab, source="PC3", target="MCF7", n_folds=3, seed=0, train_options=OPTIONS)
display(cv.head())
cv.groupby("fold")[["pcc", "ridge_pcc", "baseline_pcc"]].mean().round(3)

# %% [markdown]
# `pk.tl.deepcellstate_compare_to_baseline` runs the paired t-test over drugs and reports the fold increase (mean
# model PCC / mean baseline PCC, as in the paper) and the fraction of drugs improved.

# %%
comparison = pd.DataFrame(
    {
        "vs naive": pk.tl.deepcellstate_compare_to_baseline(cv).to_numpy(),
        "vs ridge": pk.tl.deepcellstate_compare_to_baseline(cv, baseline="ridge_pcc").to_numpy(),
    },
    index=[
        "drugs",
        "mean PCC (DeepCellState)",
        "mean PCC (baseline)",
        "fold increase",
        "median per-drug fold increase",
        "fraction of drugs improved",
        "t statistic",
        "p value",
    ],
)
comparison.apply(lambda column: column.map("{:.3g}".format))

# %%
pk.pl.pcc_scatter(cv)

# %%
pk.pl.pcc_scatter(cv, x="ridge_pcc")

# %%
pk.pl.fold_change_distribution(cv)

# %% [markdown]
# ## 4. Inside the model
#
# `pk.tl.latent_embeddings` encodes every (drug, cell line) profile and keeps the input profiles beside the codes
# (`obsm["X_input"]`). In the input space a drug's PC3 and MCF7 profiles are far apart; in the latent space they
# should land together. `pk.tl.pair_distance_ratio` measures this: the mean distance between a drug's two profiles
# over the mean distance between different drugs in different cell lines (1: no pairing, 0: perfect).

# %%
emb = pk.tl.latent_embeddings(lab, model=model, cell_lines=["PC3", "MCF7"])
print(emb)
pd.Series(
    {space: pk.tl.pair_distance_ratio(emb, space=space) for space in ("X_input", "X")},
    name="same-drug / different-drug distance",
).rename({"X_input": "input profiles", "X": "latent codes"})

# %% [markdown]
# The same picture in two dimensions: PCA of the input profiles, then of the latent codes, with a line joining each
# drug's two profiles. (`pk.tl.embed(emb, basis="umap")` gives a UMAP instead; its first call compiles numba code.)

# %%
pk.tl.embed(emb, basis="pca", use_rep="X_input", key_added="X_pca_input")
pk.pl.embedding(
    emb,
    basis="X_pca_input",
    color="cell_line",
    connect_pairs=True,
    title="Input profiles (PCA); lines join each drug's PC3 and MCF7 profiles",
)

# %%
pk.tl.embed(emb, basis="pca")
pk.pl.embedding(
    emb,
    basis="X_pca",
    color="cell_line",
    connect_pairs=True,
    title="Latent codes (PCA): a drug's two profiles lie closer together",
)

# %% [markdown]
# `pk.tl.latent_correlation` correlates drugs' latent codes from PC3 (rows) with those from MCF7 (columns). For the
# held-out drugs, which the model never saw, a strong diagonal means it places a new drug at the same point whichever
# cell line it was measured in.

# %%
corr = pk.tl.latent_correlation(test, model=model, cell_lines=("PC3", "MCF7"))
print({k: round(v, 3) if isinstance(v, float) else v for k, v in corr.attrs.items()})
pk.pl.latent_correlation(corr)

# %% [markdown]
# ## 5. Save, load and fine-tune on a new cell line
#
# `model.save` writes the weights, settings, gene names and scaler to one file; `DeepCellState.load` (or
# `pk.train.BaseModel.load` for any model) reads it back.

# %%
workdir = tempfile.TemporaryDirectory()
path = model.save(os.path.join(workdir.name, "deepcellstate.pt"))
loaded = DeepCellState.load(path)
again = loaded.predict(test, target="MCF7", sources=["PC3"])
print(
    f"{path.name}: {path.stat().st_size / 1e6:.1f} MB; cell lines {loaded.cell_lines}; "
    f"identical predictions: {np.array_equal(again.X, pred.X)}"
)

# %% [markdown]
# Now a cell line the model has never seen: A375, with a small new data set of 60 drugs (none of the held-out ones)
# measured in A375 and in the known cell lines. `model.fine_tune` adds a decoder for A375, initialised from the
# pretrained one, and continues the staged training (without pretraining) on the new data; genes and scaling stay
# those of the original model. Its default learning rate (1e-5) is very cautious; 1e-4 adapts faster here. We
# fine-tune a loaded copy so that `model` stays as it was, and score the held-out drugs' A375 predictions from PC3
# against the naive baseline and a ridge map fitted on the same drugs.

# %%
in_a375 = (adata.obs["cell_line"] == "A375") & ~adata.obs["control"]
a375_drugs = adata.obs.loc[in_a375, "drug"].unique()
few = np.random.default_rng(1).choice(np.setdiff1d(a375_drugs, held_out), 60, replace=False)
new_data = adata[adata.obs["drug"].isin(few).to_numpy()].copy()  # these 60 drugs in PC3, MCF7 and A375

tuned = DeepCellState.load(path)
tuned.fine_tune(new_data, lr=1e-4, seed=0)
print("cell lines after fine-tuning:", tuned.cell_lines)

held = adata[adata.obs["drug"].isin(held_out).to_numpy()].copy()
pred_a375 = tuned.predict(held, target="A375", sources=["PC3"])
measured_a375, source_pc3 = per_drug(held, "A375"), per_drug(held, "PC3")
a375 = pred_a375.obs_names.intersection(measured_a375.obs_names)
few_pc3, few_a375 = per_drug(new_data, "PC3"), per_drug(new_data, "A375")
paired = few_pc3.obs_names.intersection(few_a375.obs_names)
ridge_a375 = RidgeMap().fit(few_pc3[paired].X, few_a375[paired].X)

pd.Series(
    {
        "DeepCellState, fine-tuned": pcc(pred_a375[a375].X, measured_a375[a375].X).mean(),
        f"ridge map ({len(paired)} drugs)": pcc(ridge_a375.predict(source_pc3[a375].X), measured_a375[a375].X).mean(),
        "naive (PC3 profile)": pcc(source_pc3[a375].X, measured_a375[a375].X).mean(),
        "MCF7 from PC3, before fine-tuning": scores["DeepCellState"].mean(),
        "MCF7 from PC3, after fine-tuning": pcc(
            tuned.predict(test, target="MCF7", sources=["PC3"])[drugs].X, measured[drugs].X
        ).mean(),
    },
    name=f"mean PCC over {len(a375)} held-out drugs",
).round(3).to_frame()

# %% [markdown]
# With 60 drugs the fine-tuned model doubles the naive baseline's PCC and does a little better than a ridge map
# fitted on the same drugs, while its MCF7 predictions barely change (the last two rows score the MCF7 test drugs of
# section 2). More A375 drugs raise both models.
#
# Where next: `pk.experiments.deepcellstate_training_size_curve`, `deepcellstate_latent_size_sweep`, `deepcellstate_ablation`
# and `deepcellstate_fewer_profiles` run the paper's other experiments (plot them with `pk.pl.evaluation_curve` and
# `pk.pl.ablation`); `pk.tl.gene_importance` and `pk.tl.tf_targets` interpret the decoders; and
# `pk.datasets.lincs_l1000_level5(load=True)` fetches the real LINCS signatures
# (see `01_data_to_anndata.ipynb`).

# %%
workdir.cleanup()

# %% [markdown]
# ## Interactive panels
#
# `pk.widgets.ResponseExplorer` puts one drug at a time under the microscope: pick a held-out drug, a source and a
# target cell line, and compare the input, the prediction and the measurement gene by gene (the numbers are the
# PCC and r² of the prediction and of the untranslated input). `pk.widgets.LatentTraversal` moves the shared latent
# features one by one and decodes them with the cell line chosen in its **decoder** dropdown; **encode group**
# starts from a drug's encoding (tutorial 5 tours every panel).

# %%
pk.widgets.ResponseExplorer(test, model=model)

# %%
pk.widgets.LatentTraversal(test, model=model, n_sliders=9)
