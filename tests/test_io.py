"""Readers and writers (pk.io) and pk.pp.annotate, on the real files in ../shared/data and on files written here."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

import perturbkit as pk
from perturbkit._schema import EmptyGroupError, MissingColumnError, PerturbkitInputError
from perturbkit.errors import FileFormatError
from perturbkit.pp._annotate import annotate

L1000 = "l1000/test_l1000.gct.gz"
LJP_SIGS = "l1000/LJP_row_metadata.txt.gz"
CELL_PAINTING = "cell_painting/SQ00015054_normalized_feature_select.csv.gz"
HUB_DRUGS = "repurposing_hub/repurposing_drugs_20200324.txt.gz"
HUB_SAMPLES = "repurposing_hub/repurposing_samples_20200324.txt.gz"
KANG = "kang_pbmc/kang_ifnb_pbmc_2k.h5ad"
L1000_GCTX = "l1000/LJP005_A375_24H_level4_n377x978.gctx"
P100 = "p100/P100_P-0029_MCF7_3h.gct.gz"
MOA_MAP = "cell_painting/lincs_cell_painting_moa_map.tsv.gz"
CMAPPY = Path(__file__).parent / "fixtures" / "cmappy"


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
    var = pd.DataFrame(
        {"pr_gene_symbol": [f"G{i}" for i in range(n_vars)], "weight": rng.normal(size=n_vars)},
        index=[f"{1000 + i}" for i in range(n_vars)],
    )
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
    assert obs.loc[obs["drug"] == "BRD-K92301463", "dose"].tolist() == [
        1.0,
        0.33333,
        0.11111,
        0.037037,
        0.012346,
        0.0041152,
    ]
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
    names = [
        "Cells_Correlation_K_ER_RNA",
        "Cells_Correlation_Overlap_DNA_ER",
        "Nuclei_Texture_InfoMeas1_OrigER_5_0",
        "Cells_AreaShape_Zernike_0_0",
        "Cytoplasm_RadialDistribution_FracAtD_Mito_3of4",
        "Cells_Granularity_2_AGP",
        "Image_Count_Cells",
    ]
    parsed = pk.io.parse_cellprofiler_features(names)
    assert parsed.index.tolist() == names
    assert parsed.columns.tolist() == ["compartment", "feature_type", "channel", "measurement", "group"]
    assert parsed["channel"].tolist() == ["ER_RNA", "DNA_ER", "ER", "None", "Mito", "AGP", "None"]
    assert parsed["measurement"].tolist() == [
        "K",
        "Overlap",
        "InfoMeas1_5_0",
        "Zernike_0_0",
        "FracAtD_3of4",
        "2",
        "Cells",
    ]
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
    assert (
        upper.obs.loc[upper.obs["drug"] == "ERLOTINIB", "smiles"].iloc[0]
        == hub.set_index("drug").at["erlotinib", "smiles"]
    )


def test_annotate_cell_painting_by_broad_id(cell_painting, hub):
    kept = annotate(
        cell_painting, hub, on="Metadata_broad_id", table_on="broad_id", columns=["drug", "smiles"], copy=True
    )
    assert kept.uns["annotate"]["n_keys_matched"] == 45 and kept.uns["annotate"]["n_matched"] == 276
    assert kept.obs["drug"].equals(cell_painting.obs["drug"])  # overwrite=False keeps existing values
    named = annotate(
        cell_painting, hub, on="Metadata_broad_id", table_on="broad_id", columns=["drug"], overwrite=True, copy=True
    )
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


# ------------------------------------------------------------------ GCT text: every line checked (issue 10)


def _gct_lines(n_rows=3, n_cols=4):
    """A small valid GCT 1.3 as a list of lines (no line ends)."""
    lines = [
        "#1.3",
        f"{n_rows}\t{n_cols}\t1\t2",
        "\t".join(["id", "symbol", *[f"s{j}" for j in range(n_cols)]]),
        "\t".join(["pert_iname", "na", "DMSO", *["vorinostat"] * (n_cols - 1)]),
        "\t".join(["pert_type", "na", "ctl_vehicle", *["trt_cp"] * (n_cols - 1)]),
    ]
    for i in range(n_rows):
        lines.append("\t".join([f"g{i}", f"G{i}", *[f"{i + 0.25 * j:.4f}" for j in range(n_cols)]]))
    return lines


def _write(path, lines, *, end="\n"):
    if isinstance(lines[0], str):
        Path(path).write_bytes(("\n".join(lines) + end).encode())
    else:
        Path(path).write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_gct_every_data_line_is_checked(tmp_path):
    good = pk.io.read_gct(_write(tmp_path / "good.gct", _gct_lines()))
    assert good.shape == (4, 3)
    lines = _gct_lines()
    fields = lines[6].split("\t")
    lines[6] = "\t".join(fields[:3] + fields[4:])  # one value missing mid-line: later values would shift left
    with pytest.raises(FileFormatError, match=r"mid\.gct' line 7: the line has 5 fields where 6 are expected"):
        pk.io.read_gct(_write(tmp_path / "mid.gct", lines))
    lines = _gct_lines()
    lines[6] += "\t1.5"  # one value too many
    with pytest.raises(FileFormatError, match="line 7: the line has 7 fields"):
        pk.io.read_gct(_write(tmp_path / "long.gct", lines))
    lines = _gct_lines()
    lines[-1] = lines[-1].rsplit("\t", 2)[0]  # the last line cut short (a truncated download)
    with pytest.raises(FileFormatError, match="line 8: .*4 fields.*truncated"):
        pk.io.read_gct(_write(tmp_path / "cut.gct", lines, end=""))
    lines = _gct_lines()
    lines[3] = lines[3].rsplit("\t", 1)[0]  # a short column-metadata line
    with pytest.raises(FileFormatError, match="line 4: the line has 5 fields"):
        pk.io.read_gct(_write(tmp_path / "meta.gct", lines))


def test_gct_tolerates_what_does_not_change_values(tmp_path):
    good = pk.io.read_gct(_write(tmp_path / "good.gct", _gct_lines()))
    lines = _gct_lines()
    same = [
        _write(tmp_path / "crlf.gct", [line + "\r" for line in lines]),  # Windows line ends
        _write(tmp_path / "blank.gct", [*lines, "", ""]),  # blank lines at the end
        _write(tmp_path / "padded.gct", lines[:2] + [line + "\t\t" for line in lines[2:]]),  # spreadsheet padding
        _write(tmp_path / "bom.gct", ["\ufeff" + lines[0], *lines[1:]]),
    ]
    for path in same:
        back = pk.io.read_gct(path)
        assert np.array_equal(back.X, good.X), path.name
        pd.testing.assert_frame_equal(back.obs, good.obs)
        pd.testing.assert_frame_equal(back.var, good.var)
    with pytest.warns(UserWarning, match="does not end with a line break"):
        pk.io.read_gct(_write(tmp_path / "noeol.gct", lines, end=""))
    padded_but_one = lines[:2] + [line + "\t" for line in lines[2:-1]] + [lines[-1]]
    with pytest.raises(FileFormatError, match=r"line 8: the line has 6 fields where 7 are expected \(the header"):
        pk.io.read_gct(_write(tmp_path / "padded_but_one.gct", padded_but_one))


def test_gct_nul_byte_and_invalid_utf8(tmp_path):
    lines = [line.encode() for line in _gct_lines()]
    lines[6] = lines[6].replace(b"1.0000", b"4.\x00\x00\x002563")  # read as 4.0 before
    with pytest.raises(FileFormatError, match=r"nul\.gct' line 7 .*NUL byte"):
        pk.io.read_gct(_write(tmp_path / "nul.gct", lines))
    lines = [line.encode() for line in _gct_lines()]
    lines[3] = lines[3].replace(b"vorinostat", b"vorin\xf8stat", 1)  # Latin-1, not UTF-8
    with pytest.raises(
        FileFormatError, match=r"latin1\.gct' is not valid UTF-8: line 4 \(byte 25 of the line\) holds b'\\xf8sta'"
    ):
        pk.io.read_gct(_write(tmp_path / "latin1.gct", lines))
    gz = tmp_path / "latin1.gct.gz"
    gz.write_bytes(gzip.compress((tmp_path / "latin1.gct").read_bytes()))
    with pytest.raises(FileFormatError, match="not valid UTF-8: line 4"):
        pk.io.read_gct(gz)


def test_gct_bad_value_names_line_and_sample(tmp_path):
    lines = _gct_lines()
    lines[7] = lines[7].replace("2.2500", "2.2.5")
    with pytest.raises(FileFormatError, match=r"line 8: the value '2\.2\.5' \(sample 's1'\) is not a number"):
        pk.io.read_gct(_write(tmp_path / "bad.gct", lines))


def test_gct_corrupted_gzip(tmp_path, l1000):
    path = pk.io.write_gct(l1000[:20, :30], tmp_path / "plate.gct.gz")
    data = path.read_bytes()
    (tmp_path / "cut.gct.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=r"cut\.gct\.gz' is a damaged or incomplete gzip file"):
        pk.io.read_gct(tmp_path / "cut.gct.gz")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    (tmp_path / "flip.gct.gz").write_bytes(bytes(flipped))
    with pytest.raises(FileFormatError, match="gzip"):
        pk.io.read_gct(tmp_path / "flip.gct.gz")


def test_gct_duplicated_metadata_field(tmp_path):
    lines = _gct_lines()
    lines[4] = lines[4].replace("pert_type", "pert_iname")
    with pytest.raises(FileFormatError, match="line 5: the column-metadata field 'pert_iname' appears twice"):
        pk.io.read_gct(_write(tmp_path / "dup.gct", lines))


# ------------------------------------------------------------------ GCT metadata: cmapPy's missing values, schema


def test_gct_missing_tokens_match_cmappy():
    """cmapPy 4.0.1's parse of tests/fixtures/cmappy/missing_tokens.gct (see the README there)."""
    ref = json.loads((CMAPPY / "missing_tokens.json").read_text())
    adata = pk.io.read_gct(CMAPPY / "missing_tokens.gct")
    deliberate = {"s10": "-666.000", "s11": "", "s21": " NA"}  # missing here, kept as text by cmapPy (documented)
    tok = adata.obs["tok"]
    for sample, value in ref["col_meta"]["tok"]["values"].items():
        if value is None or sample in deliberate:
            assert pd.isna(tok[sample]), (sample, tok[sample])
        else:
            assert tok[sample] == value
    assert {s: ref["col_meta"]["tok"]["values"][s] for s in deliberate} == deliberate
    for field in ("num", "num_na"):
        assert adata.obs[field].dtype == np.float64 and ref["col_meta"][field]["dtype"] == "float64"
        assert adata.obs_names[adata.obs[field].isna()].tolist() == ref["col_meta"][field]["missing"]
    for field in ("rtok", "rnum"):
        assert adata.var_names[adata.var[field].isna()].tolist() == ref["row_meta"][field]["missing"]
    _compare_matrix(adata, ref)


