"""The public API's shape, checked for every public function (in the spirit of scanpy's ``test_sig_conventions``).

Every public function of ``pk.io``, ``pk.pp``, ``pk.tl``, ``pk.pl``, ``pk.datasets``, ``pk.metrics`` and
``pk.experiments``, and the ``__init__`` of every ``pk.widgets`` panel, must:

- take its data first (``adata`` is the first parameter where there is one; only data arguments are positional,
  and only the first may have a default); every option is keyword-only;
- take a model as the keyword-only ``model=`` (functions of a model alone may take it first: :data:`MODEL_FIRST`);
- have no ``*args`` / ``**kwargs``: every parameter is written out;
- have ``copy`` keyword-only and ``False`` by default, and ``device`` ``None`` by default (``pk.settings.device``);
- annotate every string choice (``kind``, ``method``, ``basis``, ...) with ``Literal[...]``;
- annotate its return;
- have a numpydoc docstring with a Parameters section naming every parameter and a Returns section.

An exception is listed by (name, check) with its reason; keep them few.
"""

from __future__ import annotations

import importlib
import inspect
import re
import typing

import pytest

NAMESPACES = ("io", "pp", "tl", "pl", "widgets", "datasets", "metrics", "experiments")

#: Arguments that hold data (or a file or result to read), and so may be positional.
DATA_ARGUMENTS = {
    "adata",
    "adata_controls",
    "smiles",
    "pred",
    "truth",
    "predicted",
    "measured",
    "emb",
    "embedding",
    "cv",
    "df",
    "corr",
    "results",
    "proj",
    "contributions",
    "history_or_frames",
    "a",
    "b",
    "path",
    "names",
    "drugs",
    "table",
    "name",
    "samples",  # read_repurposing_hub(drugs, samples): the second file of the pair
    "out",  # convert_gctx(path, out): the store to write, as write_gctx(adata, path)
}

#: Parameters that choose among fixed strings: their annotation must be a ``Literal``.
CHOICE_PARAMETERS = {
    "kind",
    "method",
    "basis",
    "split",
    "drug_encoder",
    "output",
    "space",
    "axis",
    "what",
    "evaluate_on",
    "corr_method",
    "spherize_method",
    "compare_with",
    "consensus",
}

#: Functions of a model alone (no data argument): the model comes first.
MODEL_FIRST = {
    "pk.tl.latent_traversal": "decodes from the model alone (no data)",
    "pk.tl.traversal_contributions": "decodes from the model alone (no data)",
    "pk.tl.simulate": "samples from the model's prior (no data)",
    "pk.tl.tf_targets": "optimises inputs of the model alone (no data)",
}

#: (name, check) → reason. ``"*"`` skips every check of that function.
EXCEPTIONS = {
    ("pk.pl.projection", "literal"): "basis is the obsm key of the coordinates (any name), not a fixed choice",
}


def _public(namespace: str):
    module = importlib.import_module(f"perturbkit.{namespace}")
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            if namespace == "widgets":
                yield f"pk.{namespace}.{name}", obj, obj.__init__
        elif inspect.isfunction(obj):
            yield f"pk.{namespace}.{name}", obj, obj


FUNCTIONS = [entry for namespace in NAMESPACES for entry in _public(namespace)]


def _parameters(function) -> list[inspect.Parameter]:
    params = list(inspect.signature(function).parameters.values())
    return params[1:] if params and params[0].name == "self" else params


def _section(doc: str, title: str) -> list[str] | None:
    """The lines of a numpydoc section (``None`` when absent)."""
    lines = doc.splitlines()
    for i in range(len(lines) - 1):
        if lines[i].strip() == title and re.fullmatch(r"-{3,}", lines[i + 1].strip()):
            body = []
            for j in range(i + 2, len(lines)):
                if j + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[j + 1].strip()) and lines[j].strip():
                    break
                body.append(lines[j])
            return body
    return None


def _documented(doc: str) -> set[str]:
    names = set()
    for line in _section(doc, "Parameters") or []:
        if line.strip() and not line[0].isspace():
            for name in line.split(" : ")[0].split(","):
                names.add(name.strip().lstrip("*"))
    return names


def _is_literal(annotation) -> bool:
    if typing.get_origin(annotation) is typing.Literal:
        return True
    return any(_is_literal(a) for a in typing.get_args(annotation))


def _hints(function) -> dict:
    try:
        return typing.get_type_hints(function)
    except Exception:  # an annotation names something imported only for type checking
        return {}


