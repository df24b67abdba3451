"""Simulators (ground truth, published regime) and downloaders (cache, hashes, offline errors)."""

from __future__ import annotations

import gzip
import hashlib
import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import perturbkit as pk
from perturbkit._schema import PerturbkitInputError, validate
from perturbkit._stats import pearson_rows
from perturbkit.datasets import _download
from perturbkit.datasets._smiles import SCAFFOLDS, SUBSTITUENTS, fill_template

SCHEMA = ["cell_line", "drug", "dose", "time", "moa", "control", "smiles", "plate"]


@pytest.fixture(scope="module")
def bulk():
    return pk.datasets.simulate_bulk()


@pytest.fixture(scope="module")
def morphology():
    return pk.datasets.simulate_morphology()


@pytest.fixture(scope="module")
def single_cell():
    return pk.datasets.simulate_single_cell()


def _per_drug_means(adata, cell_line: str) -> pd.DataFrame:
    """Treated profiles averaged over doses and times per drug, for one cell line (pandas groupby)."""
    treated = adata[(adata.obs["cell_line"] == cell_line).to_numpy() & ~adata.obs["control"].to_numpy()]
    frame = pd.DataFrame(treated.X, index=treated.obs_names)
    return frame.groupby(treated.obs["drug"].to_numpy()).mean()


def _rdkit():
    return pytest.importorskip("rdkit.Chem", reason="rdkit is not installed (pip install perturbkit[chem])")


# ---------------------------------------------------------------------------------------------------------------
# simulate_bulk
# ---------------------------------------------------------------------------------------------------------------


def test_bulk_defaults_reproduce_the_deepcellstate_regime(bulk):
    from sklearn.linear_model import Ridge

    a, b = _per_drug_means(bulk, "MCF7"), _per_drug_means(bulk, "PC3")
    common = a.index.intersection(b.index)
    a, b = a.loc[common].to_numpy(), b.loc[common].to_numpy()
    naive = np.nanmean(pearson_rows(a, b))
    assert 0.2 <= naive <= 0.4, naive

    rng = np.random.default_rng(0)
    order = rng.permutation(len(common))
    folds = np.array_split(order, 10)  # train on 90% of drugs, test on the held-out 10%
    ridge_pcc, naive_pcc = [], []
    for test in folds[:5]:
        train = np.setdiff1d(order, test)
        model = Ridge(alpha=300.0).fit(a[train], b[train])
        ridge_pcc.append(pearson_rows(model.predict(a[test]), b[test]))
        naive_pcc.append(pearson_rows(a[test], b[test]))
    ridge, naive_test = np.nanmean(np.concatenate(ridge_pcc)), np.nanmean(np.concatenate(naive_pcc))
    assert ridge - naive_test >= 0.15, (ridge, naive_test)


def test_bulk_is_seeded():
    kw = dict(n_drugs=60, n_moas=6, n_genes=50)
    first, again, other = (pk.datasets.simulate_bulk(seed=s, **kw) for s in (3, 3, 4))
    np.testing.assert_array_equal(first.X, again.X)
    np.testing.assert_array_equal(first.layers["noise_free"], again.layers["noise_free"])
    pd.testing.assert_frame_equal(first.obs, again.obs)
    assert list(first.uns["simulation"]["drugs"]["smiles"]) == list(again.uns["simulation"]["drugs"]["smiles"])
    assert first.shape != other.shape or not np.array_equal(first.X, other.X)
    assert not np.allclose(first.uns["simulation"]["moa_prototypes"], other.uns["simulation"]["moa_prototypes"])


