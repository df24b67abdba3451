"""Shared fixtures. Real data sets live in ../shared/data (never in the repo); tests using them skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import perturbkit as pk

SHARED_DATA = Path(
    os.environ.get("PERTURBKIT_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.fixture(autouse=True, scope="session")
def _quiet_progress():
    pk.settings.progress_bar = False
    yield


def shared_file(relative: str) -> Path:
    """Path of a file under ../shared/data, skipping the test with a clear reason when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data file {path} is not available (set PERTURBKIT_SHARED_DATA to the shared/data folder)")
    return path


@pytest.fixture
def shared_data():
    """Callable fixture: ``shared_data('l1000/test_l1000.gct.gz')`` gives the path or skips."""
    return shared_file


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tiny networks on one torch thread (as fast, and immune to a busy 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def morph():
    """Small simulated Cell Painting-like profiles (40 compounds × 60 features), min-max scaled; one per module."""
    adata = pk.datasets.simulate_morphology(n_compounds=40, n_features=60, n_plates=4, seed=0)
    pk.pp.scale(adata, method="minmax")
    return adata
