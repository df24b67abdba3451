"""Issue 4 end to end: LSA with trained VAEs on simulated additive polypharmacology, and the real plate pipeline."""

import warnings

import numpy as np
import pytest
from sklearn.decomposition import PCA

import perturbkit as pk

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def morphology():
    adata = pk.datasets.simulate_morphology()
    pk.pp.scale(adata, method="minmax")
    return adata


@pytest.fixture(scope="module")
def held_out(morphology):
    """Training rows: every compound except the polypharmacology ("A|B") ones, which LSA must predict."""
    return morphology[~morphology.obs.moa.str.contains("|", regex=False)].copy()


@pytest.mark.parametrize("kind, options", [("mmd", {"lam": 1e4}), ("beta", {"beta": 0.3})])
def test_vae_arithmetic_predicts_held_out_combinations(morphology, held_out, kind, options):
    model = pk.tl.train_vae(held_out, kind=kind, seed=0, max_epochs=200, patience=20, **options)
    vae = pk.tl.latent_arithmetic(morphology, model=model)
    pca = pk.tl.latent_arithmetic(morphology, model=PCA(10, random_state=0).fit(held_out.X))
    assert len(vae) >= 10
    assert (vae.z < 0).mean() >= 0.9, vae[["group", "z"]]
    assert (vae.l2 / vae.l2_shuffled_mean).mean() < 0.8  # clearly below the shuffled-label control
    # at least as good as PCA at separating real from shuffled-label predictions (the per-A|B z-score)
    assert vae.z.mean() <= pca.z.mean(), (vae.z.mean(), pca.z.mean())


def test_real_cell_painting_pipeline_end_to_end(shared_data):
    plate = pk.io.read_cell_painting(shared_data("cell_painting/SQ00015054_normalized_feature_select.csv.gz"))
    pk.pp.feature_select(plate)
    pk.pp.scale(plate, method="minmax")
    consensus = pk.pp.aggregate(plate, by=["drug", "dose"])
    assert consensus.n_obs < plate.n_obs and {"moa", "control"} <= set(consensus.obs.columns)
    models = {
        kind: pk.tl.train_vae(consensus, kind=kind, latent_dim=10, seed=0, max_epochs=30, **options)
        for kind, options in [("vanilla", {}), ("beta", {"beta": 0.3}), ("mmd", {})]
    }
    contributions = pk.tl.traversal_contributions(models["mmd"], groupby="group")
    groups = set(contributions.columns)
    assert {"Cells_DNA", "Nuclei_DNA", "Cytoplasm_Mito", "Cells_AGP"} <= groups
    assert contributions.shape[0] == 10 and (contributions.to_numpy() >= 0).all()
    assert pk.pl.traversal_heatmap(contributions).data[0].z.shape == contributions.shape
    projected = pk.tl.project_reconstructions(consensus, model=models["mmd"], n_simulated=100)
    assert projected.obs.source.value_counts().to_dict() == {
        "original": consensus.n_obs,
        "reconstructed": consensus.n_obs,
        "simulated": 100,
    }
    assert np.isfinite(projected.obsm["X_umap"]).all()
    for model in [None, *models.values()]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = pk.tl.latent_arithmetic(consensus, model=model, control="DMSO")
        assert result.empty and "no A|B" in result.attrs["message"].replace("No A|B", "no A|B")
        assert any("A|B" in str(w.message) for w in caught)
