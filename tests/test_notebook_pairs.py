"""Every tutorial and paper notebook is a jupytext pair: a percent script (``<name>.py``, ``# %%`` cells) that is the
source, and the ``<name>.ipynb`` paired with it (see jupytext.toml). The two must hold the same cells."""

from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("tutorials", "notebooks")
NOTEBOOKS = sorted(p for folder in FOLDERS for p in (ROOT / folder).glob("*.ipynb"))
SCRIPTS = sorted(p for folder in FOLDERS for p in (ROOT / folder).glob("*.py"))


def _cells(notebook) -> list[tuple[str, str, list[str]]]:
    """What a pair must agree on: each cell's type, source and tags (e.g. papermill's ``parameters``)."""
    return [(cell.cell_type, cell.source, list(cell.metadata.get("tags", []))) for cell in notebook.cells]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 8


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_has_its_script(path):
    assert path.with_suffix(".py").exists(), (
        f"{path.name} has no paired percent script; create it with `jupytext --sync {path}` (jupytext.toml pairs them)"
    )


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_script_has_its_notebook(path):
    assert path.with_suffix(".ipynb").exists(), (
        f"{path.name} has no paired notebook; create it with `jupytext --sync {path}`"
    )


def test_pairing_is_configured():
    """The pairing lives in jupytext.toml (not in each notebook: a notebook copied elsewhere stays unpaired)."""
    config = jupytext.config.load_jupytext_configuration_file(str(ROOT / "jupytext.toml"))
    assert config.formats in ("ipynb,py:percent", ["ipynb,py:percent"])
    for path in [*NOTEBOOKS, *SCRIPTS]:
        assert "formats" not in jupytext.read(path).metadata.get("jupytext", {}), (
            f"{path.name} declares its own pairing; jupytext.toml does that for every notebook"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_pair_agrees(path):
    script = path.with_suffix(".py")
    if not script.exists():
        pytest.skip("no script (test_notebook_has_its_script fails)")
    in_notebook, in_script = _cells(jupytext.read(path)), _cells(jupytext.read(script))
    assert len(in_notebook) == len(in_script), (
        f"{path.name} has {len(in_notebook)} cells, {script.name} {len(in_script)}: run `jupytext --sync {script}`"
    )
    for i, (a, b) in enumerate(zip(in_notebook, in_script, strict=True)):
        assert a == b, f"cell {i} differs between {path.name} and {script.name}: run `jupytext --sync {script}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_outputs_not_committed(path):
    notebook = nbformat.read(path, as_version=4)
    assert not [c for c in notebook.cells if c.cell_type == "code" and (c.outputs or c.execution_count)], (
        f"{path.name} holds outputs; clear them (`jupyter nbconvert --clear-output --inplace {path}`)"
    )


def test_paper_notebooks_keep_their_parameters_cell():
    for path in sorted((ROOT / "notebooks").glob("*.py")):
        tagged = [c for c in jupytext.read(path).cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: papermill needs exactly one cell tagged 'parameters'"
