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
# # cycleCDR: the paper's evaluations with perturbkit
#
# Huang W, Zhu A, Liu H. **Predicting single-cell cellular responses to perturbations using cycle consistency
# learning** (cycleCDR). *Bioinformatics*, ISMB 2024 proceedings (preprint: "Interpretable modeling of single-cell
# perturbation responses to novel drugs using cycle consistence learning").
#
# cycleCDR maps a control profile to a treated one as G(F(x) + h_drug), with a second encoder-decoder pair for the way
# back, G'(F'(y) − h_drug), and cycle-consistency losses between the two. The drug embedding h comes from the drug's
# SMILES through a graph attention network (GAT), so the model can predict drugs it never saw in training. This
# notebook runs the paper's evaluations with `pk.tl.*` and draws its figure types with `pk.pl.*`:
#
# | paper | here |
# |---|---|
# | L1000 at 10 µM: unseen drugs predicted from SMILES, against baselines; GAT vs fingerprint drug encoder | §1 |
# | `evaluate_response`: r² (clipped at 0) and explained variance, all genes and the 50 top DEGs, per (cell line, drug) | §1 |
# | response bar chart of the metrics, per-drug boxes, UMAP of predicted and measured profiles | §2 |
# | sci-Plex3-like single cells (unpaired, adversarial + cycle losses): ablation of single vs dual autoencoder, reconstruction and cycle losses (paper's Table: mean r² 0.53–0.72 all genes, 0.59–0.68 DEGs) | §3 |
# | Kang et al. PBMCs (IFN-β): a cell type held out entirely (the scGen benchmark) | §4 |
# | a real L1000 plate: unseen compounds predicted from their SMILES | §5 |
#
# **Data.** §1 simulates L1000-like level-3 profiles at 10 µM (`simulate_bulk` with a cell-line baseline, so the
# controls matter; its drugs carry real SMILES); set `LINCS_LEVEL5` etc. to use the real GSE70138 signatures at 10 µM
# instead (the paper's L1000 set: 45,763 profiles, 42 cell lines). §3 simulates sci-Plex3-like UMI counts
# (`simulate_single_cell`, three cell lines; sci-Plex3 itself is not available offline). §4 uses the real Kang PBMC
# subset (2,000 cells) that ships in the shared data folder, or the full data set with `KANG_FULL`. §5 uses the real
# LJP005 L1000 plate (A375) with SMILES from the Drug Repurposing Hub.
#
# **Runtime.** `PERTURBKIT_FAST=1` (what CI sets): small networks (one hidden layer of 256, latent 64), 30 epochs,
# 120 simulated drugs in 3 cell lines, 1,500 single cells — about a minute and a half on two CPU cores, a quarter of
# it the UMAP's first compilation. The full run (`PERTURBKIT_FAST=0`, the default) uses the reference code's network
# (978-512-512-128), batch 512, 100 epochs, 1,500 drugs in 10 cell lines and larger single-cell and PBMC runs: tens
# of minutes on a CPU, a few minutes on a GPU.
#
# **Not reproduced:** the CPPA proteomics (RPPA) data and the real sci-Plex3 are not available offline (the model and
# metrics apply unchanged: `train_cyclecdr(paired=True)` on RPPA, `paired=False` on sci-Plex3); the pretrained GAT
# weights of the paper are not public, so the GAT is trained from scratch; the paper's comparison methods (chemCPA
# etc.) are not in perturbkit — the baselines are "no change" (the control) and "mean treated response" (the control
# plus the average training drug effect).

# %% tags=["parameters"]
import os

FAST = os.environ.get("PERTURBKIT_FAST", "0") == "1"
DATA_DIR = os.environ.get("PERTURBKIT_SHARED_DATA", "../../shared/data")

