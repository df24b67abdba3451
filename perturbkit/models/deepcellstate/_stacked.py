"""K DeepCellState models (e.g. the folds of a cross-validation) trained together as one stacked network.

Each member keeps its own data, drug split, scaler, ridge maps, shuffling and early stopping; the stages are those
of :meth:`DeepCellState.train`, run in lock step so that one vectorised step trains every member at once
(:class:`~perturbkit.train.ModuleStack`). Small networks leave a GPU idle; stacking the folds fills it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import torch

from ..._schema import PerturbkitInputError
from ..._settings import seeded
from ...train import EarlyStopping, History, ModuleStack, Objective, StackedBatches, fit
from .._profiles import CellDrugProfiles
from ._model import DeepCellState, _pretrain_epochs
from ._module import deepcellstate_loss


def _stacked_loss(stack: ModuleStack, *, cell, l1: float, frozen_encoder: bool = False, cells=None):
    """The stack's loss on a ``(x, y, [linear,] weight)`` batch: one value per member.

    ``cells`` (one decoder position per member) lets every member train its own cell line's decoder in the same
    step: each member's chosen decoder weights are gathered into decoder slot 0 (gradients flow back to the
    chosen slots alone).
    """

    def loss(batch):
        *arrays, weight = batch
        x, y = arrays[0], arrays[1]
        linear = arrays[2] if len(arrays) > 2 else None
        replace, use = None, cell
        if cells is not None:
            weights = stack.stacked_parameters()
            replace = {
                name: torch.stack([weights[f"decoders.{c}.{name.split('.', 2)[2]}"][k] for k, c in enumerate(cells)])
                for name in weights
                if name.startswith("decoders.0.")
            }
            use = 0

        def member(net, x, y, linear, weight):
            return deepcellstate_loss(net, x, y, linear, weight, cell=use, l1=l1, frozen_encoder=frozen_encoder)

        return stack.map(member, x, y, linear, weight, replace=replace)

    return loss


#: :meth:`DeepCellState.train`'s options that a stack takes, with their defaults (read once from its signature): all
#: but checkpoints, resuming, the scaler choice and the per-model seed and decoder choice (given to
#: :func:`train_stacked` itself)
STACKED_DEFAULTS = {
    name: parameter.default
    for name, parameter in list(inspect.signature(DeepCellState.train).parameters.items())[2:]
    if name not in ("tune_decoders", "seed", "fit_scaler", "checkpoint_dir", "checkpoint_every", "resume")
}
STACKED_OPTIONS = tuple(STACKED_DEFAULTS)


def _options(given: dict) -> SimpleNamespace:
    """``given`` over :meth:`DeepCellState.train`'s defaults."""
    unknown = set(given) - set(STACKED_OPTIONS)
    if unknown:
        raise PerturbkitInputError(
            f"option(s) {sorted(unknown)} cannot be used with stacked folds; they take {list(STACKED_OPTIONS)}."
        )
    return SimpleNamespace(**{**STACKED_DEFAULTS, **given})


