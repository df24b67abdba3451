"""``pk.tl.benchmark``: the papers' methods and their competitors, on the same folds, in one tidy table.

Each task has its folds (drawn once, from ``seed``) and its methods. A method is a small adapter: it gets one fold's
training data and what to predict, trains with its own defaults (overridden by ``method_options``) and returns its
predictions; the task scores every method's predictions the same way. Nothing here changes the user's AnnData.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .._schema import (
    OBS_KEYS,
    EmptyGroupError,
    PerturbkitInputError,
    UnknownOptionError,
    control_mask,
    dense_matrix,
    require_columns,
)
from .._settings import settings
from .._stats import pearson_rows
from ..metrics._response import METRICS, evaluate_response, r2_rows
from ..models._pairing import cell_lines_with_both
from ..models._profiles import CellDrugProfiles
from ..models.cyclecdr._model import UNPAIRED_SETTINGS

Task = Literal["cross_cell", "tensor_completion", "unseen_drug", "held_out_cell_type", "polypharmacology"]

#: Every task's methods, in the order they are run and drawn.
TASK_METHODS: dict[str, tuple[str, ...]] = {
    "cross_cell": ("deepcellstate", "anchor_vae", "scgen", "dual_gan", "ridge", "naive"),
    "tensor_completion": ("deepcellstate", "dnpp", "falrtc", "ridge", "naive"),
    "unseen_drug": ("cyclecdr_gat", "cyclecdr_fingerprint", "cpa", "no_change", "mean_response"),
    "held_out_cell_type": ("scgen", "cyclecdr", "cpa", "no_change", "mean_shift"),
    "polypharmacology": ("vae_vanilla", "vae_beta", "vae_mmd", "pca", "original"),
}

#: Each task's main metric and whether higher is better (``pk.pl.benchmark`` draws it by default).
PRIMARY_METRIC: dict[str, tuple[str, bool]] = {
    "cross_cell": ("pearson", True),
    "tensor_completion": ("pearson", True),
    "unseen_drug": ("r2_degs", True),
    "held_out_cell_type": ("squared_pearson_degs", True),
    "polypharmacology": ("l2", False),
}

#: The settings each method starts from (``method_options`` adds to them): the papers' own choices.
METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    "cyclecdr": UNPAIRED_SETTINGS,  # the held-out cell type (unpaired single cells)
    "cyclecdr_gat": {"drug_encoder": "gat"},
    "cyclecdr_fingerprint": {"drug_encoder": "fingerprint"},
    "vae_vanilla": {"kind": "vanilla"},
    "vae_beta": {"kind": "beta", "beta": 0.3},  # the paper's β for consensus Cell Painting profiles
    "vae_mmd": {"kind": "mmd", "lam": 1000.0},
}


@dataclass(frozen=True)
class DataKeys:
    """The obs columns a benchmark reads."""

    cell_key: str
    drug_key: str
    control_key: str | None
    smiles_key: str
    moa_key: str


# ---------------------------------------------------------------------------------------------------------- helpers
def _options_for(cls, options: Mapping[str, Any], *, builder: str, method: str) -> tuple[dict, dict]:
    """Split a method's options into those of its builder (``from_adata`` or the class) and of ``train``."""
    build = set(inspect.signature(getattr(cls, builder) if builder != "__init__" else cls).parameters)
    train = set(inspect.signature(cls.train).parameters) - {"self", "adata"}
    if builder == "__init__":  # the class takes the base model's keywords too
        build |= {"scaler", "layer"}
    unknown = set(options) - build - train
    if unknown:
        raise UnknownOptionError(
            f"method_options[{method!r}] has unknown option(s) {sorted(unknown)}; {cls.__name__} takes "
            f"{sorted((build | train) - {'self', 'adata', 'var_names', 'seed', 'device'})}."
        )
    return {k: v for k, v in options.items() if k in build and k not in train}, {
        k: v for k, v in options.items() if k in train
    }