def test_bulk_schema_and_dtypes(bulk):
    assert bulk.X.dtype == np.float32 and bulk.shape[1] == 978
    assert bulk.var_names.is_unique and bulk.obs_names.is_unique
    for col in SCHEMA:
        assert col in bulk.obs.columns, col
    assert bulk.obs["control"].dtype == bool
    assert bulk.obs["dose"].dtype == float and bulk.obs["time"].dtype == float
    validate(bulk, moa_key="moa", smiles_key="smiles")
    ctrl = bulk.obs[bulk.obs["control"]]
    assert set(ctrl["drug"]) == {"DMSO"} and set(ctrl["moa"]) == {"DMSO"} and set(ctrl["smiles"]) == {"CS(C)=O"}
    assert (ctrl["dose"] == 0.0).all()
    treated = bulk.obs[~bulk.obs["control"]]
    assert set(treated["dose"]) <= {0.04, 0.12, 0.37, 1.11, 3.33, 10.0} and set(treated["time"]) <= {6.0, 24.0}
    assert set(bulk.obs["cell_line"]) == {"MCF7", "PC3"}
    # MOA strings: one or two families joined by "|", matching the truth table
    drugs = bulk.uns["simulation"]["drugs"].set_index("drug")
    assert (treated["moa"].to_numpy() == drugs.loc[treated["drug"], "moa"].to_numpy()).all()
    n_two = (drugs["n_moas"] == 2).mean()
    assert 0.1 <= n_two <= 0.2 and drugs["moa"].str.count(r"\|").max() == 1


def test_bulk_controls_on_every_plate(bulk):
    obs = bulk.obs
    for cell in ("MCF7", "PC3"):
        assert obs[(obs["cell_line"] == cell) & obs["control"]].shape[0] > 0
    per_plate = obs.groupby("plate", observed=True)["control"].sum()
    assert (per_plate == 4).all()
    assert all(obs.groupby("plate", observed=True)["cell_line"].nunique() == 1)
    # controls carry no signal; level-5-like: noise around zero
    ctrl = bulk[obs["control"].to_numpy()]
    assert np.abs(ctrl.layers["noise_free"]).max() == 0.0
    assert abs(float(ctrl.X.mean())) < 0.05 and 0.9 < float(ctrl.X.std()) < 1.1


@pytest.mark.parametrize("frac_missing, n_cell_lines", [(0.1, 2), (0.3, 3)])
def test_bulk_missing_pairs(frac_missing, n_cell_lines):
    adata = pk.datasets.simulate_bulk(n_drugs=200, n_cell_lines=n_cell_lines, n_genes=40, frac_missing=frac_missing)
    treated = adata.obs[~adata.obs["control"]]
    pairs = treated.groupby(["cell_line", "drug"], observed=True).size()
    observed_missing = 1 - len(pairs) / (n_cell_lines * 200)
    assert abs(observed_missing - frac_missing) < 0.01
    assert treated["drug"].nunique() == 200  # every drug in at least one cell line
    assert (pairs == 3).all()  # three (dose, time) conditions per present pair
    present = adata.uns["simulation"]["present"]
    assert present.shape == (n_cell_lines, 200) and present.sum() == len(pairs)


def test_bulk_smiles_are_real_unique_molecules(bulk):
    chem = _rdkit()
    drugs = bulk.uns["simulation"]["drugs"]
    mols = [chem.MolFromSmiles(s) for s in drugs["smiles"]]
    assert all(m is not None for m in mols)
    canonical = [chem.MolToSmiles(m) for m in mols]
    assert len(set(canonical)) == len(canonical) == 500
    # the real parent drugs are in the library, with their real structure
    gefitinib = drugs.set_index("drug").loc["gefitinib", "smiles"]
    assert chem.MolToSmiles(chem.MolFromSmiles(gefitinib)) == chem.MolToSmiles(
        chem.MolFromSmiles("COc1cc2ncnc(Nc3ccc(F)c(Cl)c3)c2cc1OCCCN1CCOCC1")
    )
    # two-MOA compounds are conjugates: they contain both families' scaffolds
    two = drugs[drugs["n_moas"] == 2].iloc[0]
    host, guest = two["scaffold"].split("~")
    assert two["smiles"].count(".") == 0 and len(two["smiles"]) > 30
    assert host in drugs["scaffold"].to_numpy() and guest in drugs["scaffold"].to_numpy()


