"""DeepCellState interpretation: latent embeddings, latent correlation, gene importance, TF targets.

One tiny model is trained on data whose answers are known: the target cell line's profile is a multiple of
s = (sum of genes g0..g9 in the source) / sqrt(10), with weight 1 on g0..g10 and small weights elsewhere. So
g0..g9 are the genes the TGT decoder needs (gene importance), and raising them raises g10 (the "TF").
"""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from perturbkit._schema import EmptyGroupError, PerturbkitInputError, UnknownCategoryError
from perturbkit._stats import pearson_rows
from perturbkit.models._profiles import CellDrugProfiles
from perturbkit.models.deepcellstate import DeepCellState
from perturbkit.models.deepcellstate._interpretation import (
    diagonal_summary,
    gene_importance,
    latent_correlation,
    latent_embeddings,
    pair_distance_ratio,
    tf_targets,
)

N_DRUGS, N_GENES = 120, 50
SIGNAL = [f"g{i}" for i in range(10)]
TF = "g10"


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_DRUGS, N_GENES))
    s = x[:, :10].sum(axis=1) / np.sqrt(10)
    w = 0.2 * rng.normal(size=N_GENES)
    w[:11] = 1.0
    target = s[:, None] * w + 0.1 * rng.normal(size=(N_DRUGS, N_GENES))
    drugs = [f"drug{i}" for i in range(N_DRUGS)]
    obs = pd.DataFrame(
        {
            "drug": drugs * 2,
            "cell_line": ["SRC"] * N_DRUGS + ["TGT"] * N_DRUGS,
            "control": False,
            "moa": [f"moa{i % 4}" for i in range(N_DRUGS)] * 2,
        },
        index=[f"r{i}" for i in range(2 * N_DRUGS)],
    )
    return ad.AnnData(
        np.vstack([x, target]).astype(np.float32), obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(N_GENES)])
    )


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def model(data, one_torch_thread):
    profiles = CellDrugProfiles.from_adata(data)
    # the paper's learned skip: the latent analyses are the paper's, and with the default ridge skip the latent code
    # carries only what the ridge map misses (a drug's two cell lines then meet less closely: ratio 0.88, not < 0.85)
    m = DeepCellState(
        data.var_names, cell_lines=profiles.cell_lines, latent_dim=16, hidden=(64, 32), skip_map="full", device="cpu"
    )
    return m.train(profiles, max_epochs=20, max_rounds=10, lr=1e-3, batch_size=32)


# --------------------------------------------------------------------------------------------- embeddings
def test_latent_embeddings_holds_codes_and_inputs(model, data):
    emb = latent_embeddings(model, data)
    assert emb.shape == (2 * N_DRUGS, 16)
    assert list(emb.obs.columns) == ["drug", "cell_line", "moa"]
    assert emb.obs_names.is_unique
    # drug-major order: each drug's two cell lines next to each other
    assert emb.obs["drug"].iloc[0] == emb.obs["drug"].iloc[1] == "drug0"
    assert list(emb.obs["cell_line"].iloc[:2]) == ["SRC", "TGT"]
    # X_input is the data (one row per profile here), X its latent code
    row = np.flatnonzero((data.obs.drug == "drug7") & (data.obs.cell_line == "TGT"))[0]
    np.testing.assert_allclose(emb[emb.obs_names == "drug7 | TGT"].obsm["X_input"][0], data.X[row])
    np.testing.assert_allclose(emb.X, model.encode_array(emb.obsm["X_input"]), rtol=1e-5, atol=1e-6)
    assert emb.obs.loc["drug5 | SRC", "moa"] == "moa1"
    assert emb.uns["latent_embeddings"]["cell_key"] == "cell_line"


def test_latent_embeddings_filters_and_errors(model, data):
    emb = latent_embeddings(model, data, cell_lines=["TGT"], drugs=["drug3", "drug1"])
    assert sorted(emb.obs_names) == ["drug1 | TGT", "drug3 | TGT"]
    with pytest.raises(UnknownCategoryError, match="drug0"):
        latent_embeddings(model, data, drugs=["aspirin"])
    with pytest.raises(UnknownCategoryError, match="HEK"):
        latent_embeddings(model, data, cell_lines=["HEK"])