def _profiles_model(cls, profiles: CellDrugProfiles, options, *, seed, device, method, cell_lines=None):
    """Build ``cls(var_names, cell_lines=...)`` and train it on per-(drug, cell line) profiles."""
    build, train = _options_for(cls, options, builder="__init__", method=method)
    cell_lines = list(profiles.cell_lines) if cell_lines is None else list(cell_lines)
    model = cls(profiles.var_names, cell_lines=cell_lines, seed=seed, device=device, **build)
    return model.train(profiles, seed=seed, **train)


def _anndata_model(cls, adata, options, *, seed, device, method, **keys):
    """``cls.from_adata(adata, **keys)`` trained on ``adata``."""
    build, train = _options_for(cls, options, builder="from_adata", method=method)
    model = cls.from_adata(adata, seed=seed, device=device, **keys, **build)
    return model.train(adata, seed=seed, **train)


def _profiles_anndata(profiles: CellDrugProfiles, keys: DataKeys) -> ad.AnnData:
    """The present profiles as rows of an AnnData (obs: cell line and drug; no controls)."""
    d, c = np.nonzero(profiles.present)
    obs = pd.DataFrame(
        {keys.cell_key: profiles.cell_lines[c].to_numpy(), keys.drug_key: profiles.drugs[d].to_numpy()},
        index=[f"{profiles.drugs[i]}@{profiles.cell_lines[j]}" for i, j in zip(d, c, strict=True)],
    )
    return ad.AnnData(profiles.values[d, c], obs=obs, var=pd.DataFrame(index=profiles.var_names))


def _timed(function: Callable, *args, **kwargs):
    start = time.perf_counter()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - start


def _folds(n_items: int, n_folds: int, seed: int, *, what: str) -> np.ndarray:
    """A balanced fold number for each of ``n_items`` items, in a seeded random order."""
    if n_items < n_folds:
        raise EmptyGroupError(f"only {n_items} {what} for n_folds={n_folds}; lower n_folds or add data.")
    fold = np.empty(n_items, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n_items)] = np.arange(n_items) % n_folds
    return fold


# ------------------------------------------------------------------------------------------------ cross-cell task
def _cross_cell_method(method: str):
    """Adapters ``(train_profiles, x, test_drugs, *, source, target, seed, device, options) -> predictions``."""

    def deepcellstate(train, x, drugs, *, source, target, seed, device, options, keys):
        from ..models.deepcellstate import DeepCellState

        model = _profiles_model(DeepCellState, train, options, seed=seed, device=device, method=method)
        return model.predict_array(x, target=target)

    def anchor_vae(train, x, drugs, *, source, target, seed, device, options, keys):
        from ..models.anchor_vae import AnchorVAE

        model = _profiles_model(AnchorVAE, train, options, seed=seed, device=device, method=method)
        return model.predict_array(x, target=target)

    def dual_gan(train, x, drugs, *, source, target, seed, device, options, keys):
        from ..models.dual_gan import DualGAN

        pair = train.subset(cell_lines=[source, target])
        model = _profiles_model(
            DualGAN, pair, options, seed=seed, device=device, method=method, cell_lines=[source, target]
        )
        return model.predict_array(x, target=target)

    def scgen(train, x, drugs, *, source, target, seed, device, options, keys):
        from ..models.scgen import ScGen

        rows = _profiles_anndata(train, keys)
        model = _anndata_model(
            ScGen,
            rows,
            options,
            seed=seed,
            device=device,
            method=method,
            cell_key=keys.cell_key,
            drug_key=keys.drug_key,
            control_key=None,
        )
        test = ad.AnnData(
            x,
            obs=pd.DataFrame({keys.cell_key: source, keys.drug_key: drugs}, index=[f"{d}@{source}" for d in drugs]),
            var=pd.DataFrame(index=train.var_names),
        )
        pred = model.predict(test, target=target, sources=[source])
        return pred[pd.Index(pred.obs[keys.drug_key].astype(str)).get_indexer(drugs)].X

    def ridge(train, x, drugs, *, source, target, seed, device, options, keys):
        from ..models.baselines import RidgeMap

        s, t = train.cell_index(source), train.cell_index(target)
        both = train.present[:, s] & train.present[:, t]
        return RidgeMap(**options).fit(train.values[both, s], train.values[both, t]).predict(x)

    def naive(train, x, drugs, *, source, target, seed, device, options, keys):
        return np.asarray(x, dtype=np.float32)

    return locals()[method]


