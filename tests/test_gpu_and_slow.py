"""Marked tests: `python -m pytest -m gpu` (needs CUDA) and `python -m pytest -m slow` (paper-scale runs)."""

import numpy as np
import pytest
import torch

import perturbkit as pk
from perturbkit.models.deepcellstate import DeepCellState, compare_to_baseline

TINY = {"latent_dim": 16, "hidden": (64, 32), "max_epochs": 10, "max_rounds": 2}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_deepcellstate_trains_on_cuda_and_loads_on_cpu(tmp_path):
    adata = pk.datasets.simulate_bulk(n_drugs=100, n_genes=80, seed=3)
    model = pk.tl.train_deepcellstate(adata, device="cuda", **TINY)
    assert model.device.type == "cuda" and next(model.module.parameters()).is_cuda
    on_gpu = model.predict(adata, target="MCF7", sources=["PC3"]).X
    on_cpu = DeepCellState.load(model.save(tmp_path / "m.pt"), device="cpu").predict(adata, target="MCF7").X
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)


@pytest.mark.slow
def test_full_ten_fold_cross_validation_at_paper_scale():
    adata = pk.datasets.simulate_bulk(n_drugs=1750, frac_missing=0.0)
    cv = pk.tl.cross_validate_deepcellstate(adata, source="PC3", target="MCF7", n_folds=10)
    summary = compare_to_baseline(cv)
    assert len(cv) == 1750 and summary.fold_increase >= 1.8
    assert cv.pcc.mean() > cv.ridge_pcc.mean() + 0.05
