"""One training run of a model: its own seeded RNG scope, Ctrl-C handling, checkpoints and resuming."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .._schema import ModelFileError, check_positive_int
from ._distributed import is_main_process

CHECKPOINT_NAME = "checkpoint.pt"


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :func:`~perturbkit.train.fit` on Ctrl-C, after it has restored the best weights so far."""

    def __init__(self, stage: str, epoch: int, restored_epoch: int | None):
        super().__init__(stage, epoch)
        self.stage, self.epoch, self.restored_epoch = stage, epoch, restored_epoch


class TrainingRun:
    """The bookkeeping of one ``model.train(...)`` call: checkpoints every ``every`` epochs, and resuming.

    Training is split into named stages (one per :func:`~perturbkit.train.fit` call that takes this run, or a
    stage a model runs itself, such as DeepCellState's rounds); the model marks each one done with
    :meth:`stage_done` and skips those a resumed run has :meth:`passed`. A checkpoint is a complete model file (it loads
    with ``BaseModel.load``) plus the progress: the stages completed and the state of the stage under way
    (optimisers, early stopping, generators), so a resumed run continues exactly where the checkpoint was taken.

    Parameters
    ----------
    model
        The model being trained.
    directory
        Folder for ``checkpoint.pt`` (written atomically); ``None`` writes no checkpoints.
    every
        Write a checkpoint every this many epochs of a stage, and at the end of every stage.
    resume
        A checkpoint file (or the folder holding ``checkpoint.pt``) to continue from; ``None`` starts afresh.
    """

    def __init__(self, model, *, directory=None, every: int = 10, resume=None):
        check_positive_int(every, "checkpoint_every")
        self.model = model
        self.path = None if directory is None else Path(directory) / CHECKPOINT_NAME
        self.every = every
        self.completed: list[str] = []
        self._resumed: dict | None = None
        if resume is not None:
            self._resume_from(Path(resume))

    # --- resuming ------------------------------------------------------------------------------------------
    def _resume_from(self, path: Path) -> None:
        if path.is_dir():
            path = path / CHECKPOINT_NAME
        payload = self.model._read_payload(path)
        progress = payload.get("progress")
        if not isinstance(progress, dict):
            raise ModelFileError(
                f"{path} is a saved model, not a training checkpoint, so there is no training to resume. Pass the "
                f"checkpoint.pt written with checkpoint_dir=, or load the model with {payload['class']}.load."
            )
        if payload["class"] != type(self.model).__name__ or list(payload["var_names"]) != list(self.model.var_names):
            raise ModelFileError(
                f"{path} is a checkpoint of a {payload['class']} with {len(payload['var_names'])} features; this "
                f"run trains a {type(self.model).__name__} with {self.model.n_vars}. Resume with the same model "
                f"settings and data the checkpoint was written with."
            )
        self.model._restore_payload(payload)
        self.completed = list(progress["completed"])
        self._resumed = progress
        restore_rng(progress["rng"])  # the global generators as they were when the checkpoint was written

    def passed(self, stage: str) -> bool:
        """Whether the run this one resumes had already completed ``stage`` (so it is skipped)."""
        return stage in self.completed

    def resumes(self, stage: str) -> bool:
        """Whether this run continues in the middle of ``stage``."""
        return self._resumed is not None and self._resumed.get("stage") == stage

    def resume_state(self, stage: str) -> dict | None:
        """The saved state of ``stage`` when this run resumes in the middle of it (once), else None."""
        if not self.resumes(stage):
            return None
        state, self._resumed = self._resumed["state"], None
        return state

    # --- saving --------------------------------------------------------------------------------------------
    def epoch_done(self, stage: str, epoch: int, state) -> None:
        """Write a checkpoint after ``epoch`` (0-based) when it is due; ``state()`` gives the stage's state."""
        if self.path is not None and (epoch + 1) % self.every == 0:
            self.save(stage, state())

    def stage_done(self, stage: str) -> None:
        """Mark ``stage`` completed (a resumed run skips it) and write a checkpoint."""
        self.completed.append(stage)
        if self.path is not None:
            self.save(None, None)

    def save(self, stage: str | None, state) -> None:
        if not is_main_process():  # in a distributed run rank 0 writes the checkpoint (all ranks hold the same model)
            return
        progress = {"completed": list(self.completed), "stage": stage, "state": state, "rng": capture_rng()}
        self.model._write_payload(self.path, progress=progress)


def capture_rng() -> dict:
    """The global torch generators' states (dropout and sampling draw from them during training)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def warn_interrupted(model, error: KeyboardInterrupt) -> None:
    """Tell the user that training stopped early, and what the model now holds."""
    if isinstance(error, TrainingInterrupted):
        where = f"during stage {error.stage!r} at epoch {error.epoch}"
        kept = (
            f"the best weights of that stage so far (epoch {error.restored_epoch}) were restored"
            if error.restored_epoch is not None and error.restored_epoch >= 0
            else "no epoch of that stage had finished, so its weights are part-trained"
        )
    else:
        where, kept = "between training steps", "the weights are those of the last completed step"
    warnings.warn(
        f"Training of {type(model).__name__} was interrupted {where}; {kept}, and the model is returned in "
        f"evaluation mode. Train again (with checkpoint_dir= and resume=) to continue.",
        UserWarning,
        stacklevel=4,
    )
