"""Issue 4 end to end: LSA with trained VAEs on simulated additive polypharmacology, and the real plate pipeline.

Issue 13: a nonlinear simulation on which the VAE paper's claim (MMD-VAE ahead of PCA ahead of the original space)
can be tested, the β default, and no posterior collapse at the defaults (with a warning when it happens). The claim
holds on the tuning seed and on two of three held-out seeds of that simulation (the test asserts on those two).
"""

import inspect
import warnings

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

import perturbkit as pk
from perturbkit._schema import PerturbkitInputError
from perturbkit.models.vae import VAE, PosteriorCollapseWarning
from perturbkit.models.vae._model import DEFAULTS

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
        kind: pk.tl.train_vae(consensus, kind=kind, latent_dim=10, seed=0, max_epochs=30, patience=10, **options)
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


# ------------------------------------------------------------------------------------------------------ issue 13
def _consensus(**options):
    wells = pk.datasets.simulate_morphology(**options)
    pk.pp.scale(wells, method="minmax")
    return pk.pp.aggregate(wells, by=["drug", "dose"])


@pytest.fixture(scope="module")
def small_consensus():
    """A consensus-profile-sized set: 60 compounds × 6 doses + DMSO, 361 rows × 300 features in [0, 1]."""
    return _consensus(n_compounds=60, seed=2)


def test_beta_default_is_the_papers_and_vanilla_ignores_it(morph):
    assert DEFAULTS.beta == 0.3 and DEFAULTS.kind == "vanilla"
    assert inspect.signature(pk.tl.train_vae).parameters["beta"].default == 0.3
    assert inspect.signature(VAE.from_adata).parameters["beta"].default == 0.3
    x = torch.from_numpy(morph.X[:32])
    for kind in ("vanilla", "beta"):
        model = VAE(morph.var_names, kind=kind, hidden=(16,), device="cpu")
        torch.manual_seed(0)
        parts = model.loss((x,))
        weight = 1.0 if kind == "vanilla" else 0.3  # the vanilla VAE's KL weight stays 1
        assert parts["loss"].item() == pytest.approx((parts["reconstruction"] + weight * parts["kl"]).item(), rel=1e-6)


def test_default_vaes_do_not_collapse_on_small_data(small_consensus):
    # measured (seed 2, 361 rows): active units vanilla 8, beta 9, mmd 10 of 10. With the defaults before issue 13
    # (β 1, patience 10, 100 epochs) training stopped after 12-22 epochs (seed 1: 6 vanilla units and 10 MMD units
    # barely above 0.01, latent arithmetic at the shuffled-label control's L2: 1.73 and 1.67 against 1.78)
    for kind, at_least in (("vanilla", 5), ("beta", 8), ("mmd", 9)):
        data = small_consensus.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("error", PosteriorCollapseWarning)
            model = pk.tl.train_vae(data, kind=kind, seed=0)
        assert model.active_units >= at_least, (kind, model.latent_activity)
        assert data.uns["vae"]["active_units"] == model.active_units
        np.testing.assert_allclose(data.uns["vae"]["latent_activity"], model.latent_activity)
        activity = data.obsm["X_vae"].astype(np.float64).var(axis=0)
        np.testing.assert_allclose(model.latent_activity, activity, rtol=1e-4)


def test_forced_collapse_warns_with_the_fix(small_consensus, tmp_path):
    with pytest.warns(PosteriorCollapseWarning, match=r"only \d of the VAE's 10 latent units.*lower beta \(now 1000\)"):
        model = pk.tl.train_vae(small_consensus.copy(), kind="beta", beta=1000.0, hidden=(32,), max_epochs=30, seed=0)
    assert model.active_units < 5 and (model.latent_activity >= 0).all()
    model.save(tmp_path / "collapsed.pt")
    loaded = VAE.load(tmp_path / "collapsed.pt")
    assert loaded.active_units == model.active_units
    np.testing.assert_array_equal(loaded.latent_activity, model.latent_activity)
    with pytest.warns(PosteriorCollapseWarning, match="kind='beta' with beta below 1.*smaller latent_dim"):
        VAE.from_adata(small_consensus, kind="vanilla", latent_dim=4, hidden=(8,)).check_collapse(
            np.repeat(small_consensus.X[:1], 10, axis=0)
        )