def test_pair_distance_ratio_on_known_points():
    # drug0 at x=0, drug1 at x=3; the cell lines differ by 1 in y: same-drug distance 1, other pairs sqrt(10)
    obs = pd.DataFrame(
        {"drug": ["d0", "d0", "d1", "d1"], "cell_line": ["A", "B", "A", "B"]}, index=["a", "b", "c", "d"]
    )
    emb = ad.AnnData(np.array([[0, 0], [0, 1], [3, 0], [3, 1]], dtype=np.float32), obs=obs)
    emb.obsm["X_input"] = np.array([[0, 0], [0, 0], [3, 0], [3, 0]], dtype=np.float32)
    assert pair_distance_ratio(emb) == pytest.approx(1 / np.sqrt(10))
    assert pair_distance_ratio(emb, "X_input") == 0.0
    with pytest.raises(PerturbkitInputError, match="X_umap"):
        pair_distance_ratio(emb, "X_umap")
    with pytest.raises(EmptyGroupError):
        pair_distance_ratio(emb[[0, 2]])


def test_latent_space_brings_a_drugs_cell_lines_together(model, data):
    emb = latent_embeddings(model, data)
    latent, inputs = pair_distance_ratio(emb, "X"), pair_distance_ratio(emb, "X_input")
    assert inputs > 0.9  # the two cell lines' profiles of a drug are about as far apart as two different drugs
    assert latent < inputs - 0.1


# -------------------------------------------------------------------------------------- latent correlation
def test_latent_correlation_has_a_strong_diagonal(model, data):
    corr = latent_correlation(model, data, cell_lines=("SRC", "TGT"))
    assert corr.shape == (N_DRUGS, N_DRUGS)
    assert (corr.index == corr.columns).all() and corr.index.name == "SRC" and corr.columns.name == "TGT"
    profiles = model.profiles_from(data)
    za = model.encode_array(profiles.values[:, 0])
    zb = model.encode_array(profiles.values[:, 1])
    np.testing.assert_allclose(np.diag(corr), pearson_rows(za, zb), atol=1e-6)
    assert corr.loc["drug3", "drug8"] == pytest.approx(
        np.corrcoef(za[profiles.drugs.get_loc("drug3")], zb[profiles.drugs.get_loc("drug8")])[0, 1]
    )
    assert corr.attrs["diagonal_minus_off_diagonal"] > 0.1
    assert corr.attrs["mean_diagonal_rank"] < 0.8 * (N_DRUGS + 1) / 2
    sub = latent_correlation(model, data, cell_lines=["TGT", "SRC"], drugs=["drug2", "drug9", "drug4"])
    assert list(sub.index) == ["drug2", "drug9", "drug4"]
    with pytest.raises(PerturbkitInputError, match="two cell lines"):
        latent_correlation(model, data, cell_lines="SRC")


