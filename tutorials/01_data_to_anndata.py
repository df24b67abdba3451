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
# # From files to AnnData: L1000, Cell Painting and the Drug Repurposing Hub
#
# Every perturbkit model reads the same thing: an `AnnData` whose rows are profiles (wells, signatures or consensus
# profiles), whose columns are genes or morphology features, and whose `obs` follows one schema — `cell_line`, `drug`,
# `dose` (µM), `time` (h), `moa`, `control` (bool) and `smiles`. This tutorial turns three real public files into that
# form and runs the preprocessing steps on them:
#
# 1. read a LINCS **L1000** plate (GCT text), and write and re-read it as **GCTX**;
# 2. read a LINCS **Cell Painting** plate, with its CellProfiler features parsed into groups;
# 3. annotate both with mechanisms of action and SMILES from the **Drug Repurposing Hub**;
# 4. check the schema (`validate`), select features, subtract controls, collapse replicates (mean and MODZ) and scale
#    invertibly;
# 5. meet the simulator, and the downloaders for the full data sets.
#
# It needs no internet and runs in seconds.

# %%
import gzip
import os
import tempfile

import anndata as ad
import numpy as np
import pandas as pd

import perturbkit as pk

pk.settings.progress_bar = False
pd.set_option("display.max_columns", 12)
pd.set_option("display.max_colwidth", 40)

DATA_DIR = os.environ.get("PERTURBKIT_SHARED_DATA", "../../shared/data")
L1000_PLATE = os.path.join(DATA_DIR, "l1000", "test_l1000.gct.gz")
CP_PLATE = os.path.join(DATA_DIR, "cell_painting", "SQ00015054_normalized_feature_select.csv.gz")
HUB_DRUGS = os.path.join(DATA_DIR, "repurposing_hub", "repurposing_drugs_20200324.txt.gz")
HUB_SAMPLES = os.path.join(DATA_DIR, "repurposing_hub", "repurposing_samples_20200324.txt.gz")

# %% [markdown]
# The four files come from the shared data folder (`$PERTURBKIT_SHARED_DATA`). Where it is missing, as in a fresh
# clone, the next cell writes **simulated stand-ins in the same formats** to a temporary folder (a LINCS-style GCT
# plate, another plate's signature table, a pycytominer CSV and the hub's two tables), so every step below still runs
# and reads real file formats; the numbers quoted in the text then describe the real files, not the stand-ins.


