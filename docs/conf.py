"""Sphinx configuration of perturbkit's documentation.

Build (from the repository root; warnings are errors, the notebooks are executed in FAST mode):

    sphinx-build -W --keep-going -b html docs docs/_build/html

Environment variables:

- ``PERTURBKIT_DOCS_EXECUTE``: ``force`` (default: execute every notebook), ``cache`` (keep executed notebooks in
  ``docs/_build/.notebook_cache`` and re-run only those whose source changed) or ``off`` (render them without
  outputs).
- ``PERTURBKIT_DOCS_JOBS``: how many notebooks execute at once (default 2, one per core of a small CI machine).
- ``PERTURBKIT_DOCS_INTERSPHINX=1``: link to the anndata, scanpy, torch, numpy, pandas and Python docs. It needs the
  network to fetch their inventories, so it is off by default and the build works offline (the names then show as
  plain code).
- ``PERTURBKIT_SHARED_DATA``: the real data sets the notebooks read (default: ``shared/data`` next to the
  repository, as in the tests); without them the notebooks run on the simulators and say so.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import perturbkit  # noqa: E402

# -- the kernels that execute the notebooks inherit these ---------------------------------------------------------
os.environ.setdefault("PERTURBKIT_FAST", "1")  # paper notebooks: CI-sized runs
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PERTURBKIT_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
# plotly figures as HTML with plotly.js embedded once per page (the "notebook" renderer), so they render offline
os.environ.setdefault("PLOTLY_RENDERER", "notebook")

# -- project ------------------------------------------------------------------------------------------------------
project = "perturbkit"
author = "the perturbkit authors"
copyright = f"{date.today().year}, {author}"
release = perturbkit.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "jupyter_execute"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
nitpicky = False

# -- MyST and notebooks -------------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# The notebooks are executed by _prepare_notebooks below, several at once (myst-nb executes one at a time, which
# takes twice as long on two cores); myst-nb renders the executed copies as they are.
nb_execution_mode = "off"
nb_merge_streams = True
EXECUTE = os.environ.get("PERTURBKIT_DOCS_EXECUTE", "force")
if EXECUTE not in ("force", "cache", "off"):
    raise ValueError(f"PERTURBKIT_DOCS_EXECUTE={EXECUTE!r}: use force, cache or off.")
JOBS = int(os.environ.get("PERTURBKIT_DOCS_JOBS", "2"))
CELL_TIMEOUT = 900  # seconds per cell

# -- autodoc and napoleon (numpy-style docstrings) ----------------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_custom_sections = [("Generative model", "notes_style")]

# -- intersphinx: offline by default (see the module docstring) ---------------------------------------------------
intersphinx_mapping = {}
if os.environ.get("PERTURBKIT_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "pandas": ("https://pandas.pydata.org/docs", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
    }

# -- HTML ---------------------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "perturbkit"
html_static_path = ["_static"]
html_css_files = ["perturbkit.css"]
html_copy_source = False  # the executed notebooks would double the site's size
html_show_sourcelink = False

# MathJax from the jupyter-server-mathjax package (MathJax 2, in the docs extra), so formulas render offline;
# without the package Sphinx's default (MathJax from a CDN) is used.
try:
    import jupyter_server_mathjax
except ImportError:
    pass
else:
    _MATHJAX = DOCS / "_build" / "mathjax_static"
    _source = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (_MATHJAX / "mathjax" / "MathJax.js").exists():
        for part in ("config", "extensions", "fonts", "jax"):
            shutil.copytree(_source / part, _MATHJAX / "mathjax" / part, dirs_exist_ok=True)
        shutil.copyfile(_source / "MathJax.js", _MATHJAX / "mathjax" / "MathJax.js")  # last: marks the copy complete
    html_static_path.append(str(_MATHJAX))
    mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
    # the package ships the STIX web fonts only (as Jupyter uses them)
    mathjax2_config = {
        "HTML-CSS": {"availableFonts": [], "webFont": "STIX-Web", "imageFont": None, "preferredFont": None}
    }
    myst_update_mathjax = False  # myst's MathJax 3 options would be read as MathJax 2 configuration
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}

# -- API pages: written from each namespace's __all__, so they follow the code ------------------------------------
#: (title, module) of the namespaces in the API reference, in order; a module that does not exist is skipped.
API_NAMESPACES = [
    ("Reading and writing: pk.io", "perturbkit.io"),
    ("Preprocessing: pk.pp", "perturbkit.pp"),
    ("Tools: pk.tl", "perturbkit.tl"),
    ("Experiments: pk.experiments", "perturbkit.experiments"),
    ("Plots: pk.pl", "perturbkit.pl"),
    ("Interactive panels: pk.widgets", "perturbkit.widgets"),
    ("Data sets and simulators: pk.datasets", "perturbkit.datasets"),
    ("Metrics: pk.metrics", "perturbkit.metrics"),
    ("Errors: pk.errors", "perturbkit.errors"),
]
#: The model classes, documented with their methods.
API_MODELS = [
    "perturbkit.models.deepcellstate.DeepCellState",
    "perturbkit.models.vae.VAE",
    "perturbkit.models.cyclecdr.CycleCDR",
    "perturbkit.train.BaseModel",
    "perturbkit.train.StreamedBatches",
    "perturbkit.train.ModuleStack",
    "perturbkit.train.StackedBatches",
]
GENERATED = DOCS / "api" / "generated"


def _public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return [n for n in names if not n.startswith("_")]


def _write_api_pages() -> None:
    """One page per namespace (its docstring and an autosummary of its public names) and one for the models."""
    if GENERATED.exists():
        shutil.rmtree(GENERATED)
    GENERATED.mkdir(parents=True)
    modules = {}
    for title, name in API_NAMESPACES:
        try:
            modules[name] = (title, importlib.import_module(name))
        except ImportError:
            continue
    # an object exported by several namespaces is documented once: in the namespace whose package defines it, else
    # in pk.errors (exceptions), else where it comes first
    exported = {}
    for name, (_, module) in modules.items():
        for n in _public_names(module):
            exported.setdefault(id(getattr(module, n)), []).append((name, n, getattr(module, n)))
    home = {}
    for key, places in exported.items():
        defined_in = str(getattr(places[0][2], "__module__", "") or "")
        best = (
            [p for p in places if defined_in.startswith(p[0] + ".") or defined_in == p[0]]
            or [p for p in places if p[0] == "perturbkit.errors"]
            or places
        )[0]
        home[key] = f"{best[0]}.{best[1]}"
    pages = []
    for name, (title, module) in modules.items():
        names = _public_names(module)
        own = [n for n in names if home[id(getattr(module, n))] == f"{name}.{n}"]
        lines = [
            title,
            "=" * len(title),
            "",
            f".. automodule:: {name}",
            "",
            f".. currentmodule:: {name}",
            "",
            ".. autosummary::",
            "   :toctree: .",
            "   :nosignatures:",
            "",
        ]
        lines += [f"   {n}" for n in own]
        elsewhere = [n for n in names if n not in own]
        if elsewhere:
            lines += [
                "",
                "Also available here: "
                + ", ".join(
                    f":obj:`{name.replace('perturbkit', 'pk')}.{n} <{home[id(getattr(module, n))]}>`" for n in elsewhere
                )
                + ".",
            ]
        (GENERATED / f"{name}.rst").write_text("\n".join(lines) + "\n", encoding="utf-8")
        pages.append(name)
    title = "Model classes"
    lines = [
        title,
        "=" * len(title),
        "",
        "The networks behind the ``pk.tl.train_*`` functions. Each model class derives from",
        ":class:`~perturbkit.train.BaseModel`, which gives it saving, loading, devices and seeding.",
        ":class:`~perturbkit.train.StreamedBatches` serves the training loop batches read from a store on disk;",
        ":class:`~perturbkit.train.ModuleStack` and :class:`~perturbkit.train.StackedBatches` train several copies",
        "of one network (e.g. cross-validation folds) as one.",
        "",
        ".. autosummary::",
        "   :toctree: .",
        "   :nosignatures:",
        "   :template: model_class.rst",
        "",
    ]
    lines += [f"   {n}" for n in API_MODELS]
    (GENERATED / "models.rst").write_text("\n".join(lines) + "\n", encoding="utf-8")
    pages.append("models")
    index = [
        "API reference",
        "=============",
        "",
        "``import perturbkit as pk``, then ``pk.io``, ``pk.pp``, ``pk.tl``, ``pk.pl`` and ``pk.widgets`` in the",
        "order of an analysis (see :doc:`/architecture`).",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
    ]
    index += [f"   {page}" for page in pages]
    (GENERATED / "index.rst").write_text("\n".join(index) + "\n", encoding="utf-8")


#: (folder in docs/, folder in the repository) of the notebooks copied into the site.
NOTEBOOK_FOLDERS = [("tutorials", "tutorials"), ("notebooks", "notebooks")]


#: Executes one notebook (source, target, cell timeout, working folder) and makes its outputs fit a static site:
#: an interactive panel (an ipywidget) needs a running kernel, so its output becomes a short note, and plotly's
#: per-figure MathJax script from a CDN is dropped (the figures have no formulas; the site has its own MathJax).
_RUN_NOTEBOOK = r"""
import re, sys, nbformat
from nbclient import NotebookClient
source, target, timeout, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
notebook = nbformat.read(source, as_version=4)
client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", store_widget_state=False,
                        resources={"metadata": {"path": folder}})