def _profile_scores(predicted: np.ndarray, measured: np.ndarray) -> dict[str, np.ndarray]:
    return {"pearson": pearson_rows(predicted, measured), "r2": r2_rows(predicted, measured)}


def _run_cross_cell(
    profiles: CellDrugProfiles, methods, *, n_folds, run_folds, seed, device, options, keys, source, target
):
    cells = list(profiles.cell_lines)
    if len(cells) < 2:
        raise EmptyGroupError(
            f"task='cross_cell' needs two cell lines in obs[{keys.cell_key!r}]; the data have {cells}."
        )
    target = cells[0] if target is None else str(target)
    source = next(c for c in cells if c != target) if source is None else str(source)
    s, t = profiles.cell_index(source), profiles.cell_index(target)
    candidates = np.flatnonzero(profiles.present[:, s] & profiles.present[:, t])
    fold_of = _folds(len(candidates), n_folds, seed, what=f"drugs measured in both {source} and {target}")
    for fold in run_folds:
        test = candidates[fold_of == fold]
        is_test = np.zeros(len(profiles.drugs), dtype=bool)
        is_test[test] = True
        train = profiles.subset(drugs=~is_test)  # test drugs are unseen in every cell line
        x, y, drugs = profiles.values[test, s], profiles.values[test, t], list(profiles.drugs[test])
        for method in methods:
            adapter = _cross_cell_method(method)
            predicted, seconds = _timed(
                adapter,
                train,
                x,
                drugs,
                source=source,
                target=target,
                seed=seed + fold,
                device=device,
                options=options[method],
                keys=keys,
            )
            yield method, fold, pd.DataFrame({"group": drugs, **_profile_scores(predicted, y)}), seconds


# ----------------------------------------------------------------------------------------- tensor completion task
def _tensor_method(method: str):
    """Adapters ``(observed_profiles, hidden (drug, cell) positions, *, ...) -> predicted profiles``."""

    def from_sources(observed: CellDrugProfiles, hidden, predict_one):
        out = np.zeros((len(hidden), observed.n_features), dtype=np.float32)
        for i, (d, c) in enumerate(hidden):
            sources = np.flatnonzero(observed.present[d])
            out[i] = np.mean([predict_one(observed.values[d, s][None], s, c)[0] for s in sources], axis=0)
        return out

    def deepcellstate(observed, hidden, *, seed, device, options):
        from ..models.deepcellstate import DeepCellState

        model = _profiles_model(DeepCellState, observed, options, seed=seed, device=device, method=method)
        names = observed.cell_lines
        return from_sources(observed, hidden, lambda x, s, c: model.predict_array(x, target=names[c]))

    def ridge(observed, hidden, *, seed, device, options):
        from ..models.baselines import RidgeMap

        maps = {}

        def predict_one(x, s, c):
            if (s, c) not in maps:
                both = observed.present[:, s] & observed.present[:, c]
                maps[s, c] = RidgeMap(**options).fit(observed.values[both, s], observed.values[both, c])
            return maps[s, c].predict(x)

        return from_sources(observed, hidden, predict_one)

    def naive(observed, hidden, *, seed, device, options):
        return from_sources(observed, hidden, lambda x, s, c: x)

    def completion(kind):
        def complete(observed, hidden, *, seed, device, options):
            from ..models import tensor_completion

            tensor = np.transpose(observed.values, (1, 0, 2))  # cell line × drug × gene
            completed = getattr(tensor_completion, kind)(tensor, observed.present.T, **options)
            return np.stack([completed[c, d] for d, c in hidden]).astype(np.float32)

        return complete

    adapters = {"deepcellstate": deepcellstate, "ridge": ridge, "naive": naive}
    adapters |= {"falrtc": completion("falrtc"), "dnpp": completion("dnpp")}
    return adapters[method]


