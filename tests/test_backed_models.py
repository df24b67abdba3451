"""Every trainer accepts a store opened with ``pk.io.read_store``, and trains exactly as on the data in memory.

The row models (VAE, scGen, CPA) stream the store (tests/test_stream.py); the profile models below read the
matrix once, as they need every profile of a drug across cell lines together (aggregate a large store first with
``pk.pp.aggregate``, which works in row blocks). Either way the user's call and the result are the same.
"""

import hashlib

import numpy as np
import pandas as pd
import pytest

import perturbkit as pk

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    adata = pk.datasets.simulate_bulk(n_drugs=30, n_genes=40, n_cell_lines=2, seed=3)
    path = tmp_path_factory.mktemp("backed") / "bulk.h5ad"
    adata.write_h5ad(path)
    return path


TRAINERS = {
    "deepcellstate": lambda a: pk.tl.train_deepcellstate(a, max_epochs=2, max_rounds=1, decoder_epochs=1),
    "cyclecdr": lambda a: pk.tl.train_cyclecdr(a, max_epochs=2),
    "anchor_vae": lambda a: pk.tl.train_anchor_vae(a, max_epochs=2),
    "dual_gan": lambda a: pk.tl.train_dual_gan(a, max_epochs=2),
}


@pytest.mark.parametrize("name", list(TRAINERS))
def test_profile_models_train_on_a_store_as_in_memory(store, name):
    digest = hashlib.sha256(store.read_bytes()).hexdigest()
    in_memory = TRAINERS[name](pk.io.read_store(store, backed=False))
    backed = pk.io.read_store(store)
    assert backed.isbacked
    on_disk = TRAINERS[name](backed)
    numbers = ["float64", "float32"]
    pd.testing.assert_frame_equal(
        on_disk.history_frame.select_dtypes(numbers), in_memory.history_frame.select_dtypes(numbers)
    )
    for a, b in zip(on_disk.module.parameters(), in_memory.module.parameters(), strict=True):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())
    assert hashlib.sha256(store.read_bytes()).hexdigest() == digest  # the store is never written