def test_every_scaffold_and_substituent_gives_a_valid_molecule():
    chem = _rdkit()
    for family in SCAFFOLDS.values():
        for parent, template in family:
            for _, sub in SUBSTITUENTS:
                for smiles in (fill_template(template, sub, ""), fill_template(template, "", sub)):
                    assert chem.MolFromSmiles(smiles) is not None, (parent, smiles)


def test_bulk_latent_truth_is_additive(bulk):
    sim = bulk.uns["simulation"]
    latent, protos, dev = sim["drug_latent"], sim["moa_prototypes"], sim["drug_deviation"]
    membership = sim["drug_moa_membership"]
    np.testing.assert_allclose(latent, membership @ protos + dev, atol=1e-5)
    drugs = sim["drugs"]
    two = (drugs["n_moas"] == 2).to_numpy()
    assert two.sum() > 0 and (membership[two].sum(axis=1) == 2).all()
    # parent drugs sit exactly on their prototype; analog deviations are the sum of their substituents' effects
    effects = dict(zip(sim["substituent_names"], sim["substituent_effects"], strict=True))
    for row, info in drugs.iterrows():
        if info["n_moas"] != 1:
            continue
        subs = dict(part.split("=") for part in info["substituents"].split(";"))
        np.testing.assert_allclose(dev[row], effects[subs["R1"]] + effects[subs["R2"]], atol=1e-5)
    parents = drugs["substituents"] == "R1=H;R2=H"
    assert parents.sum() >= 20 and np.abs(dev[parents.to_numpy()]).max() < 1e-6
    # the same substituents give the same deviation in every family (structure -> effect is learnable)
    assert sim["substituent_effects"].shape == (len(SUBSTITUENTS), latent.shape[1])


def test_bulk_noise_free_layer_and_dose_response(bulk):
    treated = ~bulk.obs["control"].to_numpy()
    X, clean = bulk.X[treated], bulk.layers["noise_free"][treated]
    assert clean.shape == X.shape and clean.dtype == np.float32
    assert np.corrcoef(X.ravel(), clean.ravel())[0, 1] > 0.8
    # the row's latent is the drug latent scaled by dose/time factors in (0, 1]
    obs = bulk.obs[treated]
    sim = bulk.uns["simulation"]
    index = pd.Index(sim["drug_names"]).get_indexer(obs["drug"])
    scaled = bulk.obsm["latent_true"][treated]
    ratio = np.linalg.norm(scaled, axis=1) / np.linalg.norm(sim["drug_latent"][index], axis=1)
    assert (ratio > 0).all() and (ratio <= 1).all()
    # higher dose, same drug and time: a stronger (never weaker) response
    frame = pd.DataFrame(
        {
            "drug": obs["drug"].to_numpy(),
            "time": obs["time"].to_numpy(),
            "cell": obs["cell_line"].to_numpy(),
            "dose": obs["dose"].to_numpy(),
            "ratio": ratio,
        }
    )
    for _, group in frame.groupby(["drug", "time", "cell"]):
        group = group.sort_values("dose")
        assert (np.diff(group["ratio"].to_numpy()) >= -1e-9).all()


def test_simulators_write_h5ad(tmp_path, bulk, morphology, single_cell):
    import anndata as ad

    for name, adata in (("bulk", bulk), ("morphology", morphology), ("single_cell", single_cell)):
        path = tmp_path / f"{name}.h5ad"
        adata.copy().write_h5ad(path)  # a copy: writing turns string columns into categoricals in place
        back = ad.read_h5ad(path)
        assert back.shape == adata.shape
        np.testing.assert_array_equal(
            back.uns["simulation"]["moa_prototypes"], adata.uns["simulation"]["moa_prototypes"]
        )
        assert list(back.uns["simulation"]["drugs"]["smiles"]) == list(adata.uns["simulation"]["drugs"]["smiles"])


