"""Run by tests/test_distributed.py under ``torchrun``: the same training code as a one-process user script.

Usage: ``torchrun --standalone --nproc_per_node=N tests/_ddp_worker.py OUT BATCH_SIZE [STORE.h5ad]``. Each rank
writes its parameters, history and VAE latent codes to OUT; the model file is saved by the user's ``model.save`` call.
"""

import sys
import warnings

import numpy as np
import torch

import perturbkit as pk
from perturbkit.train import Objective, fit
from perturbkit.train import _distributed as distributed


def regression_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 8)).astype(np.float32)
    W = rng.normal(size=(8, 3)).astype(np.float32)
    Y = (np.tanh(X @ W) + 0.1 * rng.normal(size=(200, 3))).astype(np.float32)
    return X, Y


def train_regression(batch_size: int):
    """A deterministic network (no dropout, no sampling) through the engine: DDP must match the combined batch."""
    X, Y = regression_data()
    generator = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)

    def loss(batch):
        return {"loss": torch.nn.functional.mse_loss(net(batch[0]), batch[1])}

    history = fit(
        net,
        Objective(loss, net.parameters(), lr=1e-2),
        (X[:160], Y[:160]),
        validation=(X[160:], Y[160:]),
        max_epochs=8,
        batch_size=batch_size,
        patience=None,
        device="cpu",
        seed=0,
    )
    return net, history


def main(out: str, batch_size: int, store: str | None = None) -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    pk.settings.progress_bar = False
    net, history = train_regression(batch_size)
    rank = distributed.rank()
    np.savez(f"{out}/regression_{rank}.npz", *[p.detach().numpy() for p in net.parameters()])
    history.to_frame().to_csv(f"{out}/history_{rank}.csv", index=False)
    # the user's scanpy-style call, unchanged
    adata = pk.datasets.simulate_morphology(n_compounds=20, seed=0)
    pk.pp.scale(adata, method="minmax")
    model = pk.tl.train_vae(adata, kind="beta", max_epochs=4, batch_size=32)
    model.save(f"{out}/vae.pt")
    if rank == 0:  # the usual DDP idiom, saving on rank 0 alone, must not wait for the other ranks
        model.save(f"{out}/vae_rank0.pt")
    np.save(f"{out}/latent_{rank}.npy", adata.obsm["X_vae"])
    if store is not None:  # streamed from disk: each rank reads its own shard of chunks
        backed = pk.io.read_store(store)
        streamed = pk.tl.train_vae(backed, kind="beta", max_epochs=3, batch_size=32)
        np.save(f"{out}/streamed_latent_{rank}.npy", backed.obsm["X_vae"])
        np.save(f"{out}/streamed_history_{rank}.npy", streamed.history_frame["train_loss"].to_numpy())
    with open(f"{out}/world_{rank}.txt", "w") as handle:
        handle.write(str(distributed.world_size()))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
