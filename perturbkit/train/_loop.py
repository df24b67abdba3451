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
from ._distributed import (
    all_reduce_sum,
    broadcast_buffers,
    broadcast_flag,
    broadcast_int,
    ensure_process_group,
    is_main_process,
    rank,
    world_size,
)

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

    A :class:`~perturbkit.train.ModuleStack` of K independent members is monitored member by member: ``step`` then
    takes K values, each member keeps its own best weights (its slice of every stacked tensor) and stops on its own
    (later epochs no longer change its best weights), and training stops when every member has stopped. The members
    end exactly as they would have trained one by one.
    """

    def __init__(self, module: nn.Module, *, patience: int | None = 5, min_delta: float = 0.0):
        self.module = module
        self.patience = patience
        self.min_delta = min_delta
        members = getattr(module, "n_members", None)
        self.members = None if members is None else int(members)
        self.best = math.inf if members is None else np.full(members, math.inf)
        self.best_step = -1 if members is None else np.full(members, -1)
        self.steps_without_improvement = 0 if members is None else np.zeros(members, dtype=int)
        self._best_state: dict[str, torch.Tensor] | None = None

    def step(self, value, step: int) -> bool:
        """Record ``value`` (K values for a module stack); return True when training should stop."""
        if self.members is not None:
            return self._step_members(np.asarray(value, dtype=float).reshape(self.members), step)
        if value < self.best - self.min_delta:
            self.best = value
            self.best_step = step
            self.steps_without_improvement = 0
            self._best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        else:
            self.steps_without_improvement += 1
        return self.patience is not None and self.steps_without_improvement >= self.patience

    def _step_members(self, values: np.ndarray, step: int) -> bool:
        running = self.patience is None or self.steps_without_improvement < self.patience
        improved = running & (values < self.best - self.min_delta)
        if improved.any():
            state = self.module.state_dict()
            if self._best_state is None:
                self._best_state = {k: v.detach().clone() for k, v in state.items()}
            else:
                rows = torch.as_tensor(np.flatnonzero(improved))
                for key, value in state.items():
                    self._best_state[key][rows.to(value.device)] = value.detach()[rows.to(value.device)]
            self.best = np.where(improved, values, self.best)
            self.best_step = np.where(improved, step, self.best_step)
        self.steps_without_improvement = np.where(improved, 0, self.steps_without_improvement + running)
        return self.patience is not None and not (self.steps_without_improvement < self.patience).any()

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
        if self.members is None:
            self.best, self.best_step = float(state["best"]), int(state["best_step"])
            self.steps_without_improvement = int(state["steps_without_improvement"])
        else:
            self.best, self.best_step = np.asarray(state["best"]), np.asarray(state["best_step"])
            self.steps_without_improvement = np.asarray(state["steps_without_improvement"])
        self._best_state = state["best_state"]


class Batches:
    """Aligned tensors served in (shuffled) minibatches.

    Data smaller than ``pk.settings.max_device_bytes`` is moved to the device once; larger data stays on the CPU
    and each batch is copied over.

    In a distributed run (``world_size`` processes), every rank shuffles with the same generator and takes its share
    of each *global* batch of ``batch_size × world_size`` rows, so the ranks together see exactly the batches one
    process would see with the combined batch size. A last global batch too small to give every rank a row (two
    rows with ``avoid_single_row_batch``) is left out of the epoch, so every rank takes the same number of steps.
    """

    def __init__(
        self,
        arrays: Sequence,
        *,
        device: torch.device,
        batch_size: int | None,
        avoid_single_row_batch: bool = False,
        rank: int = 0,
        world_size: int = 1,
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
        self.rank, self.world_size = int(rank), int(world_size)
        self.min_rows = 2 if avoid_single_row_batch else 1  # rows each rank needs in a batch
        if batch_size is None:
            self.batch_size = max(1, math.ceil(self.n / self.world_size))
        else:
            self.batch_size = max(1, min(int(batch_size), self.n))
        one_row_left = self.n > self.batch_size and self.n % self.batch_size == 1
        if self.world_size == 1 and avoid_single_row_batch and one_row_left:
            self.batch_size += 1  # batch norm cannot train on a last batch of one row

    @property
    def global_batch_size(self) -> int:
        """Rows of one optimisation step over all ranks."""
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        if self.world_size == 1:
            return math.ceil(self.n / self.batch_size)
        full, rest = divmod(self.n, self.global_batch_size)
        return full + int(rest >= self.min_rows * self.world_size)

    def iterate(self, generator: torch.Generator | None = None):
        if generator is None:
            order = None
        else:
            order = torch.randperm(self.n, generator=generator)
            if self.on_device:
                order = order.to(self.device)
        step = self.global_batch_size
        for k in range(len(self)):
            start, stop = k * step, min((k + 1) * step, self.n)
            if self.world_size > 1:  # this rank's share of the global batch (sizes differ by at most one row)
                size, extra = divmod(stop - start, self.world_size)
                start += self.rank * size + min(self.rank, extra)
                stop = start + size + int(self.rank < extra)
            if order is None:
                batch = tuple(t[start:stop] for t in self.tensors)
            else:
                idx = order[start:stop]
                batch = tuple(t[idx] for t in self.tensors)
            if not self.on_device:
                batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
            yield batch


def is_batch_source(data) -> bool:
    """Whether ``data`` serves its own batches (the :class:`Batches` interface) rather than being arrays.

    A batch source has ``n`` (rows), ``batch_size``, ``__len__`` (batches per epoch, the same on every rank of a
    distributed run) and ``iterate(generator)``, which yields tuples of tensors (``generator=None``: in order, no
    shuffling). The loop moves each batch to the training device. :class:`Batches` (arrays in memory) and
    :class:`~perturbkit.train.StreamedBatches` (a store on disk) are the two kinds.
    """
    return hasattr(data, "iterate") and hasattr(data, "batch_size") and hasattr(data, "n")


def _on_device(batch: tuple, device) -> tuple:
    """``batch``'s tensors on ``device`` (a no-op for tensors already there, or when ``device`` is None)."""
    if device is None:
        return batch
    return tuple(t if t.device == device else t.to(device, non_blocking=True) for t in batch)


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

    The same call trains in one process or in several: under ``torchrun`` (``WORLD_SIZE`` > 1) it joins the process
    group (NCCL on CUDA, gloo on CPU), each rank takes its share of every batch (``batch_size`` rows per rank), the
    losses run through :class:`~torch.nn.parallel.DistributedDataParallel`, which averages the gradients, the
    epoch's losses are summed over the ranks, rank 0 decides early stopping and alone shows the progress bar, and
    batch norm statistics are copied from rank 0 after every epoch. ``pk.settings.precision`` (bfloat16 / float16
    autocast) and ``pk.settings.compile`` (``torch.compile`` of the losses) change how each step is computed. The
    epoch's loss sums stay on the device and are read once per epoch.

    Parameters
    ----------
    module
        The network; it is moved to ``device`` and left there.
    objectives
        One :class:`Objective` per optimiser (one for most models, two for adversarial training).
    train, validation
        Tuples of aligned arrays or tensors (rows = samples), or batch sources that serve their own batches (a
        :class:`~perturbkit.train.StreamedBatches` reading a store on disk). ``validation`` drives early stopping:
        the best epoch's weights are restored at the end. Without it, the training loss is monitored.
    validation_loss
        Loss to monitor on ``validation`` (default: the first objective's loss), evaluated in eval mode. Without
        validation data the first objective's training loss is monitored.
    max_epochs
        Most epochs to train (a positive integer).
    batch_size
        Minibatch size per process (a positive integer); ``None`` trains on the whole set at once.
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
    distributed = ensure_process_group(device)
    this_rank, n_ranks = (rank(), world_size()) if distributed else (0, 1)
    if is_batch_source(train):  # e.g. a StreamedBatches reading a store on disk (it shards itself by rank)
        train_batches = train
    else:
        train_batches = Batches(
            train if isinstance(train, (tuple, list)) else (train,),
            device=device,
            batch_size=batch_size,
            avoid_single_row_batch=avoid_single_row_batch,
            rank=this_rank,
            world_size=n_ranks,
        )
    val_batches = _validation_batches(
        validation, device=device, batch_size=max(train_batches.batch_size, 4096), rank=this_rank, world=n_ranks
    )
    monitor_loss = validation_loss or objectives[0].loss
    optimizers = [obj.make_optimizer() for obj in objectives]
    steps = TrainingSteps(module, objectives, optimizers, device=device, distributed=distributed)
    # without a seed, draw the shuffling seed from the (already seeded or not) global RNG: never reseed it
    shuffle_seed = int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item())
    if distributed:  # every rank must shuffle alike, so rank 0's draw is used everywhere
        shuffle_seed = int(broadcast_int(shuffle_seed, device))
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
    show = (settings.progress_bar if progress is None else progress) and is_main_process()

    from tqdm.auto import tqdm

    bar = tqdm(range(first_epoch, max_epochs), desc=stage, disable=not show, leave=False)
    epoch, monitored = first_epoch, math.nan
    try:
        for epoch in bar:
            monitored = _train_epoch(
                steps, train_batches, val_batches, monitor_loss, generator, history, stage=stage, epoch=epoch
            )
            first_monitored = monitored if first_monitored is None else first_monitored
            bar.set_postfix(loss=f"{float(np.mean(monitored)):.4g}")
            # every rank tracks the best weights (all see the same all-reduced loss); rank 0 decides when to stop
            stop = broadcast_flag(stopper.step(monitored, epoch), device)
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