def test_gct_smiles_and_dose_units(tmp_path):
    lines = [
        "#1.3",
        "1\t4\t0\t6",
        "id\ts1\ts2\ts3\ts4",
        "pert_iname\tDMSO\tdrugA\tdrugB\tdrugB",
        "pert_type\tctl_vehicle\ttrt_cp\ttrt_misc\ttrt_misc",
        "pert_dose\t-666\t10\t5\t500",
        "pert_dose_unit\t-666\tnM\tng\tng/mL",
        "pert_time\t24\t24\t90\t2",
        "canonical_smiles\tCS(C)=O\tCCO\tNA\tN/A",
        "g1\t1\t2\t3\t4",
    ]
    with pytest.warns(UserWarning) as record:
        adata = pk.io.read_gct(_write(tmp_path / "units.gct", lines))
    message = str(record[0].message)
    assert "cannot be converted to µM" in message
    assert "pert_dose unit 'ng' (1 row, e.g. ['s3'])" in message and "unit 'ng/mL' (1 row, e.g. ['s4'])" in message
    assert adata.obs["dose"].tolist()[:2] == [0.0, 0.01] and adata.obs["dose"].iloc[2:].isna().all()
    assert adata.obs["time"].tolist() == [24.0, 24.0, 90.0, 2.0]
    assert adata.obs["smiles"].tolist()[:2] == ["CS(C)=O", "CCO"] and adata.obs["smiles"].iloc[2:].isna().all()
    lines[6] = "pert_dose_unit\t-666\tnM\tuM\tµM"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pk.io.read_gct(_write(tmp_path / "ok.gct", lines)).obs["dose"].tolist() == [0.0, 0.01, 5.0, 500.0]


