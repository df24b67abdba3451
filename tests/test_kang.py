"""Kang PBMC (ctrl vs IFN-β): marker annotation and the held-out-cell-type cycleCDR run (the scGen benchmark)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import perturbkit as pk
from perturbkit._schema import PerturbkitInputError
from perturbkit.experiments import kang_holdout
from perturbkit.experiments._kang import PERTPY_SCGEN
from perturbkit.pp._markers import PBMC_MARKERS, annotate_cell_types
from perturbkit.tl import preprocess_pbmc

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KANG = "kang_pbmc/kang_ifnb_pbmc_2k.h5ad"


def test_annotate_cell_types_picks_the_best_marker_set():
    rng = np.random.default_rng(0)
    X = rng.normal(0, 0.1, size=(60, 4)).astype(np.float32)
    X[:30, 0] += 3  # cluster a expresses gene A
    X[30:, 2] += 3  # cluster b expresses gene C
    adata = ad.AnnData(
        X,
        obs=pd.DataFrame({"cluster": ["a"] * 30 + ["b"] * 30}, index=[str(i) for i in range(60)]),
        var=pd.DataFrame(index=["A", "B", "C", "D"]),
    )
    out = annotate_cell_types(adata, markers={"type1": ["A", "B"], "type2": ["C", "E"]}, copy=True)
    assert "cell_type" not in adata.obs
    assert out.obs["cell_type"].tolist() == ["type1"] * 30 + ["type2"] * 30
    info = out.uns["cell_type_markers"]
    assert info["assignment"] == {"a": "type1", "b": "type2"}
    assert info["markers_missing"] == {"type2": ["E"]}
    assert info["scores"]["a"]["type1"] > info["scores"]["a"]["type2"]
    with pytest.raises(PerturbkitInputError, match="none of the markers"):
        annotate_cell_types(adata, markers={"x": ["NOPE"]})
    assert set(PBMC_MARKERS) >= {"CD4 T cells", "B cells", "CD14 monocytes", "NK cells"}


@pytest.fixture(scope="module")
def kang(request):
    from conftest import shared_file

    adata = pk.io.read_h5ad(shared_file(KANG), condition_key="condition", control_value="ctrl")
    return preprocess_pbmc(adata, n_hvg=500, seed=0)


def test_preprocess_annotates_pbmc_populations(kang):
    assert kang.n_vars == 500 and kang.uns["pbmc_preprocessing"]["n_hvg"] == 500
    types = set(kang.obs["cell_type"].astype(str))
    assert {"CD14 monocytes", "B cells", "NK cells", "CD4 T cells"} <= types, types
    assert set(kang.obs["drug"]) == {"IFNB", "control"}
    assert (kang.obs["control"] == (kang.obs["condition"] == "ctrl")).all()
    counts = pd.crosstab(kang.obs["cell_type"].astype(str), kang.obs["control"])
    assert (counts.loc["CD14 monocytes"] > 50).all()  # both conditions carry the held-out type


@pytest.fixture(scope="module")
def kang_2000():
    """The issue's shared preprocessing: normalize_total, log1p, 2,000 HVGs, marker annotation."""
    from conftest import shared_file

    adata = pk.io.read_h5ad(shared_file(KANG), condition_key="condition", control_value="ctrl")
    return preprocess_pbmc(adata, n_hvg=2000, seed=0)


