"""VAE figures (pk.pl VAE functions) and the embedding tools (project_reconstructions, embed).

The inputs are built by hand in the documented shapes (history frames, LSA tables, correlation and traversal
matrices) and a fitted PCA stands in for the VAE, so these tests do not depend on training. Every UMAP use of the
test suite lives in this module (the first ``import umap`` compiles numba code).
"""

import anndata as ad
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from sklearn.decomposition import PCA

from perturbkit._schema import PerturbkitInputError
from perturbkit.pl import _vae as pl
from perturbkit.tl._embedding import embed, project_reconstructions


# ------------------------------------------------------------------------------------------------ fixtures
def _history(offset=0.0, epochs=5):
    e = np.arange(1, epochs + 1)
    return pd.DataFrame(
        {
            "stage": "train",
            "epoch": e,
            "train_loss": 10 / e + offset,
            "validation_loss": 11 / e + offset,
            "train_reconstruction": 8 / e,
            "train_kl": 2 / e,
        }
    )


@pytest.fixture
def control():
    return pd.concat([_history().assign(data="real"), _history(offset=5.0).assign(data="shuffled")], ignore_index=True)


def _lsa(rng, n=12, shift=0.0, scale=1.0, n_shuffles=10):
    groups = [f"M{i}|M{i + 1}" for i in range(n)]
    l2 = scale * (1.0 + rng.random(n)) + shift
    shuffled = [list(scale * (1.5 + rng.random(n_shuffles)) + shift) for _ in range(n)]
    z = [(v - np.mean(s)) / np.std(s, ddof=1) for v, s in zip(l2, shuffled, strict=True)]
    return pd.DataFrame(
        {
            "A": [g.split("|")[0] for g in groups],
            "B": [g.split("|")[1] for g in groups],
            "group": groups,
            "l2": l2,
            "pearson": rng.random(n),
            "l2_shuffled": shuffled,
            "z": z,
            "p": rng.random(n),
        }
    )


class PCAModel:
    """A PCA with the VAE's sampling interface (standard-normal codes scaled by the component sd)."""

    def __init__(self, X, n_components=5):
        self.pca = PCA(n_components=n_components, random_state=0).fit(X)
        self.hparams = {"kind": "pca"}

    def transform(self, X):
        return self.pca.transform(X)

    def inverse_transform(self, Z):
        return self.pca.inverse_transform(Z)

    def sample(self, n, seed=0):
        rng = np.random.default_rng(seed)
        Z = rng.standard_normal((n, self.pca.n_components_)) * np.sqrt(self.pca.explained_variance_)
        return self.pca.inverse_transform(Z)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (4, 20))
    labels = np.repeat(np.arange(4), 40)
    X = (centers[labels] + rng.normal(0, 1, (160, 20))).astype(np.float32)
    obs = pd.DataFrame(
        {"drug": [f"d{i % 40}" for i in range(160)], "moa": [f"MOA{k}" for k in labels]},
        index=[f"w{i}" for i in range(160)],
    )
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"f{j}" for j in range(20)]))


# ------------------------------------------------------------------------------------------ training curves
def test_training_curves_single_history():
    h = _history()
    fig = pl.training_curves(h)
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == ["train loss", "validation loss"]
    np.testing.assert_allclose(fig.data[0].x, h.epoch)
    np.testing.assert_allclose(fig.data[0].y, h.train_loss)
    np.testing.assert_allclose(fig.data[1].y, h.validation_loss)
    assert fig.data[0].line.dash == "solid" and fig.data[1].line.dash == "dash"
    assert f"{h.validation_loss.iloc[-1]:.4g}" in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "epoch" and fig.layout.yaxis.title.text == "loss"
    assert "%{y" in fig.data[0].hovertemplate


def test_training_curves_real_vs_shuffled(control):
    fig = pl.training_curves(control, by="data")
    names = [t.name for t in fig.data]
    assert names == ["real, train loss", "real, validation loss", "shuffled, train loss", "shuffled, validation loss"]
    for t in fig.data:
        data, split = t.name.split(", ")
        col = split.replace(" ", "_")
        np.testing.assert_allclose(t.y, control.loc[control.data == data, col])
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    # one colour without grouping; several seeds of a group are averaged per epoch
    seeds = pd.concat([control.assign(seed=0), control.assign(seed=1, train_loss=control.train_loss + 2)])
    fig2 = pl.training_curves(seeds, y="train_loss")
    np.testing.assert_allclose(fig2.data[0].y, control.loc[control.data == "real", "train_loss"] + 1)
    assert len(pl.training_curves(_history(), by=None, y=["train_loss", "train_kl"]).data) == 2


