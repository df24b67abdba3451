"""Several independent copies of one network trained as one: stacked weights, vectorised calls, stacked batches.

Small networks leave a GPU idle. Cross-validation folds (or seeds, or trials) of the same architecture can instead
train together: :class:`ModuleStack` holds the K members' weights stacked along a leading axis and runs a function
of one member on all K at once with :func:`torch.vmap`; :class:`StackedBatches` serves each member its own data,
shuffled by its own permutation, as ``[K, batch, ...]`` tensors with a row-weight mask. :func:`~perturbkit.train.fit`
trains a stack like any module: a loss that returns one value per member (a ``[K]`` vector) has their sum
minimised, which gives every member exactly its own gradient, and early stopping is decided member by member.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .._schema import EmptyGroupError, PerturbkitInputError, check_positive_int


def _flat(name: str) -> str:
    return name.replace(".", "/")  # parameter names may not contain dots


class _Call(nn.Module):
    """``function(module, *args)`` as a module's forward, so that :func:`torch.func.functional_call` can run it."""

    def __init__(self, module: nn.Module, function: Callable):
        super().__init__()
        self.module = module
        self.function = function

    def forward(self, *args):
        return self.function(self.module, *args)


class ModuleStack(nn.Module):
    """K networks of one architecture with their parameters and buffers stacked along a new leading axis.

    The stack owns the stacked tensors (``stacked_parameters()``, ``stacked_buffers()``, keyed by the member's
    own names); its ``state_dict`` holds them alone. :meth:`map` runs a function of one member on every member at
    once (``torch.vmap``; dropout draws differ between members). :meth:`write_back` copies the trained weights
    into the member modules.

    Parameters
    ----------
    modules
        The members: the same class and shapes (e.g. one network per cross-validation fold).

    Examples
    --------
    >>> nets = [torch.nn.Linear(4, 2) for _ in range(3)]
    >>> stack = pk.train.ModuleStack(nets)
    >>> stack.map(lambda net, x: net(x), torch.randn(3, 5, 4)).shape
    torch.Size([3, 5, 2])
    """

    def __init__(self, modules: Sequence[nn.Module]):
        super().__init__()
        modules = list(modules)
        if not modules:
            raise PerturbkitInputError("ModuleStack needs at least one module.")
        shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in modules]
        if any(s != shapes[0] for s in shapes[1:]) or len({type(m) for m in modules}) != 1:
            raise PerturbkitInputError(
                "ModuleStack's members must be one class with the same parameter and buffer shapes; build them "
                "with the same options."
            )
        self.members = tuple(modules)  # a tuple: not registered as submodules, so not in the stack's state_dict
        self.n_members = len(modules)
        self._parameter_names = [name for name, _ in modules[0].named_parameters()]
        self._buffer_names = [name for name, _ in modules[0].named_buffers()]
        self.weights = nn.ParameterDict(
            {
                _flat(name): nn.Parameter(torch.stack([dict(m.named_parameters())[name].detach() for m in modules]))
                for name in self._parameter_names
            }
        )
        for name in self._buffer_names:
            self.register_buffer(
                "buffer/" + _flat(name), torch.stack([dict(m.named_buffers())[name].detach() for m in modules])
            )

    def stacked_parameters(self, names: Sequence[str] | None = None) -> dict[str, nn.Parameter]:
        """The stacked parameters (``[K, ...]`` each) by member name; ``names`` keeps those named or prefixed."""
        out = {name: self.weights[_flat(name)] for name in self._parameter_names}
        if names is None:
            return out
        return {k: v for k, v in out.items() if any(k == n or k.startswith(n + ".") for n in names)}

    def stacked_buffers(self) -> dict[str, torch.Tensor]:
        """The stacked buffers (``[K, ...]`` each) by the member's names."""
        return {name: getattr(self, "buffer/" + _flat(name)) for name in self._buffer_names}

    def train(self, mode: bool = True):
        super().train(mode)
        self.members[0].train(mode)  # the template whose forward map() runs
        return self

    def map(self, function: Callable, *args, replace: dict[str, torch.Tensor] | None = None, chunk_size=None):
        """``function(member, *member_args)`` for every member at once; each of ``args`` has a leading ``[K]`` axis.

        ``replace`` maps member names to ``[K, ...]`` tensors used in place of the stacked ones (e.g. each member's
        own choice among several decoders, gathered by the caller). Non-tensor ``args`` are passed to every member
        as they are.
        """
        tensors = {**self.stacked_parameters(), **self.stacked_buffers(), **(replace or {})}
        call = _Call(self.members[0], function)
        dims = tuple(0 if isinstance(a, torch.Tensor) else None for a in args)

        def one(state, *member_args):
            return torch.func.functional_call(call, {"module." + k: v for k, v in state.items()}, member_args)

        vectorised = torch.vmap(one, in_dims=(0, *dims), randomness="different", chunk_size=chunk_size)
        return vectorised(tensors, *args)

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy each member's slice of the stacked parameters and buffers into that member module."""
        stacked = {**self.stacked_parameters(), **self.stacked_buffers()}
        for k, member in enumerate(self.members):
            own = {**dict(member.named_parameters()), **dict(member.named_buffers())}
            for name, tensor in stacked.items():
                own[name].copy_(tensor[k])