def test_bulk_options_and_errors():
    adata = pk.datasets.simulate_bulk(
        n_drugs=80, n_moas=8, n_genes=30, n_cell_lines=3, cell_lines=["A", "B", "C"], baseline=2.0
    )
    assert set(adata.obs["cell_line"]) == {"A", "B", "C"}
    ctrl = adata[adata.obs["control"].to_numpy()]
    means = pd.DataFrame(ctrl.X).groupby(ctrl.obs["cell_line"].to_numpy()).mean()
    assert np.abs(means.loc["A"] - means.loc["B"]).mean() > 0.5  # controls carry the cell-line baseline
    with pytest.raises(PerturbkitInputError, match="n_moas"):
        pk.datasets.simulate_bulk(n_moas=100)
    with pytest.raises(PerturbkitInputError, match="frac_missing"):
        pk.datasets.simulate_bulk(frac_missing=1.5)
    seven = pk.datasets.simulate_bulk(n_drugs=40, n_moas=5, n_genes=20, n_cell_lines=7)
    assert set(seven.obs["cell_line"]) == {"MCF7", "PC3", "A375", "HA1E", "HT29", "HELA", "YAPC"}


def test_bulk_with_real_compounds():
    compounds = pd.DataFrame(
        {
            "drug": ["gefitinib", "erlotinib", "vorinostat", "entinostat", "dual", "nomoa"],
            "moa": [
                "EGFR inhibitor",
                "EGFR inhibitor",
                "HDAC inhibitor",
                "HDAC inhibitor",
                "EGFR inhibitor|HDAC inhibitor",
                None,
            ],
            "smiles": [
                "COc1cc2ncnc(Nc3ccc(F)c(Cl)c3)c2cc1OCCCN1CCOCC1",
                "COCCOc1cc2ncnc(Nc3cccc(C#C)c3)c2cc1OCCOC",
                "ONC(=O)CCCCCCC(=O)Nc1ccccc1",
                "Nc1ccccc1NC(=O)c1ccc(CNC(=O)OCc2cccnc2)cc1",
                "CCOCCNc1ccccc1",
                "CCO",
            ],
        }
    )
    adata = pk.datasets.simulate_bulk(compounds=compounds, n_genes=40)
    sim = adata.uns["simulation"]
    assert list(sim["moa_names"]) == ["EGFR inhibitor", "HDAC inhibitor"]
    assert list(sim["drug_names"]) == ["gefitinib", "erlotinib", "vorinostat", "entinostat", "dual"]
    np.testing.assert_allclose(
        sim["drug_latent"], sim["drug_moa_membership"] @ sim["moa_prototypes"] + sim["drug_deviation"], atol=1e-5
    )
    assert set(adata.obs.loc[~adata.obs["control"], "smiles"]) == set(compounds["smiles"][:5])
    with pytest.raises(PerturbkitInputError, match="smiles"):
        pk.datasets.simulate_bulk(compounds=compounds[["drug", "moa"]])


# ---------------------------------------------------------------------------------------------------------------
# simulate_morphology
# ---------------------------------------------------------------------------------------------------------------


def _lsa_relative_errors(matrix, labels, groups):
    frame = pd.DataFrame(np.asarray(matrix, dtype=float))
    means = frame.groupby(np.asarray(labels)).mean()
    errors = []
    for group in groups:
        a, b = group.split("|")
        if not {a, b, group, "DMSO"} <= set(means.index):
            errors.append(np.nan)
            continue
        predicted = means.loc[a] - means.loc["DMSO"] + means.loc[b]
        errors.append(
            np.linalg.norm(predicted - means.loc[group]) / np.linalg.norm(means.loc[group] - means.loc["DMSO"])
        )
    return np.array(errors)


def test_morphology_schema_and_plates(morphology):
    obs = morphology.obs
    for col in SCHEMA:
        assert col in obs.columns
    assert morphology.X.dtype == np.float32 and 100 <= morphology.n_vars <= 600
    assert set(obs["cell_line"]) == {"A549"}
    assert (obs.groupby("plate", observed=True)["control"].sum() == 24).all()
    n_compound_doses = obs[~obs["control"]].groupby(["drug", "dose"], observed=True).size()
    assert (n_compound_doses == 3).all() and n_compound_doses.index.get_level_values("dose").nunique() == 6
    # normalized-profile-like scale: DMSO wells spread ~1 around their plate offset; treated wells move further
    ctrl = morphology.X[obs["control"].to_numpy()]
    assert 0.8 < float(np.median(np.abs(ctrl - np.median(ctrl, axis=0)))) * 1.4826 < 1.4
    # plate batch effects: DMSO means differ between plates beyond sampling noise
    plate_means = pd.DataFrame(ctrl).groupby(obs.loc[obs["control"], "plate"].to_numpy()).mean()
    assert plate_means.std(axis=0).mean() > 0.2