def test_training_curves_dict_and_errors():
    fig = pl.training_curves({"vanilla": _history(), "mmd": _history(1.0)}, y="validation_loss")
    assert [t.name for t in fig.data] == ["vanilla, validation loss", "mmd, validation loss"]
    with pytest.raises(PerturbkitInputError, match="none of the columns"):
        pl.training_curves(_history(), y="train_mmd")
    with pytest.raises(PerturbkitInputError, match="group by"):
        pl.training_curves(_history(), by="seed")
    with pytest.raises(PerturbkitInputError, match="history"):
        pl.training_curves([1, 2, 3])


# ------------------------------------------------------------------------------------------------ heatmaps
def test_latent_correlation_heatmap():
    rng = np.random.default_rng(1)
    corr = pd.DataFrame(
        np.corrcoef(rng.normal(size=(6, 50))), index=[f"z{i}" for i in range(6)], columns=[f"z{i}" for i in range(6)]
    )
    fig = pl.latent_correlation_heatmap(corr)
    h = fig.data[0]
    np.testing.assert_allclose(np.asarray(h.z), corr.to_numpy())
    assert (h.zmin, h.zmax, h.zmid) == (-1, 1, 0) and list(h.x) == list(corr.columns)
    off = np.abs(corr.to_numpy()[~np.eye(6, dtype=bool)])
    assert f"{off.mean():.3f}" in fig.layout.title.text and "6 latent features" in fig.layout.title.text
    with pytest.raises(PerturbkitInputError, match="square"):
        pl.latent_correlation_heatmap(corr.iloc[:, :3])


def test_traversal_heatmap_clusters_rows_and_columns():
    rng = np.random.default_rng(2)
    base = rng.random((4, 7))
    # latent rows: z0 == z5 and z2 == z7 (identical), placed far apart; columns g1 == g4 identical
    rows = np.vstack([base[0], base[1], base[2], rng.random(7), base[3], base[0], rng.random(7), base[2]])
    rows[:, 4] = rows[:, 1]
    contrib = pd.DataFrame(rows, index=[f"z{i}" for i in range(8)], columns=[f"g{j}" for j in range(7)])
    fig = pl.traversal_heatmap(contrib)
    h = fig.data[0]
    ys, xs = list(h.y), list(h.x)
    assert sorted(ys) == sorted(contrib.index) and sorted(xs) == sorted(contrib.columns)
    assert abs(ys.index("z0") - ys.index("z5")) == 1
    assert abs(ys.index("z2") - ys.index("z7")) == 1
    assert abs(xs.index("g1") - xs.index("g4")) == 1
    np.testing.assert_allclose(np.asarray(h.z), contrib.loc[ys, xs].to_numpy())  # values follow their labels
    unclustered = pl.traversal_heatmap(contrib, cluster=False).data[0]
    assert list(unclustered.y) == list(contrib.index)
    np.testing.assert_allclose(np.asarray(unclustered.z), contrib.to_numpy())
    assert "8 latent features × 7 feature groups" in fig.layout.title.text
    with pytest.raises(PerturbkitInputError, match="missing"):
        pl.traversal_heatmap(contrib.assign(g0=np.nan))


# ------------------------------------------------------------------------------------------------ LSA figures
def test_l2_distributions_zero_one_per_model():
    rng = np.random.default_rng(3)
    results = {"vanilla": _lsa(rng), "mmd": _lsa(rng, shift=10.0, scale=5.0), "plate": _lsa(rng).iloc[:0]}
    fig = pl.l2_distributions(results)
    assert {t.x[0] for t in fig.data} == {"vanilla", "mmd"}
    for name in ("vanilla", "mmd"):
        df = results[name]
        real = df.l2.to_numpy()
        shuffled = np.concatenate(df.l2_shuffled.to_list())
        low, high = min(real.min(), shuffled.min()), max(real.max(), shuffled.max())
        traces = {t.name: np.asarray(t.y) for t in fig.data if t.x[0] == name}
        assert len(traces["shuffled"]) == len(df) * 10
        for t in traces.values():
            assert t.min() >= 0 and t.max() <= 1
        assert min(traces["real"].min(), traces["shuffled"].min()) == 0
        assert max(traces["real"].max(), traces["shuffled"].max()) == pytest.approx(1)
        np.testing.assert_allclose(traces["real"], (real - low) / (high - low))
        assert f"{name} {real.mean():.3g} ({shuffled.mean():.3g})" in fig.layout.title.text
    assert "no eligible A|B for plate" in fig.layout.title.text
    hist = pl.l2_distributions(results, kind="histogram", normalise=False)
    assert all(isinstance(t, go.Histogram) for t in hist.data)
    np.testing.assert_allclose(hist.data[0].x, results["vanilla"].l2)
    # the string form of the lists after a CSV round trip is read too
    csv = results["vanilla"].assign(l2_shuffled=results["vanilla"].l2_shuffled.map(str))
    np.testing.assert_allclose(pl.l2_distributions({"v": csv}).data[1].y, fig.data[1].y)
    with pytest.raises(PerturbkitInputError, match="no A|B group was eligible"):
        pl.l2_distributions({"plate": results["plate"]})