def _run_tensor_completion(profiles: CellDrugProfiles, methods, *, n_folds, run_folds, seed, device, options, keys):
    if len(profiles.cell_lines) < 2:
        raise EmptyGroupError(
            f"task='tensor_completion' needs at least two cell lines in obs[{keys.cell_key!r}]; the data have "
            f"{list(profiles.cell_lines)}."
        )
    # the (drug, cell line) profiles that can be hidden: drugs measured in at least two cell lines
    entries = np.argwhere(profiles.present & (profiles.present.sum(axis=1) >= 2)[:, None])
    fold_of = _folds(len(entries), n_folds, seed, what="(drug, cell line) profiles of drugs measured twice or more")
    for fold in run_folds:
        hidden = entries[fold_of == fold]
        present = profiles.present.copy()
        present[hidden[:, 0], hidden[:, 1]] = False
        # only profiles whose drug keeps another measured profile can be predicted from it
        hidden = hidden[present[hidden[:, 0]].any(axis=1)]
        observed = CellDrugProfiles(
            np.where(present[..., None], profiles.values, 0.0).astype(np.float32),
            present,
            profiles.drugs,
            profiles.cell_lines,
            profiles.var_names,
            profiles.moa,
        )
        truth = profiles.values[hidden[:, 0], hidden[:, 1]]
        groups = [f"{profiles.drugs[d]} @ {profiles.cell_lines[c]}" for d, c in hidden]
        for method in methods:
            predicted, seconds = _timed(
                _tensor_method(method), observed, hidden, seed=seed + fold, device=device, options=options[method]
            )
            yield method, fold, pd.DataFrame({"group": groups, **_profile_scores(predicted, truth)}), seconds


# -------------------------------------------------------------------------- control → treated tasks (drugs, cells)
def _response_method(method: str):
    """Adapters ``(train, controls, drugs, *, keys, ...) -> predicted treated profiles (AnnData)``."""

    def cyclecdr(train, controls, drugs, *, keys, seed, device, options, paired):
        from ..models.cyclecdr import CycleCDR

        options = dict(options)
        encoder = options.pop("drug_encoder", "onehot" if not isinstance(drugs, Mapping) else "gat")
        model = _anndata_model(
            CycleCDR,
            train,
            {"paired": paired, **options},
            seed=seed,
            device=device,
            method=method,
            drug_encoder=encoder,
            **_response_keys(keys, encoder),
        )
        return model.predict(controls, drugs=drugs)

    def cpa(train, controls, drugs, *, keys, seed, device, options, paired):
        from ..models.cpa import CPA

        options = dict(options)
        if not isinstance(drugs, Mapping):  # known drugs, perhaps without SMILES: the one-hot encoder
            options.setdefault("drug_encoder", "onehot")
        model = _anndata_model(
            CPA,
            train,
            options,
            seed=seed,
            device=device,
            method=method,
            **_response_keys(keys, options.get("drug_encoder")),
        )
        return model.predict(controls, drugs=drugs)

    def scgen(train, controls, drugs, *, keys, seed, device, options, paired):
        from ..models.scgen import ScGen

        model = _anndata_model(
            ScGen,
            train,
            options,
            seed=seed,
            device=device,
            method=method,
            cell_key=keys.cell_key,
            drug_key=keys.drug_key,
            control_key=keys.control_key,
        )
        return model.predict(controls, drugs=list(drugs))

    def no_change(train, controls, drugs, *, keys, seed, device, options, paired):
        from ..models.baselines import predict_no_change

        return predict_no_change(controls, drugs=list(drugs), drug_key=keys.drug_key, **options)

    def mean_response(train, controls, drugs, *, keys, seed, device, options, paired, weight_by="row"):
        from ..models.baselines import predict_mean_response

        cells = train.obs[keys.cell_key].astype(str).to_numpy()
        both = cell_lines_with_both(train, control_key=keys.control_key, cell_key=keys.cell_key)
        return predict_mean_response(
            controls,
            drugs=list(drugs),
            training_data=train[np.isin(cells, both)],
            drug_key=keys.drug_key,
            control_key=keys.control_key,
            cell_key=keys.cell_key,
            weight_by=weight_by,
            **options,
        )

    def mean_shift(train, controls, drugs, **kwargs):  # each other cell type counts once, however many cells it has
        return mean_response(train, controls, drugs, weight_by="cell_line", **kwargs)

    adapters = {
        "cyclecdr": cyclecdr,
        "cyclecdr_gat": cyclecdr,
        "cyclecdr_fingerprint": cyclecdr,
        "cpa": cpa,
        "scgen": scgen,
        "no_change": no_change,
        "mean_response": mean_response,
        "mean_shift": mean_shift,
    }
    return adapters[method]