def test_morphology_feature_groups_are_real_compartments_and_channels(morphology):
    var = morphology.var
    assert set(var["compartment"]) == {"Cells", "Cytoplasm", "Nuclei"}
    assert {"DNA", "RNA", "AGP", "ER", "Mito"} <= set(var["channel"])
    assert var_names_look_like_cellprofiler(morphology.var_names)
    try:
        from perturbkit.io import parse_cellprofiler_features
    except ImportError:
        pytest.skip("perturbkit.io is not available")
    parsed = parse_cellprofiler_features(list(morphology.var_names))
    assert list(parsed["group"]) == list(var["group"].astype(str))
    single_channel = var["channel"].isin(["DNA", "RNA", "AGP", "ER", "Mito"])
    assert (var.loc[single_channel, "group"] == var.loc[single_channel, "sim_group"]).all()
    assert var["group"].nunique() >= 15
    # each latent factor loads mainly on a few groups
    loadings = np.abs(morphology.uns["simulation"]["group_loadings"])
    strong = (loadings > 0.5).sum(axis=0)
    assert ((strong >= 2) & (strong <= 3)).all()


def var_names_look_like_cellprofiler(names) -> bool:
    pattern = re.compile(
        r"^(Cells|Cytoplasm|Nuclei)_(Intensity|Texture|Granularity|Correlation|AreaShape|RadialDistribution)_"
    )
    return all(pattern.match(n) for n in names)


def test_morphology_polypharmacology_groups_and_latent_arithmetic(morphology):
    moa = morphology.obs["moa"].to_numpy()
    singles = {m for m in moa if "|" not in m}
    pairs = sorted({m for m in moa if m.count("|") == 1})
    eligible = [p for p in pairs if all(part in singles for part in p.split("|"))]
    assert len(eligible) >= 5
    drugs = morphology.uns["simulation"]["drugs"]
    assert (drugs[drugs["n_moas"] == 2].groupby("moa").size() >= 3).all()

    # exact-ish in the true latent space, per compound and per well (dose-scaled)
    sim = morphology.uns["simulation"]
    per_drug = _lsa_relative_errors(
        np.vstack([sim["drug_latent"], np.zeros((1, sim["drug_latent"].shape[1]))]),
        list(drugs["moa"]) + ["DMSO"],
        eligible,
    )
    assert np.mean(per_drug) < 0.25
    rng = np.random.default_rng(0)
    latent = _lsa_relative_errors(morphology.obsm["latent_true"], moa, eligible)
    shuffled_latent = np.nanmean(
        [_lsa_relative_errors(morphology.obsm["latent_true"], rng.permutation(moa), eligible) for _ in range(10)],
        axis=0,
    )
    assert np.mean(latent) < 0.5 and np.mean(latent) < 0.5 * np.mean(shuffled_latent)

    # in feature space the arithmetic still beats shuffled labels, on average and for most groups
    features = _lsa_relative_errors(morphology.X, moa, eligible)
    shuffled = np.nanmean(
        [_lsa_relative_errors(morphology.X, rng.permutation(moa), eligible) for _ in range(10)], axis=0
    )
    assert np.mean(features) < np.nanmean(shuffled)
    assert np.mean(features < shuffled) >= 0.8
    # ... but the nonlinear decoding makes it less exact than in the latent space
    assert np.mean(features) > np.mean(latent)


