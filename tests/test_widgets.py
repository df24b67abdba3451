"""pk.widgets: moving a control changes the figure's data exactly as the pk.tl functions say it should."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from plotly.callbacks import Points

import perturbkit as pk
from perturbkit import widgets as W
from perturbkit._schema import EmptyGroupError, PerturbkitInputError, UnknownCategoryError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL_VAE = dict(kind="beta", beta=0.3, latent_dim=6, hidden=(64,), max_epochs=15, patience=None, device="cpu", seed=0)


@pytest.fixture(scope="module")
def vae(morph):
    return pk.tl.train_vae(morph.copy(), **SMALL_VAE)


@pytest.fixture(scope="module")
def bulk():
    return pk.datasets.simulate_bulk(n_drugs=80, n_genes=60, seed=1)


@pytest.fixture(scope="module")
def dcs(bulk):
    return pk.tl.train_deepcellstate(
        bulk, seed=0, latent_dim=16, hidden=(64, 32), max_epochs=15, max_rounds=3, device="cpu"
    )


@pytest.fixture(scope="module")
def cyclecdr(bulk):
    return pk.tl.train_cyclecdr(
        bulk,
        drug_encoder="onehot",
        max_epochs=10,
        hidden=(64,),
        latent_dim=16,
        batch_size=64,
        patience=None,
        device="cpu",
    )


def _y(trace) -> np.ndarray:
    return np.asarray(trace.y, dtype=float)


# ---------------------------------------------------------------------------------------------- LatentTraversal
def test_traversal_sliders_match_latent_traversal(vae, morph):
    panel = W.LatentTraversal(morph, model=vae)
    assert sorted(panel.controls["sliders"]) == list(range(6)) and panel.children  # displayable container
    for k in (0, 3):
        for value in (-3.0, 3.0):
            panel.start_from_zero()
            panel.controls["sliders"][k].value = value
            expected = pk.tl.latent_traversal(vae, feature=k, values=[value]).X[0]
            np.testing.assert_allclose(_y(panel.figure.data[0]), expected, rtol=1e-5, atol=1e-6)
            start = vae.inverse_transform(np.zeros((1, 6)))[0]
            np.testing.assert_allclose(_y(panel.figure.data[2]), expected - start, rtol=1e-4, atol=1e-5)
            assert list(panel.figure.data[0].text) == list(vae.var_names)
    assert f"{k}=+3.00" in panel.figure.layout.title.text


def test_traversal_order_start_point_and_errors(vae, morph):
    panel = W.LatentTraversal(morph, model=vae)
    panel.controls["sliders"][1].value = 2.0
    panel.controls["order"].value = "sorted"
    y = _y(panel.figure.data[0])
    assert np.all(np.diff(y) <= 0) and sorted(panel.figure.data[0].text) == sorted(vae.var_names)
    panel.controls["order"].value = "grouped"  # simulated morphology features carry a var 'group'
    groups = vae.var_table["group"].astype(str).reindex(list(panel.figure.data[0].text)).to_numpy()
    assert all(groups[i] <= groups[i + 1] for i in range(len(groups) - 1))

    moa = sorted(morph.obs["moa"].astype(str).unique())[2]
    panel.controls["groupby"].value = "moa"
    panel.controls["group"].value = moa
    panel.controls["encode"].click()
    expected_z = vae.encode(morph[morph.obs["moa"].astype(str) == moa]).mean(axis=0)
    np.testing.assert_allclose(panel.z, expected_z, rtol=1e-5, atol=1e-6)
    assert [s.value for s in panel.controls["sliders"].values()] == pytest.approx(expected_z.tolist(), abs=1e-6)
    assert np.abs(_y(panel.figure.data[2])).max() < 1e-5  # at the start point, nothing moved
    panel.controls["groupby"].value = "sample"
    panel.controls["group"].value = morph.obs_names[5]
    panel.controls["encode"].click()
    np.testing.assert_allclose(panel.z, vae.encode(morph[5:6])[0], rtol=1e-5, atol=1e-6)
    panel.controls["sliders"][0].value = panel.z[0] + 1.0
    panel.controls["reset"].click()
    np.testing.assert_allclose(panel.z, vae.encode(morph[5:6])[0], rtol=1e-5, atol=1e-6)
    panel.controls["zero"].click()
    assert not panel.z.any()
    panel.set_latent({4: 1.5})
    assert panel.controls["sliders"][4].value == pytest.approx(1.5)

    with pytest.raises(PerturbkitInputError, match="do not exist"):
        W.LatentTraversal(model=vae, features=[99])
    with pytest.raises(PerturbkitInputError, match="latent interface"):
        W.LatentTraversal(model=object())
    with pytest.raises(UnknownCategoryError):
        panel.start_from_group("moa", "no such MOA")


def test_traversal_deepcellstate_decoders(dcs, bulk):
    """Starting from a drug's encoding, the target decoder gives exactly DeepCellState's prediction."""
    profiles = dcs.profiles_from(bulk)
    source, target = dcs.cell_lines
    rows = np.flatnonzero(profiles.present[:, 0])
    one_per_drug = ad.AnnData(
        profiles.values[rows, 0],
        obs=pd.DataFrame({"drug": profiles.drugs[rows]}, index=profiles.drugs[rows]),
        var=pd.DataFrame(index=dcs.var_names),
    )
    panel = W.LatentTraversal(one_per_drug, model=dcs, n_sliders=5)
    assert len(panel.controls["sliders"]) == 5 and panel.controls["decoder"].options == (source, target)
    drug = str(profiles.drugs[rows[3]])
    panel.start_from_group("drug", drug)
    panel.controls["decoder"].value = target
    np.testing.assert_allclose(
        _y(panel.figure.data[0]), dcs.predict_array(profiles.values[rows[3], 0][None], target=target)[0], atol=1e-5
    )
    before = _y(panel.figure.data[0])
    panel.controls["decoder"].value = source
    assert not np.allclose(_y(panel.figure.data[0]), before)
    k = next(iter(panel.controls["sliders"]))
    panel.controls["sliders"][k].value = panel.controls["sliders"][k].max
    assert np.abs(_y(panel.figure.data[2])).max() > 1e-4


def test_traversal_cyclecdr_decoders(cyclecdr):
    panel = W.LatentTraversal(model=cyclecdr)
    assert panel.controls["decoder"].options == cyclecdr.decoder_names
    panel.controls["sliders"][0].value = 2.0
    z = np.zeros(16, dtype=np.float32)
    z[0] = 2.0
    for name in cyclecdr.decoder_names:
        panel.controls["decoder"].value = name
        np.testing.assert_allclose(_y(panel.figure.data[0]), cyclecdr.decode_array(z, decoder=name)[0], atol=1e-5)


# --------------------------------------------------------------------------------------------- EmbeddingExplorer
def test_embedding_explorer_colour_hover_click(morph, vae):
    data = morph.copy()
    X_before, obs_before = data.X.copy(), data.obs.copy()
    panel = W.EmbeddingExplorer(data, basis="pca", color="moa", model=vae)
    expected = pk.tl.embed(morph, basis="pca", copy=True).obsm["X_pca"][:, :2]
    np.testing.assert_allclose(data.obsm["X_pca"][:, :2], expected, rtol=1e-4, atol=1e-5)
    n_moas = data.obs["moa"].nunique()
    assert len(panel.figure.data) == n_moas
    template = panel.figure.data[0].hovertemplate
    assert all(word in template for word in ("drug", "MOA", "dose", "cell line"))
    points = sum(len(t.x) for t in panel.figure.data)
    assert points == data.n_obs

    panel.controls["color"].value = "dose"  # numeric: one trace on a colour scale
    assert len(panel.figure.data) == 1 and panel.figure.data[0].marker.showscale

    trace = panel.figure.data[0]
    i = 7
    panel._on_click(
        trace, Points(point_inds=[i], xs=[trace.x[i]], ys=[trace.y[i]], trace_name=trace.name, trace_index=0), None
    )
    row = int(trace.ids[i])
    np.testing.assert_allclose(_y(panel.profile_figure.data[0]), data.X[row], rtol=1e-6)
    assert data.obs_names[row] in panel.profile_figure.layout.title.text

    panel.controls["space"].value = "latent"
    assert "X_vae" in data.obsm and "X_pca_vae" in data.obsm
    np.testing.assert_allclose(data.obsm["X_vae"], vae.encode(morph), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(data.X, X_before)
    pd.testing.assert_frame_equal(data.obs, obs_before)

    with pytest.raises(PerturbkitInputError, match="basis"):
        W.EmbeddingExplorer(data, basis="X_nothing")
    with pytest.raises(PerturbkitInputError, match="obs column"):
        W.EmbeddingExplorer(data, basis="pca", color="no_such_column")


def test_embedding_explorer_overlays(morph, vae):
    data = morph[:120].copy()
    projection = pk.tl.project_reconstructions(data, model=vae, n_simulated=30, seed=0)
    panel = W.EmbeddingExplorer(data, basis="pca", model=vae, projection=projection, color="moa")
    panel.controls["overlays"].value = ("reconstructed", "simulated")
    assert panel.controls["color"].value == "moa" and "projected" in panel.figure.layout.title.text
    drawn = sum(len(t.x) for t in panel.figure.data)
    assert drawn == 120 * 2 + 30
    panel.controls["color"].value = "source" if "source" in data.obs else panel.controls["color"].value
    panel.show_profile(130)  # a reconstruction: its profile comes from the projection
    np.testing.assert_allclose(_y(panel.profile_figure.data[0]), projection.X[130], rtol=1e-6)


# ------------------------------------------------------------------------------------------------- LSAExplorer
@pytest.mark.parametrize("use_model", [True, False], ids=["vae", "original-space"])
def test_lsa_explorer_matches_latent_arithmetic(morph, vae, use_model):
    model = vae if use_model else None
    data = morph.copy()
    table = pk.tl.latent_arithmetic(data, model=model, n_shuffles=10, seed=0)
    assert len(table) >= 2
    panel = W.LSAExplorer(morph, model=model, n_shuffles=10, seed=0)
    pd.testing.assert_frame_equal(panel.table[["l2", "pearson", "z"]], table[["l2", "pearson", "z"]])
    assert "latent_arithmetic" not in morph.uns  # the panel only reads

    for group in table.index:
        panel.controls["table"].value = group
        row = table.loc[group]
        assert (panel.controls["A"].value, panel.controls["B"].value) == (row["A"], row["B"])
        assert panel.result["l2"] == pytest.approx(row["l2"])
        assert panel.result["z"] == pytest.approx(row["z"])
        np.testing.assert_allclose(np.sort(np.asarray(panel.figure.data[2].x, float)), np.sort(row["l2_shuffled"]))
        assert panel.figure.data[3].x[0] == pytest.approx(row["l2"])
        assert f"z {row['z']:.2f}" in panel.figure.layout.title.text

    a, b = table.iloc[0]["A"], table.iloc[0]["B"]
    Z = panel.Z
    means = {g: Z[panel.row_group == g].mean(axis=0) for g in (a, b, "DMSO")}
    result = means[a] - means["DMSO"] + means[b]
    panel.select(a, b)
    expected = np.asarray(panel.model.inverse_transform(result[None]))[0]
    order = np.argsort(-panel.result["real"], kind="stable")
    np.testing.assert_allclose(_y(panel.figure.data[1]), expected[order], rtol=1e-5, atol=1e-6)
    if use_model:
        np.testing.assert_allclose(_y(panel.figure.data[7]), result, rtol=1e-5, atol=1e-6)


def test_lsa_explorer_unmeasured_pair_and_errors(morph, vae):
    panel = W.LSAExplorer(morph, model=vae)
    singles = list(panel.controls["A"].options)
    unmeasured = next((a, b) for a in singles for b in singles if a < b and f"{a}|{b}" not in panel.pairs)
    panel.select(*unmeasured)
    assert not panel.result["has_real"] and len(panel.figure.data[0].y) == 0 and len(panel.figure.data[1].y) == 60
    assert "not measured" in panel.status.value
    with pytest.raises(EmptyGroupError, match="control"):
        W.LSAExplorer(morph, model=vae, control="no-such-control")
    with pytest.raises(PerturbkitInputError, match="not one of"):
        panel.select("nope", singles[0])


# --------------------------------------------------------------------------------------------- ResponseExplorer
def test_response_explorer_deepcellstate(dcs, bulk):
    panel = W.ResponseExplorer(bulk, model=dcs, n_genes=20)
    source, target = dcs.cell_lines
    profiles = dcs.profiles_from(bulk)
    both = profiles.drugs[profiles.present.all(axis=1)]
    drug = str(both[5])
    panel.select(drug, source=source, target=target)
    predicted = dcs.predict(bulk, target=target, sources=[source])[drug].X[0]
    measured = profiles.values[profiles.drugs.get_loc(drug), 1]
    np.testing.assert_allclose(panel.result["predicted"], predicted, rtol=1e-5, atol=1e-6)
    genes = list(panel.figure.data[1].x)
    assert len(genes) == 20
    np.testing.assert_allclose(
        _y(panel.figure.data[1]), pd.Series(predicted, index=dcs.var_names)[genes].to_numpy(), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(np.asarray(panel.figure.data[3].x, float), measured, rtol=1e-6)
    r = np.corrcoef(predicted, measured)[0, 1]
    assert panel.result["pcc"] == pytest.approx(r, abs=1e-5) and f"PCC {r:.3f}" in panel.figure.layout.title.text
    assert panel.controls["target"].options == (target,)

    panel.select(drug, source=target, target=source)  # the other direction
    assert panel.result["source"] == target and not np.allclose(panel.result["predicted"], predicted)
    with pytest.raises(PerturbkitInputError, match="no treated profile"):
        panel.select("not-a-drug")
    with pytest.raises(PerturbkitInputError, match="DeepCellState or CycleCDR"):
        W.ResponseExplorer(bulk, model=object())


def test_response_explorer_cyclecdr(cyclecdr, bulk):
    panel = W.ResponseExplorer(bulk, model=cyclecdr)
    drug = panel.controls["drug"].options[4]
    cell = panel.controls["source"].options[0]
    panel.select(drug, source=cell)
    assert panel.controls["target"].value == cell and panel.controls["target"].disabled
    means = pk.tl.control_means(bulk)
    expected = cyclecdr.predict(means[[cell]], drugs=[drug]).X[0]
    np.testing.assert_allclose(panel.result["predicted"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(panel.result["input"], means[cell].X[0], rtol=1e-6)
    assert np.isfinite(panel.result["r2"]) and 0 <= panel.result["r2"] <= 1
