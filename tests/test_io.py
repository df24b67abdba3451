"""Readers and writers (pk.io) and pk.pp.annotate, on the real files in ../shared/data and on files written here."""

from __future__ import annotations

import gzip

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

import perturbkit as pk
from perturbkit._schema import EmptyGroupError, MissingColumnError, PerturbkitInputError
from perturbkit.pp._annotate import annotate

L1000 = "l1000/test_l1000.gct.gz"
LJP_SIGS = "l1000/LJP_row_metadata.txt.gz"
CELL_PAINTING = "cell_painting/SQ00015054_normalized_feature_select.csv.gz"
HUB_DRUGS = "repurposing_hub/repurposing_drugs_20200324.txt.gz"
HUB_SAMPLES = "repurposing_hub/repurposing_samples_20200324.txt.gz"
KANG = "kang_pbmc/kang_ifnb_pbmc_2k.h5ad"


@pytest.fixture(scope="module")
def l1000():
    return pk.io.read_gct(shared_file(L1000))


@pytest.fixture(scope="module")
def cell_painting():
    return pk.io.read_cell_painting(shared_file(CELL_PAINTING))


@pytest.fixture(scope="module")
def hub():
    return pk.io.read_repurposing_hub(shared_file(HUB_DRUGS), shared_file(HUB_SAMPLES))


def _small_adata(n_obs=6, n_vars=4, seed=0):
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame(
        {
            "drug": ["DMSO", "a", "a", "b", np.nan, "b"][:n_obs],
            "dose": [0.0, 1.0, np.nan, 10.0, 0.5, 2.5][:n_obs],
            "count": np.arange(n_obs, dtype=np.int64),
            "control": [True, False, False, False, False, False][:n_obs],
            "batch": pd.Categorical(["x", "y", "x", "y", "x", "y"][:n_obs], categories=["y", "x", "unused"]),
            "id": [f"orig{i}" for i in range(n_obs)],
        },
        index=[f"s{i}" for i in range(n_obs)],
    )
    var = pd.DataFrame({"pr_gene_symbol": [f"G{i}" for i in range(n_vars)], "weight": rng.normal(size=n_vars)},
                       index=[f"{1000 + i}" for i in range(n_vars)])
    return ad.AnnData(X=rng.normal(size=(n_obs, n_vars)).astype(np.float32), obs=obs, var=var)


# ------------------------------------------------------------------ GCT / GCTX


def test_read_gct_real_l1000_plate(l1000):
    assert l1000.shape == (377, 978)
    assert l1000.X.dtype == np.float32
    obs = l1000.obs
    assert obs["dose"].dtype == np.float64 and obs["time"].dtype == np.float64
    assert obs["control"].dtype == bool and int(obs["control"].sum()) == 26
    assert (obs.loc[obs["control"], "drug"] == "DMSO").all()
    assert (obs.loc[obs["control"], "dose"] == 0.0).all()  # vehicle: -666 in the file, 0 µM here
    assert int((obs["pert_type"] == "trt_poscon").sum()) == 23
    assert obs["drug"].nunique() == 60 and set(obs["cell_line"]) == {"A375"} and set(obs["time"]) == {24.0}
    assert obs.loc[obs["drug"] == "dasatinib", "dose"].tolist() == [10.0, 3.33, 1.11, 0.37, 0.12, 0.04]
    assert obs["pert_dose_unit"].isna().sum() == 26  # -666 became NaN, originals kept
    # gene symbols from the file's own row metadata; the probe ids stay in var['id']
    assert l1000.var_names[0] == "PSME1" and l1000.var["id"].iloc[0] == "200814_at"
    assert l1000.var_names.is_unique
    assert l1000.X[0, 0] == np.float32(11.3819)  # first value of the file: 200814_at in well A03
    assert l1000.obs_names[0] == "LJP005_A375_24H_X1_B19:A03"
    pk.pp.validate(l1000)


def test_read_gct_landmark_and_ids(l1000):
    lm = pk.io.read_gct(shared_file(L1000), landmark_only=True)  # pr_is_lmark in the file: all 978 are landmarks
    assert lm.shape == (377, 978)
    raw = pk.io.read_gct(shared_file(L1000), gene_symbols=False)
    assert raw.var_names[0] == "200814_at" and "id" not in raw.var.columns