def test_morphology_is_seeded():
    kw = dict(n_compounds=40, n_moas=4, n_plates=3, n_features=60)
    a, b, c = (pk.datasets.simulate_morphology(seed=s, **kw) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.X, b.X)
    assert list(a.var_names) == list(b.var_names)
    assert not np.array_equal(a.X, c.X) or list(a.var_names) != list(c.var_names)


# ---------------------------------------------------------------------------------------------------------------
# simulate_single_cell
# ---------------------------------------------------------------------------------------------------------------


def test_single_cell_counts_and_design(single_cell):
    X = single_cell.X
    assert sp.isspmatrix_csr(X) and X.dtype == np.float32
    assert X.data.min() >= 0 and np.array_equal(X.data, np.round(X.data))
    assert X.nnz < 0.9 * X.shape[0] * X.shape[1]
    obs = single_cell.obs
    for col in SCHEMA:
        assert col in obs.columns
    assert set(obs["cell_line"]) == {"A549", "K562", "MCF7"}
    counts = obs.groupby(["cell_line", "control"], observed=True).size()
    assert (counts.xs(True, level="control") == 250).all() and (counts.xs(False, level="control") == 750).all()
    assert obs.loc[~obs["control"], "drug"].nunique() == 12
    assert set(obs.loc[~obs["control"], "dose"]) == {0.1, 1.0, 10.0}
    assert (obs.loc[obs["control"], "drug"] == "DMSO").all()
    libsize = np.asarray(X.sum(axis=1)).ravel()
    assert 1500 < np.median(libsize) < 6000 and libsize.std() / libsize.mean() > 0.2
    # the truth: per-cell log-means; counts follow them
    log_mean = single_cell.layers["log_mean"]
    assert log_mean.shape == X.shape
    assert np.corrcoef(np.log1p(X.toarray().mean(axis=0)), np.log(np.exp(log_mean).mean(axis=0)))[0, 1] > 0.95


def test_single_cell_treatment_moves_the_true_de_genes(single_cell):
    X, obs = single_cell.X, single_cell.obs
    de = single_cell.var["de"].to_numpy()
    assert 0.05 < de.mean() < 0.2
    assert set(single_cell.uns["simulation"]["de_genes"]) == set(single_cell.var_names[de])
    for cell_type in ("A549", "K562", "MCF7"):
        in_type = (obs["cell_line"] == cell_type).to_numpy()
        control = np.log1p(np.asarray(X[in_type & obs["control"].to_numpy()].mean(axis=0)).ravel())
        shifts = []
        for drug in obs.loc[in_type & ~obs["control"].to_numpy(), "drug"].unique():
            rows = in_type & (obs["drug"] == drug).to_numpy() & (obs["dose"] == 10.0).to_numpy()
            shifts.append(np.abs(np.log1p(np.asarray(X[rows].mean(axis=0)).ravel()) - control))
        shift = np.mean(shifts, axis=0)
        assert shift[de].mean() > 2.5 * shift[~de].mean()
    lfc = single_cell.uns["simulation"]["true_lfc"]
    assert lfc.shape == (3, 12, 3, single_cell.n_vars) and np.abs(lfc[..., ~de]).max() == 0.0
    # cell-type-specific responses: the same drug moves genes differently in different cell types
    assert np.corrcoef(lfc[0, :, 2][:, de].ravel(), lfc[1, :, 2][:, de].ravel())[0, 1] < 0.9


def test_single_cell_is_seeded():
    kw = dict(n_cells=300, n_genes=100, n_drugs=4, n_moas=2)
    a, b, c = (pk.datasets.simulate_single_cell(seed=s, **kw) for s in (5, 5, 6))
    assert (a.X != b.X).nnz == 0 and a.obs.equals(b.obs)
    assert (a.X != c.X).nnz > 0


# ---------------------------------------------------------------------------------------------------------------
# Downloaders
# ---------------------------------------------------------------------------------------------------------------