def train_stacked(
    models: Sequence[DeepCellState],
    profiles: Sequence[CellDrugProfiles],
    *,
    seeds: Sequence[int],
    tune_decoders=None,
    **options,
) -> None:
    """Train ``models[k]`` on ``profiles[k]`` (with ``seeds[k]``'s drug split and cell-line order), all at once.

    The same stages as :meth:`DeepCellState.train`, with its options (``STACKED_OPTIONS``) and defaults. The
    members share one shuffling and dropout stream (seeded by ``seeds[0]``), so a member's numbers differ from its
    one-by-one run as another seed's would; an epoch lasts as long as the member with the most rows needs (the
    others' padding rows weigh 0). The models must share genes, cell lines and options.
    """
    o = _options(options)
    models, profiles, seeds = list(models), list(profiles), [int(s) for s in seeds]
    if not (len(models) == len(profiles) == len(seeds)) or not models:
        raise PerturbkitInputError("train_stacked needs one profiles set and one seed per model.")

    def architecture(model):
        return tuple(model.var_names), repr({k: v for k, v in model.hparams.items() if k != "seed"})

    if len({architecture(m) for m in models}) != 1:
        raise PerturbkitInputError("stacked models must share genes, cell lines and options.")
    device, l1 = models[0].device, models[0].hparams["l1"]
    history = History()
    for model in models:
        model.history = history  # the stack's record: each value is the mean over the members
    with seeded(seeds[0]):
        splits = [
            m._split_scaled(p, validation_fraction=o.validation_fraction, seed=s, fit_scaler=True)
            for m, p, s in zip(models, profiles, seeds, strict=True)
        ]
        trains, vals = [s[0] for s in splits], [s[1] for s in splits]
        decoders = splits[0][2]
        has_val = all(len(v.drugs) > 0 for v in vals)
        common = dict(batch_size=o.batch_size, device=device, seed=None, history=history)

        if o.pretrain:
            stack = ModuleStack([m.module for m in models]).to(device)
            rows = [t.values[t.present] for t in trains]
            validation = [(v.values[v.present],) * 2 for v in vals]
            fit(
                stack,
                Objective(
                    _stacked_loss(stack, cell=None, l1=l1),
                    stack.stacked_parameters(["encoder", "pretrain_decoder"]).values(),
                    lr=o.lr,
                ),
                StackedBatches([(x, x) for x in rows], device=device, batch_size=o.batch_size),
                validation=StackedBatches(validation, device=device, batch_size=None) if has_val else None,
                max_epochs=_pretrain_epochs(max(map(len, rows)), o.batch_size, o.max_epochs, o.pretrain_steps),
                patience=o.patience,
                stage="pretrain",
                **common,
            )
            stack.write_back()
            for model in models:
                model.module.copy_pretrained_decoder(decoders)
        if models[0]._uses_ridge_path():
            for model, train in zip(models, trains, strict=True):
                model._fit_linear_maps(train, decoders)

        pairs = [
            [m._with_linear(cell, *train.pairs(t)[:2]) for t, cell in enumerate(decoders)]
            for m, train in zip(models, trains, strict=True)
        ]
        monitored = vals if has_val else trains
        _rounds(
            models,
            pairs,
            monitored,
            decoders,
            [np.random.default_rng(s) for s in seeds],
            lr=o.lr,
            patience=o.patience if o.round_patience is None else o.round_patience,
            epochs_per_round=o.epochs_per_round,
            max_rounds=o.max_rounds,
            common=common,
        )

        fine_tune_epochs = o.max_epochs if o.decoder_epochs is None else o.decoder_epochs
        tuned = None if tune_decoders is None else {models[0].cell_index(str(c)) for c in tune_decoders}
        for t, cell in enumerate(decoders):
            if fine_tune_epochs == 0 or (tuned is not None and cell not in tuned):
                continue
            train_rows = [p[t] for p in pairs]
            if not any(len(r[0]) for r in train_rows):
                continue
            stack = ModuleStack([m.module for m in models]).to(device)
            validation = [m._with_linear(cell, *v.pairs(t)[:2]) for m, v in zip(models, vals, strict=True)]
            fit(
                stack,
                Objective(
                    _stacked_loss(stack, cell=cell, l1=l1, frozen_encoder=True),
                    stack.stacked_parameters([f"decoders.{cell}"]).values(),
                    lr=o.decoder_lr,
                ),
                StackedBatches(train_rows, device=device, batch_size=o.batch_size),
                validation=(
                    StackedBatches(validation, device=device, batch_size=None)
                    if all(len(v[0]) for v in validation)
                    else None
                ),
                max_epochs=fine_tune_epochs,
                patience=o.patience,
                stage=f"decoder: {models[0].cell_lines[cell]}",
                **common,
            )
            stack.write_back()
    for model in models:
        model.module.eval()


def _rounds(models, pairs, monitored, decoders, rngs, *, lr, patience, epochs_per_round, max_rounds, common):
    """Stage 2 in lock step: each member visits the cell lines in its own shuffled order and stops on its own."""
    stoppers = [EarlyStopping(m.module, patience=patience) for m in models]
    for model, stopper, data in zip(models, stoppers, monitored, strict=True):
        stopper.step(model._validation_mse(data, decoders), -1)
    running = np.ones(len(models), dtype=bool)
    stack = ModuleStack([m.module for m in models]).to(common["device"])
    l1 = models[0].hparams["l1"]
    for round_ in range(max_rounds):
        orders = [rng.permutation(len(decoders)) if run else None for rng, run in zip(rngs, running, strict=True)]
        for step in range(len(decoders)):
            chosen = [0 if order is None else int(order[step]) for order in orders]
            batch_rows = [p[t] for p, t in zip(pairs, chosen, strict=True)]
            active = running & np.array([len(r[0]) > 0 for r in batch_rows])
            if not active.any():
                continue
            fit(
                stack,
                Objective(
                    _stacked_loss(stack, cell=0, l1=l1, cells=[decoders[t] for t in chosen]),
                    stack.stacked_parameters(["encoder", "decoders"]).values(),
                    lr=lr,
                ),
                StackedBatches(batch_rows, device=common["device"], batch_size=common["batch_size"], active=active),
                max_epochs=epochs_per_round,
                patience=None,
                stage=f"round {round_}",
                **common,
            )
        stack.write_back()
        for k in np.flatnonzero(running):
            value = models[k]._validation_mse(monitored[k], decoders)
            if stoppers[k].step(value, round_):
                running[k] = False
        common["history"].append(
            {"stage": "rounds", "epoch": round_, "validation_loss": float(np.mean([s.best for s in stoppers]))}
        )
        if not running.any():
            break
    for stopper in stoppers:
        stopper.restore_best()