# Real L1000 at 10 µM (GEO GSE70138). None: the simulator. "download": pk.datasets.lincs_l1000_level5().
LINCS_LEVEL5 = None  # path to the decompressed GSE70138 level-5 GCTX (pk.datasets.lincs_l1000_level5() downloads it)
SIG_INFO = None  # path to GSE70138_Broad_LINCS_sig_info_2017-03-06.txt.gz (needed with LINCS_LEVEL5)
GENE_INFO = None  # path to GSE70138_Broad_LINCS_gene_info_2017-03-06.txt.gz (needed with LINCS_LEVEL5)
REPURPOSING_SAMPLES = os.path.join(DATA_DIR, "repurposing_hub/repurposing_samples_20200324.txt.gz")  # SMILES
REPURPOSING_DRUGS = os.path.join(DATA_DIR, "repurposing_hub/repurposing_drugs_20200324.txt.gz")  # MOAs
# Kang et al. 2018 PBMCs: the 2,000-cell subset ships with the shared data; the full set replaces it when set
KANG_2K = os.path.join(DATA_DIR, "kang_pbmc/kang_ifnb_pbmc_2k.h5ad")
KANG_FULL = None  # path to kang_2018.h5ad (24,673 cells; pk.datasets.kang_pbmc() downloads it)
L1000_PLATE = os.path.join(DATA_DIR, "l1000/test_l1000.gct.gz")  # one real level-3 plate (LJP005, A375), §5

DEVICE = "auto"
SEED = 0

# sizes: paper scale unless FAST
N_DRUGS = 120 if FAST else 1500  # simulated L1000 drugs at 10 µM
N_CELL_LINES = 3 if FAST else 10
TEST_FRACTION = 0.15  # drugs held out by name (unseen in every cell line)
N_CELLS = 1500 if FAST else 20000  # simulated sci-Plex3-like cells
N_SC_DRUGS = 24 if FAST else 60
N_SC_GENES = 300 if FAST else 1000
N_HVG = 500 if FAST else 2000  # Kang PBMC highly variable genes
EPOCHS = 30 if FAST else 100
GAT_EPOCHS = 30 if FAST else 100
KANG_EPOCHS = 15 if FAST else 100
# network and optimiser (reference code: 978-512-512-128, Adam with weight decay 1e-6, batch 512)
MODEL = (
    dict(hidden=(256,), latent_dim=64, batch_size=128)
    if FAST
    else dict(hidden=(512, 512), latent_dim=128, batch_size=512)
)
MODEL.update(device=DEVICE, seed=SEED, patience=None)
TRAIN_OPTIONS = {k: v for k, v in MODEL.items() if k not in ("device", "seed")}  # for functions that train for you

# %%
import time
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import torch

import perturbkit as pk

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="scanpy")
pk.settings.progress_bar = False
if FAST:
    torch.set_num_threads(1)
START = time.time()
METRICS = ["r2", "r2_degs", "explained_variance", "explained_variance_degs", "pearson_delta"]


def hold_out(adata, fraction=TEST_FRACTION, seed=SEED):
    """Training data without a random set of drugs (by name), the held-out drug names, and the measured truth."""
    control = adata.obs["control"].to_numpy()
    drugs = np.array(sorted(adata.obs.loc[~control, "drug"].astype(str).unique()))
    held = sorted(np.random.default_rng(seed).choice(drugs, max(2, int(round(fraction * len(drugs)))), replace=False))
    is_held = adata.obs["drug"].astype(str).isin(held).to_numpy() & ~control
    return adata[~is_held].copy(), held, adata[is_held | control].copy()


def score(predictions, truth, groupby=("cell_line", "drug"), n_degs=50):
    """evaluate_response for every model: per-group tables and their means."""
    tables = {
        name: pk.tl.evaluate_response(pred, truth, groupby=list(groupby), control="control", n_degs=n_degs)
        for name, pred in predictions.items()
    }
    means = pd.DataFrame({name: t[METRICS].mean() for name, t in tables.items()}).T
    return tables, means


