"""Submodules imported on first use (keeps ``import perturbkit`` fast: torch, scanpy and plotly load when needed)."""

from __future__ import annotations

import importlib
import sys


def lazy_submodules(package: str, names):
    """A module ``__getattr__`` for ``package`` that imports the submodules ``names`` when first accessed."""
    names = tuple(names)

    def __getattr__(name: str):
        if name in names:
            module = importlib.import_module(f".{name}", package)
            setattr(sys.modules[package], name, module)
            return module
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
