"""Folds trained together as one stacked network (issue 14): pk.train.ModuleStack, StackedBatches, per-member early
stopping in the one loop, and DeepCellState's stacked cross-validation.

The loop's part is exact: a stack of independent members trains each member as ``fit`` trains it alone (full
batches, so no shuffling or dropout stream is involved), early stopping included. DeepCellState's stacked folds share
one shuffling and dropout stream, so they are compared by their mean PCC (stated tolerance 0.01) and by a poisoning
test: a fold's weights do not depend on its test drugs even though the other folds train on them in the same steps.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import perturbkit as pk
from perturbkit.datasets._simulate_l1000 import simulate_l1000
from perturbkit.models._profiles import CellDrugProfiles
from perturbkit.models.deepcellstate import _evaluation as evaluation
from perturbkit.train import EarlyStopping, ModuleStack, Objective, StackedBatches, fit
from perturbkit.train._stack import weighted_row_mean

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Mean PCC of the stacked folds against the fold-by-fold run: the stated tolerance.
TOLERANCE = 0.01
SMALL = {"latent_dim": 32, "hidden": (64, 32)}


def _member_data(k: int, n: int):
    g = torch.Generator().manual_seed(100 + k)
    x = torch.randn(n, 6, generator=g)
    y = x @ torch.randn(6, 2, generator=g) + 0.3 * torch.randn(n, 2, generator=g)
    # each member's validation set drifts away from its training set by a different amount: they stop at different
    # epochs
    xv = torch.randn(20, 6, generator=g)
    yv = xv @ torch.randn(6, 2, generator=g) * (0.2 * k) + y[:20] * (1 - 0.2 * k)
    return (x, y), (xv, yv)


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))


def test_a_stack_trains_each_member_exactly_as_alone_with_its_own_early_stopping():
    sizes = [50, 37, 64]  # different sizes: the shorter members are padded with weight-0 rows
    data = [_member_data(k, n) for k, n in enumerate(sizes)]
    alone = []
    for k, (train, validation) in enumerate(data):
        net = _net(k)
        history = fit(
            net,
            Objective(lambda b, net=net: {"loss": torch.mean((net(b[0]) - b[1]) ** 2)}, net.parameters(), lr=0.05),
            train,
            validation=validation,
            batch_size=None,
            max_epochs=60,
            patience=3,
            seed=0,
            progress=False,
        )
        alone.append((net, len(history)))
    members = [_net(k) for k in range(len(sizes))]
    stack = ModuleStack(members)

    def loss(batch):
        x, y, weight = batch
        per_row = stack.map(lambda net, x: net(x), x)
        return {"loss": weighted_row_mean(((per_row - y) ** 2).mean(-1), weight)}

    history = fit(
        stack,
        Objective(loss, stack.parameters(), lr=0.05),
        StackedBatches([d[0] for d in data], device="cpu", batch_size=None),
        validation=StackedBatches([d[1] for d in data], device="cpu", batch_size=None),
        max_epochs=60,
        patience=3,
        seed=0,
        progress=False,
    )
    stack.write_back()
    epochs = [n for _, n in alone]
    assert len(set(epochs)) > 1, f"the members should stop at different epochs: {epochs}"
    assert len(history) == max(epochs)  # the stack runs until its last member stops
    for (net, _), member in zip(alone, members, strict=True):
        for a, b in zip(net.parameters(), member.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_per_member_early_stopping_keeps_each_members_best_and_freezes_stopped_members():
    stack = ModuleStack([nn.Linear(2, 1) for _ in range(2)])
    stopper = EarlyStopping(stack, patience=2)
    with torch.no_grad():
        for step, values in enumerate([[1.0, 1.0], [0.5, 2.0], [0.4, 3.0], [0.6, 4.0], [0.7, 0.1], [0.8, 0.1]]):
            stack.weights["weight"].fill_(step)
            stopped = stopper.step(values, step)
            if stopped:
                break
    # member 1 stopped after step 2 (two steps without improvement): its 0.1 at step 4 comes too late
    assert stopper.best_step.tolist() == [2, 0] and step == 4
    stopper.restore_best()
    assert stack.weights["weight"][:, 0, 0].tolist() == [2.0, 0.0]


def test_stacked_batches_serve_each_members_rows_once_per_epoch():
    members = [(np.arange(n, dtype=np.float32)[:, None] + 1000 * k,) for k, n in enumerate([7, 3, 5])]
    batches = StackedBatches(members, device="cpu", batch_size=2, active=[True, True, False])
    seen = [[] for _ in members]
    for x, weight in batches.iterate(torch.Generator().manual_seed(0)):
        assert x.shape[0] == 3 and weight.shape == x.shape[:2] and x.shape[1] <= 2
        for k in range(3):
            seen[k] += x[k, weight[k] > 0, 0].tolist()
    assert len(batches) == 4
    assert sorted(seen[0]) == list(range(7)) and sorted(seen[1]) == [1000, 1001, 1002]
    assert seen[2] == []  # an inactive member weighs nothing: its gradient is zero


def test_module_stack_refuses_different_architectures():
    with pytest.raises(pk.errors.PerturbkitInputError, match="same"):
        ModuleStack([nn.Linear(2, 1), nn.Linear(3, 1)])


@pytest.mark.parametrize("generator", ["simulate_bulk", "simulate_l1000"])
def test_stacked_folds_match_the_fold_by_fold_run(generator):
    simulate = pk.datasets.simulate_bulk if generator == "simulate_bulk" else simulate_l1000
    adata = simulate(n_drugs=160, n_genes=100, seed=11)
    kwargs = dict(source="PC3", target="MCF7", n_folds=4, seed=3, train_options=SMALL, device="cpu")
    one_by_one = pk.tl.cross_validate_deepcellstate(adata, stack_folds=False, **kwargs)
    stacked = pk.tl.cross_validate_deepcellstate(adata, stack_folds=True, **kwargs)
    pd.testing.assert_frame_equal(one_by_one.drop(columns="pcc"), stacked.drop(columns="pcc"))  # same splits
    assert abs(stacked.pcc.mean() - one_by_one.pcc.mean()) < TOLERANCE
    assert stacked.pcc.mean() > stacked.ridge_pcc.mean()  # it still learns what the ridge map misses


def test_a_stacked_folds_weights_do_not_depend_on_its_test_drugs(monkeypatch):
    adata = pk.datasets.simulate_bulk(n_drugs=80, n_genes=40, n_cell_lines=3, frac_missing=0.1, seed=4)
    profiles = CellDrugProfiles.from_adata(adata, cell_key="cell_line", drug_key="drug", control_key="control")
    candidates = evaluation._paired_candidates(profiles, "PC3", "MCF7")
    fold_of = evaluation.assign_folds(profiles, candidates, n_folds=4, split="drug", seed=0)
    test = candidates[fold_of == 1]
    values = profiles.values.copy()
    values[test] = 1000 * np.abs(values).max() * np.sign(values[test] + 0.5)
    trained = []
    original = evaluation.train_stacked

    def capture(models, *args, **kwargs):
        original(models, *args, **kwargs)
        trained.append(models)

    monkeypatch.setattr(evaluation, "train_stacked", capture)
    options = dict(latent_dim=8, hidden=(32, 16), max_epochs=6, max_rounds=3, batch_size=32)
    for p in (profiles, profiles.with_values(values)):
        evaluation.cross_validate(p, source="PC3", target="MCF7", n_folds=4, folds=[0, 1], stack_folds=True, **options)
    (clean0, clean1), (dirty0, dirty1) = ([m.module.state_dict() for m in run] for run in trained)
    assert all(torch.equal(clean1[k], dirty1[k]) for k in clean1)  # fold 1 never saw its test drugs
    assert not all(torch.equal(clean0[k], dirty0[k]) for k in clean0)  # fold 0 trained on them


def test_stacking_refuses_what_it_cannot_combine():
    adata = pk.datasets.simulate_bulk(n_drugs=40, n_genes=20, seed=0)
    with pytest.raises(pk.errors.PerturbkitInputError, match="n_jobs"):
        pk.tl.cross_validate_deepcellstate(adata, source="PC3", target="MCF7", n_folds=2, stack_folds=True, n_jobs=2)
    with pytest.raises(pk.errors.PerturbkitInputError, match="checkpoint"):
        pk.tl.cross_validate_deepcellstate(
            adata, source="PC3", target="MCF7", n_folds=2, stack_folds=True, train_options={"checkpoint_dir": "x"}
        )


def test_stacked_folds_do_not_read_the_training_signature_at_run_time(monkeypatch):
    """benchmarks/deepcellstate_cv.py wraps DeepCellState.train to count epochs: stacking must still run."""
    from perturbkit.models.deepcellstate import DeepCellState

    train = DeepCellState.train
    monkeypatch.setattr(DeepCellState, "train", lambda self, *args, **kwargs: train(self, *args, **kwargs))
    adata = pk.datasets.simulate_bulk(n_drugs=40, n_genes=20, seed=0)
    options = {"latent_dim": 8, "hidden": (16,), "max_epochs": 2, "max_rounds": 2}
    cv = pk.tl.cross_validate_deepcellstate(
        adata, source="PC3", target="MCF7", n_folds=2, stack_folds=True, train_options=options
    )
    assert cv.pcc.notna().all() and len(cv) > 0
