"""Atomic file writes: a file is either its old self or completely new, never half-written."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path):
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path`` with :func:`os.replace`.

    A failure (an exception, a full disk, a kill) before the end leaves ``path`` as it was and removes the
    temporary file, so a good file is never destroyed by a failed write.

    Examples
    --------
    >>> with atomic_write("model.pt") as tmp:
    ...     torch.save(payload, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