def test_dose_parsing_is_vectorised_and_names_many_rows():
    from perturbkit.io._gct import _lincs_schema

    n = 20_000
    obs = pd.DataFrame(
        {"pert_idose": np.where(np.arange(n) % 4 == 0, "3 ng", "10.0 um"), "pert_itime": "24 h"},
        index=[f"w{i}" for i in range(n)],
    )
    with pytest.warns(UserWarning, match=r"pert_idose unit 'ng' \(5000 rows, e\.g\. \['w0', 'w4', 'w8'\]\)"):
        out = _lincs_schema(obs)
    assert out["dose"].isna().sum() == 5000 and (out["dose"].dropna() == 10.0).all() and (out["time"] == 24).all()


# ------------------------------------------------------------------ read_gct_metadata


@pytest.mark.parametrize("kind", ["gct", "gct.gz", "gctx"])
def test_read_gct_metadata_matches_read_gct(kind, l1000, tmp_path, monkeypatch):
    path = tmp_path / f"plate.{kind}"
    (pk.io.write_gctx if kind == "gctx" else pk.io.write_gct)(l1000, path)
    full = pk.io.read_gct(path)
    from perturbkit.io import _gct

    def no_matrix(*args, **kwargs):
        raise AssertionError("read_gct_metadata must not read the matrix")

    monkeypatch.setattr(_gct._GctxSource, "matrix", no_matrix)
    monkeypatch.setattr(_gct._GctTextSource, "matrix", no_matrix)
    obs, var = pk.io.read_gct_metadata(path)
    pd.testing.assert_frame_equal(obs, full.obs)
    pd.testing.assert_frame_equal(var, full.var)


