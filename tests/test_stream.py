"""Training from stores that stay on disk (issue 14): StreamedBatches, read_store, streamed VAE / scGen."""

from __future__ import annotations

import hashlib
import os
import tracemalloc

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import perturbkit as pk
from perturbkit._schema import GeneMismatchError, PerturbkitInputError
from perturbkit.io._store import read_store
from perturbkit.models.scgen import ScGen
from perturbkit.models.vae import VAE
from perturbkit.train._stream import StreamedBatches, is_out_of_core

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_ROWS, N_GENES = 480, 30
FAST = {"latent_dim": 4, "hidden": (16,)}
TRAIN = {"max_epochs": 4, "patience": None, "batch_size": 32}


def _ids(n=1000, width=3):
    """Rows whose every value is the row's index, so served rows can be traced back."""
    return np.repeat(np.arange(n, dtype=np.float32)[:, None], width, axis=1)


def _served(source, generator):
    return np.concatenate([batch[0][:, 0].numpy() for batch in source.iterate(generator)]).astype(int)


@pytest.fixture(scope="module")
def profiles():
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((N_ROWS, 3))
    X = 1 / (1 + np.exp(-(latent @ rng.standard_normal((3, N_GENES)) + 0.3 * rng.standard_normal((N_ROWS, N_GENES)))))
    obs = pd.DataFrame(
        {
            "cell_line": np.where(np.arange(N_ROWS) % 2 == 0, "A", "B"),
            "drug": np.where(np.arange(N_ROWS) % 3 == 0, "ctrl", "d1"),
            "control": np.arange(N_ROWS) % 3 == 0,
        },
        index=[f"c{i}" for i in range(N_ROWS)],
    )
    return ad.AnnData(X.astype(np.float32), obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(N_GENES)]))


@pytest.fixture(scope="module")
def stores(profiles, tmp_path_factory):
    folder = tmp_path_factory.mktemp("stores")
    paths = {"h5ad": folder / "dense.h5ad", "zarr": folder / "dense.zarr", "csr": folder / "csr.h5ad"}
    profiles.write_h5ad(paths["h5ad"])
    profiles.write_zarr(paths["zarr"])
    sparse = profiles.copy()
    sparse.X = sp.csr_matrix(np.where(profiles.X > 0.5, profiles.X, 0).astype(np.float32))
    sparse.write_h5ad(paths["csr"])
    return paths


