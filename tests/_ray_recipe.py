"""Run by tests/test_distributed.py: the "Running at scale" page's Ray recipe, on 2 CPU workers (gloo).

Usage: ``python tests/_ray_recipe.py STORE.h5ad OUT_FOLDER``. The training function is the page's, with a small
VAE; each worker also writes its latent codes, so the test can check that both ended with the same replica.
"""

import sys
from pathlib import Path

import ray.train
from ray.train.torch import TorchTrainer


def train_loop_per_worker(config):
    import numpy as np
    import torch

    import perturbkit as pk

    torch.set_num_threads(1)
    adata = pk.io.read_store(config["path"])
    model = pk.tl.train_vae(adata, kind="beta", batch_size=32, max_epochs=3, latent_dim=4, hidden=(16,), seed=0)
    model.save(config["model"])  # rank 0 writes; the other ranks return at once
    codes = model.encode_array(np.asarray(adata.X[:50]))
    np.save(Path(config["out"]) / f"codes_{torch.distributed.get_rank()}.npy", codes)


if __name__ == "__main__":
    store, out = sys.argv[1], Path(sys.argv[2])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"path": store, "model": str(out / "vae.pt"), "out": str(out)},
        scaling_config=ray.train.ScalingConfig(num_workers=2, use_gpu=False),
        run_config=ray.train.RunConfig(storage_path=str(out / "ray_results")),
    )
    trainer.fit()