def test_gctx_round_trip_identical(l1000, tmp_path):
    path = pk.io.write_gctx(l1000, tmp_path / "plate.gctx")
    back = pk.io.read_gct(path)
    assert np.array_equal(back.X, l1000.X) and back.X.dtype == np.float32
    assert back.obs_names.equals(l1000.obs_names) and back.var_names.equals(l1000.var_names)
    pd.testing.assert_frame_equal(back.obs, l1000.obs)
    pd.testing.assert_frame_equal(back.var, l1000.var)


def test_gctx_round_trip_dtypes_and_layout(tmp_path):
    import h5py

    adata = _small_adata()
    path = pk.io.write_gctx(adata, tmp_path / "small.gctx")
    with h5py.File(path, "r") as f:  # the LINCS layout: samples x genes on disk
        assert f["0/DATA/0/matrix"].shape == (6, 4)
        assert f["0/META/COL/id"].shape == (6,) and f["0/META/ROW/id"].shape == (4,)
        assert f["0/META/COL/dose"][2] == -666  # missing values as LINCS writes them
    back = pk.io.read_gct(path)
    assert np.array_equal(back.X, adata.X)
    pd.testing.assert_frame_equal(back.obs, adata.obs)
    pd.testing.assert_frame_equal(back.var, adata.var)
    assert list(back.obs["batch"].cat.categories) == ["y", "x", "unused"]
    assert back.var_names.tolist() == ["1000", "1001", "1002", "1003"]  # written names kept, not symbols


def test_gct_text_round_trip(l1000, tmp_path):
    for name in ("plate.gct", "plate.gct.gz"):
        back = pk.io.read_gct(pk.io.write_gct(l1000, tmp_path / name))
        assert np.array_equal(back.X, l1000.X)
        assert back.obs_names.equals(l1000.obs_names) and back.var_names.equals(l1000.var_names)
        pd.testing.assert_frame_equal(back.obs, l1000.obs)
        pd.testing.assert_frame_equal(back.var, l1000.var)


def test_gct_text_v12_and_nan(tmp_path):
    path = tmp_path / "v12.gct"
    path.write_text("#1.2\n2\t3\nName\tDescription\ts1\ts2\ts3\ng1\tfirst\t1.5\tNaN\t-2\ng2\tsecond\t0\t3.25\tna\n")
    adata = pk.io.read_gct(path)
    assert adata.shape == (3, 2) and adata.var["Description"].tolist() == ["first", "second"]
    np.testing.assert_array_equal(adata.X, np.array([[1.5, 0], [np.nan, 3.25], [-2, np.nan]], dtype=np.float32))
    small = _small_adata()
    back = pk.io.read_gct(pk.io.write_gct(small, tmp_path / "small.gct"))
    assert np.array_equal(back.X, small.X)
    assert back.obs["control"].dtype == bool and back.obs["count"].dtype == np.int64
    assert back.obs["dose"].isna().sum() == 1 and back.obs["id"].tolist() == small.obs["id"].tolist()


def test_gctx_selection_sig_info_gene_info(l1000, tmp_path):
    # a level-5-like GCTX: Entrez ids as rows, signature ids as columns, no metadata (as GSE70138 ships it)
    sigs = pd.read_csv(shared_file(LJP_SIGS), sep="\t")
    genes = l1000.var[["pr_gene_id", "pr_gene_symbol"]].reset_index(drop=True)
    genes["pr_is_lm"] = (np.arange(len(genes)) % 3 != 0).astype(int)  # pretend a third are not landmarks
    rng = np.random.default_rng(1)
    level5 = ad.AnnData(
        X=rng.normal(size=(len(sigs), len(genes))).astype(np.float32),
        obs=pd.DataFrame(index=sigs["id"].astype(str).to_numpy()),
        var=pd.DataFrame(index=genes["pr_gene_id"].astype(str).to_numpy()),
    )
    path = pk.io.write_gctx(level5, tmp_path / "level5.gctx")

    full = pk.io.read_gct(path, sig_info=shared_file(LJP_SIGS), gene_info=genes)
    assert full.shape == (358, 978)
    assert full.var_names[0] == "PSME1" and full.var["id"].iloc[0] == "5720"
    assert int(full.obs["control"].sum()) == 1 and full.obs["dose"].dtype == np.float64
    vorinostat = full.obs_names[0]
    assert full.obs.loc[vorinostat, "drug"] == "vorinostat" and full.obs.loc[vorinostat, "dose"] == 10.0
    assert full.obs["time"].eq(24.0).all() and set(full.obs["cell_line"]) == {"MCF7"}
    assert np.array_equal(full.X, level5.X)

    lm = pk.io.read_gct(path, gene_info=genes, landmark_only=True)
    assert lm.shape == (358, 652) and (lm.var["pr_is_lm"] == 1).all()
    assert np.array_equal(lm.X, level5.X[:, genes["pr_is_lm"].to_numpy() == 1])

    cid = list(level5.obs_names[[200, 3, 57]])
    rid = list(level5.var_names[[10, 2]])
    part = pk.io.read_gct(path, cid=cid, rid=rid)
    assert part.obs_names.tolist() == cid and part.var_names.tolist() == rid
    assert np.array_equal(part.X, level5.X[[200, 3, 57]][:, [10, 2]])
    every_other = pk.io.read_gct(path, cid=list(level5.obs_names[::2]))
    assert np.array_equal(every_other.X, level5.X[::2])