def _response_keys(keys: DataKeys, encoder) -> dict:
    out = {"drug_key": keys.drug_key, "control_key": keys.control_key, "cell_key": keys.cell_key}
    if encoder != "onehot":
        out["smiles_key"] = keys.smiles_key
    return out


def _score_response(pred, truth, *, keys, n_degs):
    table = evaluate_response(
        pred, truth, groupby=[keys.cell_key, keys.drug_key], control=keys.control_key, n_degs=n_degs
    )
    groups = table[keys.drug_key].astype(str) + " @ " + table[keys.cell_key].astype(str)
    return pd.DataFrame({"group": groups.to_numpy(), **{m: table[m].to_numpy() for m in METRICS}})


def _run_unseen_drug(adata, methods, *, n_folds, run_folds, seed, device, options, keys, n_degs, paired):
    from ..models.baselines import control_means

    require_columns(
        adata,
        {"cell_key": keys.cell_key, "drug_key": keys.drug_key, "smiles_key": keys.smiles_key},
        purpose="task='unseen_drug' (drugs are held out by their SMILES)",
    )
    is_control = control_mask(adata, keys.control_key)
    treated = adata.obs.loc[~is_control, [keys.drug_key, keys.smiles_key]].astype(str)
    smiles_of = dict(zip(treated[keys.drug_key], treated[keys.smiles_key], strict=False))
    structures = pd.Index(pd.unique(treated[keys.smiles_key]))  # drugs with one structure leave together
    fold_of = _folds(len(structures), n_folds, seed, what="distinct SMILES among the treated rows")
    drug_smiles = adata.obs[keys.smiles_key].astype(str).to_numpy()
    cells = adata.obs[keys.cell_key].astype(str).to_numpy()
    for fold in run_folds:
        is_test = np.isin(drug_smiles, structures[fold_of == fold]) & ~is_control
        train = adata[~is_test].copy()
        test_cells = pd.unique(cells[is_test])
        truth = adata[(is_test | is_control) & np.isin(cells, test_cells)]
        sources = control_means(train, control_key=keys.control_key, cell_key=keys.cell_key)
        sources = sources[sources.obs[keys.cell_key].astype(str).isin(test_cells).to_numpy()].copy()
        drugs = {d: smiles_of[d] for d in pd.unique(adata.obs[keys.drug_key].astype(str).to_numpy()[is_test])}
        for method in methods:
            pred, seconds = _timed(
                _response_method(method),
                train,
                sources,
                drugs,
                keys=keys,
                seed=seed + fold,
                device=device,
                options=options[method],
                paired=paired,
            )
            yield method, fold, _score_response(pred, truth, keys=keys, n_degs=n_degs), seconds