# %% [markdown]
# ## 1. Unseen drugs from their SMILES (L1000 at 10 µM)
#
# The paper's bulk setting: paired control → treated profiles; loss = reconstruction + paired MSE (no adversarial
# part). 15 % of the drugs are removed from training in every cell line; the model predicts them from each cell
# line's mean control profile and the drug's SMILES, embedded by the GAT (the paper's encoder, trained from scratch
# here) or by a Morgan fingerprint → MLP. Scores per (cell line, drug): r² between the mean predicted and measured
# treated profile over all 978 genes and over the drug's 50 most changed genes (DEGs), explained variance, and the
# Pearson correlation of the predicted and measured changes from the control (`pearson_delta`).


# %%
def load_lincs_10um():
    """GSE70138 level-5 signatures at 10 µM (compounds) and the vehicle signatures, landmark genes."""
    signatures, sig_info, gene_info = LINCS_LEVEL5, SIG_INFO, GENE_INFO
    if LINCS_LEVEL5 == "download":
        signatures, sig_info, gene_info = (
            pk.datasets.lincs_l1000_level5(what=w) for w in ("signatures", "sig_info", "gene_info")
        )
    table = pd.read_csv(sig_info, sep="\t", low_memory=False)
    idose = table["pert_idose"].astype(str).str.lower()  # e.g. "10.0 um"
    at_10um = np.isclose(pd.to_numeric(idose.str.extract(r"^\s*([\d.]+)")[0], errors="coerce"), 10.0)
    treated = table["pert_type"].eq("trt_cp") & at_10um & idose.str.contains("um|µm")
    table = table[treated | table["pert_type"].eq("ctl_vehicle")]
    data = pk.io.read_gct(
        signatures, sig_info=table, gene_info=gene_info, landmark_only=True, cid=table["sig_id"].astype(str).tolist()
    )
    hub = pk.io.read_repurposing_hub(REPURPOSING_DRUGS, REPURPOSING_SAMPLES)
    pk.pp.annotate(data, hub, columns=["smiles", "moa"])
    keep = data.obs["control"].to_numpy() | data.obs["smiles"].notna().to_numpy()  # unseen drugs need a SMILES
    return data[keep].copy()


if LINCS_LEVEL5:
    bulk = load_lincs_10um()
else:
    bulk = pk.datasets.simulate_bulk(
        n_drugs=N_DRUGS,
        n_cell_lines=N_CELL_LINES,
        doses=(10.0,),
        times=(6.0, 24.0),
        conditions_per_drug=2,
        baseline=1.0,
        seed=SEED,
    )
pk.pp.validate(bulk)
train, held, truth = hold_out(bulk)
means = pk.tl.control_means(bulk)  # one control profile per cell line
smiles = dict(zip(bulk.obs["drug"].astype(str), bulk.obs["smiles"].astype(str), strict=True))
print(
    f"{bulk.n_obs} profiles × {bulk.n_vars} genes, {bulk.obs['cell_line'].nunique()} cell lines; "
    f"{len(held)} unseen drugs, {train.obs['drug'].nunique() - 1} training drugs"
)

models = {}
for encoder, epochs in (("fingerprint", EPOCHS), ("gat", GAT_EPOCHS)):
    t = time.time()
    models[encoder] = pk.tl.train_cyclecdr(train, drug_encoder=encoder, max_epochs=epochs, **MODEL)
    print(f"{encoder}: {epochs} epochs in {time.time() - t:.0f} s")
predictions = {
    f"cycleCDR ({encoder})": m.predict(means, drugs={d: smiles[d] for d in held}) for encoder, m in models.items()
}
predictions.update(pk.tl.response_baselines(means, drugs=held, training_data=train))
tables, bulk_means = score(predictions, truth)
bulk_means.round(3)

# %% [markdown]
# Both baselines leave the drug-specific part of the response unexplained (the mean response is the same for every
# drug); cycleCDR's fingerprint encoder predicts it for drugs it never saw. The GAT reads the molecular graph and
# the same fingerprint together (its hybrid readout); on the simulator's unseen drugs it matches the fingerprint
# encoder at about 15 times the training time. The one-hot encoder, which learns one vector per training drug,
# cannot do this at all:

# %%
onehot = pk.tl.train_cyclecdr(train, drug_encoder="onehot", max_epochs=1, **MODEL)
try:
    onehot.predict(means, drugs={held[0]: smiles[held[0]]})
