"""``train_options=``: the trainer settings of functions that train models for you, and docstring helpers."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

from .._schema import PerturbkitInputError


def trainer_options(
    train_options: Mapping[str, Any] | None, *, function: str, trainer: str, reserved=(), **explicit
) -> dict[str, Any]:
    """``train_options`` as a dict, with the explicit arguments (e.g. ``device``) added.

    A function that trains models for you writes out its own arguments (``seed``, ``device``, its data keys and the
    settings it varies itself) and takes the trainer's hyperparameters as one mapping, so that their defaults stay
    written once, in the trainer. Keys that name an explicit or ``reserved`` argument are refused.
    """
    if train_options is None:
        train_options = {}
    if not isinstance(train_options, Mapping):
        raise PerturbkitInputError(
            f"{function}: train_options must be a dict of {trainer} keyword arguments (e.g. "
            f"{{'max_epochs': 50}}), got {type(train_options).__name__}."
        )
    clash = sorted(set(train_options) & (set(explicit) | set(reserved)))
    if clash:
        raise PerturbkitInputError(
            f"{function}: {clash} cannot go in train_options: {function} sets them itself; "
            f"pass them as {function}'s own arguments where it has them."
        )
    return {**train_options, **explicit}


def doc_params(**parts: str):
    """Decorator filling ``{name}`` placeholders (indented four spaces in the docstring) with shared text."""

    def decorate(function):
        doc = function.__doc__
        for name, text in parts.items():
            doc = doc.replace("{" + name + "}", textwrap.indent(textwrap.dedent(text).strip("\n"), "    ").lstrip())
        function.__doc__ = doc
        return function

    return decorate


#: The streaming options of the trainers that read an out-of-core AnnData in chunks (``pk.io.read_store``).
STREAMING_DOC = """
chunk_rows, buffer_chunks, max_validation_rows
    Only for an AnnData whose X stays on disk (:func:`perturbkit.io.read_store`), which is streamed instead of
    loaded: rows per contiguous read, chunks shuffled together (None: 4 MiB of rows, 64 MiB buffers), and the most
    held-out rows read into memory for validation (None: 256 MiB of rows). See "Running at scale".
"""
