"""Submodules imported on first use (keeps ``import perturbkit`` fast: torch, scanpy and plotly load when needed)."""

from __future__ import annotations

import importlib


def lazy_submodules(package: str, names):
    """A module ``__getattr__`` for ``package`` that imports the submodules ``names`` when first accessed."""
    names = tuple(names)

    def __getattr__(name: str):
        if name in names:  # importing a submodule also sets it as the package's attribute: this runs once per name
            return importlib.import_module(f".{name}", package)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