WIDGET = "application/vnd.jupyter.widget-view+json"
CDN_MATHJAX = re.compile(r'<script src="https://[^"]*mathjax[^"]*"></script>')
try:
    client.execute()
finally:
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET in data:
                name = str(data.get("text/plain", "panel")).split("(")[0]
                output["data"] = {"text/html": f'<p class="pk-panel-note">Interactive panel <code>{name}</code>: '
                                               f"open this notebook in Jupyter to use it.</p>",
                                  "text/plain": f"{name} (interactive panel)"}
            elif isinstance(data.get("text/html"), str):
                data["text/html"] = CDN_MATHJAX.sub("", data["text/html"])
    nbformat.write(notebook, target)
"""


#: Notebooks that take longest (about 1.5-3 minutes each in FAST mode on two cores), started first.
_SLOW_FIRST = ["04_cyclecdr", "cyclecdr_paper", "deepcellstate_paper", "vae_lsa_paper", "03_vae_lsa_cell_painting"]


def _cache_key(notebook: Path) -> str:
    digest = hashlib.sha256(notebook.read_bytes())
    for name in ("PERTURBKIT_FAST", "PERTURBKIT_SHARED_DATA", "PLOTLY_RENDERER", "OMP_NUM_THREADS"):
        digest.update(f"{name}={os.environ.get(name)}".encode())
    return digest.hexdigest()


def _prepare_notebooks() -> None:
    """Put the tutorials and paper notebooks into docs/ (Sphinx reads only its source folder; git ignores the
    copies), executed ``JOBS`` at a time in their folder's copy, each in its own kernel."""
    cache = DOCS / "_build" / ".notebook_cache"
    pending = []
    for target, source in NOTEBOOK_FOLDERS:
        for old in (DOCS / target).glob("*.ipynb"):
            old.unlink()
        for notebook in sorted((ROOT / source).glob("*.ipynb")):
            destination = DOCS / target / notebook.name
            cached = cache / f"{_cache_key(notebook)}.ipynb"
            if EXECUTE == "off":
                shutil.copyfile(notebook, destination)
            elif EXECUTE == "cache" and cached.exists():
                shutil.copyfile(cached, destination)
            else:
                pending.append((notebook, destination, cached))
    # the longest first, so that the last ones to finish are short (the order only changes the build time)
    pending.sort(key=lambda item: _SLOW_FIRST.index(item[0].stem) if item[0].stem in _SLOW_FIRST else len(_SLOW_FIRST))
    running, failed = [], []
    while pending or running:
        while pending and len(running) < JOBS:
            notebook, destination, cached = pending.pop(0)
            log = tempfile.TemporaryFile()
            command = [
                sys.executable,
                "-c",
                _RUN_NOTEBOOK,
                str(notebook),
                str(destination),
                str(CELL_TIMEOUT),
                str(destination.parent),
            ]
            running.append(
                (
                    subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT),
                    notebook,
                    destination,
                    cached,
                    log,
                    time.monotonic(),
                )
            )
        time.sleep(0.5)
        for job in [j for j in running if j[0].poll() is not None]:
            process, notebook, destination, cached, log, start = job
            running.remove(job)
            log.seek(0)
            output = log.read().decode(errors="replace")
            log.close()
            print(
                f"executed {notebook.relative_to(ROOT)} in {time.monotonic() - start:.0f} s"
                + ("" if process.returncode == 0 else " (FAILED)")
            )
            if process.returncode != 0:
                failed.append(f"{notebook.relative_to(ROOT)}:\n{output[-4000:]}")
            elif EXECUTE == "cache":
                cache.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(destination, cached)
    if failed:
        raise RuntimeError("notebooks failed to execute:\n\n" + "\n\n".join(failed))