def test_kang_scgen_beats_pertpy_scgen_and_matches_the_mean_shift(kang_2000):
    """Held-out stimulated CD14 monocytes, scored as scGen and pertpy report it (top-100 Wilcoxon DEGs).

    pertpy's own scGen (``pt.tl.Scgen`` at its defaults, seeds 0 and 1) reached R² 0.79-0.82 (all genes) and
    0.64-0.67 (DEGs) on this preprocessing. perturbkit's scGen varies from run to run as much: over five runs (seeds
    0-1 on one torch thread, seeds 0-2 on two) 0.78-0.86 and 0.64-0.76, mean 0.827 and 0.708. This test pins the
    one reproducible configuration (seed 0, one thread: 0.857 and 0.764, about 75 s) and asserts its margins.
    """
    import torch

    torch.set_num_threads(1)  # scanpy's preprocessing in the fixture resets torch's thread count; results depend on it
    result = kang_holdout(kang_2000, preprocessed=True, methods=["scgen"], seed=0)
    table = result["metrics"].astype({"squared_pearson": float, "squared_pearson_degs": float})
    print(table[["squared_pearson", "squared_pearson_degs", "pearson_delta_degs", "train_seconds"]].round(3))
    assert list(table.index) == ["scGen", "baseline: no change", "baseline: mean shift"]
    assert table.attrs["deg_method"] == "wilcoxon" and table.attrs["n_degs"] == 100
    # the metric code reproduces the independent measurement of the baselines (0.61 / 0.33 and 0.85 / 0.75)
    no_change, shift, scgen = (table.loc[k] for k in ["baseline: no change", "baseline: mean shift", "scGen"])
    assert no_change["squared_pearson"] == pytest.approx(0.605, abs=0.005)
    assert no_change["squared_pearson_degs"] == pytest.approx(0.328, abs=0.005)
    assert shift["squared_pearson"] == pytest.approx(0.848, abs=0.005)
    assert shift["squared_pearson_degs"] == pytest.approx(0.753, abs=0.005)
    # perturbkit's best method for this task beats pertpy's scGen on both R² columns, by a margin
    assert scgen["squared_pearson"] > PERTPY_SCGEN["squared_pearson"] + 0.025
    assert scgen["squared_pearson_degs"] > PERTPY_SCGEN["squared_pearson_degs"] + 0.05
    # and is level with the equal-weight mean shift (ahead by ~0.01 at seed 0; seed 1 is 0.001 / 0.026 behind)
    assert scgen["squared_pearson"] > shift["squared_pearson"] - 0.01
    assert scgen["squared_pearson_degs"] > shift["squared_pearson_degs"] - 0.03
    pred = result["predictions"]["scGen"]
    assert set(pred.obs["drug"]) == {"IFNB"} and np.isfinite(pred.X).all()
    assert kang_2000.n_vars == 2000 and "scgen" not in kang_2000.uns  # the user's data is untouched


def test_kang_holdout_rejects_unknown_methods_and_misplaced_options(kang):
    with pytest.raises(PerturbkitInputError, match="choose one or more of"):
        kang_holdout(kang, preprocessed=True, methods=["cpa"])
    with pytest.raises(PerturbkitInputError, match="cannot go in train_options"):
        kang_holdout(kang, preprocessed=True, methods=["scgen"], scgen_options={"seed": 3})


def test_kang_cyclecdr_unpaired_beats_no_change(kang_2000):
    """Without its adversarial term (the experiment's default; with it the predictions collapse), cycleCDR beats
    "no change" on held-out CD14 monocytes: seed 0 measured R² 0.789 vs 0.605 (all genes), 0.668 vs 0.328 (DEGs)."""
    result = kang_holdout(
        kang_2000,
        preprocessed=True,
        methods=["cyclecdr"],
        seed=0,
        cyclecdr_options={"max_epochs": 20, "patience": None},
    )
    table = result["metrics"].astype({"squared_pearson": float, "squared_pearson_degs": float})
    print(table[["squared_pearson", "squared_pearson_degs", "pearson_delta_degs", "train_seconds"]].round(3))
    assert list(table.index) == ["cycleCDR (unpaired)", "baseline: no change", "baseline: mean shift"]
    cyclecdr, no_change = table.loc["cycleCDR (unpaired)"], table.loc["baseline: no change"]
    assert cyclecdr["squared_pearson"] > no_change["squared_pearson"] + 0.1
    assert cyclecdr["squared_pearson_degs"] > no_change["squared_pearson_degs"] + 0.2
    assert result["models"]["cyclecdr"].hparams["adversarial_weight"] == 0.0
    pred = result["predictions"]["cycleCDR (unpaired)"]
    assert set(pred.obs["cell_line"]) == {"CD14 monocytes"} and set(pred.obs["drug"]) == {"IFNB"}
    assert pred.n_vars == kang_2000.n_vars and np.isfinite(pred.X).all()
    # the predictions vary with the control cell they start from (the adversarial run's did not: variance ratio 0.002)
    spread = np.median(
        np.var(pred.X, axis=0) / (np.var(result["data"][pred.obs["control_row"]].X.toarray(), axis=0) + 1e-9)
    )
    assert spread > 0.05