def test_network_decoder_keeps_the_wells_and_is_additive_in_the_latent_space():
    options = dict(n_compounds=40, n_features=60, n_plates=4, seed=3)
    saturating = pk.datasets.simulate_morphology(**options)
    network = pk.datasets.simulate_morphology(decoder="network", **options)
    assert network.obs.equals(saturating.obs) and list(network.var_names) == list(saturating.var_names)
    assert "decoder" not in saturating.uns["simulation"]["params"]
    assert network.uns["simulation"]["params"]["decoder"] == "network"
    noise_free = network.layers["noise_free"]
    assert np.isfinite(network.X).all() and (noise_free[network.obs["control"].to_numpy()] == 0).all()
    # the same wells, noise and plates: only the decoded signal differs
    np.testing.assert_allclose(
        network.X - noise_free, saturating.X - saturating.layers["noise_free"], rtol=1e-5, atol=1e-5
    )
    for bad, match in (({"decoder": "mlp"}, "decoder='mlp'"), ({"decoder": "network", "nonlinearity": -1}, "nonlin")):
        with pytest.raises(PerturbkitInputError, match=match):
            pk.datasets.simulate_morphology(**options, **bad)

    def linear_share(adata):
        """Share of the noise-free profiles' variance that a linear map of the true latent effect explains."""
        S, Y = adata.obsm["latent_true"].astype(np.float64), adata.layers["noise_free"].astype(np.float64)
        residual = Y - S @ np.linalg.lstsq(S, Y, rcond=None)[0]
        return 1.0 - (residual**2).sum() / (Y**2).sum()

    nearly_linear = pk.datasets.simulate_morphology(decoder="network", nonlinearity=1e-4, **options)
    bent = pk.datasets.simulate_morphology(decoder="network", nonlinearity=2.0, **options)
    assert linear_share(nearly_linear) > 0.9999
    # measured: 1.0000 (nonlinearity 1e-4), 0.956 (1, the default), 0.920 (2); the saturating decoder 0.949
    assert linear_share(network) > linear_share(bent) + 0.02 and linear_share(bent) < 0.93


#: The simulation the claim holds on (benchmarks/lsa_vae.py's SIMULATION): a strongly nonlinear decoder of a
#: 4-dimensional latent effect (a linear map of it explains 62-75 % of the noise-free variance), one well per
#: compound and dose with noise 1.5, so the MOA-group means carry noise that a 10-component PCA removes.
LSA_SIMULATION = dict(
    decoder="network", nonlinearity=5.0, latent_dim=4, n_replicates=1, noise=1.5, doses=(0.37, 1.11, 3.33, 10.0)
)
#: The MMD-VAE setting chosen on simulation seed 1 (the paper's search space: latent size 5 is its smallest).
LSA_VAE = dict(kind="mmd", latent_dim=5)


def _lsa_simulation(seed: int):
    """benchmarks/lsa_vae.py's data: consensus profiles per compound and dose (961 rows × 300), A|B held out."""
    data = _consensus(n_compounds=240, seed=seed, **LSA_SIMULATION)
    return data, ~data.obs["moa"].str.contains("|", regex=False).to_numpy()


def _mean_l2(data, model, **options):
    table = pk.tl.latent_arithmetic(data, model=model, seed=0, **options)
    return table["l2"].mean(), table


@pytest.mark.parametrize(
    "seed, measured",
    # measured mean L2 (MMD-VAE, PCA, original; numpy 2.4 / torch 2.13, CPU, training seed 0)
    [(3, (1.589, 1.751, 1.853)), (4, (1.537, 1.855, 1.917))],
)
def test_lsa_claim_holds_on_held_out_seeds_of_the_nonlinear_simulation(seed, measured):
    """MMD-VAE < PCA (10) < original feature space on held-out simulation seeds (the setting was chosen on seed 1).

    Every A|B profile is left out of training; each method predicts each A|B group as
    decode(mean(A) - mean(DMSO) + mean(B)) and is scored by the mean L2 to the real mean A|B profile over the 12
    groups. Measured: seed 3: VAE 1.589, PCA 1.751, original 1.853 (VAE 9 % ahead of PCA, PCA 5.5 % ahead of the
    original space); seed 4: 1.537, 1.855, 1.917 (17 % and 3.2 %). Seed 2, also held out, does NOT follow the
    claim (VAE 2.064, PCA 2.011, original 2.043): see the VAE methods page.
    """
    data, train = _lsa_simulation(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PosteriorCollapseWarning)
        model = VAE.build_and_train(data[train].copy(), seed=0, device="cpu", **LSA_VAE)
    vae, table = _mean_l2(data, model, n_shuffles=10)
    pca = _mean_l2(data, PCA(10, random_state=0).fit(data.X[train]), n_shuffles=0)[0]
    original = _mean_l2(data, None, n_shuffles=0)[0]
    assert len(table) == 12 and np.isfinite(table["l2"]).all()
    np.testing.assert_allclose((vae, pca, original), measured, atol=0.08)  # the numbers above, up to platform noise
    assert pca < original - 0.025, (pca, original)  # measured margins 0.102 (seed 3) and 0.062 (seed 4)
    assert vae < pca - 0.1, (vae, pca)  # measured margins 0.162 and 0.318
    shuffled = table["l2_shuffled_mean"].mean()  # measured 2.58 on seed 3
    assert vae < 0.7 * shuffled, (vae, shuffled)  # the arithmetic beats the shuffled-label control (0.62 × on seed 3)