def test_zscore_scatter_joins_on_group():
    rng = np.random.default_rng(4)
    a = _lsa(rng, n=10)
    b = _lsa(rng, n=12).drop(columns="group")  # group rebuilt from A and B
    b = b.iloc[::-1].reset_index(drop=True)  # another order: the join must align by name
    fig = pl.zscore_scatter(a, b)
    pts = fig.data[-1]
    assert len(pts.x) == 10
    bz = b.set_index(b.A + "|" + b.B).z
    az = a.set_index("group").z
    for name, x, y in zip(pts.text, pts.x, pts.y, strict=True):
        assert x == pytest.approx(az[name]) and y == pytest.approx(bz[name])
    r = np.corrcoef(pts.x, pts.y)[0, 1]
    assert f"r = {r:.3f}" in fig.layout.title.text
    assert fig.data[0].name == "y = x"
    assert fig.layout.xaxis.title.text == "L1000 z-score" and fig.layout.yaxis.title.text == "Cell Painting z-score"
    with pytest.raises(PerturbkitInputError, match="no 'group'"):
        pl.zscore_scatter(a, b.assign(A="X"))


# ---------------------------------------------------------------------------- UMAP projection and embed
def test_project_reconstructions_and_projection(small):
    model = PCAModel(small.X)
    proj = project_reconstructions(small, model=model, n_simulated=50, seed=0, n_neighbors=10)
    counts = proj.obs.source.value_counts()
    assert list(proj.obs.source.cat.categories) == ["original", "reconstructed", "simulated"]
    assert (counts["original"], counts["reconstructed"], counts["simulated"]) == (160, 160, 50)
    assert proj.obsm["X_umap"].shape == (370, 2) and np.isfinite(proj.obsm["X_umap"]).all()
    np.testing.assert_allclose(proj.X[:160], small.X)
    np.testing.assert_allclose(proj.X[160:320], model.inverse_transform(model.transform(small.X)), rtol=1e-5, atol=1e-5)
    assert list(proj.obs.moa[:160]) == list(small.obs.moa) and proj.obs.moa[320:].isna().all()
    info = proj.uns["project_reconstructions"]
    assert info["n_simulated"] == 50 and info["reconstruction_mse"] > 0
    # reconstructions land near their original point (far closer than a random pairing)
    xy = proj.obsm["X_umap"]
    near = np.linalg.norm(xy[:160] - xy[160:320], axis=1).mean()
    random = np.linalg.norm(xy[:160] - xy[160:320][np.random.default_rng(0).permutation(160)], axis=1).mean()
    assert near < 0.5 * random

    fig = pl.projection(proj)
    assert [t.name for t in fig.data] == ["original (160)", "reconstructed (160)", "simulated (50)"]
    np.testing.assert_allclose(fig.data[1].x, xy[160:320, 0])
    assert "160 original, 160 reconstructed, 50 simulated" in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "UMAP 1" and "customdata" in fig.data[0].hovertemplate
    assert list(fig.data[1].customdata[:2, 1]) == ["reconstructed:w0", "reconstructed:w1"]
    by_moa = pl.projection(proj, color="moa")
    assert [t.name for t in by_moa.data] == [f"MOA{k} (80)" for k in range(4)] + ["no MOA (50)"]
    assert set(by_moa.data[0].marker.symbol) == {"circle", "diamond"}
    frame = pd.DataFrame({"umap1": xy[:, 0], "umap2": xy[:, 1], "source": proj.obs.source.to_numpy()})
    assert len(pl.projection(frame).data) == 3

    # without sample(): reconstructions only, or a clear error
    pca = PCA(n_components=5).fit(small.X)
    only = project_reconstructions(small, model=pca, n_simulated=0, n_neighbors=10)
    assert only.n_obs == 320 and set(only.obs.source) == {"original", "reconstructed"}
    with pytest.raises(PerturbkitInputError, match="n_simulated=0"):
        project_reconstructions(small, model=pca)