# %%
def write_simulated_files(folder):
    """Simulated stand-ins for the four real files (and the other plate's table), written in their formats."""
    for sub in ("l1000", "cell_painting", "repurposing_hub"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    bulk = pk.datasets.simulate_bulk(
        n_drugs=59,
        cell_lines=["A375"],
        times=(24.0,),
        conditions_per_drug=6,
        n_controls=7,
        baseline=1.0,
        frac_missing=0.0,
        seed=0,
    )
    morph = pk.datasets.simulate_morphology(n_compounds=59, n_replicates=1, n_plates=1, n_controls=24, seed=0)
    drugs = pd.concat([bulk.uns["simulation"]["drugs"], morph.uns["simulation"]["drugs"]]).drop_duplicates("drug")
    brd = {name: f"BRD-K{i:08d}" for i, name in enumerate(drugs["drug"])}  # compound ids, BRD-K + 8 digits
    # L1000: one A375 plate, level 3 (expression around a baseline), LINCS column and row metadata
    obs, ctl = bulk.obs, bulk.obs["control"].to_numpy()
    dose = np.where(ctl, np.nan, bulk.obs["dose"])
    columns = pd.DataFrame(
        {
            "cell_id": "A375",
            "det_plate": ("SIM_A375_24H_" + obs["plate"].astype(str)).to_numpy(),
            "pert_iname": obs["drug"].astype(str).to_numpy(),
            "pert_id": [("DMSO" if c else brd[d]) for c, d in zip(ctl, obs["drug"], strict=True)],
            "pert_type": np.where(ctl, "ctl_vehicle", "trt_cp"),
            "pert_dose": dose,
            "pert_dose_unit": "um",
            "pert_idose": [("" if c else f"{x:g} um") for c, x in zip(ctl, dose, strict=True)],
            "pert_time": 24.0,
            "pert_time_unit": "h",
            "pert_itime": "24 h",
        },
        index=[f"SIM_A375_24H:{i:03d}" for i in range(bulk.n_obs)],
    )
    symbols = ["EGFR", "MYC", *bulk.var_names[2:]]  # two genes named like the ones read by name below
    rows = pd.DataFrame(
        {
            "pr_gene_id": np.arange(1, bulk.n_vars + 1),
            "pr_gene_symbol": symbols,
            "pr_gene_title": [f"simulated gene {g}" for g in symbols],
            "pr_is_lmark": 1,
        },
        index=[f"{1000 + i}_at" for i in range(bulk.n_vars)],
    )
    pk.io.write_gct(ad.AnnData(np.asarray(bulk.X), obs=columns, var=rows), L1000_PLATE)
    other = columns.iloc[:40].reset_index(drop=True).assign(cell_id="MCF7")  # signatures of another plate
    other.insert(0, "id", [f"SIM_MCF7_24H:{i:03d}" for i in range(len(other))])
    other.to_csv(os.path.join(folder, "l1000", "LJP_row_metadata.txt.gz"), sep="\t", index=False)
    # Cell Painting: one A549 plate, pycytominer layout (Metadata_* columns, then the CellProfiler features)
    ctl = morph.obs["control"].to_numpy()
    metadata = pd.DataFrame(
        {
            "Metadata_Plate": "SIM00001",
            "Metadata_Well": [f"{'ABCDEFGHIJKLMNOP'[i // 24]}{i % 24 + 1:02d}" for i in range(morph.n_obs)],
            "Metadata_broad_sample": [
                ("DMSO" if c else f"{brd[d]}-001-01-1") for c, d in zip(ctl, morph.obs["drug"], strict=True)
            ],
            "Metadata_pert_id": [(None if c else brd[d]) for c, d in zip(ctl, morph.obs["drug"], strict=True)],
            "Metadata_broad_sample_type": np.where(ctl, "control", "trt"),
            "Metadata_cell_id": "A549",
            "Metadata_mmoles_per_liter": morph.obs["dose"].to_numpy(),
            "Metadata_moa": morph.obs["moa"].where(~ctl).to_numpy(),
        }
    )
    features = pd.DataFrame(np.asarray(morph.X), columns=morph.var_names)
    pd.concat([metadata, features], axis=1).to_csv(CP_PLATE, index=False)
    # Drug Repurposing Hub: drug and sample tables, "!" comment lines first; a few compounds are not in the hub
    hub_drugs = drugs.iloc[5:]
    for path, table in (
        (
            HUB_DRUGS,
            pd.DataFrame(
                {
                    "pert_iname": hub_drugs["drug"],
                    "clinical_phase": "Preclinical",
                    "moa": hub_drugs["moa"],
                    "target": "",
                    "disease_area": "",
                    "indication": "",
                }
            ),
        ),
        (
            HUB_SAMPLES,
            pd.DataFrame(
                {
                    "broad_id": [f"{brd[d]}-001-01-1" for d in hub_drugs["drug"]],
                    "pert_iname": hub_drugs["drug"],
                    "smiles": hub_drugs["smiles"],
                }
            ),
        ),
    ):
        with gzip.open(path, "wt") as fh:
            fh.write("!Source\tsimulated stand-in for the Drug Repurposing Hub\n")
            table.to_csv(fh, sep="\t", index=False)
    return folder


if not all(os.path.exists(path) for path in (L1000_PLATE, CP_PLATE, HUB_DRUGS, HUB_SAMPLES)):
    print(f"Real data not found at {DATA_DIR}; using the simulator instead.")
    DATA_DIR = tempfile.mkdtemp(prefix="perturbkit_simulated_")
    L1000_PLATE = os.path.join(DATA_DIR, "l1000", "test_l1000.gct.gz")
    CP_PLATE = os.path.join(DATA_DIR, "cell_painting", "SQ00015054_normalized_feature_select.csv.gz")
    HUB_DRUGS = os.path.join(DATA_DIR, "repurposing_hub", "repurposing_drugs_20200324.txt.gz")
    HUB_SAMPLES = os.path.join(DATA_DIR, "repurposing_hub", "repurposing_samples_20200324.txt.gz")
    write_simulated_files(DATA_DIR)

# %% [markdown]
# ## 1. L1000: a GCT plate
#
# The file is one LINCS L1000 plate (LJP005, A375 melanoma cells, 24 h) at level 3: quantile-normalised log2
# expression of the 978 landmark genes in 377 wells, in GCT 1.3 text with column (well) and row (gene) metadata.
# `pk.io.read_gct` puts the wells in `obs` and the genes in `var`, and maps the LINCS fields to the schema while keeping
# the originals: `cell_id` → `cell_line`, `pert_iname` → `drug`, `pert_dose` + `pert_dose_unit` → `dose` in µM,
# `pert_time` → `time` in hours, and `pert_type == "ctl_vehicle"` → `control`.

# %%
l1000 = pk.io.read_gct(L1000_PLATE)
l1000

# %%
schema = ["cell_line", "drug", "dose", "time", "control"]
display(l1000.obs[["pert_iname", "pert_type", "pert_idose", "pert_itime", *schema]].head())
l1000.obs["pert_type"].value_counts().rename("wells").to_frame()

# %% [markdown]
# The plate holds 59 compounds (four of them positive controls) at up to six doses, one well per dose, and 26 DMSO
# wells.
#
# **Row metadata.** The GCT carries its gene metadata too. Gene symbols (`pr_gene_symbol`) become `var_names`, the
# probe ids move to `var["id"]`, and the landmark flag `pr_is_lmark` is what `landmark_only=True` uses (all 978 genes
# of this file are landmarks, so nothing is dropped). `gene_symbols=False` keeps the probe ids as names.

# %%
display(l1000.var[["id", "pr_gene_id", "pr_gene_symbol", "pr_gene_title", "pr_is_lmark"]].head(3))
landmarks = pk.io.read_gct(L1000_PLATE, landmark_only=True)
probes = pk.io.read_gct(L1000_PLATE, gene_symbols=False)
print("landmark genes kept:", landmarks.n_vars, "| var_names with gene_symbols=False:", list(probes.var_names[:3]))

# %% [markdown]
# Full LINCS level-5 releases ship the metadata as separate tables, which `read_gct` joins with `sig_info=` (per
# signature) and `gene_info=` (per gene). The file `l1000/LJP_row_metadata.txt.gz` next to this plate looks like such
# a table, but it describes the signatures of *another* plate (LJP007, MCF7 cells). `read_gct` checks every join and
# refuses it with an explanation instead of adding empty columns:

# %%
other = pd.read_csv(os.path.join(DATA_DIR, "l1000", "LJP_row_metadata.txt.gz"), sep="\t")
print(other.shape, "cell lines:", other["cell_id"].unique(), "first id:", other["id"].iloc[0])
for keyword in ("gene_info", "sig_info"):
    try:
        pk.io.read_gct(L1000_PLATE, **{keyword: other})
    except ValueError as err:  # perturbkit's input errors are ValueErrors
        print(f"\n{keyword}=: {type(err).__name__}: {err}")

# %% [markdown]
# ### GCTX round trip
#
# GCTX is the HDF5 flavour of GCT in which LINCS distributes level 5. `pk.io.write_gctx` writes the LINCS layout
# (readable by cmapPy and others) plus a few attributes that let `read_gct` restore every column's dtype, so the round
# trip is exact. From a GCTX, `cid=` / `rid=` read only the wells / genes asked for.

# %%
with tempfile.TemporaryDirectory() as tmp:
    path = pk.io.write_gctx(l1000, os.path.join(tmp, "LJP005_A375_24H.gctx"))
    print(f"wrote {path.name}: {path.stat().st_size / 1e6:.1f} MB")
    back = pk.io.read_gct(path)
    two_genes = pk.io.read_gct(path, cid=l1000.obs_names[:4], rid=["EGFR", "MYC"])

pd.Series(
    {
        "X": np.array_equal(back.X, l1000.X),
        "obs (values and dtypes)": back.obs.equals(l1000.obs) and back.obs.dtypes.equals(l1000.obs.dtypes),
        "var": back.var.equals(l1000.var),
        "obs_names / var_names": back.obs_names.equals(l1000.obs_names) and back.var_names.equals(l1000.var_names),
    },
    name="identical after write_gctx → read_gct",
).to_frame()

# %%
two_genes.to_df()  # 4 wells × 2 genes, read without loading the rest of the matrix

# %% [markdown]
# ## 2. Cell Painting: a pycytominer plate
#
# One LINCS Cell Painting plate of A549 cells: 384 wells, 26 `Metadata_*` columns and 454 normalized, feature-selected
# CellProfiler features. `pk.io.read_cell_painting` keeps the metadata in `obs` and maps it to the schema
# (`Metadata_broad_sample_type == "control"` → `control`, `Metadata_mmoles_per_liter` → `dose`, `Metadata_moa` →
# `moa`, `Metadata_cell_id` → `cell_line`, plate and well). The drug is the compound's Broad id.

# %%
cp = pk.io.read_cell_painting(CP_PLATE)
print(cp)
cp.obs[["drug", "dose", "moa", "control", "cell_line", "plate", "well"]].iloc[[0, 6, 7, 30]]

# %% [markdown]
# `var` comes from `pk.io.parse_cellprofiler_features`, which splits each name
# `<Compartment>_<FeatureType>_<rest>` into compartment, feature type, channel(s) and measurement. `group`
# (compartment × channel) is what the VAE interpretation tools aggregate over.

# %%
display(
    pk.io.parse_cellprofiler_features(
        [
            "Cells_Intensity_MeanIntensity_DNA",
            "Nuclei_Texture_InfoMeas1_ER_5_0",
            "Cells_Correlation_K_ER_DNA",
            "Cytoplasm_AreaShape_Area",
        ]
    )
)
pd.crosstab(cp.var["compartment"], cp.var["feature_type"])

# %% [markdown]
# ## 3. The Drug Repurposing Hub: mechanisms of action and SMILES
#
# `pk.io.read_repurposing_hub` reads the hub's drug table (name, MOA, target, clinical phase) and, optionally, its
# sample table, from which each drug gets its most common SMILES and compound id (`BRD-K12345678`).

# %%
hub = pk.io.read_repurposing_hub(HUB_DRUGS, HUB_SAMPLES)
print(hub.shape)
hub[["drug", "moa", "target", "clinical_phase", "broad_id", "smiles"]].head()

# %% [markdown]
# `pk.pp.annotate` left-joins such a per-drug table into `obs`, matching names case-insensitively, and records in
# `uns["annotate"]` how many rows and names matched. L1000 names many compounds by their common name, so join on
# `drug` first; then fill the gaps by compound id (the first 13 characters of `pert_id`). With the default
# `overwrite=False` the second join only fills values that are still missing.

# %%
hub_columns = ["moa", "target", "clinical_phase", "smiles"]
pk.pp.annotate(l1000, hub, on="drug", columns=hub_columns)
by_name = dict(l1000.uns["annotate"])

l1000.obs["compound_id"] = l1000.obs["pert_id"].str[:13]
pk.pp.annotate(l1000, hub, on="compound_id", table_on="broad_id", columns=hub_columns)
by_id = l1000.uns["annotate"]

treated = ~l1000.obs["control"]
print(
    f"by name: {by_name['n_keys_matched']} of {by_name['n_keys']} names ({by_name['n_matched']} wells); "
    f"by compound id: {by_id['n_keys_matched']} of {by_id['n_keys']} ids ({by_id['n_matched']} wells)"
)
print(f"treated wells with an MOA now: {l1000.obs.loc[treated, 'moa'].notna().sum()} of {treated.sum()}")
print("not in the hub, e.g.:", by_id["unmatched"][:6])
l1000.obs.loc[treated, ["drug", "compound_id", "moa", "clinical_phase"]].drop_duplicates("drug").head()

# %% [markdown]
# The Cell Painting plate names compounds by Broad id and already has MOAs. Joining on the hub's `broad_id` adds the
# common name (renamed to `pert_iname`, so it does not collide with `drug`), the SMILES and the clinical phase; the
# plate's own MOAs are kept (the hub agrees with them for every matched well).

# %%
pk.pp.annotate(
    cp,
    hub.rename(columns={"drug": "pert_iname"}),
    on="drug",
    table_on="broad_id",
    columns=["pert_iname", "smiles", "clinical_phase"],
)
info = cp.uns["annotate"]
print(
    f"{info['n_keys_matched']} of {info['n_keys']} drug ids matched, DMSO included in the {info['n_keys']} "
    f"({info['n_matched']} of {info['n_obs']} wells)"
)
columns = ["drug", "pert_iname", "dose", "moa", "clinical_phase"]
cp.obs.loc[~cp.obs["control"], columns].drop_duplicates("drug").head()

# %% [markdown]
# ## 4. Check the schema
#
# `pk.pp.validate` checks what the models need — the columns exist, X is finite, `control` is boolean with at least
# one control, dose and time are numeric — and says what to do when something is wrong. The Cell Painting plate has no
# time column; pass `time_key=None` for a column the data does not have.

# %%
pk.pp.validate(l1000, moa_key="moa")
print("L1000 plate: valid")
try:
    pk.pp.validate(cp)
except ValueError as err:
    print(f"Cell Painting plate: {type(err).__name__}: {str(err)[:90]}…")
pk.pp.validate(cp, time_key=None, moa_key="moa")
print("Cell Painting plate with time_key=None: valid")

# %% [markdown]
# ## 5. Feature selection (Cell Painting)
#
# `pk.pp.feature_select` runs pycytominer's operations, with its names and defaults (its default is
# `variance_threshold` alone): here near-constant features (`frequency_threshold`), features with missing values,
# outlier features (max |x| above `outlier_cutoff`, in SD units) and pycytominer's fixed blocklist (object positions
# and bookkeeping). It subsets `adata` in place and records what each operation flagged. This plate was already
# feature-selected upstream, so an outlier cutoff of 15 is what removes most; `outlier_cutoff=50` keeps almost all.

# %%
OPERATIONS = ["frequency_threshold", "drop_na_columns", "drop_outliers", "blocklist"]
loose = pk.pp.feature_select(cp, operations=OPERATIONS, outlier_cutoff=50, copy=True)
pk.pp.feature_select(cp, operations=OPERATIONS, outlier_cutoff=15)  # in place
record = cp.uns["feature_select"]
print(
    f"{record['n_features_before']} → {record['n_features_after']} features (outlier_cutoff=50 would keep "
    f"{loose.n_vars})"
)
print("blocklisted:", record["dropped"]["blocklist"])
pd.Series({op: len(names) for op, names in record["dropped"].items()}, name="features flagged").to_frame()

# %% [markdown]
# ## 6. Profiles relative to controls
#
# `pk.pp.control_diff` subtracts from each profile the mean of the control wells in its group (`groupby=` a plate or
# cell-line column). For the L1000 plate this turns level-3 expression into differential signatures; keep the
# expression in a layer first, as in scanpy (or write the result to a layer with `key_added=`). The Cell Painting
# features are normalized against the whole plate; subtracting the DMSO mean centres them on the vehicle.

# %%
l1000.layers["expression"] = l1000.X.copy()
pk.pp.control_diff(l1000, groupby="det_plate")
pk.pp.control_diff(cp, groupby="plate")

rows = {}
for name, data in {"L1000": l1000, "Cell Painting": cp}.items():
    controls = data.obs["control"].to_numpy()
    rows[name] = {
        "control wells": int(controls.sum()),
        "largest |control mean| subtracted": float(np.abs(data.uns["control_diff"]["control_means"]).max()),
        "largest |control mean| after": float(np.abs(data.X[controls].mean(axis=0)).max()),
    }
pd.DataFrame.from_dict(rows, orient="index")

# %% [markdown]
# ## 7. Collapse replicates: mean and MODZ
#
# `pk.pp.aggregate` returns one profile per group of rows, keeping the `obs` columns that are constant within every
# group (MOA, SMILES, ...) and adding `n_profiles`. `method="modz"` is LINCS's moderated z-score: a weighted mean in which
# each profile's weight is its mean Spearman correlation with the others in its group, so a profile that disagrees
# with the rest counts little.
#
# This L1000 plate has one well per dose, so collapse the six doses of each compound into one consensus signature
# (with replicate plates you would group by `("cell_line", "drug", "dose", "time")`).

# %%
treated_l1000 = l1000[~l1000.obs["control"].to_numpy()].copy()
by = ["cell_line", "drug"]
consensus = {method: pk.pp.aggregate(treated_l1000, by=by, method=method) for method in ("mean", "modz")}
agreement = pd.Series(
    pk.metrics.pearson_rows(consensus["mean"].X, consensus["modz"].X), index=consensus["mean"].obs["drug"].to_numpy()
)
print(f"{treated_l1000.n_obs} treated wells → {consensus['modz'].n_obs} consensus signatures")
print(
    f"PCC between mean and MODZ consensus: median {agreement.median():.3f}, lowest {agreement.min():.3f} "
    f"({agreement.idxmin()})"
)
consensus["modz"].obs[["drug", "n_profiles", "moa", "clinical_phase"]].head()

# %% [markdown]
# Where the doses agree, MODZ and the mean coincide. Where one profile disagrees, MODZ gives it little weight. For the
# compound where the two differ most, the strong 10 µM profile dominates the mean although it disagrees with the
# five lower doses; the MODZ consensus follows the lower doses instead:

# %%
drug = agreement.idxmin()
wells = treated_l1000[treated_l1000.obs["drug"].eq(drug).to_numpy()]
wells = wells[np.argsort(wells.obs["dose"].to_numpy())]
pcc = {}
for method, profiles in consensus.items():
    profile = profiles[profiles.obs["drug"].eq(drug).to_numpy()].X  # 1 × genes
    pcc[f"PCC with the {method} consensus"] = pk.metrics.pearson_rows(wells.X, profile)
pd.DataFrame(pcc, index=pd.Index(wells.obs["dose"], name=f"{drug}: well at dose (µM)")).round(3)

# %% [markdown]
# For Cell Painting, one consensus profile per compound and dose: most groups are single wells, two compounds have 12
# replicate wells and DMSO has 24.

# %%
cp_consensus = pk.pp.aggregate(cp, by=["drug", "dose"], method="modz")
print(cp_consensus.shape, "| wells per consensus profile:", cp_consensus.obs["n_profiles"].value_counts().to_dict())
columns = ["drug", "pert_iname", "dose", "n_profiles", "moa"]
cp_consensus.obs.sort_values("n_profiles", ascending=False)[columns].head(4)

# %% [markdown]
# ## 8. Invertible scaling
#
# `pk.pp.scale` scales X (`"maxabs"`, `"minmax"` or `"zscore"`, per feature or globally) and stores the fitted
# parameters in `uns["scale"]`. `pk.pp.unscale` inverts it; `copy=True` leaves the input untouched; and
# `scaler=other.uns["scale"]` re-applies the parameters fitted on training data to new data. The models use the same
# `Scaler` internally and save it with their weights.

# %%
before = cp_consensus.X.copy()
scaled = pk.pp.scale(cp_consensus, method="minmax", copy=True)  # [0, 1] per feature, the VAEs' input range
restored = pk.pp.unscale(scaled, copy=True)

half = cp_consensus.n_obs // 2
first, second = cp_consensus[:half].copy(), cp_consensus[half:].copy()
pk.pp.scale(first, method="zscore")
pk.pp.scale(second, scaler=first.uns["scale"])  # the first half's means and SDs

pd.Series(
    {
        "input unchanged by copy=True": np.array_equal(cp_consensus.X, before) and "scale" not in cp_consensus.uns,
        "scaled range": f"[{scaled.X.min():.2f}, {scaled.X.max():.2f}]",
        "max |unscale(scale(X)) − X|": f"{np.abs(restored.X - before).max():.1e}",
        "re-applied scaler fitted here?": second.uns["scale"]["fitted_here"],
        "second half's mean after scaling": f"{second.X.mean():.3f}",
    },
    name="check",
).to_frame()

# %% [markdown]
# ## 9. Simulated data and the full data sets
#
# For methods work, `pk.datasets.simulate_bulk` (L1000-like signatures in several cell lines),
# `simulate_morphology` (Cell Painting-like wells) and `simulate_single_cell` (UMI counts) produce data in the same
# schema, with the ground truth in `uns["simulation"]`, `layers["noise_free"]` and `obsm["latent_true"]`. The drugs
# carry real SMILES and MOAs.

# %%
sim = pk.datasets.simulate_bulk(n_drugs=60, n_genes=100, n_cell_lines=2, seed=0)
pk.pp.validate(sim, moa_key="moa", smiles_key="smiles")
print(sim)
print("truth:", sorted(sim.uns["simulation"]))
sim.obs.head(3)

# %% [markdown]
# The downloaders fetch the full public data sets once into `pk.settings.datadir` (hashes checked) and can load them
# straight into AnnData; they need internet, so they are not called here:
#
# - `pk.datasets.lincs_l1000_level5(load=True)` — LINCS L1000 phase 2 level 5 (GEO GSE70138), read with its `sig_info`
#   and `gene_info` (`what="sig_info"` / `"gene_info"` for the tables alone);
# - `pk.datasets.lincs_cell_painting(load=True)` — LINCS Cell Painting consensus profiles, or one plate with `plate=`;
# - `pk.datasets.kang_pbmc(load=True)` — Kang et al. 2018 interferon-β PBMCs.
#
# `pk.datasets.registry()` lists every known file with its URL, size and where its hash comes from (no download):

# %%
pk.datasets.registry()[["size", "hash_source"]]

# %% [markdown]
# Next: `02_deepcellstate.ipynb` trains DeepCellState on simulated signatures; `03_vae_lsa_cell_painting.ipynb`
# trains VAEs on this Cell Painting plate.
