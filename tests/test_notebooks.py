"""Tutorials and notebooks execute top to bottom (outputs are not committed)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*ROOT.glob("tutorials/*.ipynb"), *ROOT.glob("notebooks/*.ipynb")])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch):
    if not SHARED_DATA.exists():
        pytest.skip(f"notebooks read the real data in {SHARED_DATA}, which is missing")
    monkeypatch.setenv("PERTURBKIT_SHARED_DATA", str(SHARED_DATA))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PERTURBKIT_FAST", "1")  # paper notebooks: CI-sized runs (their parameter cell reads this)
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
