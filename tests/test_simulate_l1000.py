"""simulate_l1000: the second L1000-like generator (schema, seeding, gaps, cell-line structure, errors)."""

import numpy as np
import pytest

import perturbkit as pk
from perturbkit._schema import PerturbkitInputError
from perturbkit.datasets._simulate_l1000 import simulate_l1000

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"n_drugs": 120, "n_genes": 100}


@pytest.fixture(scope="module")
def adata():
    return simulate_l1000(**SMALL, seed=0)


def test_schema_matches_simulate_bulk(adata):
    bulk = pk.datasets.simulate_bulk(n_drugs=30, n_genes=20, seed=0)
    assert list(adata.obs.columns) == list(bulk.obs.columns)
    assert (adata.obs.dtypes == bulk.obs.dtypes).all()
    assert adata.n_vars == 100 and list(adata.var_names[:2]) == ["G0001", "G0002"]
    assert sorted(adata.obs.cell_line.unique()) == ["A375", "HA1E", "MCF7", "PC3"]
    assert adata.X.dtype == np.float32 and np.isfinite(adata.X).all()
    treated = adata[~adata.obs.control]
    assert treated.obs.drug.nunique() == 120
    assert set(treated.obs.time) == {6.0, 24.0} and treated.obs.dose.nunique() == 5
    assert (adata.obs.loc[adata.obs.control, "drug"] == "DMSO").all() and adata.obs.control.sum() > 0
    assert adata.layers["noise_free"].shape == adata.shape
    assert adata.obsm["latent_true"].shape == (adata.n_obs, 10)
    sim = adata.uns["simulation"]
    assert sim["module_gain"].shape == (4, 24) and sim["present"].shape == (4, 120)
    assert sim["params"]["kind"] == "l1000"
    # level-5-like: controls are centred noise, treated rows carry signal on top
    controls = adata.X[adata.obs.control.to_numpy()]
    assert abs(controls.mean()) < 0.05 and 0.7 < controls.std() < 1.5
    assert adata.layers["noise_free"][~adata.obs.control.to_numpy()].std() > 1.0


def test_default_size_is_fast_and_l1000_like():
    import time

    start = time.perf_counter()
    full = simulate_l1000(seed=3)
    assert time.perf_counter() - start < 15.0  # 1.3 s on an idle core; slack for a loaded CI machine
    assert full.n_vars == 978 and full[~full.obs.control].obs.drug.nunique() == 500
    assert full.obs.cell_line.nunique() == 4


def test_seeding(adata):
    again = simulate_l1000(**SMALL, seed=0)
    np.testing.assert_array_equal(adata.X, again.X)
    assert adata.obs.equals(again.obs)
    other = simulate_l1000(**SMALL, seed=1)
    assert adata.shape != other.shape or not np.array_equal(adata.X, other.X)


def test_missing_drugs_are_really_missing(adata):
    present = adata.uns["simulation"]["present"]
    names = adata.uns["simulation"]["drug_names"]
    assert present.sum(axis=0).min() >= 1  # every drug is measured somewhere
    assert abs((~present).mean() - 0.15) < 0.01
    treated = adata.obs[~adata.obs.control]
    for c, cell in enumerate(adata.uns["simulation"]["cell_lines"]):
        measured = set(treated.loc[treated.cell_line == cell, "drug"])
        assert measured == set(names[present[c]])
    none = simulate_l1000(**SMALL, frac_missing=0.0, seed=0)
    assert none.uns["simulation"]["present"].all()


def test_cell_lines_respond_alike_but_not_identically(adata):
    """The noise-free profiles of one drug in two cell lines correlate (shared map) but far from perfectly."""
    sim = adata.uns["simulation"]
    gain = sim["module_gain"]
    assert (gain == 0).any() and (gain > 0).all(axis=1).sum() < 4  # silent modules exist in some cell lines
    obs = adata.obs[~adata.obs.control]
    free = adata.layers["noise_free"][~adata.obs.control.to_numpy()]
    key = obs.drug + "|" + obs.dose.astype(str) + "|" + obs.time.astype(str)
    mcf7 = {k: free[i] for i, (k, c) in enumerate(zip(key, obs.cell_line, strict=True)) if c == "MCF7"}
    pc3 = {k: free[i] for i, (k, c) in enumerate(zip(key, obs.cell_line, strict=True)) if c == "PC3"}
    common = sorted(set(mcf7) & set(pc3))
    assert len(common) > 20
    pcc = np.mean([np.corrcoef(mcf7[k], pc3[k])[0, 1] for k in common])
    assert 0.2 < pcc < 0.8, pcc  # measured 0.47 (seed 0)
    # dose and time change a profile's shape (thresholded modules), not only its size
    cell = obs.cell_line.to_numpy()
    shapes = []
    for drug in obs.drug.unique()[:40]:
        rows = np.flatnonzero((obs.drug == drug).to_numpy() & (cell == "MCF7"))
        if len(rows) >= 2:
            shapes.append(np.corrcoef(free[rows[0]], free[rows[1]])[0, 1])
    assert np.nanmin(shapes) < 0.95 and np.nanmedian(shapes) > 0.5


def test_heavy_tailed_noise():
    gaussian = simulate_l1000(**SMALL, noise_df=np.inf, seed=0)
    heavy = simulate_l1000(**SMALL, noise_df=3.0, seed=0)

    def kurtosis(a):
        noise = (a.X - a.layers["noise_free"]).ravel()
        noise = noise / noise.std()
        return float(np.mean(noise**4))

    assert kurtosis(heavy) > kurtosis(gaussian) + 1.0


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"n_drugs": 0}, "n_drugs"),
        ({"n_genes": 10, "n_modules": 20}, "n_modules"),
        ({"frac_missing": 1.0}, "frac_missing"),
        ({"cell_specific": 1.5}, "cell_specific"),
        ({"noise": -1.0}, "noise"),
        ({"doses": ()}, "doses"),
        ({"cell_lines": ["MCF7", "MCF7"]}, "cell_lines"),
        ({"n_moas": 99}, "n_moas"),
    ],
)
def test_bad_arguments_raise_clear_errors(options, name):
    with pytest.raises(PerturbkitInputError, match=name):
        simulate_l1000(**{**SMALL, **options})