def _validation_batches(validation, *, device, batch_size: int, rank: int, world: int):
    """The validation data as batches; in a distributed run each rank takes a contiguous share (possibly none)."""
    if validation is None or is_batch_source(validation):
        return validation
    validation = validation if isinstance(validation, (tuple, list)) else (validation,)
    if not (len(validation) and len(validation[0])):
        return None
    if world == 1:
        return Batches(validation, device=device, batch_size=batch_size)
    rows = np.array_split(np.arange(len(validation[0])), world)[rank]
    share = Batches([a[rows] for a in validation], device=device, batch_size=batch_size) if len(rows) else None
    return _ShardedValidation(share)


@dataclass
class _ShardedValidation:
    """One rank's share of the validation data (``batches`` None when it has no rows); losses are all-reduced."""

    batches: Batches | None
    sharded = True

    def iterate(self, generator=None):
        return iter(()) if self.batches is None else self.batches.iterate(generator)

    @property
    def device(self):
        return None if self.batches is None else self.batches.device


class _ObjectiveLosses(nn.Module):
    """The objectives' losses as one module, so that DistributedDataParallel can wrap them.

    Losses call the network's own methods (``encode``, ``decode``, a discriminator...), not just its ``forward``;
    wrapping the module *and* the loss lets DDP see every parameter a loss uses and all-reduce its gradients.
    """

    def __init__(self, module: nn.Module, losses: Sequence[LossFunction]):
        super().__init__()
        self.module = module
        self._losses = list(losses)

    def forward(self, index: int, batch: tuple) -> dict[str, torch.Tensor]:
        return self._losses[index](batch)