class _NoNetwork:
    """A pooch downloader that fails like an offline machine and records that it was asked."""

    calls: list = []

    def __call__(self, url, output_file, pooch_obj, check_only=False):
        type(self).calls.append(url)
        raise ConnectionError(f"no network to reach {url}")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder as pk.settings.datadir, and a network that fails (any attempt is recorded)."""
    monkeypatch.setattr(pk.settings, "datadir", tmp_path / "cache")
    _NoNetwork.calls = []
    monkeypatch.setattr(_download, "_downloader", lambda progressbar: _NoNetwork())
    return tmp_path / "cache"


def _inject(monkeypatch, fname: str, content: bytes, *, alg: str = "sha256", url: str | None = None, cache=None):
    """Register ``fname`` with the hash of ``content`` (the real registry entry's URL kept when there is one)."""
    digest = hashlib.new(alg, content).hexdigest()
    old = _download.REGISTRY.get(fname)
    entry = _download.RegistryEntry(
        fname,
        (url or (old.urls[0] if old else f"https://example.org/{fname}"),),
        f"{alg}:{digest}",
        len(content),
        "test",
        decompress_to=old.decompress_to if old else None,
    )
    monkeypatch.setitem(_download.REGISTRY, fname, entry)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / fname).write_bytes(content)
    return entry


def test_registry_urls_and_hashes_are_well_formed():
    table = pk.datasets.registry()
    assert len(table) >= 10
    for fname, row in table.iterrows():
        assert row["url"].startswith("https://") and fname in row["url"]
        alg, digest = row["known_hash"].split(":")
        assert len(digest) == {"sha256": 64, "sha512": 128}[alg] and re.fullmatch("[0-9a-f]+", digest)
    geo = table.loc["GSE70138_Broad_LINCS_Level5_COMPZ_n118050x12328_2017-03-06.gctx.gz"]
    assert geo["url"] == (
        "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE70nnn/GSE70138/suppl/"
        "GSE70138_Broad_LINCS_Level5_COMPZ_n118050x12328_2017-03-06.gctx.gz"
    )
    assert geo["known_hash"].startswith("sha512:9d078903")


def test_cached_file_is_returned_without_network_after_hash_check(cache, monkeypatch):
    content = b"sig_id\tpert_iname\tcell_id\nS1\tgefitinib\tMCF7\n"
    _inject(
        monkeypatch,
        "GSE70138_Broad_LINCS_sig_info_2017-03-06.txt.gz",
        gzip.compress(content, mtime=0),
        alg="sha512",
        cache=cache,
    )
    path = pk.datasets.lincs_l1000_level5(what="sig_info")
    assert path == cache / "GSE70138_Broad_LINCS_sig_info_2017-03-06.txt.gz"
    assert _NoNetwork.calls == []
    table = pk.datasets.lincs_l1000_level5(what="sig_info", load=True)
    assert list(table["pert_iname"]) == ["gefitinib"]


def test_corrupted_cached_file_is_rejected(cache, monkeypatch):
    entry = _inject(monkeypatch, "kang_2018.h5ad", b"the real bytes", cache=cache)
    (cache / "kang_2018.h5ad").write_bytes(b"truncated or tampered bytes")
    with pytest.raises(pk.datasets.DownloadError, match="hash does not match") as err:
        pk.datasets.kang_pbmc()
    assert entry.urls[0] in str(err.value)
    assert len(_NoNetwork.calls) == 1  # it tried to fetch a good copy instead of using the bad one
    assert isinstance(err.value, RuntimeError)


def test_uncached_file_offline_gives_a_clear_error(cache):
    with pytest.raises(pk.datasets.DownloadError) as err:
        pk.datasets.kang_pbmc()
    message = str(err.value)
    assert "https://exampledata.scverse.org/pertpy/kang_2018.h5ad" in message  # what it tried
    assert "https://ndownloader.figshare.com/files/34464122" in message  # and the mirror
    assert str(cache / "kang_2018.h5ad") in message  # where to place it by hand
    assert "PERTURBKIT_DATADIR" in message and "sha256:e6a5adac" in message
    assert len(_NoNetwork.calls) == 2