def test_gct_errors(tmp_path, l1000):
    with pytest.raises(FileNotFoundError, match="missing.gct"):
        pk.io.read_gct(tmp_path / "missing.gct")
    bad_dims = tmp_path / "dims.gct"
    bad_dims.write_text("#1.3\n978\t377\t11\nid\n")
    with pytest.raises(PerturbkitInputError, match="dimension line"):
        pk.io.read_gct(bad_dims)
    rows = tmp_path / "rows.gct"
    rows.write_text("#1.2\n3\t2\nName\tDescription\ts1\ts2\ng1\td\t1\t2\n")
    with pytest.raises(PerturbkitInputError, match="3 rows"):
        pk.io.read_gct(rows)
    header = tmp_path / "header.gct"
    header.write_text("#1.2\n1\t3\nName\tDescription\ts1\ts2\ng1\td\t1\t2\n")
    with pytest.raises(PerturbkitInputError, match="header line"):
        pk.io.read_gct(header)
    text = tmp_path / "text.gct"
    text.write_text("#1.2\n1\t2\nName\tDescription\ts1\ts2\ng1\td\t1\tabc\n")
    with pytest.raises(PerturbkitInputError, match="not numbers"):
        pk.io.read_gct(text)
    version = tmp_path / "version.gct.gz"
    with gzip.open(version, "wt") as fh:
        fh.write("#2.0\n1\t1\n")
    with pytest.raises(PerturbkitInputError, match="not a GCT or GCTX"):
        pk.io.read_gct(version)
    with pytest.raises(PerturbkitInputError, match="HDF5 but not GCTX"):
        pk.io.read_gct(shared_file(KANG))
    v12 = tmp_path / "nolm.gct"
    v12.write_text("#1.2\n1\t2\nName\tDescription\ts1\ts2\ng1\td\t1\t2\n")
    with pytest.raises(PerturbkitInputError, match="landmark"):
        pk.io.read_gct(v12, landmark_only=True)
    with pytest.raises(PerturbkitInputError, match="sig_info="):  # sample metadata passed as gene_info
        pk.io.read_gct(v12, gene_info=shared_file(LJP_SIGS))
    with pytest.raises(PerturbkitInputError, match="None of the 2 sample ids"):
        pk.io.read_gct(v12, sig_info=shared_file(LJP_SIGS))
    with pytest.raises(PerturbkitInputError, match="not sample"):
        pk.io.read_gct(v12, cid=["s1", "nope"])
    tabbed = l1000[:2, :2].copy()
    tabbed.obs["note"] = ["a\tb", "c"]
    with pytest.raises(PerturbkitInputError, match="tabs"):
        pk.io.write_gct(tabbed, tmp_path / "tabs.gct")


# ------------------------------------------------------------------ Cell Painting


def test_read_cell_painting_real_plate(cell_painting):
    cp = cell_painting
    assert cp.shape == (384, 454) and cp.X.dtype == np.float32
    obs = cp.obs
    assert int(obs["control"].sum()) == 24 and (obs.loc[obs["control"], "drug"] == "DMSO").all()
    assert (obs.loc[obs["control"], "moa"] == "DMSO").all()
    assert obs.loc[~obs["control"], "moa"].dropna().nunique() == 50 and int(obs["moa"].isna().sum()) == 18
    assert obs["dose"].dtype == np.float64
    assert obs.loc[obs["drug"] == "BRD-K92301463", "dose"].tolist() == [1.0, 0.33333, 0.11111, 0.037037, 0.012346,
                                                                       0.0041152]
    assert set(obs["cell_line"]) == {"A549"} and set(obs["plate"]) == {"SQ00015054"}
    assert cp.obs_names[0] == "SQ00015054_A01" and obs["well"].iloc[0] == "A01"
    assert "Metadata_moa" in obs.columns and obs.shape[1] == 26 + 7
    assert cp.X[0, cp.var_names.get_loc("Cells_AreaShape_Compactness")] == np.float32(0.40025)
    var = cp.var
    assert set(var["compartment"]) == {"Cells", "Cytoplasm", "Nuclei"}
    assert set(var["channel"]) >= {"DNA", "RNA", "AGP", "ER", "Mito", "None"}
    assert var["compartment"].value_counts().to_dict() == {"Nuclei": 163, "Cells": 153, "Cytoplasm": 138}
    assert int((var["feature_type"] == "Correlation").sum()) == 77
    pk.pp.validate(cp, time_key=None)