def test_embed_caches_and_copy(small):
    import torch

    adata = small.copy()
    before = adata.X.copy()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = embed(adata, basis="umap", use_rep="X", n_neighbors=10, copy=True)
        assert torch.get_num_threads() == 1  # numba's UMAP must not reset torch's thread count
    finally:
        torch.set_num_threads(threads)
    assert "X_umap" in out.obsm and out.obsm["X_umap"].shape == (160, 2)
    assert "X_umap" not in adata.obsm and "neighbors" not in adata.uns and "embed" not in adata.uns
    np.testing.assert_array_equal(adata.X, before)

    assert embed(adata, basis="pca", n_comps=5) is None
    assert adata.obsm["X_pca"].shape == (160, 5)
    first = adata.obsm["X_pca"].copy()
    adata.obsm["X_pca"][:] = 0.0  # a cached embedding is not recomputed ...
    embed(adata, basis="pca", n_comps=5)
    assert (adata.obsm["X_pca"] == 0).all()
    embed(adata, basis="pca", n_comps=5, recompute=True)  # ... unless asked
    np.testing.assert_allclose(np.abs(adata.obsm["X_pca"]), np.abs(first), rtol=1e-4, atol=1e-4)
    embed(adata, basis="pca", n_comps=3)  # other settings than the stored ones: recomputed
    assert adata.obsm["X_pca"].shape == (160, 3)

    few = adata[:40].copy()
    few.obsm["X_lat"] = few.X[:, :4].copy()
    embed(few, basis="tsne", use_rep="X_lat", key_added="X_tsne_lat", n_jobs=1)
    assert few.obsm["X_tsne_lat"].shape == (40, 2) and "X_tsne" not in few.obsm
    assert few.uns["embed"]["X_tsne_lat"]["use_rep"] == "X_lat"
    with pytest.raises(PerturbkitInputError, match="basis"):
        embed(adata, basis="mds")
    with pytest.raises(PerturbkitInputError, match="X_vae"):
        embed(adata, use_rep="X_vae")


def test_figures_read_a_trained_vae():
    """The real tool outputs (tiny VAE, 3 epochs) go into the figures as they are."""
    import perturbkit as pk

    adata = pk.datasets.simulate_morphology(n_compounds=30, n_features=60, n_replicates=2, n_plates=3, seed=0)
    pk.pp.scale(adata, method="minmax")
    options = dict(kind="mmd", latent_dim=4, hidden=(16,), max_epochs=3, patience=None)
    model = pk.tl.train_vae(adata, **options)
    curves = pk.pl.training_curves(model.history_frame)
    np.testing.assert_allclose(curves.data[0].y, model.history_frame.train_loss)
    control = pk.experiments.vae_shuffled_control(
        adata, kind="mmd", train_options={k: v for k, v in options.items() if k != "kind"}
    )
    assert {t.name for t in pk.pl.training_curves(control).data} >= {"real, train loss", "shuffled, validation loss"}
    contributions = pk.tl.traversal_contributions(model, groupby="sim_group")
    heat = pk.pl.traversal_heatmap(contributions).data[0]
    named = contributions.set_axis(contributions.index.map(str), axis=0).set_axis(
        contributions.columns.map(str), axis=1
    )
    np.testing.assert_allclose(np.asarray(heat.z), named.loc[list(heat.y), list(heat.x)].to_numpy())
    corr = pk.tl.vae_latent_correlation(adata, model=model)
    np.testing.assert_allclose(np.asarray(pk.pl.latent_correlation_heatmap(corr).data[0].z), corr.to_numpy())
    proj = project_reconstructions(adata[:120], model=model, n_simulated=30, n_neighbors=10)
    assert proj.obs.source.value_counts().to_dict() == {"original": 120, "reconstructed": 120, "simulated": 30}
    assert np.isfinite(proj.obsm["X_umap"]).all()
    assert len(pk.pl.projection(proj).data) == 3