class StackedBatches:
    """Each member's own aligned arrays served together as ``[K, batch, ...]`` minibatches plus row weights.

    Every epoch each member's rows are shuffled by their own permutation (drawn in member order from the loop's
    generator). An epoch has as many batches as the member with the most rows needs; shorter members are padded
    with weight-0 rows. The last element of each batch is the ``[K, batch]`` weight tensor (1 for real rows), to be
    used as the row weights of a per-member mean.

    Parameters
    ----------
    members
        One tuple of aligned arrays per member (the same number of arrays and the same trailing shapes).
    device
        Where the stacked arrays live (they are moved once).
    batch_size
        Rows per member per batch; ``None`` serves everything as one batch.
    active
        Members that train (default all): the others get weight 0 everywhere, so their gradient is zero.
    """

    def __init__(self, members: Sequence[Sequence], *, device, batch_size: int | None, active=None):
        check_positive_int(batch_size, "batch_size", allow_none=True)
        members = [tuple(torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in arrays) for arrays in members]
        if not members or len({len(arrays) for arrays in members}) != 1:
            raise PerturbkitInputError("StackedBatches needs the same number of arrays for every member.")
        rows = [len(arrays[0]) for arrays in members]
        self.rows = np.asarray(rows)
        self.active = np.ones(len(members), dtype=bool) if active is None else np.asarray(active, dtype=bool)
        if not (self.rows[self.active] > 0).any():
            raise EmptyGroupError("no training rows in any member of the stack.")
        self.n = int(self.rows.max())
        self.n_members = len(members)
        self.batch_size = self.n if batch_size is None else max(1, min(int(batch_size), self.n))
        self.device = torch.device(device)
        stacked = []
        for j in range(len(members[0])):
            tail = members[0][j].shape[1:]
            block = torch.zeros((self.n_members, self.n, *tail), dtype=torch.float32)
            for k, arrays in enumerate(members):
                block[k, : rows[k]] = arrays[j]
            stacked.append(block.to(self.device))
        self.tensors = stacked

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def iterate(self, generator: torch.Generator | None = None):
        order = torch.empty((self.n_members, self.n), dtype=torch.long)
        valid = torch.zeros((self.n_members, self.n), dtype=torch.bool)
        for k, n in enumerate(self.rows):
            order[k, :n] = torch.arange(n) if generator is None else torch.randperm(int(n), generator=generator)
            order[k, n:] = 0  # padding rows: any row, weight 0
            valid[k, :n] = bool(self.active[k])
        order, valid = order.to(self.device), valid.to(self.device)
        members = torch.arange(self.n_members, device=self.device)[:, None]
        for b in range(len(self)):
            idx = order[:, b * self.batch_size : (b + 1) * self.batch_size]
            weight = valid[:, b * self.batch_size : (b + 1) * self.batch_size].to(torch.float32)
            yield (*(t[members, idx] for t in self.tensors), weight)


def weighted_row_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean over the last (row) axis of ``values`` with row ``weight`` (0 for a :class:`StackedBatches`' padding)."""
    return (values * weight).sum(-1) / weight.sum(-1).clamp_min(1.0)
