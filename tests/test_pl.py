"""pk.pl figures: the traces hold the input numbers, titles state the summary numbers, errors are clear."""

import anndata as ad
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

import perturbkit as pk
from perturbkit._schema import PerturbkitInputError, UnknownCategoryError


def markers(fig):
    return [t for t in fig.data if t.mode == "markers"]


@pytest.fixture
def cv():
    rng = np.random.default_rng(0)
    n = 30
    base = rng.uniform(-0.1, 0.5, n)
    return pd.DataFrame(
        {
            "fold": np.arange(n) % 3,
            "drug": [f"drug{i}" for i in range(n)],
            "moa": [["HDAC inhibitor", "MEK inhibitor", "tubulin inhibitor"][i % 3] for i in range(n)],
            "pcc": base + rng.uniform(0.1, 0.4, n),
            "baseline_pcc": base,
        }
    )


# ------------------------------------------------------------------------------------------------ evaluation
def test_pcc_scatter_points_diagonal_and_title(cv):
    fig = pk.pl.pcc_scatter(cv)
    assert isinstance(fig, go.Figure)
    points = markers(fig)
    assert [t.name for t in points] == ["HDAC inhibitor", "MEK inhibitor", "tubulin inhibitor"]
    for t in points:
        part = cv[cv.moa == t.name]
        np.testing.assert_allclose(t.x, part.baseline_pcc)
        np.testing.assert_allclose(t.y, part.pcc)
        assert list(t.customdata[:, 0]) == list(part.drug)
    diagonal = fig.data[0]
    assert diagonal.name == "y = x" and diagonal.x[0] == diagonal.y[0] and diagonal.x[1] == diagonal.y[1]
    title = fig.layout.title.text
    assert f"{cv.pcc.mean():.3f}" in title and f"{cv.baseline_pcc.mean():.3f}" in title
    assert "30 of them above the diagonal" in title
    assert fig.layout.xaxis.title.text == "baseline PCC (input profile)"
    assert fig.layout.yaxis.title.text == "DeepCellState PCC"


def test_pcc_scatter_other_columns_and_errors(cv):
    fig = pk.pl.pcc_scatter(cv.drop(columns="moa").assign(ridge_pcc=cv.pcc / 2), x="ridge_pcc")
    assert len(markers(fig)) == 1
    np.testing.assert_allclose(markers(fig)[0].x, cv.pcc / 2)
    assert f"{(cv.pcc / 2).mean():.3f}" in fig.layout.title.text
    with pytest.raises(PerturbkitInputError, match="baseline_pcc"):
        pk.pl.pcc_scatter(cv.drop(columns="baseline_pcc"))
    with pytest.raises(PerturbkitInputError, match="cell"):
        pk.pl.pcc_scatter(cv, color="cell")


def test_fold_change_distribution_leaves_out_small_baselines(cv):
    fig = pk.pl.fold_change_distribution(cv, min_baseline=0.05)
    keep = cv.baseline_pcc > 0.05
    (hist,) = fig.data
    np.testing.assert_allclose(np.sort(hist.x), np.sort((cv.pcc / cv.baseline_pcc)[keep]))
    mean_fold = cv.pcc.mean() / cv.baseline_pcc.mean()
    title = fig.layout.title.text
    assert f"mean {mean_fold:.2f}×" in title
    assert f"{int((~keep).sum())} with baseline PCC ≤ 0.05 left out" in title
    lines = sorted(shape.x0 for shape in fig.layout.shapes)
    assert lines == pytest.approx(sorted([1.0, mean_fold, np.median((cv.pcc / cv.baseline_pcc)[keep])]))
    with pytest.raises(PerturbkitInputError, match="min_baseline"):
        pk.pl.fold_change_distribution(cv.assign(baseline_pcc=0.0))