def test_diagonal_summary_numbers():
    m = pd.DataFrame([[0.9, 0.1, 0.2], [0.3, 0.8, 0.0], [0.95, 0.5, 0.7]])
    s = diagonal_summary(m)
    assert s["mean_diagonal"] == pytest.approx(0.8)
    assert s["mean_off_diagonal"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.0 + 0.95 + 0.5) / 6)
    assert s["mean_diagonal_rank"] == pytest.approx((1 + 1 + 2) / 3)
    assert s["top1_fraction"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------- gene importance
def test_gene_importance_finds_the_genes_the_decoder_needs(model, data):
    gi = gene_importance(model, data, target="TGT", source="SRC", n_subsets=100, subset_size=10, top=10)
    assert list(gi.columns) == ["gene", "count", "frequency"]
    assert len(gi) == N_GENES and gi["count"].is_monotonic_decreasing
    n = gi.attrs["n_profiles"]
    assert n == N_DRUGS and gi.attrs["n_compared_with_measured"] == N_DRUGS
    assert gi["count"].sum() == n * 10 * 10  # profiles × kept subsets × genes per subset
    np.testing.assert_allclose(gi["frequency"], gi["count"] / (n * 10))
    assert len(set(gi.gene[:10]) & set(SIGNAL)) >= 8
    freq = gi.set_index("gene")["frequency"]
    assert freq[SIGNAL].mean() > gi.attrs["expected_frequency"] > freq.drop(SIGNAL).mean()
    assert freq[SIGNAL].mean() > 1.25 * freq.drop(SIGNAL).mean()


def test_gene_importance_is_seeded_and_independent_of_batching(model, data):
    kwargs = dict(target="TGT", source="SRC", n_subsets=20, subset_size=5, top=3, drugs=[f"drug{i}" for i in range(7)])
    a = gene_importance(model, data, **kwargs)
    b = gene_importance(model, data, batch_rows=20, **kwargs)  # one drug per batch
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["n_profiles"] == 7


def test_gene_importance_options_and_errors(model, data):
    everything = gene_importance(
        model,
        data,
        target="TGT",
        source="TGT",
        n_subsets=4,
        subset_size=1000,
        top=2,
        compare_with="prediction",
        drugs=["drug0", "drug1"],
    )
    assert everything.attrs["subset_size"] == N_GENES  # clamped: every subset holds every gene
    assert (everything["count"] == 2 * 2).all() and everything.attrs["n_compared_with_measured"] == 0
    with pytest.raises(UnknownCategoryError, match="SRC"):
        gene_importance(model, data, target="HEK", source="SRC")
    with pytest.raises(UnknownCategoryError, match="drug"):
        gene_importance(model, data, target="TGT", source="SRC", drugs=["aspirin"])
    with pytest.raises(PerturbkitInputError, match="compare_with"):
        gene_importance(model, data, target="TGT", source="SRC", compare_with="truth")


# --------------------------------------------------------------------------------------------- TF targets
def test_tf_targets_recovers_the_genes_driving_the_tf(model):
    result = tf_targets(model, tf_gene=TF, target_cell_line="TGT", n_top=10, reference_targets=SIGNAL + ["nope"])
    assert list(result.targets.columns) == ["gene", "value"] and len(result.targets) == 10
    assert TF not in set(result.targets.gene)
    assert result.targets["value"].is_monotonic_decreasing
    assert result.input.between(-1, 1).all() and len(result.input) == N_GENES
    assert result.n_genes == N_GENES - 1 and result.reference == SIGNAL
    k = len(result.overlap)
    assert result.fold_enrichment == pytest.approx((k / 10) / (10 / (N_GENES - 1)))
    assert result.fold_enrichment > 1 and result.p_value < 0.05
    assert k >= 6
    assert result.output_value > 0.5  # the ascent did raise the TF
    assert result.summary()["n_overlap"] == k


def test_tf_targets_without_reference_and_errors(model):
    result = tf_targets(model, tf_gene=TF, target_cell_line="TGT", n_top=500, steps=5)
    assert len(result.targets) == N_GENES - 1  # clamped
    assert np.isnan(result.fold_enrichment) and np.isnan(result.p_value)
    with pytest.raises(UnknownCategoryError, match="g0"):
        tf_targets(model, tf_gene="TP53", target_cell_line="TGT")
    with pytest.raises(UnknownCategoryError, match="TGT"):
        tf_targets(model, tf_gene=TF, target_cell_line="HEK")
    with pytest.raises(PerturbkitInputError, match="reference"):
        tf_targets(model, tf_gene=TF, target_cell_line="TGT", steps=2, reference_targets=["TP53"])


# ------------------------------------------------------------------------------------ figures of the results
def test_figures_read_the_interpretation_results(model, data):
    import perturbkit as pk

    emb = latent_embeddings(model, data)
    centred = emb.X - emb.X.mean(axis=0)
    emb.obsm["X_pca"] = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    fig = pk.pl.embedding(emb, basis="X_pca", color="cell_line", symbol="moa", connect_pairs=True)
    assert sum(len(t.x) for t in fig.data[1:]) == 2 * N_DRUGS and list(fig.data[0].x).count(None) == N_DRUGS
    corr = latent_correlation(model, data, cell_lines=("SRC", "TGT"))
    heat = pk.pl.latent_correlation(corr)
    assert f"mean diagonal {corr.attrs['mean_diagonal']:.3f}" in heat.layout.title.text
    gi = gene_importance(model, data, target="TGT", source="SRC", n_subsets=10, subset_size=10, top=2)
    bars = pk.pl.gene_importance(gi, n=10)
    assert list(bars.data[0].y) == list(gi.gene[:10])
    predicted = model.predict(data, target="TGT", sources=["SRC"])
    measured = data[data.obs.cell_line == "TGT"]
    scatter = pk.pl.gene_scatter(predicted, measured, drug="drug3")
    pcc = pearson_rows(predicted["drug3"].X, measured[measured.obs.drug == "drug3"].X)[0]
    assert f"PCC {pcc:.3f}" in scatter.layout.title.text and "in TGT from SRC" in scatter.layout.title.text
    bars = pk.pl.profile(
        predicted, drug="drug3", measured=measured, inputs=data[data.obs.cell_line == "SRC"], n_genes=12
    )
    assert [t.name for t in bars.data] == ["input (SRC)", "predicted (TGT)", "measured (TGT)"]
    assert len(bars.data[0].x) == 12