except Exception as err:
    print(type(err).__name__, ":", str(err)[:200])

# %% [markdown]
# ## 2. The paper's figures: metric bars, per-drug boxes, UMAP
#
# Bars: mean of each metric over the (cell line, drug) groups, ± sd (DEG metrics hatched).

# %%
pk.pl.response_bars(tables)

# %% [markdown]
# Boxes: the DEG r² of each unseen drug over its cell lines, for the drugs with the most measured profiles.

# %%
pk.pl.response_boxes(
    {k: tables[k] for k in ("cycleCDR (fingerprint)", "mean treated response")}, metric="r2_degs", n_top=8
)

# %% [markdown]
# UMAP of predicted and measured treated profiles together (PCA → UMAP on both). The first UMAP call compiles
# numba code (about 20 s). Predictions should sit with the measured profiles of the same cell line and drug; a model
# that predicts the same response for every drug (mode collapse) would put all its predictions in one clump per cell
# line.

# %%
embedding = pk.tl.embed_predictions(predictions["cycleCDR (fingerprint)"], truth, seed=SEED)
pk.pl.prediction_umap(embedding, color="cell_line")

# %%
pk.pl.prediction_umap(embedding, color="drug")

# %% [markdown]
# ## 3. Single cells (sci-Plex3-like): the ablation
#
# sci-Plex3 profiles three cancer cell lines (A549, K562, MCF7) treated with 188 compounds, one cell at a time:
# control and treated cells are different cells, so nothing pairs them. cycleCDR then trains with discriminators
# (adversarial losses), cycle consistency (λ = 10) and identity losses. The paper's ablation (its Table) compares a
# single autoencoder (F = F', G = G') with the dual one, with and without the reconstruction and cycle losses, on
# unseen drugs (mean r² 0.53–0.72 on all genes, 0.59–0.68 on DEGs). Here: `simulate_single_cell` counts, normalised
# and log-transformed with scanpy, 20 % of the drugs held out, predictions from every control cell of each cell line.