def _run_held_out_cell_type(adata, methods, *, n_folds, run_folds, seed, device, options, keys, n_degs):
    require_columns(adata, {"cell_key": keys.cell_key, "drug_key": keys.drug_key}, purpose="task='held_out_cell_type'")
    is_control = control_mask(adata, keys.control_key)
    cells = adata.obs[keys.cell_key].astype(str).to_numpy()
    eligible = sorted(cell_lines_with_both(adata, control_key=keys.control_key, cell_key=keys.cell_key))
    if len(eligible) < 2:
        raise EmptyGroupError(
            f"task='held_out_cell_type' needs at least two cell types (obs[{keys.cell_key!r}]) with both control and "
            f"treated cells; found {eligible}."
        )
    n_folds = min(n_folds, len(eligible))
    held_types = list(np.random.default_rng(seed).permutation(eligible)[:n_folds])
    for fold, cell_type in enumerate(held_types):
        if fold not in run_folds:
            continue
        in_type = cells == cell_type
        held = in_type & ~is_control
        train = adata[~held].copy()
        controls = adata[in_type & is_control].copy()
        truth = adata[in_type]
        drugs = list(pd.unique(adata.obs[keys.drug_key].astype(str).to_numpy()[held]))
        for method in methods:
            pred, seconds = _timed(
                _response_method(method),
                train,
                controls,
                drugs,
                keys=keys,
                seed=seed + fold,
                device=device,
                options=options[method],
                paired=False,
            )
            yield method, fold, _score_response(pred, truth, keys=keys, n_degs=n_degs), seconds


# ----------------------------------------------------------------------------------------- polypharmacology task
def _lsa_fold(data, train_rows, held, method, options, *, seed, device, keys) -> pd.DataFrame:
    """Fit one method on the training rows and score latent arithmetic on the held-out ``A|B`` groups."""
    from ._arithmetic import latent_arithmetic

    if method == "original":
        model = None
    elif method == "pca":
        from sklearn.decomposition import PCA

        X = np.asarray(data.X[train_rows])
        model = PCA(n_components=min(10, *X.shape), random_state=seed, **options).fit(X)
    else:
        from ..models.vae import VAE

        model = VAE.build_and_train(data[train_rows], seed=seed, device=device, **options)
    table = latent_arithmetic(data, model=model, moa_key=keys.moa_key, n_shuffles=0, seed=seed)
    return table[table["group"].isin(held)]


def _run_polypharmacology(adata, methods, *, n_folds, run_folds, seed, device, options, keys, layer):
    from ..models.vae._arithmetic import lsa_filter

    require_columns(adata, {"moa_key": keys.moa_key}, purpose="task='polypharmacology' (latent space arithmetic)")
    X = dense_matrix(adata, layer)
    data = ad.AnnData(X, obs=adata.obs[[keys.moa_key]].copy(), var=pd.DataFrame(index=adata.var_names))
    groups = lsa_filter(data.obs[keys.moa_key].to_numpy(dtype=object), control="DMSO")
    eligible = np.asarray(groups.eligible, dtype=object)
    if len(eligible) == 0:
        raise EmptyGroupError(f"task='polypharmacology' found no eligible 'A|B' group: {groups.message}")
    fold_of = _folds(len(eligible), n_folds, seed, what="eligible 'A|B' groups")
    row_group = np.asarray(groups.row_group, dtype=object)
    for fold in run_folds:
        held = set(eligible[fold_of == fold])
        train_rows = np.array([g not in held for g in row_group])  # the held-out A|B profiles train nothing
        for method in methods:
            table, seconds = _timed(
                _lsa_fold, data, train_rows, held, method, options[method], seed=seed + fold, device=device, keys=keys
            )
            yield (
                method,
                fold,
                pd.DataFrame(
                    {
                        "group": table["group"].to_numpy(),
                        "l2": table["l2"].to_numpy(),
                        "pearson": table["pearson"].to_numpy(),
                    }
                ),
                seconds,
            )