def _violations(qualname: str, obj, function) -> list[tuple[str, str]]:
    """``(check, message)`` for each convention ``function`` breaks."""
    found = []
    params = _parameters(function)
    names = [p.name for p in params]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        found.append(("no_var_args", "has *args or **kwargs; write the parameters out"))
    if "adata" in names and names[0] != "adata":
        found.append(("adata_first", f"adata is parameter {names.index('adata') + 1}, not the first"))
    if names and names[0] == "model":
        if qualname not in MODEL_FIRST:
            found.append(("model_first", "takes the model first; take the data first and model= keyword-only"))
    elif "model" in names and params[names.index("model")].kind is not inspect.Parameter.KEYWORD_ONLY:
        found.append(("model_keyword", "model is not keyword-only"))
    for i, p in enumerate(positional):
        if p.name not in DATA_ARGUMENTS and not (i == 0 and qualname in MODEL_FIRST):
            found.append(("keyword_only", f"{p.name} is positional; make it keyword-only (after *)"))
        elif i > 0 and p.default is not p.empty and p.name not in DATA_ARGUMENTS:
            found.append(("keyword_only", f"{p.name} is positional with a default; make it keyword-only"))
    if "copy" in names:
        copy = params[names.index("copy")]
        if copy.kind is not copy.KEYWORD_ONLY or copy.default is not False:
            found.append(("copy", "copy must be keyword-only with default False"))
    if "device" in names and params[names.index("device")].default is not None:
        found.append(("device", "device must default to None (meaning pk.settings.device)"))
    hints = _hints(function)
    for p in params:
        if p.name in CHOICE_PARAMETERS and isinstance(p.default, str):
            if p.name not in hints or not _is_literal(hints[p.name]):
                found.append(("literal", f"{p.name} chooses among strings; annotate it with Literal[...]"))
    if not inspect.isclass(obj) and inspect.signature(function).return_annotation is inspect.Signature.empty:
        found.append(("return_annotation", "has no return annotation"))
    doc = inspect.getdoc(obj) or ""
    if params:
        if _section(doc, "Parameters") is None:
            found.append(("docstring", "the docstring has no numpydoc Parameters section"))
        else:
            missing = [p.name for p in params if p.name not in _documented(doc)]
            if missing:
                found.append(("docstring", f"the Parameters section does not name {missing}"))
    if not inspect.isclass(obj) and _section(doc, "Returns") is None:
        found.append(("docstring", "the docstring has no numpydoc Returns section"))
    return found


@pytest.mark.parametrize(("qualname", "obj", "function"), FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
def test_sig_conventions(qualname, obj, function):
    if (qualname, "*") in EXCEPTIONS:
        pytest.skip(EXCEPTIONS[(qualname, "*")])
    broken = [
        f"{check}: {message}"
        for check, message in _violations(qualname, obj, function)
        if (qualname, check) not in EXCEPTIONS
    ]
    assert not broken, f"{qualname} breaks the API conventions:\n  " + "\n  ".join(broken)


def test_exceptions_are_still_needed():
    """An exception that no longer matches a violation is stale: remove it."""
    by_name = {qualname: (obj, function) for qualname, obj, function in FUNCTIONS}
    for (qualname, check), reason in EXCEPTIONS.items():
        assert qualname in by_name, f"exception for unknown function {qualname} ({reason})"
        if check == "*":
            continue
        checks = {c for c, _ in _violations(qualname, *by_name[qualname])}
        assert check in checks, f"{qualname} now passes {check!r}: remove its exception ({reason})"
    for qualname in MODEL_FIRST:
        assert qualname in by_name, f"MODEL_FIRST names unknown function {qualname}"


def test_every_namespace_is_walked():
    counts = {ns: sum(q.startswith(f"pk.{ns}.") for q, _, _ in FUNCTIONS) for ns in NAMESPACES}
    assert all(counts.values()), counts


# ------------------------------------------------------------------------------------------ layering and settings
def test_experiments_sit_above_tl():
    """``pk.experiments`` holds the papers' experiments; nothing below it imports it, and ``pk.tl`` has none."""
    from pathlib import Path

    import perturbkit as pk

    root = Path(pk.__file__).parent
    for path in root.rglob("*.py"):
        if "experiments" in path.relative_to(root).parts:
            continue
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) [.\w]*experiments", text, re.M), path
    moved = set(pk.experiments.__all__) & set(pk.tl.__all__)
    assert not moved and not any(hasattr(pk.tl, name) for name in pk.experiments.__all__), moved


def test_train_options_is_a_checked_mapping(morph):
    import perturbkit as pk
    from perturbkit.errors import PerturbkitInputError

    with pytest.raises(PerturbkitInputError, match=r"\['device'\] cannot go in train_options"):
        pk.experiments.vae_shuffled_control(morph, train_options={"device": "cpu"})
    with pytest.raises(PerturbkitInputError, match="train_options must be a dict"):
        pk.tl.select_beta(morph, train_options=[("max_epochs", 1)])
    with pytest.raises(PerturbkitInputError, match=r"\['latent_dim'\] cannot go in train_options"):
        pk.experiments.deepcellstate_latent_size_sweep(morph, source="a", target="b", train_options={"latent_dim": 4})


def test_verbosity_takes_effect():
    import pooch

    import perturbkit as pk
    from perturbkit.datasets._download import _pooch_log
    from perturbkit.errors import PerturbkitInputError

    before = pk.settings.verbosity, pk.settings.progress_bar
    try:
        pk.settings.progress_bar = True
        pk.settings.verbosity = 0
        assert pk.settings.progress_bar is False  # no bars at verbosity 0, whatever progress_bar says
        with _pooch_log():
            assert not pooch.get_logger().isEnabledFor(20)  # no "Downloading ..." (INFO) lines
        pk.settings.verbosity = 1
        assert pk.settings.progress_bar is True
        for bad in (3, -1, 1.5, "1", True):
            with pytest.raises(PerturbkitInputError, match="verbosity"):
                pk.settings.verbosity = bad
    finally:
        pk.settings.verbosity, pk.settings.progress_bar = before


def test_device_none_means_the_settings_device():
    import perturbkit as pk
    from perturbkit._settings import resolve_device

    before = pk.settings.device
    try:
        pk.settings.device = "cpu"
        assert str(resolve_device(None)) == "cpu"
    finally:
        pk.settings.device = before