# %%
cells = pk.datasets.simulate_single_cell(
    n_cells=N_CELLS, n_drugs=N_SC_DRUGS, n_genes=N_SC_GENES, lfc_scale=2.0, seed=SEED
)
sc.pp.normalize_total(cells, target_sum=1e4)
sc.pp.log1p(cells)
cells.X = np.asarray(cells.X.toarray())
sc_drugs = np.array(sorted(cells.obs.loc[~cells.obs["control"].to_numpy(), "drug"].unique()))
sc_held = sorted(np.random.default_rng(SEED).choice(sc_drugs, max(3, len(sc_drugs) // 5), replace=False))
print(
    f"{cells.n_obs} cells × {cells.n_vars} genes, cell lines {sorted(cells.obs['cell_line'].unique())}, "
    f"{len(sc_drugs)} drugs, {len(sc_held)} held out"
)
variants = [
    "dual AE",
    "single AE",
    "dual AE, no reconstruction",
    "dual AE, no cycle",
    "single AE, no reconstruction, no cycle",
]
ablation = pk.experiments.cyclecdr_ablation(
    cells,
    test_drugs=sc_held,
    variants=variants,
    paired=False,
    drug_encoder="fingerprint",
    seed=SEED,
    device=DEVICE,
    train_options=dict(TRAIN_OPTIONS, max_epochs=EPOCHS),
)
ablation.round(3)

# %%
pk.pl.response_bars(ablation, title="Ablation on unseen drugs, simulated single cells (mean over cell line × drug)")

# %% [markdown]
# As in the paper, the cycle loss matters most for unpaired single cells: without it (and even more without
# reconstruction and cycle in a single autoencoder) the DEG r² drops; single vs dual autoencoder and the
# reconstruction loss change little at this size. The "mean treated response" baseline is not weak: with few drugs,
# the average treated − control shift already explains much of each drug's response (the simulator's drugs share MOA
# families), so the model's margin over it is what the drug embedding adds.
#
# ## 4. Kang PBMCs: a held-out cell type
#
# The scGen benchmark on real single cells (Kang et al. 2018, PBMCs, control vs IFN-β): remove the stimulated cells of
# one cell type, train unpaired cycleCDR on everything else, predict them from that cell type's control cells.
# `preprocess_pbmc` normalises, takes highly variable genes, clusters each condition and names clusters from canonical
# markers (the 2,000-cell subset has no labels). There is one perturbation, so the drug encoder learns one shift vector
# (one-hot): this tests generalisation across cell types, not across drugs.

# %%
if KANG_FULL:
    kang = pk.io.read_h5ad(KANG_FULL, condition_key="label", control_value="ctrl")
    condition_key = "label"
elif os.path.exists(KANG_2K):
    kang = pk.io.read_h5ad(KANG_2K, condition_key="condition", control_value="ctrl")
    condition_key = "condition"
else:  # a fresh clone without the shared data: simulated counts of five PBMC-named cell types, one stimulus
    print(f"Real data not found at {KANG_2K}; using the simulator instead.")
    kang = pk.datasets.simulate_single_cell(
        n_cells=2000,
        n_genes=2000,
        n_drugs=1,
        n_moas=1,
        doses=(10.0,),
        cell_types=("CD4 T cells", "CD14 monocytes", "B cells", "NK cells", "CD8 T cells"),
        frac_control=0.5,
        seed=SEED,
    )
    kang.obs["condition"] = np.where(kang.obs["control"], "ctrl", "stim")
    condition_key = "condition"
# the canonical PBMC markers (pk.pp.PBMC_MARKERS); simulated genes have no PBMC names, so there each cell type's
# markers are its five most raised genes in the simulation's truth
markers = None
if "simulation" in kang.uns:
    truth = kang.uns["simulation"]
    excess = truth["baseline_log_mean"] - truth["baseline_log_mean"].mean(axis=0)
    markers = {
        cell_type: list(kang.var_names[np.argsort(excess[i])[-5:]]) for i, cell_type in enumerate(truth["cell_types"])
    }
pbmc = pk.tl.preprocess_pbmc(
    kang, n_hvg=N_HVG, condition_key=condition_key, control_value="ctrl", markers=markers, seed=SEED
)
print(pbmc.uns["pbmc_preprocessing"]["clustering"])
pd.crosstab(pbmc.obs["cell_type"], pbmc.obs["drug"])

# %%
kang_result = pk.experiments.kang_holdout(
    pbmc,
    preprocessed=True,
    cell_type="CD14 monocytes",
    methods=["scgen", "cyclecdr"],
    n_degs=100,
    seed=SEED,
    device=DEVICE,
    scgen_options={"max_epochs": KANG_EPOCHS},
    cyclecdr_options={"hidden": MODEL["hidden"], "latent_dim": MODEL["latent_dim"], "max_epochs": KANG_EPOCHS},
)
kang_metrics = kang_result["metrics"][["squared_pearson", "squared_pearson_degs", "pearson_delta_degs"]].astype(float)
kang_metrics.round(3)

# %%
pk.pl.response_bars(
    kang_result["metrics"],
    metrics=("squared_pearson", "squared_pearson_degs", "pearson_delta_degs"),
    title="Held-out CD14 monocytes, IFN-β: mean predicted vs measured (top 100 Wilcoxon DEGs)",
)

# %%
held_cells = pbmc[(pbmc.obs["cell_type"] == "CD14 monocytes").to_numpy()]
kang_embedding = pk.tl.embed_predictions(kang_result["predictions"]["cycleCDR (unpaired)"], held_cells, seed=SEED)
pk.pl.prediction_umap(kang_embedding, title="Held-out CD14 monocytes: cycleCDR's predicted vs measured cells")

# %% [markdown]
# The scores are scGen's and pertpy's: R² of mean expression over all genes and over the 100 genes that a Wilcoxon
# test ranks highest in the stimulated CD14 monocytes. On the real 2,000-cell subset with 2,000 HVGs (the full run),
# scGen averages 0.83 and 0.71 over five runs (0.78–0.86 and 0.64–0.76; pertpy's scGen: 0.79–0.82 and 0.64–0.67).
# It does not beat the "mean shift" baseline (the controls plus the mean stimulated − control shift of the other cell
# types, each type counted once: 0.85 and 0.75), a strong baseline because IFN-β induces much the same interferon
# program in every PBMC type. cycleCDR runs
# without its adversarial term (with it, every prediction collapses onto one profile close to the stimulated CD4 T
# cells, below "no change"); it beats "no change" (0.79 and 0.67 against 0.61 and 0.33) but trails scGen. In FAST
# mode (500 genes, few epochs) the numbers are lower and vary between seeds.
#
# ## 5. A real L1000 plate: unseen compounds from SMILES
#
# LJP005 (A375 cells, 24 h, level 3) has 55 kinase inhibitors at six doses and DMSO wells. The Drug Repurposing Hub
# gives SMILES for most of them; compounds without one are dropped. We hold out 20 % of the compounds, train
# cycleCDR (fingerprint encoder, with the dose embedding) on the rest — each treated well paired with the plate's
# mean DMSO profile — and predict the unseen compounds at each of their doses.

# %%
if all(os.path.exists(path) for path in (L1000_PLATE, REPURPOSING_DRUGS, REPURPOSING_SAMPLES)):
    plate = pk.io.read_gct(L1000_PLATE)
    plate = plate[plate.obs["pert_type"].isin(["trt_cp", "ctl_vehicle"]).to_numpy()].copy()
    hub = pk.io.read_repurposing_hub(REPURPOSING_DRUGS, REPURPOSING_SAMPLES)
    pk.pp.annotate(plate, hub, columns=["smiles"])
else:  # a fresh clone without the shared data: a simulated A375 plate at six doses (its drugs carry SMILES)
    print(f"Real data not found at {L1000_PLATE}; using the simulator instead.")
    plate = pk.datasets.simulate_bulk(
        n_drugs=55, cell_lines=["A375"], times=(24.0,), conditions_per_drug=6, baseline=1.0, seed=SEED
    )
plate = plate[plate.obs["control"].to_numpy() | plate.obs["smiles"].notna().to_numpy()].copy()
plate.obs.loc[plate.obs["control"].to_numpy(), "smiles"] = ""
plate_train, plate_held, plate_truth = hold_out(plate, fraction=0.2)
plate_model = pk.tl.train_cyclecdr(
    plate_train, drug_encoder="fingerprint", dose_key="dose", max_epochs=2 * EPOCHS, **MODEL
)
plate_means = pk.tl.control_means(plate)
plate_smiles = dict(zip(plate.obs["drug"].astype(str), plate.obs["smiles"].astype(str), strict=True))
doses = sorted(plate_truth.obs.loc[~plate_truth.obs["control"].to_numpy(), "dose"].unique())
by_dose = [
    plate_model.predict(plate_means, drugs={d: plate_smiles[d] for d in plate_held}, doses=dose) for dose in doses
]
plate_predictions = {"cycleCDR (fingerprint)": ad.concat(by_dose, index_unique="-")}
plate_predictions.update(pk.tl.response_baselines(plate_means, drugs=plate_held, training_data=plate_train))
print(
    f"{plate.obs.loc[~plate.obs['control'].to_numpy(), 'drug'].nunique()} compounds with SMILES; "
    f"{len(plate_held)} unseen: {', '.join(plate_held)}"
)
plate_tables, plate_means_table = score(plate_predictions, plate_truth, n_degs=50)
plate_means_table.round(3)

# %% [markdown]
# The scores compare each unseen compound's predicted profile, averaged over its six doses, with its measured
# one. With about 25 training compounds from one chemical class (kinase inhibitors) on a single plate, this is a
# small-data check of the whole real pipeline (GCT reader, Repurposing Hub SMILES, dose embedding), not a benchmark.
#
# ## 6. The methods cycleCDR is compared with, on the same folds
#
# The paper compares cycleCDR with CPA-style compositional models (chemCPA) on unseen drugs, and the scGen benchmark
# compares models on a held-out cell type. `pk.tl.benchmark` trains each method on the same folds: drugs held out
# by SMILES (every cell line), then one PBMC type held out per fold. In FAST mode the networks are small and train
# for few epochs, so the numbers show the shape of the comparison, not the methods' best.

# %%
unseen = pk.tl.benchmark(
    bulk,
    task="unseen_drug",
    n_folds=3 if FAST else 5,
    folds=[0] if FAST else None,  # FAST: one of the three folds
    seed=SEED,
    device=DEVICE,
    method_options={
        "cyclecdr_gat": dict(TRAIN_OPTIONS, max_epochs=GAT_EPOCHS),
        "cyclecdr_fingerprint": dict(TRAIN_OPTIONS, max_epochs=EPOCHS),
        "cpa": dict(hidden=(256, 256), latent_dim=64, max_epochs=EPOCHS) if FAST else {},
    },
)
unseen_table = unseen.groupby("method")[["r2", "r2_degs", "squared_pearson_degs", "perturbation_rank"]].mean()
unseen_table["seconds per fold"] = unseen.groupby(["method", "fold"])["train_seconds"].first().groupby("method").mean()
unseen_table.sort_values("r2_degs", ascending=False).round(3)

# %%
pk.pl.benchmark(unseen, metric="r2_degs")

# %%
held_types = pk.tl.benchmark(
    pbmc,
    task="held_out_cell_type",
    n_folds=1 if FAST else 5,
    n_degs=100,
    seed=SEED,
    device=DEVICE,
    method_options={
        "cyclecdr": dict(TRAIN_OPTIONS, max_epochs=KANG_EPOCHS),
        "scgen": dict(hidden=(256, 256), latent_dim=64, max_epochs=KANG_EPOCHS * 2) if FAST else {},
        "cpa": dict(hidden=(256, 256), latent_dim=64, max_epochs=KANG_EPOCHS * 3) if FAST else {},
    },
)
held_table = held_types.groupby("method")[["r2", "r2_degs", "squared_pearson", "squared_pearson_degs"]].mean()
held_table["seconds per fold"] = (
    held_types.groupby(["method", "fold"])["train_seconds"].first().groupby("method").mean()
)
held_table.sort_values("squared_pearson_degs", ascending=False).round(3)

# %%
pk.pl.benchmark(held_types)

# %% [markdown]
# `squared_pearson` is R² as scGen reports it (the squared Pearson correlation of mean expression, on all genes and
# on the 100 most changed genes). The "mean shift" baseline is strong on PBMCs for the reason given in §4; the
# `perturbation_rank` column of the unseen-drug table shows whether a model tells the drugs apart at all (0.5: it
# predicts the same response for every drug).
#
# ## Summary

# %%
PBMC_DATA = "full Kang" if KANG_FULL else "simulated" if markers is not None else "Kang 2k subset"
PLATE_DATA = "simulated" if "noise_free" in plate.layers else "LJP005"
print(
    f"L1000: {'GSE70138 at 10 µM' if LINCS_LEVEL5 else 'simulated'}; single cells: simulated; PBMCs: "
    f"{PBMC_DATA}; L1000 plate: {PLATE_DATA}; FAST={FAST}; {time.time() - START:.0f} s"
)
summary = pd.concat(
    {
        "L1000, unseen drugs": bulk_means[["r2", "r2_degs", "explained_variance"]],
        "single cells, ablation": ablation[["r2", "r2_degs", "explained_variance"]],
        "Kang, held-out cell type": kang_result["metrics"][["r2", "r2_degs", "explained_variance"]].astype(float),
        "real L1000 plate, unseen compounds": plate_means_table[["r2", "r2_degs", "explained_variance"]],
        "benchmark: unseen drugs": unseen.groupby("method")[["r2", "r2_degs", "explained_variance"]].mean(),
        "benchmark: held-out PBMC types": held_types.groupby("method")[["r2", "r2_degs", "explained_variance"]].mean(),
    }
)
summary.round(3)