def test_parse_cellprofiler_features():
    names = ["Cells_Correlation_K_ER_RNA", "Cells_Correlation_Overlap_DNA_ER", "Nuclei_Texture_InfoMeas1_OrigER_5_0",
             "Cells_AreaShape_Zernike_0_0", "Cytoplasm_RadialDistribution_FracAtD_Mito_3of4", "Cells_Granularity_2_AGP",
             "Image_Count_Cells"]
    parsed = pk.io.parse_cellprofiler_features(names)
    assert parsed.index.tolist() == names
    assert parsed.columns.tolist() == ["compartment", "feature_type", "channel", "measurement", "group"]
    assert parsed["channel"].tolist() == ["ER_RNA", "DNA_ER", "ER", "None", "Mito", "AGP", "None"]
    assert parsed["measurement"].tolist() == ["K", "Overlap", "InfoMeas1_5_0", "Zernike_0_0", "FracAtD_3of4", "2",
                                              "Cells"]
    assert parsed.loc["Cells_Correlation_K_ER_RNA", "group"] == "Cells_ER_RNA"
    assert parsed.loc["Image_Count_Cells", "compartment"] == "Image"
    # both directions of a two-channel feature fall in one group
    assert pk.io.parse_cellprofiler_features(["Cells_Correlation_K_RNA_DNA"])["group"].item() == "Cells_DNA_RNA"


def test_cell_painting_parquet_and_errors(cell_painting, tmp_path):
    table = pd.read_csv(shared_file(CELL_PAINTING)).iloc[:10]
    table.drop(columns=["Metadata_cell_id"]).to_parquet(tmp_path / "p.parquet")
    with pytest.warns(UserWarning, match="cell_line"):
        cp = pk.io.read_cell_painting(tmp_path / "p.parquet")
    assert cp.shape == (10, 454) and set(cp.obs["cell_line"]) == {"unknown"}
    assert np.array_equal(cp.X, cell_painting.X[:10])
    assert set(pk.io.read_cell_painting(tmp_path / "p.parquet", cell_line="A549").obs["cell_line"]) == {"A549"}

    with pytest.raises(FileNotFoundError, match="absent.csv"):
        pk.io.read_cell_painting(tmp_path / "absent.csv")
    (tmp_path / "p.xlsx").write_text("x")
    with pytest.raises(PerturbkitInputError, match="Unknown profile format"):
        pk.io.read_cell_painting(tmp_path / "p.xlsx")
    (tmp_path / "nometa.csv").write_text("a,b\n1,2\n")
    with pytest.raises(PerturbkitInputError, match="no Metadata_"):
        pk.io.read_cell_painting(tmp_path / "nometa.csv")
    (tmp_path / "text.csv").write_text("Metadata_Well,Cells_AreaShape_Area,Cells_Note\nA01,1.0,abc\n")
    with pytest.raises(PerturbkitInputError, match="Cells_Note"):
        pk.io.read_cell_painting(tmp_path / "text.csv")


# ------------------------------------------------------------------ Repurposing Hub and annotate


def test_read_repurposing_hub(hub):
    assert hub.shape[0] == 6798 and hub["drug"].is_unique
    assert {"drug", "moa", "target", "clinical_phase", "disease_area", "indication", "smiles", "broad_id"} <= set(hub)
    assert int(hub["smiles"].isna().sum()) == 0
    erlotinib = hub.set_index("drug").loc["erlotinib"]
    assert erlotinib["moa"] == "EGFR inhibitor" and erlotinib["clinical_phase"] == "Launched"
    assert erlotinib["smiles"] == "COCCOc1cc2ncnc(Nc3cccc(c3)C#C)c2cc1OCCOC"
    assert erlotinib["broad_id"] == "BRD-K70401845"
    dasatinib = hub.set_index("drug").loc["dasatinib"]
    assert "Bcr-Abl kinase inhibitor" in pk._schema.split_moa(dasatinib["moa"])
    only_drugs = pk.io.read_repurposing_hub(shared_file(HUB_DRUGS))
    assert only_drugs.shape == (6798, 6) and "smiles" not in only_drugs