# ----------------------------------------------------------------------------------------------------- the face
def benchmark(
    adata,
    *,
    task: Task,
    methods: Sequence[str] | None = None,
    n_folds: int = 5,
    folds: Sequence[int] | None = None,
    seed: int = 0,
    source: str | None = None,
    target: str | None = None,
    paired: bool = True,
    n_degs: int = 50,
    cell_key: str = OBS_KEYS.cell_key,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str = OBS_KEYS.control_key,
    smiles_key: str = OBS_KEYS.smiles_key,
    moa_key: str = OBS_KEYS.moa_key,
    layer: str | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    device: str | None = None,
) -> pd.DataFrame:
    """Run every method of a task on the same folds and score them the same way.

    Tasks and their methods (:data:`TASK_METHODS`):

    - ``"cross_cell"`` (DeepCellState's): a drug's profile in ``target`` from its profile in ``source``; the folds
      hold drugs out in every cell line. Methods: ``deepcellstate``, ``anchor_vae``, ``scgen`` (the DeepCellState
      paper's adaptation: the latent difference between cell lines), ``dual_gan``, ``ridge``, ``naive`` (the
      source profile itself). Scored per drug by Pearson and r² over genes.
    - ``"tensor_completion"``: random (drug, cell line) profiles are hidden (each fold hides a share of the
      profiles of drugs measured in two or more cell lines) and predicted from everything else. Methods:
      ``deepcellstate`` (each hidden profile decoded from the drug's other profiles, averaged), ``dnpp``,
      ``falrtc``, ``ridge`` (one map per pair of cell lines, averaged), ``naive`` (the mean of the drug's other
      profiles). Scored per hidden profile.
    - ``"unseen_drug"`` (cycleCDR's): drugs held out by SMILES and predicted from each cell line's control mean.
      Methods: ``cyclecdr_gat``, ``cyclecdr_fingerprint``, ``cpa``, ``no_change``, ``mean_response``.
    - ``"held_out_cell_type"`` (scGen's): one cell type's treated cells per fold are held out and predicted from
      its control cells; ``n_folds`` cell types are drawn. Methods: ``scgen``, ``cyclecdr`` (unpaired), ``cpa``,
      ``no_change``, ``mean_shift`` (the control plus the mean treated − control shift of the other cell types,
      each type weighted equally).
      The control → treated tasks are scored per (cell line, drug) by :func:`~perturbkit.metrics.evaluate_response`.
    - ``"polypharmacology"`` (the VAE paper's latent space arithmetic): each fold's ``"A|B"`` profiles are left out
      of training and predicted as ``decode(mean(A) − mean(DMSO) + mean(B))``. Methods: ``vae_vanilla``,
      ``vae_beta``, ``vae_mmd``, ``pca`` (10 components) and ``original`` (arithmetic in the feature space).
      Scored per ``A|B`` by L2 distance (lower is better) and Pearson.

    Every method trains with its paper's defaults; ``method_options`` changes them per method (e.g. fewer epochs
    for a quick look). The folds are drawn once from ``seed`` and shared by every method; fold ``k`` trains with
    seed ``seed + k``.

    Parameters
    ----------
    adata
        Profiles with the obs columns the task reads (not modified).
    task
        Which comparison to run (see above).
    methods
        Names of the task's methods to run (default: all of them, in :data:`TASK_METHODS` order).
    n_folds
        Number of folds, at least 2 (``"held_out_cell_type"``: the number of cell types held out, one per fold; 1 is
        allowed).
    folds
        Run only these folds of the ``n_folds`` split (e.g. ``[0]`` for a first look at a large data set); default:
        all of them.
    seed
        Draws the folds and seeds each method's training.
    source, target
        ``"cross_cell"``: the cell lines predicted from and into (default: the first cell line is the target, the
        next one the source).
    paired
        ``"unseen_drug"``: bulk profiles (cycleCDR's paired loss against each cell line's control mean); ``False``
        for single cells (cycleCDR's adversarial training).
    n_degs
        Number of differentially expressed genes for the ``*_degs`` scores of the control → treated tasks.
    cell_key, drug_key, control_key, smiles_key, moa_key
        obs columns: cell line (type), drug, control flag, SMILES and MOA.
    layer
        Read ``adata.layers[layer]`` instead of X.
    method_options
        ``{method: {option: value}}`` passed to each method's trainer (e.g.
        ``{"deepcellstate": {"max_epochs": 20}}``).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``None`` means ``pk.settings.device``.

    Returns
    -------
    A tidy table, one row per (method, fold, group): ``task``, ``method``, ``fold``, ``group``, one column per
    metric, and ``train_seconds`` (the method's training and prediction time in that fold).
    ``attrs`` hold ``task``, ``primary_metric``, ``higher_is_better``, ``n_folds`` and ``seed``. Draw it with
    :func:`perturbkit.pl.benchmark`.

    Examples
    --------
    >>> table = pk.tl.benchmark(adata, task="cross_cell", n_folds=10)
    >>> table.groupby("method")["pearson"].mean().sort_values()
    >>> pk.pl.benchmark(table)
    """
    if task not in TASK_METHODS:
        raise PerturbkitInputError(f"task={task!r} is not known; choose one of {list(TASK_METHODS)}.")
    available = TASK_METHODS[task]
    methods = (
        list(available) if methods is None else [str(m) for m in ([methods] if isinstance(methods, str) else methods)]
    )
    unknown = [m for m in methods if m not in available]
    if unknown or not methods:
        raise UnknownOptionError(
            f"methods {unknown or methods} are not methods of task={task!r}; it has {list(available)}."
        )
    smallest = 1 if task == "held_out_cell_type" else 2
    if int(n_folds) < smallest:
        raise PerturbkitInputError(
            f"n_folds={n_folds!r}: task={task!r} needs at least {smallest} folds "
            + ("(one fold would hold out everything and leave nothing to train on)." if smallest == 2 else ".")
        )
    run_folds = list(range(int(n_folds))) if folds is None else sorted({int(f) for f in folds})
    if not run_folds or any(f < 0 or f >= int(n_folds) for f in run_folds):
        raise PerturbkitInputError(f"folds={folds!r} must name folds among 0..{int(n_folds) - 1}.")
    method_options = dict(method_options or {})
    stray = sorted(set(method_options) - set(methods))
    if stray:
        raise UnknownOptionError(
            f"method_options names {stray}, which this run does not include; its methods are {methods}."
        )
    options = {m: {**METHOD_SETTINGS.get(m, {}), **method_options.get(m, {})} for m in methods}
    keys = DataKeys(cell_key, drug_key, control_key, smiles_key, moa_key)
    common = dict(n_folds=int(n_folds), run_folds=run_folds, seed=int(seed), device=device, options=options, keys=keys)
    if task in ("cross_cell", "tensor_completion"):
        profiles = CellDrugProfiles.from_adata(
            adata, cell_key=cell_key, drug_key=drug_key, control_key=control_key, moa_key=None, layer=layer
        )
        runs = (
            _run_cross_cell(profiles, methods, source=source, target=target, **common)
            if task == "cross_cell"
            else _run_tensor_completion(profiles, methods, **common)
        )
    else:
        data = adata if layer is None else ad.AnnData(dense_matrix(adata, layer), obs=adata.obs, var=adata.var)
        if task == "unseen_drug":
            runs = _run_unseen_drug(data, methods, n_degs=n_degs, paired=paired, **common)
        elif task == "held_out_cell_type":
            runs = _run_held_out_cell_type(data, methods, n_degs=n_degs, **common)
        else:
            runs = _run_polypharmacology(data, methods, layer=None, **common)
    frames = []
    total = len(run_folds) * len(methods)
    with tqdm(total=total, desc=f"benchmark: {task}", disable=not settings.progress_bar) as bar:
        for method, fold, scores, seconds in runs:
            frames.append(scores.assign(method=method, fold=fold, train_seconds=seconds))
            bar.set_postfix_str(f"{method}, fold {fold}")
            bar.update()
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "task", task)
    metrics = [c for c in table.columns if c not in ("task", "method", "fold", "group", "train_seconds")]
    table = table[["task", "method", "fold", "group", *metrics, "train_seconds"]]
    primary, higher = PRIMARY_METRIC[task]
    table.attrs.update(
        {
            "task": task,
            "primary_metric": primary,
            "higher_is_better": higher,
            "n_folds": int(n_folds),
            "seed": int(seed),
        }
    )
    return table