class TrainingSteps:
    """One optimisation step of every objective on a batch: autocast, loss scaling, DDP and ``torch.compile``.

    ``pk.settings.precision`` chooses float32 or bfloat16/float16 autocast (float16 with a gradient scaler);
    ``pk.settings.compile`` compiles the losses with ``torch.compile``. In a distributed run the losses run through
    :class:`~torch.nn.parallel.DistributedDataParallel`, which averages the gradients over the ranks.
    """

    def __init__(self, module, objectives, optimizers, *, device: torch.device, distributed: bool):
        self.module, self.objectives, self.optimizers, self.device = module, objectives, optimizers, device
        self.distributed = distributed
        self.prefixes = ["" if len(objectives) == 1 else f"{o.name}_" for o in objectives]
        losses = _ObjectiveLosses(module, [o.loss for o in objectives])
        if distributed:
            from torch.nn.parallel import DistributedDataParallel

            losses = DistributedDataParallel(
                losses,
                device_ids=[device.index] if device.type == "cuda" and device.index is not None else None,
                find_unused_parameters=len(objectives) > 1 or _has_untrained_parameters(optimizers, module),
            )
        self.losses = torch.compile(losses) if settings.compile else losses
        precision = settings.precision
        self.autocast_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "float16")

    def run(self, batch: tuple) -> dict[str, torch.Tensor]:
        """Take every objective's step on ``batch``; return the detached loss terms (on the device)."""
        terms = {}
        for index, (prefix, optimizer) in enumerate(zip(self.prefixes, self.optimizers, strict=True)):
            optimizer.zero_grad(set_to_none=True)
            if self.autocast_dtype is None:
                losses = self.losses(index, batch)
            else:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    losses = self.losses(index, batch)
            loss = losses["loss"]
            # a module stack's loss has one value per member: their sum gives each member its own gradient
            self.scaler.scale(loss.sum() if loss.ndim else loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
            for key, value in losses.items():
                terms[prefix + key] = value.detach()
        return terms


def _has_untrained_parameters(optimizers, module) -> bool:
    """Whether some trainable parameter of ``module`` is in no optimiser (DDP must then expect unused ones)."""
    trained = {id(p) for o in optimizers for group in o.param_groups for p in group["params"]}
    return any(p.requires_grad and id(p) not in trained for p in module.parameters())


def _train_epoch(steps, train_batches, val_batches, monitor_loss, generator, history, *, stage: str, epoch: int):
    """One pass over the training batches; appends the epoch's record and returns the monitored loss.

    The loss terms are summed on the device and read once per epoch (a read per batch would make a GPU wait for
    every step); in a distributed run the sums are added over the ranks.
    """
    steps.module.train()
    sums = _RowWeightedSums(steps.device)
    device = getattr(train_batches, "device", None)
    for batch in train_batches.iterate(generator):
        batch = _on_device(batch, device)
        sums.add(steps.run(batch), batch[0].shape[0])
    if steps.distributed:
        broadcast_buffers(steps.module)
    values = {f"train_{k}": v for k, v in sums.means().items()}
    if val_batches is not None:
        values.update({f"validation_{k}": v for k, v in evaluate(steps.module, monitor_loss, val_batches).items()})
        monitored = values["validation_loss"]
    else:
        first = "loss" if len(steps.objectives) == 1 else f"{steps.objectives[0].name}_loss"
        monitored = values[f"train_{first}"]
    # a module stack's terms have one value per member: the record keeps their mean, early stopping each member's
    history.append({"stage": stage, "epoch": epoch, **{k: float(np.mean(v)) for k, v in values.items()}})
    if not np.isfinite(monitored).all():
        raise FloatingPointError(
            f"{stage}: the loss became {monitored} at epoch {epoch}. Lower the learning rate, check the data "
            f"for extreme values (pk.pp.scale), or try another seed."
        )
    return monitored


class _RowWeightedSums:
    """Row-weighted sums of loss terms, kept on the device in float64 and read once (summed over ranks if sharded)."""

    def __init__(self, device):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.rows = 0

    def add(self, terms: dict[str, torch.Tensor], n: int) -> None:
        for key, value in terms.items():
            term = torch.as_tensor(value, device=self.device).detach().to(torch.float64) * n
            self.sums[key] = term if key not in self.sums else self.sums[key] + term
        self.rows += n

    def means(self, *, across_ranks: bool = True) -> dict[str, float | np.ndarray]:
        """Each term's row-weighted mean: a float, or an array for a module stack's per-member terms."""
        keys = list(self.sums)
        rows = torch.tensor([float(self.rows)], dtype=torch.float64, device=self.device)
        totals = torch.cat([*(self.sums[k].reshape(-1) for k in keys), rows])
        if across_ranks:
            totals = all_reduce_sum(totals)
        values = totals.cpu().numpy()  # the one read from the device
        rows = values[-1]
        out, start = {}, 0
        for key in keys:
            size = self.sums[key].numel()
            mean = values[start : start + size] / rows if rows else np.full(size, math.nan)
            out[key] = float(mean[0]) if self.sums[key].ndim == 0 else mean
            start += size
        return out


#: A last epoch's monitored loss more than this many times above the first epoch's, or the best epoch's, means the
#: optimisation ran away (too high a learning rate), even when it never became NaN.
DIVERGENCE_FACTOR = 10.0


def _warn_if_diverged(stage: str, first: float | None, stopper: EarlyStopping, last: float) -> None:
    if first is None or not stopper.has_best or np.ndim(last) or not math.isfinite(last):
        return  # (a module stack's members are not checked one by one)
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
def evaluate(module: nn.Module, loss: LossFunction, batches) -> dict[str, float]:
    """Row-weighted mean of each loss component over all batches, in eval mode.

    Validation shared out over the ranks of a distributed run is summed over them, so every rank gets the same values.
    """
    was_training = module.training
    module.eval()
    device = next((p.device for p in module.parameters()), None) or getattr(batches, "device", None)
    sums = _RowWeightedSums(device if device is not None else torch.device("cpu"))
    for batch in batches.iterate(None):
        batch = _on_device(batch, getattr(batches, "device", None))
        sums.add(loss(batch), batch[0].shape[0])
    module.train(was_training)
    return sums.means(across_ranks=getattr(batches, "sharded", False))


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
