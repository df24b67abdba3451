"""The VAE family (methods.md §2): network, losses, training face, traversal, simulation, β selection, tuning,
controls and metrics."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import wasserstein_distance

import perturbkit as pk
from perturbkit._schema import GeneMismatchError, PerturbkitInputError
from perturbkit.models.vae import VAE, gaussian_kernel, kl_divergence, mmd
from perturbkit.tl import _vae as tl
from perturbkit.train import split_indices

FAST = dict(max_epochs=15, patience=None, device="cpu", hidden=(64,))
FAST_OPTIONS = {k: v for k, v in FAST.items() if k != "device"}  # train_options= (device is its own argument)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(morph):
    models = {}
    for kind in ("vanilla", "beta", "mmd"):
        data = morph.copy()
        models[kind] = (tl.train_vae(data, kind=kind, beta=0.3, seed=0, **FAST), data)
    return models


# ------------------------------------------------------------------------------------------------ training face
@pytest.mark.parametrize("kind", ["vanilla", "beta", "mmd"])
def test_each_kind_trains_and_writes_latent_means(trained, kind):
    model, data = trained[kind]
    assert model.kind == kind and model.latent_dim == 10
    history = model.history_frame
    for column in ("stage", "epoch", "train_loss", "validation_loss", "train_reconstruction", "train_kl", "train_mmd"):
        assert column in history
    assert len(history) == 15
    assert history["train_loss"].iloc[-1] < 0.8 * history["train_loss"].iloc[0]
    assert history["train_reconstruction"].iloc[-1] < history["train_reconstruction"].iloc[0]
    assert data.obsm["X_vae"].shape == (data.n_obs, 10)
    np.testing.assert_allclose(data.obsm["X_vae"], model.transform(data.X), rtol=1e-5, atol=1e-6)
    assert data.uns["vae"]["params"]["kind"] == kind
    assert data.uns["vae"]["params"]["output"] == "sigmoid"
    assert data.uns["vae"]["n_epochs"] == 15


def test_loss_parts_combine_by_kind(morph):
    X = torch.from_numpy(morph.X[:64].copy())
    for kind, beta, lam in (("vanilla", 5.0, 7.0), ("beta", 0.3, 7.0), ("mmd", 0.3, 7.0)):
        model = VAE(morph.var_names, kind=kind, beta=beta, lam=lam, hidden=(32,), device="cpu")
        torch.manual_seed(0)
        parts = model.loss((X,))
        expected = {
            "vanilla": parts["reconstruction"] + parts["kl"],
            "beta": parts["reconstruction"] + beta * parts["kl"],
            "mmd": parts["reconstruction"] + lam * parts["mmd"],
        }[kind]
        assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_save_load_round_trip(trained, tmp_path):
    model, data = trained["beta"]
    path = model.save(tmp_path / "vae.pt")
    loaded = pk.train.BaseModel.load(path, device="cpu")
    assert isinstance(loaded, VAE) and loaded.kind == "beta" and loaded.latent_dim == 10
    Z = model.transform(data.X)
    np.testing.assert_array_equal(loaded.transform(data.X), Z)
    np.testing.assert_array_equal(loaded.inverse_transform(Z[:20]), model.inverse_transform(Z[:20]))
    pd.testing.assert_frame_equal(loaded.history_frame, model.history_frame)
    # the training data's var table travels with the model, so group-wise analyses still work
    pd.testing.assert_frame_equal(
        tl.traversal_contributions(loaded, groupby="group"), tl.traversal_contributions(model, groupby="group")
    )


def test_seeded_cpu_runs_are_reproducible(morph):
    runs = [VAE.build_and_train(morph, kind="mmd", seed=seed, **dict(FAST, max_epochs=3)) for seed in (4, 4, 5)]
    np.testing.assert_array_equal(runs[0].transform(morph.X), runs[1].transform(morph.X))
    np.testing.assert_array_equal(runs[0].history_frame["train_loss"], runs[1].history_frame["train_loss"])
    assert not np.allclose(runs[0].transform(morph.X), runs[2].transform(morph.X))


def test_output_follows_the_data_scaling(trained, morph):
    model, _ = trained["vanilla"]
    assert model.hparams["output"] == "sigmoid"
    far = model.inverse_transform(np.full((5, 10), 50.0, dtype=np.float32))
    samples = model.sample(200, seed=1)
    for values in (far, samples):
        assert values.min() >= 0.0 and values.max() <= 1.0
    raw = pk.datasets.simulate_morphology(n_compounds=15, n_moas=3, n_features=20, n_plates=2, seed=1)
    linear = VAE.build_and_train(raw, **dict(FAST, max_epochs=2))
    assert linear.hparams["output"] == "linear"
    assert linear.inverse_transform(np.full((1, 10), 50.0)).max() > 1.0 or linear.sample(50).min() < 0.0
    with pytest.raises(PerturbkitInputError, match="minmax"):
        VAE.build_and_train(raw, output="sigmoid", **FAST)


def test_feature_mismatch_and_bad_arguments(trained, morph):
    model, _ = trained["vanilla"]
    other = ad.AnnData(
        np.random.default_rng(0).random((5, 8), dtype=np.float32),
        var=pd.DataFrame(index=[f"Cells_Other_{i}" for i in range(8)]),
    )
    with pytest.raises(GeneMismatchError, match="missing"):
        model.encode(other)
    with pytest.raises(PerturbkitInputError, match="rows ×"):
        model.transform(np.zeros((3, 7), dtype=np.float32))
    with pytest.raises(PerturbkitInputError, match="latent vectors"):
        model.inverse_transform(np.zeros((3, 4)))
    with pytest.raises(PerturbkitInputError, match="'vanilla', 'beta', 'mmd'"):
        tl.train_vae(morph.copy(), kind="wae", **FAST)
    with pytest.raises(PerturbkitInputError, match="not a VAE kind"):
        tl.select_beta(morph, kind="ae", betas=[1.0])
    with pytest.raises(pk._schema.MissingColumnError, match="stratify"):
        tl.train_vae(morph.copy(), stratify="no_such_column", **FAST)


def test_encode_aligns_features_by_name(trained, morph):
    model, _ = trained["vanilla"]
    reordered = morph[:, morph.var_names[::-1]].copy()
    np.testing.assert_allclose(model.encode(reordered), model.transform(morph.X), rtol=1e-5, atol=1e-6)


def test_stratified_split_takes_each_plate():
    plates = np.repeat(["p1", "p2", "p3"], [20, 30, 50])
    train, val = split_indices(100, validation_fraction=0.1, seed=0, strata=plates)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 100
    assert pd.Series(plates[val]).value_counts().to_dict() == {"p1": 2, "p2": 3, "p3": 5}


# ------------------------------------------------------------------------------------------------------ losses
def test_mmd_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)) + 0.5

    def k(a, b):
        return np.exp(-np.mean((a - b) ** 2) / a.shape[0])

    def direct_mmd(a, b):
        kxx = np.mean([[k(p, q) for q in a] for p in a])
        kyy = np.mean([[k(p, q) for q in b] for p in b])
        kxy = np.mean([[k(p, q) for q in b] for p in a])
        return kxx + kyy - 2 * kxy

    tx, ty = torch.tensor(x), torch.tensor(y)
    np.testing.assert_allclose(gaussian_kernel(tx, ty).numpy(), [[k(p, q) for q in y] for p in x], rtol=1e-10)
    assert float(mmd(tx, ty)) == pytest.approx(direct_mmd(x, y), rel=1e-10)
    # a finite gradient where codes coincide
    z = torch.tensor(x, requires_grad=True)
    mmd(z, z.detach().clone()).backward()
    assert torch.isfinite(z.grad).all()


def test_mmd_is_small_between_prior_samples_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    prior = torch.randn(500, 8, generator=g)
    other = torch.randn(500, 8, generator=g)
    same = float(mmd(prior, other))
    shifted = float(mmd(prior + 3.0, other))
    assert abs(same) < 2e-3
    assert shifted > 20 * abs(same) and shifted > 0.01
    assert float(mmd(prior + 1.0, other)) < shifted


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, log_var = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    posterior = torch.distributions.Normal(mean, torch.exp(0.5 * log_var))
    prior = torch.distributions.Normal(torch.zeros(4), torch.ones(4))
    expected = torch.distributions.kl_divergence(posterior, prior).sum(1).mean()
    assert float(kl_divergence(mean, log_var)) == pytest.approx(float(expected), rel=1e-5)


# --------------------------------------------------------------------------------------- traversal, simulation
def test_latent_traversal_decodes_the_set_vectors(trained):
    model, _ = trained["beta"]
    out = tl.latent_traversal(model, feature=2, values=(-3, 3))
    assert out.shape == (2, model.n_vars) and list(out.obs["value"]) == [-3.0, 3.0]
    assert list(out.var_names) == list(model.var_names) and "group" in out.var
    Z = np.zeros((2, 10), dtype=np.float32)
    Z[:, 2] = [-3, 3]
    np.testing.assert_array_equal(out.X, model.inverse_transform(Z))
    with pytest.raises(PerturbkitInputError, match="0..9"):
        tl.latent_traversal(model, feature=10)


def test_traversal_contributions_average_the_difference_by_group(trained):
    model, data = trained["beta"]
    contributions = tl.traversal_contributions(model, groupby="group")
    groups = sorted(data.var["group"].unique())
    assert contributions.shape == (10, len(groups)) and list(contributions.columns) == groups
    assert (contributions.to_numpy() >= 0).all() and contributions.to_numpy().max() > 0
    up, down = np.zeros((1, 10), np.float32), np.zeros((1, 10), np.float32)
    up[0, 4], down[0, 4] = 3, -3
    diff = np.abs(model.inverse_transform(up) - model.inverse_transform(down))[0]
    in_group = (data.var["group"] == groups[0]).to_numpy()
    assert contributions.loc[4, groups[0]] == pytest.approx(diff[in_group].mean(), rel=1e-5)
    # labels given directly work the same
    by_labels = tl.traversal_contributions(model, groupby=data.var["group"])
    pd.testing.assert_frame_equal(by_labels, contributions)
    with pytest.raises(PerturbkitInputError, match="var"):
        tl.traversal_contributions(model, groupby="no_column")
    pcs = tl.pca_loadings_by_group(data, groupby="group", n_components=5)
    assert pcs.shape == (5, len(groups)) and (pcs.to_numpy() >= 0).all()


def test_simulate_decodes_prior_draws(trained):
    model, _ = trained["mmd"]
    sim = tl.simulate(model, n=50, seed=3)
    assert sim.shape == (50, model.n_vars) and sim.obsm["X_vae"].shape == (50, 10)
    np.testing.assert_array_equal(sim.X, model.inverse_transform(sim.obsm["X_vae"]))
    np.testing.assert_array_equal(sim.X, tl.simulate(model, n=50, seed=3).X)
    assert not np.array_equal(sim.X, tl.simulate(model, n=50, seed=4).X)


# ----------------------------------------------------------------------------------------- β, tuning, controls
def test_select_beta_has_an_interior_minimum(morph):
    betas = [1e-6, 1e-2, 0.1, 10.0]
    curve = tl.select_beta(
        morph, betas=betas, seed=0, device="cpu", train_options=dict(FAST_OPTIONS, latent_dim=10, max_epochs=30)
    )
    assert list(curve["beta"]) == betas
    h = curve["hausdorff"].to_numpy()
    best = int(np.argmin(h))
    assert 0 < best < len(betas) - 1
    # tiny β: the codes ignore the prior; huge β: posterior collapse (every sample alike)
    assert h[0] > 1.05 * h[best] and h[-1] > 1.2 * h[best]
    assert curve.attrs["best_beta"] == betas[best]
    assert np.allclose(
        curve["hausdorff"], curve[["hausdorff_data_to_simulated", "hausdorff_simulated_to_data"]].max(axis=1)
    )


def test_tune_vae_runs_the_trials(morph):
    options = dict(FAST_OPTIONS, beta=0.3, max_epochs=3)
    trials = tl.tune_vae(morph, n_trials=3, kind="beta", seed=0, device="cpu", train_options=options)
    assert len(trials) == 3
    for column in ("lr", "batch_size", "latent_dim", "batch_norm", "value"):
        assert column in trials
    assert trials["lr"].between(1e-4, 1e-2).all() and trials["latent_dim"].between(5, 150).all()
    assert set(trials["batch_size"]) <= {32, 64, 128, 256, 512}
    assert np.isfinite(trials["value"]).all() and (trials["state"] == "COMPLETE").all()
    assert set(trials.attrs["best_params"]) == {"lr", "batch_size", "latent_dim", "batch_norm"}
    again = tl.tune_vae(morph, n_trials=3, kind="beta", seed=0, device="cpu", train_options=options)
    pd.testing.assert_frame_equal(again, trials)


def test_shuffled_control_loses_to_real_data(morph):
    # β = 0.1: on 60 min-max features (summed variance ~1.6) the vanilla KL weight collapses the posterior, and
    # a collapsed model reconstructs real and shuffled data equally (the feature means)
    curves = pk.experiments.vae_shuffled_control(
        morph, kind="beta", seed=0, device="cpu", train_options=dict(FAST_OPTIONS, beta=0.1, max_epochs=20)
    )
    assert set(curves["data"]) == {"real", "shuffled"}
    for column in ("epoch", "train_loss", "validation_loss"):
        assert column in curves
    final = curves.groupby("data")[["train_loss", "validation_loss", "validation_reconstruction"]].last()
    assert final.loc["real", "validation_loss"] < 0.9 * final.loc["shuffled", "validation_loss"]
    assert final.loc["real", "train_loss"] < 0.9 * final.loc["shuffled", "train_loss"]
    assert final.loc["real", "validation_reconstruction"] < 0.8 * final.loc["shuffled", "validation_reconstruction"]


def test_shuffle_columns_permutes_each_feature():
    X = np.arange(40, dtype=float).reshape(10, 4)
    S = pk.models.vae.shuffle_columns(X, seed=0)
    np.testing.assert_array_equal(np.sort(S, axis=0), X)
    assert not np.array_equal(S, X)


# ------------------------------------------------------------------------------------------------------ metrics
def test_reconstruction_metrics(trained):
    model, data = trained["vanilla"]
    metrics = tl.vae_reconstruction_metrics(data, model=model)
    assert list(metrics.columns) == ["mse", "emd"] and list(metrics.index) == list(data.obs_names)
    R = model.inverse_transform(model.transform(data.X))
    for i in (0, 7, data.n_obs - 1):
        assert metrics["emd"].iloc[i] == pytest.approx(wasserstein_distance(data.X[i], R[i]), rel=1e-5)
        assert metrics["mse"].iloc[i] == pytest.approx(np.mean((data.X[i] - R[i]) ** 2), rel=1e-5)
    summary = metrics.attrs["summary"]
    assert summary["mse"]["q05"] <= summary["mse"]["median"] <= summary["mse"]["q95"]
    assert summary["emd"]["q95"] == pytest.approx(metrics["emd"].quantile(0.95))
    # a model trained on real data reconstructs better than it reconstructs shuffled data
    shuffled = data.copy()
    shuffled.X = pk.models.vae.shuffle_columns(data.X, seed=0)
    assert tl.vae_reconstruction_metrics(shuffled, model=model)["mse"].mean() > metrics["mse"].mean()


def test_latent_correlation_and_feature_reconstruction(trained):
    model, data = trained["mmd"]
    corr = tl.vae_latent_correlation(data, model=model)
    assert corr.shape == (10, 10)
    np.testing.assert_allclose(np.diag(corr.to_numpy()), 1.0, rtol=1e-6)
    np.testing.assert_allclose(corr.to_numpy(), corr.to_numpy().T)
    Z = data.obsm["X_vae"].astype(float)
    assert corr.iloc[1, 3] == pytest.approx(np.corrcoef(Z[:, 1], Z[:, 3])[0, 1], abs=1e-5)
    per_feature = tl.vae_feature_reconstruction(data, model=model, groupby="group")
    assert list(per_feature.columns) == ["mse", "variance", "group"] and len(per_feature) == data.n_vars
    np.testing.assert_allclose(per_feature["variance"], data.X.var(axis=0), rtol=1e-5)
    assert (per_feature["group"].to_numpy() == data.var["group"].to_numpy()).all()


# ------------------------------------------------------------------------------------------------ real plate
def test_real_plate_traversal_by_cellprofiler_groups(shared_data):
    path = shared_data("cell_painting/SQ00015054_normalized_feature_select.csv.gz")
    plate = pk.io.read_cell_painting(path)
    pk.pp.feature_select(plate)
    pk.pp.scale(plate, method="minmax")
    profiles = pk.pp.aggregate(plate, by=["drug", "dose"])
    assert profiles.n_obs > 100 and "group" in profiles.var
    model = tl.train_vae(profiles, kind="beta", beta=0.3, seed=0, max_epochs=10, device="cpu")
    assert model.hparams["output"] == "sigmoid"
    assert profiles.obsm["X_vae"].shape == (profiles.n_obs, 10)
    contributions = tl.traversal_contributions(model, groupby="group")
    assert contributions.shape == (10, profiles.var["group"].nunique())
    assert {"Cells_DNA", "Nuclei_DNA", "Cytoplasm_Mito", "Cells_AGP"} <= set(contributions.columns)
    assert (contributions.to_numpy() >= 0).all() and np.isfinite(contributions.to_numpy()).all()
    pcs = tl.pca_loadings_by_group(profiles, groupby="group")
    assert pcs.shape == (10, contributions.shape[1]) and list(pcs.columns) == list(contributions.columns)
