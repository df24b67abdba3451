"""pk.metrics response evaluation: r² / explained variance / Pearson per group, DEGs, deltas, errors."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import explained_variance_score, r2_score

import perturbkit as pk
from perturbkit._schema import EmptyGroupError, GeneMismatchError
from perturbkit.metrics._response import (
    evaluate_response,
    explained_variance_rows,
    r2_rows,
    summarise_response,
)


def _adata(X, **obs):
    X = np.asarray(X, dtype=np.float32)
    a = ad.AnnData(X, obs=pd.DataFrame(obs, index=[str(i) for i in range(len(X))]))
    a.var_names = [f"g{i}" for i in range(X.shape[1])]
    return a


def test_hand_computed_scores():
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.0, 2.0, 3.0, 5.0])
    # r² = 1 − SS_res / SS_tot = 1 − 1 / 5 = 0.8
    assert r2_rows(pred, truth)[0] == pytest.approx(0.8)
    # EV = 1 − Var(truth − pred) / Var(truth) = 1 − (3/16) / 1.25 = 0.85
    assert explained_variance_rows(pred, truth)[0] == pytest.approx(0.85)
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(4, 30)), rng.normal(size=(4, 30))
    t[1] = p[1] * 2 + 1
    np.testing.assert_allclose(r2_rows(p, t, clip=False), [r2_score(t[i], p[i]) for i in range(4)])
    np.testing.assert_allclose(explained_variance_rows(p, t), [explained_variance_score(t[i], p[i]) for i in range(4)])
    # a shift keeps EV at 1 but lowers r²
    assert explained_variance_rows(truth + 1, truth)[0] == pytest.approx(1.0)
    assert r2_rows(truth + 1, truth)[0] == pytest.approx(1 - 4 / 5)


def test_evaluate_response_means_per_group_and_clipping():
    truth = _adata([[1, 2, 3, 4], [1, 2, 3, 4], [0, 0, 1, 1]], drug=["a", "a", "b"])
    # group a: predicted mean [1, 2, 3, 5] from two rows; group b: anti-correlated → r² < 0, clipped at 0
    pred = _adata([[1, 2, 3, 4], [1, 2, 3, 6], [5, 5, -5, -5]], drug=["a", "a", "b"])
    df = evaluate_response(pred, truth, groupby="drug", n_degs=2)
    assert list(df["drug"]) == ["a", "b"]
    a, b = df.iloc[0], df.iloc[1]
    assert a["r2"] == pytest.approx(0.8) and a["explained_variance"] == pytest.approx(0.85)
    assert a["pearson"] == pytest.approx(np.corrcoef([1, 2, 3, 4], [1, 2, 3, 5])[0, 1])
    assert b["r2"] == 0.0 and b["r2_degs"] >= 0.0
    assert b["explained_variance"] < 0 and b["pearson"] == pytest.approx(-1.0)
    assert (a["n_pred"], a["n_truth"], b["n_pred"]) == (2, 2, 1)
    assert df.attrs["reference"] == "truth_mean"
    summary = summarise_response(df)
    assert summary["r2"] == pytest.approx(0.4) and "n_pred" not in summary


def test_degs_pick_planted_genes_and_delta_pearson():
    rng = np.random.default_rng(1)
    n_genes, planted = 40, [3, 17, 29]
    ctrl = rng.normal(size=(20, n_genes))
    treated = rng.normal(size=(20, n_genes)) * 0.05 + ctrl.mean(0)
    treated[:, planted] += [5.0, -6.0, 4.0]
    truth = _adata(
        np.vstack([ctrl, treated]), drug=["DMSO"] * 20 + ["x"] * 20, control=[True] * 20 + [False] * 20, cell_line="c1"
    )
    # prediction: right on the planted genes only, noise elsewhere
    pred_X = treated.mean(0, keepdims=True) + rng.normal(size=(1, n_genes))
    pred_X[0, planted] = treated[:, planted].mean(0)
    pred = _adata(pred_X, drug=["x"], cell_line="c1")
    df = evaluate_response(pred, truth, groupby=["cell_line", "drug"], control="control", n_degs=3)
    assert len(df) == 1 and df.attrs["reference"] == "control"
    row = df.iloc[0]
    assert row["r2_degs"] > 0.99 and row["pearson_degs"] > 0.99
    assert row["r2"] < row["r2_degs"]
    # delta Pearson by hand
    ref = ctrl.mean(0)
    expect = np.corrcoef(pred_X[0] - ref, treated.mean(0) - ref)[0, 1]
    assert row["pearson_delta"] == pytest.approx(expect, rel=1e-5)
    # the same with the controls as a separate (sparse) AnnData, or as a mask
    ctrl_ad = truth[truth.obs["control"].to_numpy()].copy()
    ctrl_ad.X = sp.csr_matrix(ctrl_ad.X)
    df2 = evaluate_response(
        pred, truth[~truth.obs["control"].to_numpy()], groupby=["cell_line", "drug"], control=ctrl_ad, n_degs=3
    )
    df3 = evaluate_response(
        pred, truth, groupby=["cell_line", "drug"], control=truth.obs["control"].to_numpy(), n_degs=3
    )
    for other in (df2, df3):
        np.testing.assert_allclose(
            other[["r2_degs", "pearson_delta"]].to_numpy(), df[["r2_degs", "pearson_delta"]].to_numpy(), rtol=1e-5
        )


def test_controls_matched_per_cell_line():
    # each cell line has its own baseline; the drug adds +3 to gene 0 in c1 and gene 1 in c2
    base = {"c1": np.array([10.0, 0, 0, 0, 0]), "c2": np.array([0, 0, 0, 0, 10.0])}
    effect = {"c1": np.array([3.0, 0, 0, 0, 0]), "c2": np.array([0, 3.0, 0, 0, 0])}
    rows, cells, drugs, ctrl = [], [], [], []
    for c in ("c1", "c2"):
        for is_ctrl in (True, False):
            rows.append(base[c] + (0 if is_ctrl else effect[c]) + np.arange(5) * 0.01)
            cells.append(c), drugs.append("DMSO" if is_ctrl else "d"), ctrl.append(is_ctrl)
    truth = _adata(rows, cell_line=cells, drug=drugs, control=ctrl)
    pred = _adata([rows[1], rows[3]], cell_line=["c1", "c2"], drug=["d", "d"])
    df = evaluate_response(pred, truth, groupby=["cell_line", "drug"], control="control", n_degs=1)
    assert (df["r2_degs"] == 1.0).all() and np.allclose(df["pearson_delta"], 1.0)
    explicit = evaluate_response(
        pred, truth, groupby=["cell_line", "drug"], control="control", n_degs=1, control_groupby="cell_line"
    )
    pd.testing.assert_frame_equal(explicit, df)
    # one overall control mean: the deltas then mix in the cell-line differences
    overall = evaluate_response(
        pred[:1], truth[[0, 1, 2]], groupby=["cell_line", "drug"], control="control", control_groupby=None
    )
    assert overall.attrs["reference"] == "control" and len(overall) == 1


def test_missing_groups_and_gene_mismatch_errors():
    truth = _adata(np.ones((3, 4)) * [[1], [2], [3]] + np.arange(4), drug=["a", "b", "c"])
    pred = _adata(np.ones((1, 4)), drug=["a"])
    with pytest.raises(EmptyGroupError, match=r"2 of the 3.*\['b', 'c'\]"):
        evaluate_response(pred, truth, groupby="drug")
    pred = _adata(np.ones((3, 4)), drug=["a", "b", "c"])
    pred.var_names = ["g0", "g1", "g2", "other"]
    with pytest.raises(GeneMismatchError, match="g3"):
        evaluate_response(pred, truth, groupby="drug")
    # reordered genes are matched by name
    pred = truth[:, ::-1].copy()
    df = evaluate_response(pred, truth, groupby="drug")
    assert np.allclose(df["pearson"], 1.0) and np.allclose(df["r2"], 1.0)


def test_squared_pearson_is_scgens_r2_of_mean_expression():
    from scipy import stats

    rng = np.random.default_rng(0)
    truth = ad.AnnData(rng.normal(size=(6, 30)), obs=pd.DataFrame({"drug": list("aabbcc")}))
    pred = ad.AnnData(truth.X + rng.normal(size=(6, 30)), obs=truth.obs.copy())
    table = pk.metrics.evaluate_response(pred, truth, groupby="drug")
    for _, row in table.iterrows():
        rows = (truth.obs["drug"] == row["drug"]).to_numpy()
        expected = stats.linregress(pred.X[rows].mean(0), truth.X[rows].mean(0)).rvalue ** 2
        assert row["squared_pearson"] == pytest.approx(expected, rel=1e-10)


def test_perturbation_rank_is_zero_for_a_faithful_model_and_one_half_under_mode_collapse():
    rng = np.random.default_rng(1)
    means = rng.normal(size=(5, 40)) * 3
    truth = ad.AnnData(
        np.repeat(means, 2, axis=0) + rng.normal(size=(10, 40)) * 0.1,
        obs=pd.DataFrame({"drug": np.repeat(list("abcde"), 2), "cell_line": "A"}),
    )
    controls = ad.AnnData(rng.normal(size=(3, 40)), obs=pd.DataFrame({"cell_line": ["A"] * 3}))
    faithful = ad.AnnData(means, obs=pd.DataFrame({"drug": list("abcde"), "cell_line": "A"}))
    collapsed = ad.AnnData(np.tile(means.mean(0), (5, 1)), obs=faithful.obs.copy())
    shuffled = ad.AnnData(means[[1, 2, 3, 4, 0]], obs=faithful.obs.copy())
    rank = {
        name: pk.metrics.evaluate_response(p, truth, groupby=["cell_line", "drug"], control=controls)[
            "perturbation_rank"
        ]
        for name, p in {"faithful": faithful, "collapsed": collapsed, "shuffled": shuffled}.items()
    }
    assert (rank["faithful"] == 0).all()
    assert (rank["collapsed"] == 0.5).all()  # every prediction ties: the mode collapse the rank catches
    assert (rank["shuffled"] > 0).all() and rank["shuffled"].mean() > 0.5  # each truth's own prediction is beaten
    # ranked only among the groups that share a control group (here: the cell line)
    assert np.isnan(pk.metrics.perturbation_ranks(means[:1], means[:1]))[0]
    with pytest.raises(pk.errors.PerturbkitInputError, match="one per group"):
        pk.metrics.perturbation_ranks(means, means, candidates=[0, 1])
