"""Distributed data parallel through the one training loop: 2 CPU processes with gloo under ``torchrun``."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import perturbkit as pk
from perturbkit.train import Batches

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORKER = Path(__file__).with_name("_ddp_worker.py")
sys.path.insert(0, str(WORKER.parent))
from _ddp_worker import main as run_worker  # noqa: E402


def test_ranks_share_out_exactly_the_combined_batches():
    """Two ranks with batch 16 see, step by step, the rows one process sees with batch 32."""
    rows = np.arange(101, dtype=np.float32)[:, None]
    one = Batches((rows,), device=torch.device("cpu"), batch_size=32)
    ranks = [Batches((rows,), device=torch.device("cpu"), batch_size=16, rank=r, world_size=2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(one) == 4  # 32+32+32+5: the last global batch gives each rank rows
    steps = zip(
        one.iterate(torch.Generator().manual_seed(3)),
        *(b.iterate(torch.Generator().manual_seed(3)) for b in ranks),
        strict=True,
    )
    for (full,), (part0,), (part1,) in steps:
        assert torch.equal(torch.cat([part0, part1]), full)
        assert abs(len(part0) - len(part1)) <= 1
    # a last global batch of one row cannot be shared by two ranks: it is left out on both, so they step alike
    odd = [Batches((rows[:97],), device=torch.device("cpu"), batch_size=16, rank=r, world_size=2) for r in (0, 1)]
    assert len(odd[0]) == len(odd[1]) == 3
    served = sum(len(b[0]) for r in odd for b in r.iterate(None))
    assert served == 96


@pytest.fixture(scope="module")
def torchrun_outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    adata = pk.datasets.simulate_morphology(n_compounds=20, seed=1)
    pk.pp.scale(adata, method="minmax")
    adata.write_h5ad(out / "store.h5ad")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(pk.__file__).parents[1])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    arguments = [str(WORKER), str(out), "16", str(out / "store.h5ad")]
    result = subprocess.run([*command, *arguments], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_two_gloo_processes_train_the_model_of_one_process_with_the_combined_batch(torchrun_outputs, tmp_path):
    out = torchrun_outputs
    assert [(out / f"world_{r}.txt").read_text() for r in (0, 1)] == ["2", "2"]
    ranks = [np.load(out / f"regression_{r}.npz") for r in (0, 1)]
    for key in ranks[0]:
        assert np.array_equal(ranks[0][key], ranks[1][key])  # DDP keeps the replicas identical
    net, history = run_worker_regression(batch_size=32)
    single = [p.detach().numpy() for p in net.parameters()]
    for key, weights in zip(ranks[0], single, strict=True):
        # same rows per step, gradients averaged over the ranks: equal up to float32 summation order
        np.testing.assert_allclose(ranks[0][key], weights, rtol=0, atol=1e-6)
    h0, h1 = (pd.read_csv(out / f"history_{r}.csv") for r in (0, 1))
    pd.testing.assert_frame_equal(h0, h1)  # losses are summed over the ranks: every rank logs the same epoch record
    np.testing.assert_allclose(h0["train_loss"], history.to_frame()["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(h0["validation_loss"], history.to_frame()["validation_loss"], rtol=1e-5)


def run_worker_regression(batch_size):
    from _ddp_worker import train_regression

    pk.settings.progress_bar = False
    return train_regression(batch_size)


def test_the_unchanged_user_call_saves_once_and_the_model_loads_anywhere(torchrun_outputs):
    out = torchrun_outputs
    latents = [np.load(out / f"latent_{r}.npy") for r in (0, 1)]
    assert np.array_equal(latents[0], latents[1])
    # rank 0 wrote each file once (the second saved by rank 0 alone), and no temporary file was left
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".pt") == ["vae.pt", "vae_rank0.pt"]
    model = pk.models.vae.VAE.load(out / "vae.pt", device="cpu")
    adata = pk.datasets.simulate_morphology(n_compounds=20, seed=0)
    pk.pp.scale(adata, method="minmax")
    np.testing.assert_array_equal(model.encode(adata), latents[0])


def test_ranks_stream_their_own_shards_of_a_store_and_end_with_one_model(torchrun_outputs):
    """``pk.tl.train_vae(pk.io.read_store(path))`` under torchrun: each rank streams its chunks; one model results."""
    out = torchrun_outputs
    latents = [np.load(out / f"streamed_latent_{r}.npy") for r in (0, 1)]
    histories = [np.load(out / f"streamed_history_{r}.npy") for r in (0, 1)]
    assert np.array_equal(latents[0], latents[1])
    assert np.array_equal(histories[0], histories[1])  # the epoch's losses are summed over the ranks' shards
    assert len(histories[0]) == 3 and histories[0][-1] < histories[0][0]


def test_two_machines_by_rendezvous_train_the_same_model(torchrun_outputs, tmp_path):
    """``torchrun --nnodes=2`` (two launches meeting at a c10d rendezvous, as on two machines) = one launch of two."""
    import socket

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(pk.__file__).parents[1])}
    launches = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}", "--nproc_per_node=1"]
            + ["--rdzv-backend=c10d", f"--rdzv-endpoint=localhost:{port}", "--rdzv-id=perturbkit-test"]
            + [str(WORKER), str(tmp_path), "16"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in (0, 1)
    ]
    errors = [launch.communicate(timeout=300)[1] for launch in launches]
    assert [launch.returncode for launch in launches] == [0, 0], errors[0][-2000:] + errors[1][-2000:]
    one_launch = np.load(torchrun_outputs / "regression_0.npz")
    two_launches = np.load(tmp_path / "regression_0.npz")
    for key in one_launch:
        assert np.array_equal(one_launch[key], two_launches[key])


def test_run_worker_is_the_one_process_script(tmp_path):
    """The worker run by torchrun is an ordinary script: in one process it trains and saves as usual."""
    run_worker(str(tmp_path), 32)
    assert (tmp_path / "vae.pt").exists() and (tmp_path / "world_0.txt").read_text() == "1"


def test_ray_torch_trainer_runs_the_same_training_call(tmp_path):
    """The Running-at-scale page's Ray recipe, on 2 CPU workers: one model, saved once, loadable anywhere.

    Ray is not a dependency; install it to run this test: ``pip install -c constraints.txt 'ray[train]'``.
    """
    pytest.importorskip("ray.train.torch", reason="Ray is not installed: pip install -c constraints.txt 'ray[train]'")
    adata = pk.datasets.simulate_morphology(n_compounds=20, seed=1)
    pk.pp.scale(adata, method="minmax")
    adata.write_h5ad(tmp_path / "store.h5ad")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(pk.__file__).parents[1])}
    script = WORKER.with_name("_ray_recipe.py")
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store.h5ad"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    codes = [np.load(tmp_path / f"codes_{r}.npy") for r in (0, 1)]
    np.testing.assert_array_equal(codes[0], codes[1])  # the two workers hold one model
    model = pk.models.vae.VAE.load(tmp_path / "vae.pt")
    np.testing.assert_array_equal(model.encode_array(np.asarray(adata.X[:50])), codes[0])
