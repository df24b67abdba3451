"""Tutorials and notebooks execute top to bottom (outputs are not committed).

They read the real data in ../shared/data ($PERTURBKIT_SHARED_DATA) when it is there, and otherwise run on the
simulators and say so ("Real data not found at …; using the simulator instead."), so a fresh clone runs them too.
"""

from pathlib import Path

import nbformat
import pytest
from conftest import SHARED_DATA
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*ROOT.glob("tutorials/*.ipynb"), *ROOT.glob("notebooks/*.ipynb")])
FALLBACK = "using the simulator instead"


def _execute(path: Path):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.output_type == "error"]
    stdout = "".join(o.get("text", "") for c in code for o in c.get("outputs", []) if o.output_type == "stream")
    return errors, stdout


def _reads_real_data(path: Path) -> bool:
    return "PERTURBKIT_SHARED_DATA" in path.read_text(encoding="utf-8")


@pytest.fixture
def notebook_env(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PERTURBKIT_FAST", "1")  # paper notebooks: CI-sized runs (their parameter cell reads this)
    return monkeypatch


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, notebook_env):
    notebook_env.setenv("PERTURBKIT_SHARED_DATA", str(SHARED_DATA))
    errors, stdout = _execute(path)
    assert not errors
    if _reads_real_data(path) and not SHARED_DATA.exists():
        assert FALLBACK in stdout, f"{path.name} ran without the real data but did not say it used the simulator"


@pytest.mark.skipif(
    not SHARED_DATA.exists(),
    reason="the real data is absent, so test_notebook_executes already ran every notebook on the simulators",
)
def test_tutorial_runs_without_the_real_data(notebook_env, tmp_path):
    """With the data hidden, the files tutorial writes simulated stand-ins in the real formats and reads those."""
    notebook_env.setenv("PERTURBKIT_SHARED_DATA", str(tmp_path / "no_data_here"))
    errors, stdout = _execute(ROOT / "tutorials" / "01_data_to_anndata.ipynb")
    assert not errors
    assert f"Real data not found at {tmp_path / 'no_data_here'}; {FALLBACK}." in stdout
