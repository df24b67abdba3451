"""Kang PBMC (ctrl vs IFN-β): marker annotation and the held-out-cell-type cycleCDR run (the scGen benchmark)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import perturbkit as pk
from perturbkit._schema import PerturbkitInputError
from perturbkit.experiments import kang_holdout
from perturbkit.pp._markers import PBMC_MARKERS, annotate_cell_types
from perturbkit.tl import preprocess_pbmc

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KANG = "kang_pbmc/kang_ifnb_pbmc_2k.h5ad"
SMALL = dict(hidden=(128,), latent_dim=32, batch_size=64, patience=None)


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


def test_kang_holdout_runs_and_reports_r2(kang):
    metrics = {}
    for seed in (0,):  # two seeds were checked by hand (see the note); one keeps the test short
        result = kang_holdout(kang, preprocessed=True, seed=seed, n_degs=100, train_options=dict(SMALL, max_epochs=20))
        table = result["metrics"]
        assert list(table.index) == ["cycleCDR", "baseline: no change", "baseline: mean treated response"]
        assert np.isfinite(table[["r2", "r2_degs"]].to_numpy(float)).all()
        assert table[["r2", "r2_degs"]].to_numpy(float).min() >= 0
        pred = result["prediction"]
        assert set(pred.obs["cell_line"]) == {"CD14 monocytes"} and set(pred.obs["drug"]) == {"IFNB"}
        assert pred.n_vars == kang.n_vars and np.isfinite(pred.X).all()
        metrics[seed] = table
    for seed, table in metrics.items():
        print(f"Kang CD14 monocytes held out, seed {seed}:\n{table[['r2', 'r2_degs', 'pearson_delta']].round(3)}")
    # no ordering between cycleCDR and the baselines is asserted: on this 2,000-cell subset (500 HVGs, 20 epochs)
    # cycleCDR scored below "no change" for seeds 0 and 1 (r2 0.35/0.36 vs 0.42, DEG r2 0.14/0.14 vs 0.17)