def test_read_gct_metadata_real_files(shared_data):
    for relative in (L1000, L1000_GCTX, P100):
        full = pk.io.read_gct(shared_data(relative))
        obs, var = pk.io.read_gct_metadata(shared_data(relative))
        pd.testing.assert_frame_equal(obs, full.obs)
        pd.testing.assert_frame_equal(var, full.var)
    obs, _ = pk.io.read_gct_metadata(shared_data(L1000_GCTX))
    keep = obs.index[obs["drug"].isin(["DMSO", "neratinib"])]  # choose columns, then read only them
    part = pk.io.read_gct(shared_data(L1000_GCTX), cid=keep)
    assert part.n_obs == len(keep) == 26 + 6


# ------------------------------------------------------------------ GCTX: damage, checksum, speed-related defaults


def test_gctx_damaged_files(tmp_path, l1000, shared_data):
    foreign = shared_data(L1000_GCTX)  # written by cmapPy: no checksum
    data = foreign.read_bytes()
    (tmp_path / "cut.gctx").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=r"cut\.gctx' cannot be opened as HDF5/GCTX.*damaged or incomplete"):
        pk.io.read_gct(tmp_path / "cut.gctx")
    (tmp_path / "head.gctx").write_bytes(data[:4096])
    with pytest.raises(FileFormatError, match="head.gctx"):
        pk.io.read_gct(tmp_path / "head.gctx")

    path = pk.io.write_gctx(l1000, tmp_path / "mine.gctx")
    data = path.read_bytes()
    assert data.startswith(b"perturbkit GCTX checksum\n")
    for i, where in ((len(data) - 100, "matrix"), (600, "superblock"), (len(data) // 3, "middle")):
        flipped = bytearray(data)
        flipped[i] ^= 0x20
        bad = tmp_path / f"flip_{where}.gctx"
        bad.write_bytes(bytes(flipped))
        with pytest.raises(FileFormatError, match=rf"flip_{where}\.gctx' is damaged: its content no longer matches"):
            pk.io.read_gct(bad)
    (tmp_path / "short.gctx").write_bytes(data[:-10])
    with pytest.raises(FileFormatError, match="truncated or damaged"):
        pk.io.read_gct(tmp_path / "short.gctx")
    with pytest.raises(FileFormatError, match="truncated or damaged"):
        pk.io.read_gct_metadata(tmp_path / "short.gctx")
    back = pk.io.read_gct(path, verify=False)
    assert np.array_equal(back.X, l1000.X)


def test_gctx_h5py_errors_become_file_format_errors(tmp_path):
    import h5py

    path = tmp_path / "odd.gctx"
    with h5py.File(path, "w") as f:
        f.create_dataset("0/DATA/0/matrix", data=np.zeros((2, 3), np.float32))
        f.create_dataset("0/META/COL/id", data=np.array([b"a", b"b"]))
        f.create_dataset("0/META/ROW/id", data=np.array([b"x", b"\xffy", b"z"]))  # not UTF-8
    with pytest.raises(FileFormatError, match=r"odd\.gctx': the GCTX dataset /0/META/ROW/id holds bytes that are not"):
        pk.io.read_gct(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("0/DATA/0/matrix", data=np.array([[b"a", b"b", b"c"]] * 2))  # text, not numbers
        f.create_dataset("0/META/COL/id", data=np.array([b"a", b"b"]))
        f.create_dataset("0/META/ROW/id", data=np.array([b"x", b"y", b"z"]))
    with pytest.raises(FileFormatError, match=r"odd\.gctx' is a damaged or incomplete GCTX"):
        pk.io.read_gct(path)


def test_write_gctx_defaults_and_atomic(tmp_path, l1000, monkeypatch):
    import h5py

    path = pk.io.write_gctx(l1000, tmp_path / "plate.gctx")
    with h5py.File(path, "r") as f:
        assert f["0/DATA/0/matrix"].compression is None and f["0/DATA/0/matrix"].chunks is None  # contiguous
    small = pk.io.write_gctx(l1000, tmp_path / "small.gctx", compression="gzip")
    with h5py.File(small, "r") as f:
        assert f["0/DATA/0/matrix"].compression == "gzip"
    assert np.array_equal(pk.io.read_gct(small).X, l1000.X)
    plain = pk.io.write_gctx(l1000, tmp_path / "plain.gctx", checksum=False)
    assert plain.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    pd.testing.assert_frame_equal(pk.io.read_gct(plain).obs, l1000.obs)
    with pytest.raises(PerturbkitInputError, match="compression='zip' is not known"):
        pk.io.write_gctx(l1000, tmp_path / "x.gctx", compression="zip")

    before = path.read_bytes()
    from perturbkit.io import _gct

    def fail(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(_gct, "_write_meta_column", fail)
    with pytest.raises(OSError, match="No space"):
        pk.io.write_gctx(l1000[:5], path)
    monkeypatch.setattr(_gct, "_text_values", fail)
    with pytest.raises(OSError, match="No space"):
        pk.io.write_gct(l1000[:5], tmp_path / "plate.gct")
    assert path.read_bytes() == before  # the good file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.gctx", "plate.gctx", "small.gctx"]  # no temp files


# ------------------------------------------------------------------ agreement with cmapPy on the real files


def _compare_matrix(adata, ref):
    """adata (samples x genes) against cmapPy's genes x samples fixture: ids, sampled values, sums, NaN counts."""
    assert adata.var_names.tolist() == ref["row_ids"] and adata.obs_names.tolist() == ref["col_ids"]
    rows = adata.var_names.get_indexer(ref["values"]["row_id"])
    cols = adata.obs_names.get_indexer(ref["values"]["col_id"])
    expected = np.array([np.nan if v is None else v for v in ref["values"]["value"]], dtype=np.float32)
    np.testing.assert_array_equal(adata.X[cols, rows], expected)  # float32 values: identical
    X = adata.X.astype(np.float64)
    np.testing.assert_allclose(np.nansum(X, axis=1), ref["col_sums"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(np.nansum(X, axis=0), ref["row_sums"], rtol=1e-12, atol=1e-9)
    assert np.isnan(X).sum(axis=1).tolist() == ref["col_nan"] and np.isnan(X).sum(axis=0).tolist() == ref["row_nan"]


def _compare_metadata(frame, ref_meta, *, deliberate=()):
    for field, info in ref_meta.items():
        values = frame[field]
        assert frame.index[values.isna().to_numpy()].tolist() == info["missing"], field
        for key, expected in info["values"].items():
            got = values[key]
            if expected is None:
                assert pd.isna(got), (field, key)
            elif (field, expected) in deliberate:  # documented: text TRUE/FALSE becomes bool
                assert got == (expected.lower() == "true")
            elif isinstance(expected, float):
                assert float(got) == pytest.approx(expected, rel=1e-12), (field, key)
            else:
                assert got == expected and type(got) is not str or isinstance(expected, str), (field, key, got)
        kind = {"object": "O", "float64": "f", "int64": "i", "bool": "b"}[info["dtype"]]
        assert values.dtype.kind == kind or (field, "TRUE") in deliberate, (field, values.dtype, info["dtype"])


@pytest.mark.parametrize("name, relative", [("test_l1000", L1000), ("ljp005_level4", L1000_GCTX), ("p100_p0029", P100)])
def test_read_gct_agrees_with_cmappy(name, relative, shared_data, tmp_path):
    ref = json.loads((CMAPPY / f"{name}.json").read_text())
    assert ref["source"] == relative
    adata = pk.io.read_gct(shared_data(relative), gene_symbols=False)
    _compare_matrix(adata, ref)
    deliberate = {("pr_probe_suitability_manual", "TRUE"), ("pr_probe_suitability_manual", "FALSE")}
    _compare_metadata(adata.var, ref["row_meta"], deliberate=deliberate)
    _compare_metadata(adata.obs, ref["col_meta"])
    # and the same after a round trip through perturbkit's GCTX and GCT writers
    for out in (tmp_path / "x.gctx", tmp_path / "x.gct"):
        back = pk.io.read_gct(
            (pk.io.write_gctx if out.suffix == ".gctx" else pk.io.write_gct)(adata, out), gene_symbols=False
        )
        _compare_matrix(back, ref)


# ------------------------------------------------------------------ the new real files


def test_read_real_level4_gctx(shared_data, l1000):
    adata = pk.io.read_gct(shared_data(L1000_GCTX))
    assert adata.shape == (377, 978) and adata.X.dtype == np.float32
    obs = adata.obs
    assert int(obs["control"].sum()) == 26 and (obs.loc[obs["control"], "dose"] == 0.0).all()
    assert obs.loc[~obs["control"], "drug"].nunique() == 59  # compounds and positive controls
    assert sorted(obs.loc[obs["pert_type"] == "trt_cp", "dose"].unique()) == [0.04, 0.12, 0.37, 1.11, 3.33, 10.0]
    assert set(obs["time"]) == {24.0} and set(obs["cell_line"]) == {"A375"}
    assert adata.var_names.equals(l1000.var_names) and adata.obs_names.equals(l1000.obs_names)  # the same plate
    assert abs(float(np.median(adata.X))) < 1 < 5 < float(np.median(l1000.X))  # z-scores, not log2 expression


def test_read_real_p100_plate(shared_data):
    adata = pk.io.read_gct(shared_data(P100))
    assert adata.shape == (96, 96)
    assert int(np.isnan(adata.X).sum()) == 1  # one "NA" in the data block
    obs = adata.obs
    assert obs["smiles"].notna().all() and (obs["smiles"] == obs["isomeric_smiles"]).all()
    assert obs.loc[obs["drug"] == "DMSO", "smiles"].unique().tolist() == ["CS(=O)C"]
    assert int(obs["control"].sum()) == 3 and obs["drug"].nunique() == 32  # pert_type is 'ctrl_vehicle' here
    assert (obs.loc[obs["control"], "dose"] == 0.0).all() and set(obs["time"]) == {3.0}


def test_read_moa_table(shared_data, tmp_path):
    moa = pk.io.read_moa_table(shared_data(MOA_MAP))
    assert len(moa) == 1570 and moa["broad_id"].is_unique
    assert int(moa["moa"].str.contains("|", regex=False).sum()) == 214
    assert list(moa.columns[:3]) == ["drug", "broad_id", "moa"]
    split = moa["moa"].map(pk._schema.split_moa)
    assert int((split.str.len() >= 2).sum()) == 214 and int(moa["moa"].isna().sum()) == 52
    assert moa.set_index("drug").at["milnacipran", "moa"] == "serotonin–norepinephrine reuptake inhibitor (SNRI)"
    (tmp_path / "bad.tsv").write_text("broad_id\tpert_iname\tmoa\nBRD-1\ta\tx | y\nBRD-2\tb\n")
    with pytest.raises(FileFormatError, match=r"bad\.tsv' line 3 has 2 fields.*truncated"):
        pk.io.read_moa_table(tmp_path / "bad.tsv")
    (tmp_path / "ok.tsv").write_text("broad_id\tpert_iname\tmoa\nBRD-1\ta\tx | y\nBRD-2\tb\t\n")
    assert pk.io.read_moa_table(tmp_path / "ok.tsv")["moa"].tolist()[0] == "x|y"
    with pytest.raises(PerturbkitInputError, match="no 'moa' column"):
        pk.io.read_moa_table(tmp_path / "ok.tsv").pipe(
            lambda _: pk.io.read_moa_table(_write(tmp_path / "nomoa.tsv", ["broad_id\tname", "BRD-1\ta"]))
        )


# ------------------------------------------------------------------ Cell Painting CSV: clear errors


def test_cell_painting_csv_errors(tmp_path, cell_painting):
    header = "Metadata_Plate,Metadata_Well,Metadata_broad_sample,Cells_AreaShape_Area,Nuclei_Intensity_Mean_DNA"
    rows = ["P1,A01,DMSO,1.5,2.5", "P1,A02,BRD-K1,3.0,4.0"]
    ok = pk.io.read_cell_painting(_write(tmp_path / "ok.csv", [header, *rows]), cell_line="A549")
    assert ok.shape == (2, 2)

    cut = [header, rows[0], rows[1][: rows[1].rindex(",")]]  # the last row lost its last field
    with pytest.raises(
        FileFormatError,
        match=r"cut\.csv' line 3 has 4 fields, but the header line \(line 1\) has 5\."
        r" The file looks truncated",
    ):
        pk.io.read_cell_painting(_write(tmp_path / "cut.csv", cut), cell_line="A549")
    with pytest.raises(FileFormatError, match=r"noeol\.csv. does not end with a line break.*cut short"):
        pk.io.read_cell_painting(_write(tmp_path / "noeol.csv", [header, *rows], end=""), cell_line="A549")
    shifted = [header, "P1,A01,DMSO,1.5", rows[1]]
    with pytest.raises(FileFormatError, match=r"line 2 has 4 fields"):
        pk.io.read_cell_painting(_write(tmp_path / "short.csv", shifted), cell_line="A549")

    semi = [line.replace(",", ";").replace(".", ",") for line in [header, *rows]]  # a European spreadsheet
    with pytest.raises(FileFormatError, match=r"semi\.csv' looks semicolon-separated.*pass sep=';'"):
        pk.io.read_cell_painting(_write(tmp_path / "semi.csv", semi), cell_line="A549")
    back = pk.io.read_cell_painting(tmp_path / "semi.csv", sep=";", decimal=",", cell_line="A549")
    assert np.array_equal(back.X, ok.X)
    pd.testing.assert_frame_equal(back.obs, ok.obs)

    gz = tmp_path / "plate.csv.gz"
    gz.write_bytes(gzip.compress((tmp_path / "ok.csv").read_bytes())[:-12])
    with pytest.raises(FileFormatError, match=r"plate\.csv\.gz' is a damaged or incomplete gzip file"):
        pk.io.read_cell_painting(gz, cell_line="A549")
    (tmp_path / "nul.csv").write_bytes(b"\n".join([header.encode(), b"P1,A01,DMSO,1.\x005,2.5", b""]))
    with pytest.raises(FileFormatError, match=r"nul\.csv' line 2 .*NUL byte"):
        pk.io.read_cell_painting(tmp_path / "nul.csv", cell_line="A549")
    (tmp_path / "latin.csv").write_bytes(b"\n".join([header.encode(), b"P1,A01,DMS\xd8,1.5,2.5", b""]))
    with pytest.raises(FileFormatError, match=r"latin\.csv' is not valid UTF-8: line 2"):
        pk.io.read_cell_painting(tmp_path / "latin.csv", cell_line="A549")
    dup = [header + ",Cells_AreaShape_Area", *[r + ",1" for r in rows]]
    with pytest.raises(FileFormatError, match="names some columns twice"):
        pk.io.read_cell_painting(_write(tmp_path / "dup.csv", dup), cell_line="A549")
    with pytest.raises(PerturbkitInputError, match="sep="):
        pk.io.read_cell_painting(tmp_path / "ok.csv", sep="ab")

    real = pd.read_csv(shared_file(CELL_PAINTING))
    assert real["Metadata_moa"].str.contains(",").any()  # quoted fields with commas are fine
    real.iloc[:5].to_csv(tmp_path / "quoted.csv", index=False)
    assert np.array_equal(pk.io.read_cell_painting(tmp_path / "quoted.csv").X, cell_painting.X[:5])


def test_gct_empty_values_at_line_ends(tmp_path):
    lines = _gct_lines()
    lines[5] = lines[5].rsplit("\t", 1)[0] + "\t"  # empty last value of a line: missing
    lines[-1] = "\t".join(lines[-1].split("\t")[:2] + [""] + lines[-1].split("\t")[3:-1] + [""])
    adata = pk.io.read_gct(_write(tmp_path / "empty.gct", lines))
    assert np.isnan(adata.X[3, 0]) and np.isnan(adata.X[0, 2]) and np.isnan(adata.X[3, 2])
    assert int(np.isnan(adata.X).sum()) == 3