# -------------------------------------------------------------------------------------------------- profiles
@pytest.fixture
def profiles():
    genes = [f"g{i}" for i in range(8)]
    rng = np.random.default_rng(1)
    drugs = ["aspirin", "vorinostat", "trametinib"]
    predicted = ad.AnnData(
        rng.normal(size=(3, 8)).astype(np.float32),
        obs=pd.DataFrame({"drug": drugs, "target": "MCF7", "sources": "PC3"}, index=drugs),
        var=pd.DataFrame(index=genes),
    )
    # measured: two dose rows per drug in MCF7 (averaged by the plot), genes in another order
    meas = rng.normal(size=(6, 8)).astype(np.float32)
    measured = ad.AnnData(
        meas[:, ::-1].copy(),
        obs=pd.DataFrame({"drug": np.repeat(drugs, 2), "cell_line": "MCF7"}, index=[f"m{i}" for i in range(6)]),
        var=pd.DataFrame(index=genes[::-1]),
    )
    inputs = ad.AnnData(
        rng.normal(size=(6, 8)).astype(np.float32),
        obs=pd.DataFrame(
            {"drug": np.tile(drugs, 2), "cell_line": np.repeat(["PC3", "A375"], 3)}, index=[f"i{i}" for i in range(6)]
        ),
        var=pd.DataFrame(index=genes),
    )
    expected_measured = pd.DataFrame(meas, columns=genes).groupby(np.repeat(drugs, 2), sort=False).mean()
    return predicted, measured, inputs, expected_measured


