"""The one training loop every perturbkit model uses."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .._schema import EmptyGroupError, PerturbkitInputError, check_positive_int
from .._settings import resolve_device, seeded, settings
from ._checkpoint import TrainingInterrupted, TrainingRun

LossFunction = Callable[[tuple[torch.Tensor, ...]], dict[str, torch.Tensor]]


@dataclass
class Objective:
    """One optimiser and the loss it minimises.

    ``loss(batch)`` takes the tuple of batch tensors and returns a dict of scalar tensors whose ``"loss"`` entry is
    minimised; the other entries are logged. Several objectives (e.g. a GAN's discriminator and generator) each take
    a step on every batch, in order.
    """

    loss: LossFunction
    parameters: Iterable[nn.Parameter]
    lr: float = 1e-3
    weight_decay: float = 0.0
    name: str = "model"

    def make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters if p.requires_grad]
        if not params:
            raise PerturbkitInputError(
                f"objective {self.name!r} has no trainable parameters; give it the parameters it should train."
            )
        # the fused kernel is ~25% faster per step on CPU and GPU; it needs floating-point parameters on one device
        fused = all(p.is_floating_point() for p in params) and len({p.device for p in params}) == 1
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, fused=fused or None)


class EarlyStopping:
    """Track the best value of a monitored loss, keep the best weights, and say when to stop.

    ``patience=None`` never stops early but still restores the best weights.
    """

    def __init__(self, module: nn.Module, *, patience: int | None = 5, min_delta: float = 0.0):
        self.module = module
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.best_step = -1
        self.steps_without_improvement = 0
        self._best_state: dict[str, torch.Tensor] | None = None

    def step(self, value: float, step: int) -> bool:
        """Record ``value``; return True when training should stop."""
        if value < self.best - self.min_delta:
            self.best = value
            self.best_step = step
            self.steps_without_improvement = 0
            self._best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        else:
            self.steps_without_improvement += 1
        return self.patience is not None and self.steps_without_improvement >= self.patience

    @property
    def has_best(self) -> bool:
        """Whether any step has been recorded (so there are best weights to restore)."""
        return self._best_state is not None

    def restore_best(self) -> None:
        if self._best_state is not None:
            self.module.load_state_dict(self._best_state)

    def state_dict(self) -> dict:
        """Everything needed to continue tracking after a resume (the best weights included)."""
        return {
            "best": self.best,
            "best_step": self.best_step,
            "steps_without_improvement": self.steps_without_improvement,
            "best_state": self._best_state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step = float(state["best"]), int(state["best_step"])
        self.steps_without_improvement = int(state["steps_without_improvement"])
        self._best_state = state["best_state"]


class Batches:
    """Aligned tensors served in (shuffled) minibatches.

    Data smaller than ``pk.settings.max_device_bytes`` is moved to the device once; larger data stays on the CPU
    and each batch is copied over.
    """

    def __init__(
        self, arrays: Sequence, *, device: torch.device, batch_size: int | None, avoid_single_row_batch: bool = False
    ):
        tensors = tuple(_as_tensor(a) for a in arrays)
        n = {t.shape[0] for t in tensors}
        if len(n) != 1:
            raise PerturbkitInputError(
                f"training arrays have different numbers of rows: {sorted(n)}; give one row per sample in each."
            )
        self.n = n.pop()
        if self.n == 0:
            raise EmptyGroupError(
                "no training rows: the data (after splitting off validation) is empty. Pass more rows, or a smaller "
                "validation_fraction."
            )
        self.device = device
        nbytes = sum(t.element_size() * t.nelement() for t in tensors)
        self.on_device = nbytes <= settings.max_device_bytes
        if self.on_device:
            tensors = tuple(t.to(device) for t in tensors)
        elif device.type == "cuda":
            tensors = tuple(t.pin_memory() for t in tensors)
        self.tensors = tensors
        self.batch_size = self.n if batch_size is None else max(1, min(int(batch_size), self.n))
        if avoid_single_row_batch and self.n > self.batch_size and self.n % self.batch_size == 1:
            self.batch_size += 1  # batch norm cannot train on a last batch of one row

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def iterate(self, generator: torch.Generator | None = None):
        if generator is None:
            order = None
        else:
            order = torch.randperm(self.n, generator=generator)
            if self.on_device:
                order = order.to(self.device)
        for start in range(0, self.n, self.batch_size):
            if order is None:
                batch = tuple(t[start : start + self.batch_size] for t in self.tensors)
            else:
                idx = order[start : start + self.batch_size]
                batch = tuple(t[idx] for t in self.tensors)
            if not self.on_device:
                batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
            yield batch


def _as_tensor(array) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array
    array = np.asarray(array)
    if array.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if array.dtype.kind == "b":
        return torch.from_numpy(np.ascontiguousarray(array))
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))


@dataclass
class History:
    """Per-epoch records of one or several :func:`fit` calls (``to_frame()`` for a DataFrame)."""

    records: list[dict] = field(default_factory=list)

    def append(self, record: dict) -> None:
        self.records.append(record)

    def extend(self, other: History) -> None:
        self.records.extend(other.records)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame.from_records(self.records)

    def __len__(self) -> int:
        return len(self.records)


def fit(
    module: nn.Module,
    objectives: Objective | Sequence[Objective],
    train: Sequence,
    *,
    validation: Sequence | None = None,
    validation_loss: LossFunction | None = None,
    max_epochs: int = 100,
    batch_size: int | None = 128,
    patience: int | None = 5,
    min_delta: float = 0.0,
    device="auto",
    seed: int | None = 0,
    stage: str = "train",
    history: History | None = None,
    progress: bool | None = None,
    avoid_single_row_batch: bool = False,
    checkpoint: TrainingRun | None = None,
) -> History:
    """Train ``module`` by minimising each objective's loss over minibatches of ``train``.

    Parameters
    ----------
    module
        The network; it is moved to ``device`` and left there.
    objectives
        One :class:`Objective` per optimiser (one for most models, two for adversarial training).
    train, validation
        Tuples of aligned arrays or tensors (rows = samples). ``validation`` drives early stopping: the best
        epoch's weights are restored at the end. Without it, the training loss is monitored.
    validation_loss
        Loss to monitor on ``validation`` (default: the first objective's loss), evaluated in eval mode. Without
        validation data the first objective's training loss is monitored.
    max_epochs
        Most epochs to train (a positive integer).
    batch_size
        Minibatch size (a positive integer); ``None`` trains on the whole set at once.
    patience
        Epochs without improvement before stopping; ``None`` runs all ``max_epochs``.
    seed
        Seeds the generators for this call only, so CPU runs are bitwise reproducible; the global generators are
        restored afterwards. ``None`` draws from the global generators.
    stage
        Label stored in each history record (useful for staged training).
    progress
        Show a tqdm bar (default ``pk.settings.progress_bar``).
    avoid_single_row_batch
        Raise the batch size by one when it would leave a last batch of one row (models with batch norm).
    checkpoint
        The model's :class:`TrainingRun`: checkpoints every few epochs and continues a resumed stage.

    Returns
    -------
    The :class:`History`, extended in place when one is passed.

    Raises
    ------
    TrainingInterrupted
        On Ctrl-C, after the best weights so far are restored and the module is put in eval mode.
    """
    check_positive_int(max_epochs, "max_epochs")
    check_positive_int(batch_size, "batch_size", allow_none=True)  # None: the whole set at once
    resuming = checkpoint is not None and checkpoint.resumes(stage)
    with seeded(None if resuming else seed):  # a resumed stage continues from the checkpoint's generator states
        return _fit(
            module,
            objectives,
            train,
            validation=validation,
            validation_loss=validation_loss,
            max_epochs=max_epochs,
            batch_size=batch_size,
            patience=patience,
            min_delta=min_delta,
            device=device,
            seed=seed,
            stage=stage,
            history=history,
            progress=progress,
            avoid_single_row_batch=avoid_single_row_batch,
            checkpoint=checkpoint,
        )


def _fit(
    module,
    objectives,
    train,
    *,
    validation,
    validation_loss,
    max_epochs,
    batch_size,
    patience,
    min_delta,
    device,
    seed,
    stage,
    history,
    progress,
    avoid_single_row_batch,
    checkpoint,
) -> History:
    objectives = [objectives] if isinstance(objectives, Objective) else list(objectives)
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    history = History() if history is None else history
    module.to(device)
    train_batches = Batches(
        train if isinstance(train, (tuple, list)) else (train,),
        device=device,
        batch_size=batch_size,
        avoid_single_row_batch=avoid_single_row_batch,
    )
    val_batches = None
    if validation is not None:
        validation = validation if isinstance(validation, (tuple, list)) else (validation,)
        if len(validation) and len(validation[0]):
            val_batches = Batches(validation, device=device, batch_size=max(train_batches.batch_size, 4096))
    monitor_loss = validation_loss or objectives[0].loss
    optimizers = [obj.make_optimizer() for obj in objectives]
    # without a seed, draw the shuffling seed from the (already seeded or not) global RNG: never reseed it
    shuffle_seed = int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item())
    generator = torch.Generator().manual_seed(shuffle_seed)
    stopper = EarlyStopping(module, patience=patience, min_delta=min_delta)
    first_epoch, first_monitored = 0, None
    saved = checkpoint.resume_state(stage) if checkpoint is not None else None
    if saved is not None:
        for optimizer, state in zip(optimizers, saved["optimizers"], strict=False):
            optimizer.load_state_dict(state)
        stopper.load_state_dict(saved["stopper"])
        generator.set_state(saved["generator"])
        first_epoch, first_monitored = int(saved["epoch"]) + 1, saved["first_monitored"]
    show = settings.progress_bar if progress is None else progress

    from tqdm.auto import tqdm

    bar = tqdm(range(first_epoch, max_epochs), desc=stage, disable=not show, leave=False)
    epoch, monitored = first_epoch, math.nan
    try:
        for epoch in bar:
            monitored = _train_epoch(
                module,
                objectives,
                optimizers,
                train_batches,
                val_batches,
                monitor_loss,
                generator,
                history,
                stage=stage,
                epoch=epoch,
            )
            first_monitored = monitored if first_monitored is None else first_monitored
            bar.set_postfix(loss=f"{monitored:.4g}")
            stop = stopper.step(monitored, epoch)
            if checkpoint is not None:
                checkpoint.epoch_done(
                    stage,
                    epoch,
                    lambda epoch=epoch, first_monitored=first_monitored: {
                        "epoch": epoch,
                        "first_monitored": first_monitored,
                        "stopper": stopper.state_dict(),
                        "optimizers": [o.state_dict() for o in optimizers],
                        "generator": generator.get_state(),
                    },
                )
            if stop:
                break
    except KeyboardInterrupt:
        bar.close()
        stopper.restore_best()
        module.eval()
        raise TrainingInterrupted(stage, epoch, stopper.best_step if stopper.has_best else None) from None
    bar.close()
    stopper.restore_best()
    module.eval()
    _warn_if_diverged(stage, first_monitored, stopper, monitored)
    return history


def _train_epoch(
    module,
    objectives,
    optimizers,
    train_batches,
    val_batches,
    monitor_loss,
    generator,
    history,
    *,
    stage: str,
    epoch: int,
) -> float:
    """One pass over the training batches; appends the epoch's record and returns the monitored loss."""
    module.train()
    sums: dict[str, float] = {}
    for batch in train_batches.iterate(generator):
        n = batch[0].shape[0]
        for objective, optimizer in zip(objectives, optimizers, strict=True):
            optimizer.zero_grad(set_to_none=True)
            losses = objective.loss(batch)
            losses["loss"].backward()
            optimizer.step()
            prefix = "" if len(objectives) == 1 else f"{objective.name}_"
            for key, value in losses.items():
                sums[prefix + key] = sums.get(prefix + key, 0.0) + float(value.detach()) * n
    record = {"stage": stage, "epoch": epoch, **{f"train_{k}": v / train_batches.n for k, v in sums.items()}}
    if val_batches is not None:
        record.update({f"validation_{k}": v for k, v in evaluate(module, monitor_loss, val_batches).items()})
        monitored = record["validation_loss"]
    else:
        first = "loss" if len(objectives) == 1 else f"{objectives[0].name}_loss"
        monitored = record[f"train_{first}"]
    history.append(record)
    if not math.isfinite(monitored):
        raise FloatingPointError(
            f"{stage}: the loss became {monitored} at epoch {epoch}. Lower the learning rate, check the data "
            f"for extreme values (pk.pp.scale), or try another seed."
        )
    return monitored


#: A last epoch's monitored loss more than this many times above the first epoch's, or the best epoch's, means the
#: optimisation ran away (too high a learning rate), even when it never became NaN.
DIVERGENCE_FACTOR = 10.0


def _warn_if_diverged(stage: str, first: float | None, stopper: EarlyStopping, last: float) -> None:
    if first is None or not stopper.has_best or not math.isfinite(last):
        return
    scale = max(abs(first), 1e-12)
    above_first = last - first > DIVERGENCE_FACTOR * scale
    above_best = last - stopper.best > DIVERGENCE_FACTOR * max(abs(stopper.best), 1e-12)
    if above_first or above_best:
        warnings.warn(
            f"{stage}: training diverged: the monitored loss ended at {last:.4g}, against {first:.4g} after the first "
            f"epoch and a best of {stopper.best:.4g} (epoch {stopper.best_step}, whose weights were restored). "
            f"Lower the learning rate (lr=), or check the data for extreme values.",
            UserWarning,
            stacklevel=4,
        )


@torch.no_grad()
def evaluate(module: nn.Module, loss: LossFunction, batches: Batches) -> dict[str, float]:
    """Row-weighted mean of each loss component over all batches, in eval mode."""
    was_training = module.training
    module.eval()
    sums: dict[str, float] = {}
    for batch in batches.iterate(None):
        n = batch[0].shape[0]
        for key, value in loss(batch).items():
            sums[key] = sums.get(key, 0.0) + float(value) * n
    module.train(was_training)
    return {k: v / batches.n for k, v in sums.items()}


def split_indices(
    n: int, *, validation_fraction: float, seed: int = 0, groups=None, strata=None
) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation row indices: the one validation split every model uses.

    With ``groups`` (e.g. drugs), whole groups go to one side; with ``strata`` (e.g. plates), ``validation_fraction``
    of each stratum goes to validation.
    """
    if not 0 <= validation_fraction < 1:
        raise PerturbkitInputError(f"validation_fraction must be in [0, 1), got {validation_fraction}.")
    rng = np.random.default_rng(seed)
    if strata is not None:
        strata = np.asarray([str(s) for s in np.asarray(strata, dtype=object)])
        if len(strata) != n:
            raise PerturbkitInputError(f"stratify labels have {len(strata)} entries for {n} rows; give one per row.")
        is_val = np.zeros(n, dtype=bool)
        for label in np.unique(strata):
            rows = rng.permutation(np.flatnonzero(strata == label))
            is_val[rows[: int(round(len(rows) * validation_fraction))]] = True
        if validation_fraction > 0 and not is_val.any() and n > 1:
            is_val[rng.integers(n)] = True
        return np.flatnonzero(~is_val), np.flatnonzero(is_val)
    if groups is None:
        order = rng.permutation(n)
        n_val = int(round(n * validation_fraction))
        if validation_fraction > 0 and n > 1:
            n_val = max(n_val, 1)
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    groups = np.asarray(groups)
    unique = np.unique(groups)
    chosen = rng.permutation(unique)
    n_val = int(round(len(unique) * validation_fraction))
    if validation_fraction > 0 and len(unique) > 1:
        n_val = max(n_val, 1)
    is_val = np.isin(groups, chosen[:n_val])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