# ------------------------------------------------------------------------------------------- (a) the batch source
def test_every_row_once_shuffled_and_deterministic():
    source = StreamedBatches(_ids(), batch_size=32, chunk_rows=50, buffer_chunks=4)
    assert source.n == 1000 and len(source) == 32
    generator = torch.Generator().manual_seed(0)
    first, second = _served(source, generator), _served(source, generator)
    assert sorted(first.tolist()) == list(range(1000)) and sorted(second.tolist()) == list(range(1000))
    assert not np.array_equal(first, second)  # a new order every epoch
    again = _served(source, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(first, again)  # the same seed, the same order
    # chunk order shuffled: the first buffer holds rows of 4 chunks that are not chunks 0-3
    assert set(first[:150] // 50) != {0, 1, 2, 3}
    # rows shuffled within the buffer: consecutive served rows are rarely neighbours on disk
    assert np.mean(np.abs(np.diff(first)) == 1) < 0.05
    # in order, unshuffled, without a generator
    np.testing.assert_array_equal(_served(source, None), np.arange(1000))
    sizes = [len(b[0]) for b in source.iterate(torch.Generator().manual_seed(1))]
    assert sizes == [32] * 31 + [1000 - 31 * 32]  # every batch full but the last


def test_rows_side_arrays_and_columns_are_served_aligned():
    X = _ids(200, 4) * np.array([1, 10, 100, 1000], dtype=np.float32)
    rows = np.arange(0, 200, 3)
    codes = np.arange(200) * 7
    source = StreamedBatches(
        X, codes, batch_size=8, chunk_rows=16, buffer_chunks=2, rows=rows, columns=[2, 0], transform=lambda x: x + 0.5
    )
    batches = list(source.iterate(torch.Generator().manual_seed(3)))
    x = torch.cat([b[0] for b in batches]).numpy()
    side = torch.cat([b[1] for b in batches]).numpy()
    served = (x[:, 1] - 0.5).astype(int)
    assert sorted(served.tolist()) == rows.tolist()
    np.testing.assert_array_equal(x[:, 0], served * 100 + 0.5)
    np.testing.assert_array_equal(side, served * 7)
    assert batches[0][0].dtype == torch.float32 and batches[0][1].dtype == torch.int64


def test_single_chunk_serves_the_in_memory_order():
    X = _ids(300)
    streamed = StreamedBatches(X, batch_size=32, chunk_rows=300)
    in_memory = pk.train.Batches((X,), device=torch.device("cpu"), batch_size=32)
    for a, b in zip(
        streamed.iterate(torch.Generator().manual_seed(5)),
        in_memory.iterate(torch.Generator().manual_seed(5)),
        strict=True,
    ):
        assert torch.equal(a[0], b[0])


# --------------------------------------------------------------------------------------------------- (b) sharding
def test_shards_are_disjoint_cover_the_data_and_run_equal_batches():
    X = _ids(1000)
    shards = [StreamedBatches(X, batch_size=30, chunk_rows=64, rank=r, world_size=2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) and shards[0].n == shards[1].n
    covered = set()
    for epoch in range(3):
        served = [_served(s, torch.Generator().manual_seed(epoch)) for s in shards]
        assert [len(s) for s in served] == [shards[0].n, shards[0].n]
        assert [sum(1 for _ in s.iterate(torch.Generator().manual_seed(epoch))) for s in shards] == [len(shards[0])] * 2
        assert not set(served[0]) & set(served[1])
        # whole chunks per rank, at most one chunk (the short last one, or a truncated one) left out
        assert 2 * shards[0].n >= 1000 - 64
        covered |= set(served[0]) | set(served[1])
    assert covered == set(range(1000))  # over epochs every row is seen


# ------------------------------------------------------------------------------------------- (c, d) streamed models
def _vae(adata, **train):
    model = VAE.from_adata(adata, output="sigmoid", seed=0, **FAST)
    return model.train(adata, seed=0, **{**TRAIN, **train})


@pytest.mark.parametrize("store", ["h5ad", "zarr"])
def test_streamed_vae_equals_in_memory(profiles, stores, store):
    reference = _vae(profiles)
    backed = read_store(stores[store])
    assert is_out_of_core(backed)
    # one chunk holding every training row: the same batches as in memory, so the same model bit for bit
    exact = _vae(backed, chunk_rows=N_ROWS)
    for key, value in reference.module.state_dict().items():
        assert torch.equal(value, exact.module.state_dict()[key]), key
    np.testing.assert_array_equal(exact.encode(backed), reference.encode(profiles))
    # small chunks: another (buffer-shuffled) batch order, the same data and seed. Measured: best validation loss
    # and reconstruction error within 0.35 % of in-memory training, latent means correlated 0.965-0.985
    chunked = _vae(backed, chunk_rows=40, buffer_chunks=3)
    ref_loss = reference.history_frame["validation_loss"].min()
    assert abs(chunked.history_frame["validation_loss"].min() - ref_loss) / ref_loss < 0.01
    recon = np.mean((chunked.reconstruct(profiles.X) - profiles.X) ** 2)
    recon_ref = np.mean((reference.reconstruct(profiles.X) - profiles.X) ** 2)
    assert abs(recon - recon_ref) / recon_ref < 0.01
    Z, Z_ref = chunked.encode(backed), reference.encode(profiles)
    assert Z.shape == Z_ref.shape == (N_ROWS, FAST["latent_dim"])
    assert np.corrcoef(Z.ravel(), Z_ref.ravel())[0, 1] > 0.95


def test_csr_backed_h5ad_trains_like_its_dense_copy(stores):
    backed = read_store(stores["csr"])
    assert type(backed.X).__name__.endswith("CSRDataset")
    dense = backed.to_memory()
    dense.X = np.asarray(dense.X.toarray(), dtype=np.float32)
    streamed, reference = _vae(backed, chunk_rows=N_ROWS), _vae(dense)
    np.testing.assert_array_equal(streamed.encode(backed), reference.encode(dense))
    chunked = _vae(backed, chunk_rows=50)
    ref = reference.history_frame["validation_loss"].min()
    assert abs(chunked.history_frame["validation_loss"].min() - ref) / ref < 0.02


def test_streamed_scgen_equals_in_memory(profiles, stores):
    options = {"latent_dim": 4, "hidden": (16,), "seed": 0}
    reference = ScGen.from_adata(profiles, **options).train(profiles, max_epochs=3, seed=0)
    backed = read_store(stores["h5ad"])
    streamed = ScGen.from_adata(backed, **options).train(backed, max_epochs=3, seed=0, chunk_rows=N_ROWS)
    np.testing.assert_array_equal(streamed.latent_means, reference.latent_means)
    np.testing.assert_array_equal(streamed.encode(backed), reference.encode(profiles))
    controls = profiles[profiles.obs["control"].to_numpy()].copy()
    np.testing.assert_array_equal(
        streamed.predict(controls, drugs=["d1"]).X, reference.predict(controls, drugs=["d1"]).X
    )


def test_streamed_cpa_equals_in_memory(tmp_path):
    from perturbkit.models.cpa import CPA

    bulk = pk.datasets.simulate_bulk(n_drugs=12, n_genes=20, n_cell_lines=2, n_moas=3, seed=2)
    bulk.write_h5ad(tmp_path / "bulk.h5ad")
    net = {"latent_dim": 8, "hidden": (16,), "adversary_hidden": (8,), "doser_hidden": (8,)}
    fit = {"max_epochs": 3, "batch_size": 32, "patience": None, "seed": 0}
    reference = CPA.from_adata(bulk, drug_encoder="onehot", seed=0, **net).train(bulk, **fit)
    backed = read_store(tmp_path / "bulk.h5ad")
    streamed = CPA.from_adata(backed, drug_encoder="onehot", seed=0, **net)
    streamed.train(backed, chunk_rows=backed.n_obs, **fit)  # drug, dose and cell codes served beside the chunks
    for key, value in reference.module.state_dict().items():
        assert torch.equal(value, streamed.module.state_dict()[key]), key
    chunked = CPA.from_adata(backed, drug_encoder="onehot", seed=0, **net).train(backed, chunk_rows=16, **fit)
    ref = reference.history_frame["validation_loss"].iloc[-1]
    assert abs(chunked.history_frame["validation_loss"].iloc[-1] - ref) / abs(ref) < 0.05


# ------------------------------------------------------------------------------------------ (e) the file unchanged
def _fingerprint(path):
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest(), [os.stat(f).st_mtime_ns for f in files]


@pytest.mark.parametrize("store", ["h5ad", "zarr"])
def test_training_leaves_the_store_unchanged(profiles, stores, store):
    before = _fingerprint(stores[store])
    backed = read_store(stores[store])
    model = pk.tl.train_vae(backed, output="sigmoid", max_epochs=2, **FAST)
    assert backed.obsm["X_vae"].shape == (N_ROWS, FAST["latent_dim"])
    assert backed.uns["vae"]["n_epochs"] == 2 and model.active_units is not None
    assert _fingerprint(stores[store]) == before


# ----------------------------------------------------------------------------------------------- (f) bad inputs
def test_bad_stores_name_the_file_and_the_fix(profiles, stores, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5ad"):
        read_store(tmp_path / "missing.h5ad")
    with pytest.raises(PerturbkitInputError, match=r"data\.csv.*\.h5ad"):
        read_store(tmp_path / "data.csv")
    model = VAE.from_adata(profiles, output="sigmoid", **FAST)
    fewer = profiles[:, 3:].copy()
    fewer.write_h5ad(tmp_path / "fewer.h5ad")
    with pytest.raises(GeneMismatchError, match=r"fewer\.h5ad.*'g0'.*retrain"):
        model.encode(read_store(tmp_path / "fewer.h5ad"))
    with pytest.raises(GeneMismatchError, match=r"'g0'"):
        model.train(read_store(tmp_path / "fewer.h5ad"), max_epochs=1)
    with pytest.raises(PerturbkitInputError, match="chunk_rows"):
        StreamedBatches(_ids(100), chunk_rows=100, world_size=2, rank=0)
    with pytest.raises(PerturbkitInputError, match="side array 0 has 5 rows"):
        StreamedBatches(_ids(100), np.arange(5))


def test_non_finite_chunk_is_refused_while_streaming(profiles, tmp_path):
    bad = profiles.copy()
    bad.X[400, 2] = np.nan
    bad.write_h5ad(tmp_path / "bad.h5ad")
    model = VAE.from_adata(profiles, output="sigmoid", **FAST)
    with pytest.raises(pk.errors.NonFiniteError, match="bad.h5ad"):
        model.train(read_store(tmp_path / "bad.h5ad"), max_epochs=1, chunk_rows=64)


# ------------------------------------------------------------------------------------------------- (g) memory
def test_memory_stays_under_the_documented_bound(tmp_path):
    import h5py

    n, genes = 6000, 200  # a 4.8 MB store, 8x the stream's bound
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=np.random.default_rng(0).random((n, genes), dtype=np.float32))
    with h5py.File(path, "r") as f:
        source = StreamedBatches(f["X"], batch_size=32, chunk_rows=64, buffer_chunks=2, transform=lambda x: x * 2)
        bound = source.memory_bound
        assert bound == ((2 + 2 + 5) * 64 + 4 * 32) * genes * 4
        assert n * genes * 4 > 8 * bound
        tracemalloc.start()
        rows = 0
        for _ in range(2):
            for batch in source.iterate(torch.Generator().manual_seed(0)):
                rows += len(batch[0])
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert rows == 2 * n
    assert peak < bound, (peak, bound)