def test_profile_bars_show_the_top_genes_of_each_profile(profiles):
    predicted, measured, inputs, expected = profiles
    fig = pk.pl.profile(predicted, drug="vorinostat", measured=measured, inputs=inputs, n_genes=5)
    names = [t.name for t in fig.data]
    assert names == ["input (PC3)", "input (A375)", "predicted (MCF7)", "measured (MCF7)"]
    truth = expected.loc["vorinostat"]
    top = truth[truth.abs().sort_values(ascending=False).index[:5]].sort_values(ascending=False)
    bars = {t.name: t for t in fig.data}
    assert list(bars["measured (MCF7)"].x) == list(top.index)
    np.testing.assert_allclose(bars["measured (MCF7)"].y, top.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(bars["predicted (MCF7)"].y, predicted["vorinostat", list(top.index)].X[0], rtol=1e-6)
    np.testing.assert_allclose(bars["input (A375)"].y, inputs[4, list(top.index)].X[0], rtol=1e-6)
    pcc = np.corrcoef(predicted["vorinostat"].X[0], truth.to_numpy())[0, 1]
    assert f"PCC predicted vs measured {pcc:.3f}" in fig.layout.title.text
    assert fig.layout.barmode == "group"


def test_profile_heatmap_and_errors(profiles):
    predicted, measured, inputs, _ = profiles
    fig = pk.pl.profile(predicted, drug="aspirin", kind="heatmap", genes=["g2", "g0"])
    (heat,) = fig.data
    assert list(heat.x) == ["g2", "g0"] and list(heat.y) == ["predicted (MCF7)"]
    np.testing.assert_allclose(heat.z[0], predicted["aspirin", ["g2", "g0"]].X[0])
    with pytest.raises(UnknownCategoryError, match="aspirin"):
        pk.pl.profile(predicted, drug="taxol")
    with pytest.raises(PerturbkitInputError, match="several cell lines"):
        pk.pl.profile(predicted, drug="aspirin", measured=inputs)
    with pytest.raises(PerturbkitInputError, match="kind"):
        pk.pl.profile(predicted, drug="aspirin", kind="violin")


def test_gene_scatter_values_and_pcc(profiles):
    predicted, measured, _, expected = profiles
    fig = pk.pl.gene_scatter(predicted, measured, drug="trametinib")
    (points,) = markers(fig)
    np.testing.assert_allclose(points.x, expected.loc["trametinib"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(points.y, predicted["trametinib"].X[0])
    assert list(points.text) == list(predicted.var_names)
    pcc = np.corrcoef(points.x, points.y)[0, 1]
    assert f"PCC {pcc:.3f}" in fig.layout.title.text and "in MCF7 from PC3" in fig.layout.title.text
    # arrays: a 2-D array parallel to predicted's rows, or the drug's 1-D profiles
    same = pk.pl.gene_scatter(predicted, expected.loc[predicted.obs_names].to_numpy(), drug="trametinib")
    np.testing.assert_allclose(markers(same)[0].x, points.x, rtol=1e-6)
    flat = pk.pl.gene_scatter(np.arange(5.0), np.arange(5.0) ** 2, drug="x")
    assert f"PCC {np.corrcoef(np.arange(5.0), np.arange(5.0) ** 2)[0, 1]:.3f}" in flat.layout.title.text
    with pytest.raises(PerturbkitInputError, match="lack"):
        pk.pl.gene_scatter(predicted, measured[:, :4], drug="aspirin")


# ---------------------------------------------------------------------------------------- curves and bars
def test_evaluation_curve_averages_repeats_first():
    rows = []
    for fraction in (0.25, 0.5, 1.0):
        for repeat in range(3):
            for drug in range(4):
                rows.append(
                    {
                        "fraction": fraction,
                        "repeat": repeat,
                        "drug": drug,
                        "pcc": fraction + 0.1 * repeat + 0.01 * drug,
                        "baseline_pcc": 0.2,
                    }
                )
    df = pd.DataFrame(rows).sample(frac=1, random_state=0)
    fig = pk.pl.evaluation_curve(df, x="fraction")
    model, baseline = fig.data
    assert list(model.x) == [0.25, 0.5, 1.0]
    np.testing.assert_allclose(model.y, [0.25 + 0.1 + 0.015, 0.5 + 0.115, 1.0 + 0.115])
    np.testing.assert_allclose(model.error_y.array, [0.1] * 3)  # sd of the three repeat means
    np.testing.assert_allclose(baseline.y, [0.2] * 3)
    assert "3 repeats" in fig.layout.title.text
    sweep = pk.pl.evaluation_curve(
        df.rename(columns={"fraction": "latent_dim"}).assign(latent_dim=lambda d: (d.latent_dim * 32).astype(int)),
        x="latent_dim",
        baseline=None,
    )
    assert len(sweep.data) == 1 and sweep.layout.xaxis.type == "log"
    assert sweep.layout.xaxis.title.text == "latent size"


def test_ablation_bars_are_means_with_sd():
    df = pd.DataFrame(
        {
            "variant": ["full", "full", "no skip", "no skip", "no dropout, L1, skip"] * 2,
            "pcc": [0.6, 0.62, 0.5, 0.54, 0.4, 0.6, 0.62, 0.5, 0.54, 0.42],
            "baseline_pcc": 0.3,
        }
    )
    fig = pk.pl.ablation(df, repeat=None)
    model, baseline = fig.data
    assert list(model.x) == ["full", "no skip", "no dropout, L1, skip"]
    np.testing.assert_allclose(model.y, [0.61, 0.52, 0.41])
    np.testing.assert_allclose(model.error_y.array, df.groupby("variant", sort=False).pcc.std())
    np.testing.assert_allclose(baseline.y, [0.3] * 3)
    assert "full 0.610" in fig.layout.title.text
    removed = pk.pl.ablation(df.rename(columns={"variant": "removed"}), x="removed", order=["no skip", "full"])
    assert list(removed.data[0].x) == ["no skip", "full"]
    with pytest.raises(PerturbkitInputError, match="order"):
        pk.pl.ablation(df, order=["full", "nothing"])


# ------------------------------------------------------------------------------------------ interpretation
@pytest.fixture
def emb():
    drugs = np.repeat([f"d{i}" for i in range(5)], 2)
    obs = pd.DataFrame(
        {"drug": drugs, "cell_line": ["MCF7", "PC3"] * 5, "moa": np.repeat(list("aabbc"), 2)},
        index=[f"{d} | {c}" for d, c in zip(drugs, ["MCF7", "PC3"] * 5, strict=True)],
    )
    e = ad.AnnData(np.zeros((10, 3), dtype=np.float32), obs=obs)
    e.obsm["X_umap"] = np.arange(20, dtype=float).reshape(10, 2)
    return e


def test_embedding_points_hover_and_pairs(emb):
    fig = pk.pl.embedding(emb, connect_pairs=True)
    lines, *points = fig.data
    assert [p.name for p in points] == ["MCF7", "PC3"]
    np.testing.assert_allclose(points[0].x, emb.obsm["X_umap"][::2, 0])
    np.testing.assert_allclose(points[1].y, emb.obsm["X_umap"][1::2, 1])
    assert list(points[0].customdata[:, 0]) == ["d0", "d1", "d2", "d3", "d4"]
    assert "drug" in points[0].hovertemplate and "MOA" in points[0].hovertemplate
    # one segment per drug, separated by None
    assert lines.mode == "lines" and list(lines.x).count(None) == 5
    assert list(lines.x[:3]) == [0.0, 2.0, None] and list(lines.y[:2]) == [1.0, 3.0]
    assert fig.layout.xaxis.title.text == "UMAP 1"
    assert "10 profiles (5 drugs)" in fig.layout.title.text


def test_embedding_symbol_numeric_colour_and_errors(emb):
    emb.obs["dose"] = np.linspace(0, 1, 10)
    fig = pk.pl.embedding(emb, basis="umap", color="dose", symbol="cell_line")
    assert [t.name for t in fig.data] == ["MCF7", "PC3"]
    assert fig.data[1].marker.symbol == "square"
    np.testing.assert_allclose(fig.data[0].marker.color, emb.obs.dose[::2])
    both = pk.pl.embedding(emb, color="moa", symbol="cell_line")
    assert [t.name for t in both.data][:2] == ["a, MCF7", "a, PC3"]
    with pytest.raises(PerturbkitInputError, match="sc.tl.umap"):
        pk.pl.embedding(emb, basis="X_tsne")
    with pytest.raises(PerturbkitInputError, match="colour|color"):
        pk.pl.embedding(emb, color="tissue")


def test_latent_correlation_heatmap():
    drugs = ["a", "b", "c"]
    corr = pd.DataFrame(
        [[0.9, 0.1, 0.0], [0.2, 0.8, -0.1], [0.0, 0.3, 0.7]],
        index=pd.Index(drugs, name="MCF7"),
        columns=pd.Index(drugs, name="PC3"),
    )
    fig = pk.pl.latent_correlation(corr)
    (heat,) = fig.data
    np.testing.assert_allclose(np.asarray(heat.z), corr.to_numpy())
    assert list(heat.x) == drugs and (heat.zmin, heat.zmax) == (-1, 1)
    assert "mean diagonal 0.800" in fig.layout.title.text and "off-diagonal 0.083" in fig.layout.title.text
    assert fig.layout.yaxis.title.text == "drug (latent code from MCF7)"


def test_gene_importance_bars():
    df = pd.DataFrame(
        {"gene": [f"g{i}" for i in range(40)], "count": np.arange(40)[::-1], "frequency": np.arange(40)[::-1] / 100}
    )
    df.attrs.update(target="MCF7", source="PC3", n_profiles=12, expected_frequency=0.1)
    fig = pk.pl.gene_importance(df, n=5)
    (bars,) = fig.data
    assert list(bars.y) == ["g0", "g1", "g2", "g3", "g4"]
    np.testing.assert_allclose(bars.x, [0.39, 0.38, 0.37, 0.36, 0.35])
    assert fig.layout.shapes[0].x0 == 0.1
    assert "predicting MCF7 from PC3" in fig.layout.title.text