def test_repurposing_hub_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.txt"):
        pk.io.read_repurposing_hub(tmp_path / "nothere.txt")
    (tmp_path / "wrong.txt").write_text("!comment\nname\tphase\nx\t1\n")
    with pytest.raises(PerturbkitInputError, match="pert_iname"):
        pk.io.read_repurposing_hub(tmp_path / "wrong.txt")


def test_annotate_l1000_with_hub(l1000, hub):
    before = l1000.obs.copy()
    annotated = annotate(l1000, hub, copy=True)
    pd.testing.assert_frame_equal(l1000.obs, before)  # copy=True leaves the input alone
    assert "annotate" not in l1000.uns
    record = annotated.uns["annotate"]
    assert record["n_keys"] == 60 and record["n_keys_matched"] == 36  # 35 drugs + DMSO ("control vehicle")
    assert record["n_matched"] == 234 and record["table_on"] == "drug"
    obs = annotated.obs
    assert obs.loc[obs["drug"] == "erlotinib", "moa"].eq("EGFR inhibitor").all()
    assert obs.loc[obs["drug"] == "PLX-4720", "moa"].isna().all()  # not in the hub
    # case-insensitive: LINCS-style upper case still matches
    upper = l1000.copy()
    upper.obs["drug"] = upper.obs["drug"].str.upper()
    assert annotate(upper, hub, columns=["moa", "smiles"]) is None  # in place, scanpy-style
    assert upper.uns["annotate"]["n_keys_matched"] == 36
    assert upper.obs.loc[upper.obs["drug"] == "ERLOTINIB", "smiles"].iloc[0] == hub.set_index("drug").at[
        "erlotinib", "smiles"]


def test_annotate_cell_painting_by_broad_id(cell_painting, hub):
    kept = annotate(cell_painting, hub, on="Metadata_broad_id", table_on="broad_id", columns=["drug", "smiles"],
                    copy=True)
    assert kept.uns["annotate"]["n_keys_matched"] == 45 and kept.uns["annotate"]["n_matched"] == 276
    assert kept.obs["drug"].equals(cell_painting.obs["drug"])  # overwrite=False keeps existing values
    named = annotate(cell_painting, hub, on="Metadata_broad_id", table_on="broad_id", columns=["drug"],
                     overwrite=True, copy=True)
    assert named.obs.loc["SQ00015054_A21", "drug"] == "imatinib"
    assert int((named.obs["drug"] == "DMSO").sum()) == 24  # unmatched rows keep theirs


def test_annotate_errors(l1000, hub):
    with pytest.raises(MissingColumnError, match="on="):
        annotate(l1000, hub, on="compound", copy=True)
    with pytest.raises(PerturbkitInputError, match="table_on="):
        annotate(l1000, hub.rename(columns={"drug": "name"}), copy=True)
    duplicated = pd.DataFrame({"drug": ["Erlotinib", "erlotinib"], "moa": ["a", "b"]})
    with pytest.raises(PerturbkitInputError, match="equal ignoring case"):
        annotate(l1000, duplicated, copy=True)
    with pytest.raises(PerturbkitInputError, match="lacks"):
        annotate(l1000, hub, columns=["nope"], copy=True)
    assert "moa" not in l1000.obs


# ------------------------------------------------------------------ h5ad


def test_read_h5ad_kang():
    raw = ad.read_h5ad(shared_file(KANG))
    assert raw.shape == (2000, 9015)
    assert raw.obs["condition"].value_counts().to_dict() == {"ctrl": 1000, "stim": 1000}
    kang = pk.io.read_h5ad(shared_file(KANG), condition_key="condition", control_value="ctrl")
    assert kang.shape == (2000, 9015) and kang.obs["control"].dtype == bool and int(kang.obs["control"].sum()) == 1000
    guessed = pk.io.read_h5ad(shared_file(KANG), condition_key="condition")
    assert int(guessed.obs["control"].sum()) == 1000
    with pytest.raises(FileNotFoundError, match="absent.h5ad"):
        pk.io.read_h5ad("absent.h5ad")
    with pytest.raises(MissingColumnError, match="condition_key="):
        pk.io.read_h5ad(shared_file(KANG), condition_key="treatment")
    with pytest.raises(EmptyGroupError, match="control_value="):
        pk.io.read_h5ad(shared_file(KANG), condition_key="condition", control_value="DMSO")