def test_real_network_failure_is_fast_and_clear(tmp_path, monkeypatch):
    """With pooch's real HTTP downloader and an unreachable local port: no internet needed, fails at once."""
    monkeypatch.setattr(pk.settings, "datadir", tmp_path)
    entry = _download.RegistryEntry("unreachable.txt", ("http://127.0.0.1:9/unreachable.txt",), None, None, "test")
    with pytest.raises(pk.datasets.DownloadError, match="127.0.0.1:9"):
        pk.datasets.fetch("unreachable.txt", entry=entry, progressbar=False)


def test_lincs_signatures_are_decompressed_and_loaded(cache, monkeypatch, tmp_path):
    genes = pd.DataFrame({"pr_gene_id": ["1", "2", "3"], "pr_gene_symbol": ["A", "B", "C"], "pr_is_lm": [1, 1, 0]})
    adata = pk.datasets.simulate_bulk(n_drugs=10, n_moas=3, n_genes=3)[:6].copy()
    adata.var_names = ["1", "2", "3"]
    adata.obs_names = [f"SIG{i}" for i in range(6)]
    gctx = tmp_path / "small.gctx"
    pk.io.write_gctx(adata, gctx)
    _inject(
        monkeypatch,
        _download.LINCS_L1000_FILES["signatures"],
        gzip.compress(gctx.read_bytes(), mtime=0),
        alg="sha512",
        cache=cache,
    )
    sig_info = pd.DataFrame(
        {
            "sig_id": adata.obs_names,
            "pert_iname": adata.obs["drug"].to_numpy(),
            "cell_id": adata.obs["cell_line"].to_numpy(),
        }
    )
    _inject(
        monkeypatch,
        _download.LINCS_L1000_FILES["sig_info"],
        gzip.compress(sig_info.to_csv(sep="\t", index=False).encode(), mtime=0),
        alg="sha512",
        cache=cache,
    )
    _inject(
        monkeypatch,
        _download.LINCS_L1000_FILES["gene_info"],
        gzip.compress(genes.to_csv(sep="\t", index=False).encode(), mtime=0),
        alg="sha512",
        cache=cache,
    )

    path = pk.datasets.lincs_l1000_level5()
    assert path == cache / "GSE70138_Broad_LINCS_Level5_COMPZ_n118050x12328_2017-03-06.gctx"
    loaded = pk.datasets.lincs_l1000_level5(load=True)
    assert loaded.shape == (6, 2) and list(loaded.var_names) == ["A", "B"]
    np.testing.assert_allclose(loaded.X, adata.X[:, :2])
    assert _NoNetwork.calls == []


def test_cell_painting_consensus_and_plate_from_cache(cache, monkeypatch, shared_data):
    plate_file = shared_data("cell_painting/SQ00015054_normalized_feature_select.csv.gz")
    content = plate_file.read_bytes()
    fname = "2016_04_01_a549_48hr_batch1_consensus_modz_feature_select.csv.gz"
    assert "media.githubusercontent.com/media/broadinstitute/lincs-cell-painting/" in _download.REGISTRY[fname].urls[0]
    _inject(monkeypatch, fname, content, cache=cache)
    assert pk.datasets.lincs_cell_painting() == cache / fname
    adata = pk.datasets.lincs_cell_painting(load=True)
    assert adata.n_obs == 384 and adata.n_vars == 454
    # a plate without a known hash: the user's own copy is used as is; with a wrong hash it is rejected
    (cache / "SQ00099999_normalized_feature_select.csv.gz").write_bytes(content)
    assert pk.datasets.lincs_cell_painting(plate="SQ00099999").name == "SQ00099999_normalized_feature_select.csv.gz"
    with pytest.raises(pk.datasets.DownloadError, match="hash does not match"):
        pk.datasets.lincs_cell_painting(plate="SQ00099999", known_hash="sha256:" + "0" * 64)
    with pytest.raises(PerturbkitInputError, match="consensus"):
        pk.datasets.lincs_cell_painting(consensus="nonsense")
    assert _NoNetwork.calls == [_download._plate_entry("2016_04_01_a549_48hr_batch1", "SQ00099999", None).urls[0]]
