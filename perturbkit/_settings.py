"""Global settings: ``pk.settings``."""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from pathlib import Path

import numpy as np

_DEVICES = ("auto", "cpu", "cuda")
#: Training arithmetic: full float32, or autocast to bfloat16 / float16 (weights stay float32).
PRECISIONS = ("float32", "bfloat16", "float16")


class Settings:
    """Package-wide defaults.

    Attributes
    ----------
    device
        Default device for training: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    progress_bar
        Show tqdm progress bars during long work (training, cross-validation, downloads). Set ``False`` to
        silence them. Reads ``False`` while ``verbosity`` is 0.
    verbosity
        How much perturbkit reports while it works:

        - ``0``: silent. No progress bars and no messages (pooch's download messages and Optuna's trial log are
          silenced too); warnings and errors are still raised.
        - ``1`` (default): progress bars (when ``progress_bar`` is ``True``) and one-line messages such as
          pooch's "Downloading ..." line.
        - ``2``: also details: Optuna's log of every trial in :func:`perturbkit.tl.tune_vae`.
    datadir
        Cache folder for downloaded data sets (env ``PERTURBKIT_DATADIR``, default ``~/.cache/perturbkit``).
    max_device_bytes
        Training data smaller than this stays whole on the device; larger data is moved batch by batch.
    precision
        Arithmetic of training steps: ``"float32"`` (default), or mixed precision with ``"bfloat16"`` or
        ``"float16"`` autocast (CUDA; float16 with loss scaling). Weights stay float32. See "Running at scale".
    compile
        Compile each training step's loss with ``torch.compile`` (default ``False``; measured in "Running at
        scale" before it could become a default).
    """

    def __init__(self) -> None:
        self.device = "auto"
        self.progress_bar = True
        self.verbosity = 1
        self.datadir = os.environ.get("PERTURBKIT_DATADIR", Path.home() / ".cache" / "perturbkit")
        self.max_device_bytes = 2 * 1024**3
        self.precision = "float32"
        self.compile = False

    @property
    def precision(self) -> str:
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            from ._schema import PerturbkitInputError

            known = ", ".join(map(repr, PRECISIONS))
            raise PerturbkitInputError(f"precision={value!r} is not known; use one of {known}.")
        self._precision = value

    @property
    def device(self) -> str:
        return self._device

    @device.setter
    def device(self, value: str) -> None:
        self._device = _check_device_name(value)

    @property
    def progress_bar(self) -> bool:
        return self._progress_bar and self.verbosity > 0

    @progress_bar.setter
    def progress_bar(self, value: bool) -> None:
        self._progress_bar = bool(value)

    @property
    def verbosity(self) -> int:
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 2:
            from ._schema import PerturbkitInputError  # here, not at the top: import perturbkit stays light

            raise PerturbkitInputError(
                f"verbosity={value!r} must be 0 (silent), 1 (progress bars, one-line messages) or 2 (details)."
            )
        self._verbosity = int(value)

    @property
    def datadir(self) -> Path:
        return self._datadir

    @datadir.setter
    def datadir(self, value) -> None:
        self._datadir = Path(value).expanduser()

    def __repr__(self) -> str:
        fields = ("device", "progress_bar", "verbosity", "datadir", "max_device_bytes", "precision", "compile")
        return "perturbkit settings:\n" + "\n".join(f"  {f} = {getattr(self, f)!r}" for f in fields)


def _check_device_name(device) -> str:
    name = str(device)
    if name.split(":")[0] not in _DEVICES:
        from ._schema import DeviceError

        raise DeviceError(f"device={device!r} is not known; use one of 'auto', 'cpu', 'cuda' or 'cuda:N'.")
    return name


def resolve_device(device: str | None = None):
    """Turn ``"auto"|"cpu"|"cuda"`` (or ``None`` for ``pk.settings.device``) into a :class:`torch.device`."""
    import torch

    name = _check_device_name(settings.device if device is None else device)
    if name in ("auto", "cuda") and torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        # one GPU per process under torchrun: LOCAL_RANK names this process's GPU
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from ._schema import DeviceError

        raise DeviceError(
            f"device={name!r} was asked for but CUDA is not available here; use device='cpu' or 'auto', or set "
            f"pk.settings.device = 'auto'."
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global random number generators.

    perturbkit itself never calls this on the user's behalf: it uses :func:`seeded`, which puts the generators
    back afterwards. Call it yourself to seed your own code.
    """
    import torch

    if seed is None:
        return
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@contextmanager
def seeded(seed: int | None):
    """Run a block with the global generators seeded by ``seed``, then restore the states they had before.

    Weight initialisation and dropout draw from torch's global generator; seeding it makes CPU runs bitwise
    reproducible, and restoring it leaves the user's own random draws exactly as they would have been without the
    block. ``seed=None`` leaves the generators alone (the block then draws from, and advances, the global state).
    """
    if seed is None:
        yield
        return
    import torch

    python_state = random.getstate()
    numpy_state = np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        seed_everything(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


settings = Settings()