_write_api_pages()
_prepare_notebooks()


# -- docstrings written for help() and IDEs, rendered without surprises -------------------------------------------
def _escape_plain_text(line: str) -> str:
    """Escape, outside ``inline literals``, what reads naturally in plain text but is markup in reStructuredText:
    ``|x|`` (absolute values; a substitution reference in RST) and ``**kwargs`` (the start of strong text)."""
    parts = line.split("``")
    for i in range(0, len(parts), 2):  # the even parts are outside inline literals
        text = parts[i].replace("|", r"\|")
        rest = "``".join(parts[i + 1 :])
        out, start = [], 0
        for j in range(len(text) - 2):
            opens = text[j : j + 2] == "**" and (text[j + 2].isalpha() or text[j + 2] == "_")
            if opens and "**" not in text[j + 2 :] + rest:  # a ``**kwargs``, not the start of strong text
                out.append(text[start:j] + r"\*\*")
                start = j + 2
        parts[i] = "".join(out) + text[start:]
    return "``".join(parts)


def _process_docstring(app, what, name, obj, options, lines) -> None:
    if what in ("data", "attribute") and type(obj).__module__ == "builtins" and obj.__doc__ == type(obj).__doc__:
        lines[:] = []  # a plain dict or list: not the builtin type's docstring (dict() -> new empty dictionary ...)
        return
    in_table = any(line.lstrip().startswith(("+--", "+==")) for line in lines)
    if not in_table:
        lines[:] = [_escape_plain_text(line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _process_docstring, priority=600)  # after napoleon (500)
