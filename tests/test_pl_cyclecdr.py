"""cycleCDR figures (pk.pl response_bars, response_boxes, prediction_umap) and pk.tl embed_predictions.

The evaluate_response tables are built by hand so that the figures can be checked against known numbers; one
small embedding runs the UMAP (the first ``import umap`` compiles numba code, ~20 s).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from perturbkit._schema import PerturbkitInputError
from perturbkit.pl import _cyclecdr as pl
from perturbkit.tl._response_embedding import embed_predictions

pytestmark = pytest.mark.usefixtures("one_torch_thread")

METRICS = ["r2", "r2_degs", "explained_variance", "explained_variance_degs"]


def _table(rng, drugs, cells=("MCF7", "PC3"), shift=0.0):
    rows = [{"cell_line": c, "drug": d} for d in drugs for c in cells]
    df = pd.DataFrame(rows)
    for m in [*METRICS, "pearson_delta"]:
        df[m] = np.clip(rng.random(len(df)) * 0.5 + shift, 0, 1)
    df["n_pred"] = 1
    df["n_truth"] = [3 + i % 5 for i in range(len(df))]
    return df


@pytest.fixture
def results():
    rng = np.random.default_rng(0)
    drugs = [f"D{i}" for i in range(14)]
    return {"cycleCDR": _table(rng, drugs, shift=0.4), "no change": _table(rng, drugs), "mean": _table(rng, drugs)}


def test_response_bars_means_and_sd(results):
    fig = pl.response_bars(results)
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == [pl.RESPONSE_LABELS[m] for m in METRICS]
    for trace, metric in zip(fig.data, METRICS, strict=True):
        assert list(trace.x) == list(results)
        np.testing.assert_allclose(trace.y, [results[m][metric].mean() for m in results])
        np.testing.assert_allclose(trace.error_y.array, [results[m][metric].std(ddof=1) for m in results])
    # DEG bars hatched, all-gene bars plain, one colour per metric family
    assert fig.data[1].marker.pattern.shape == "/" and fig.data[0].marker.pattern.shape == ""
    assert fig.data[0].marker.color == fig.data[1].marker.color
    # a long DataFrame gives the same bars
    long = pd.concat([t.assign(model=m) for m, t in results.items()], ignore_index=True)
    again = pl.response_bars(long, metrics="r2_degs")
    np.testing.assert_allclose(again.data[0].y, fig.data[1].y)


def test_response_bars_ablation_table_and_errors(results):
    table = pd.DataFrame(
        {"r2": [0.5, 0.2], "r2_degs": [0.6, 0.1]},
        index=pd.Index(["cycleCDR: dual AE", "baseline: no change"], name="model"),
    )
    fig = pl.response_bars(table)
    assert len(fig.data) == 2
    np.testing.assert_allclose(fig.data[1].y, [0.6, 0.1])
    np.testing.assert_allclose(fig.data[1].error_y.array, [0.0, 0.0])
    with pytest.raises(PerturbkitInputError, match="none of the metrics"):
        pl.response_bars(results, metrics=("nope",))
    with pytest.raises(PerturbkitInputError, match="model"):
        pl.response_bars(pd.DataFrame({"r2": [1.0]}))
    with pytest.raises(PerturbkitInputError, match="empty dict"):
        pl.response_bars({})


def test_response_boxes_top_drugs_and_values(results):
    counts = pd.Series({f"D{i}": 100 - i * (1 if i % 2 else 3) for i in range(14)})
    fig = pl.response_boxes(results, n_top=4, counts=counts)
    top = list(counts.sort_values(ascending=False).index[:4])
    assert list(fig.layout.xaxis.categoryarray) == top
    assert [t.name for t in fig.data] == list(results)
    for trace, (_model, table) in zip(fig.data, results.items(), strict=True):
        assert set(trace.x) == set(top)
        for drug in top:
            got = np.sort(np.asarray(trace.y)[np.asarray(trace.x) == drug])
            np.testing.assert_allclose(got, np.sort(table.loc[table.drug == drug, "r2_degs"]))
    # default counts: n_truth summed per drug (groups counted once across models)
    fig = pl.response_boxes(results, metric="r2", n_top=3)
    per_drug = results["cycleCDR"].groupby("drug")["n_truth"].sum()
    first = pd.unique(results["cycleCDR"]["drug"])
    expected = per_drug.loc[first].sort_values(ascending=False, kind="stable").index[:3]
    assert list(fig.layout.xaxis.categoryarray) == list(expected)
    with pytest.raises(PerturbkitInputError, match="counts"):
        pl.response_boxes({m: t.drop(columns="n_truth") for m, t in results.items()})


def _profiles(rng, n, drugs, cells, shift, n_genes=30):
    obs = pd.DataFrame(
        {
            "drug": [drugs[i % len(drugs)] for i in range(n)],
            "cell_line": [cells[i % len(cells)] for i in range(n)],
            "control": False,
        }
    )
    obs.index = [f"r{shift}_{i}" for i in range(n)]
    X = rng.normal(size=(n, n_genes)).astype(np.float32) + shift
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))


def test_embed_predictions_and_umap():
    rng = np.random.default_rng(1)
    pred = _profiles(rng, 24, ["A", "B", "C"], ["MCF7", "PC3"], 0)
    truth = _profiles(rng, 36, ["A", "B", "C"], ["MCF7", "PC3"], 1)
    truth.obs.iloc[:6, truth.obs.columns.get_loc("control")] = True  # controls are left out
    truth = truth[:, ::-1].copy()  # genes in another order: aligned to pred's
    emb = embed_predictions(pred, truth, seed=0, n_neighbors=10)
    assert emb.obsm["X_umap"].shape == (24 + 30, 2)
    assert emb.obs["source"].value_counts().to_dict() == {"predicted": 24, "measured": 30}
    assert list(emb.var_names) == list(pred.var_names)
    np.testing.assert_allclose(emb.X[24:], truth[~truth.obs.control.to_numpy()][:, pred.var_names].X)
    assert set(emb.obs["drug"]) == {"A", "B", "C"} and set(emb.obs["cell_line"]) == {"MCF7", "PC3"}
    assert emb.uns["embed_predictions"]["n_measured"] == 30

    fig = pl.prediction_umap(emb)
    assert {t.name for t in fig.data} == {"predicted (24)", "measured (30)"}
    pred_trace = next(t for t in fig.data if t.name.startswith("predicted"))
    np.testing.assert_allclose(pred_trace.x, emb.obsm["X_umap"][:24, 0])
    fig = pl.prediction_umap(emb, color="drug")
    assert sum(len(t.x) for t in fig.data) == 54 and len(fig.data) == 3
    assert set(fig.data[0].marker.symbol) == {"diamond", "circle"}
    with pytest.raises(PerturbkitInputError, match="embed_predictions"):  # pl only draws: it embeds nothing
        pl.prediction_umap(pred)
    with pytest.raises(PerturbkitInputError, match="no column"):
        pl.prediction_umap(emb, color="moa")
    with pytest.raises(PerturbkitInputError, match="lack"):
        embed_predictions(pred, truth[:, :5].copy())
