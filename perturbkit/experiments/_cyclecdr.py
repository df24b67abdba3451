"""cycleCDR's paper ablation (Table 1) with the baselines, scored on held-out drugs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import anndata as ad
import pandas as pd

from .._schema import OBS_KEYS, PerturbkitInputError, control_mask, numeric_column, require_columns
from ..metrics import evaluate_response
from ..models.baselines import control_means, response_baselines
from ..tl import train_cyclecdr
from ..tl._options import trainer_options

#: The variants of :func:`cyclecdr_ablation`: name → :func:`~perturbkit.tl.train_cyclecdr` settings changed.
CYCLECDR_ABLATIONS = {
    "dual AE": {},
    "single AE": {"single_autoencoder": True},
    "dual AE, no reconstruction": {"use_reconstruction": False},
    "dual AE, with cycle": {"use_cycle": True},
    "dual AE, no cycle": {"use_cycle": False},
    "single AE, no reconstruction, no cycle": {
        "single_autoencoder": True,
        "use_reconstruction": False,
        "use_cycle": False,
    },
}


def _predict_test_drugs(model, sources, smiles: dict, test, *, drug_key: str, dose_key: str | None):
    """The model's predictions for the test drugs; a model trained with doses predicts every dose they were given."""
    if not model.hparams["use_dose"]:
        return model.predict(sources, drugs=smiles)
    doses = pd.DataFrame(
        {"drug": test.obs[drug_key].astype(str).to_numpy(), "dose": numeric_column(test, dose_key)}
    ).drop_duplicates()
    parts = [
        model.predict(sources, drugs={d: smiles[d] for d in group["drug"]}, doses=dose)
        for dose, group in doses.groupby("dose")
    ]
    return ad.concat(parts, index_unique="@")


def cyclecdr_ablation(
    adata: ad.AnnData,
    *,
    test_drugs: str | Sequence[str],
    variants: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
    drug_encoder: Literal["gat", "fingerprint"] = "gat",
    paired: bool = True,
    baselines: bool = True,
    n_degs: int = 50,
    seed: int = 0,
    device: str | None = None,
    train_options: Mapping[str, Any] | None = None,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str = OBS_KEYS.control_key,
    smiles_key: str = OBS_KEYS.smiles_key,
    cell_key: str = OBS_KEYS.cell_key,
    dose_key: str | None = None,
) -> pd.DataFrame:
    """The paper's ablation (Table 1) and the baselines, scored on held-out drugs.

    Every variant is trained on ``adata`` without ``test_drugs`` and predicts them: from each cell line's control
    mean (``paired=True``) or from every control cell (``paired=False``). With ``dose_key``, each test drug is
    predicted at every dose it was measured at. Predictions are scored against the measured profiles with
    :func:`~perturbkit.metrics.evaluate_response`, grouped by cell line and drug.

    Parameters
    ----------
    adata
        Profiles with obs ``drug_key``, ``control_key`` (bool), ``smiles_key`` and ``cell_key``, as for
        :func:`~perturbkit.tl.train_cyclecdr`.
    test_drugs
        The held-out drug(s): unseen in training, predicted and scored.
    variants
        Names of :data:`CYCLECDR_ABLATIONS` (default: all of them), or ``{name: train_cyclecdr settings}`` for
        variants of your own.
    drug_encoder
        ``"gat"`` or ``"fingerprint"``: the test drugs are unseen, so they need a structure encoder.
    paired
        Bulk data (``True``: control means, paired loss) or single cells (``False``: adversarial training).
    baselines
        Add the "no change" and "mean treated response" baselines (rows ``"baseline: ..."``).
    n_degs
        Number of differentially expressed genes for the ``*_degs`` scores.
    seed
        Seeds every training run.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``None`` means ``pk.settings.device``.
    train_options
        Further keyword arguments of :func:`~perturbkit.tl.train_cyclecdr` for every variant (e.g.
        ``{"max_epochs": 50}``); a variant's own settings take precedence. Its defaults apply to the rest.
    drug_key, control_key, smiles_key, cell_key, dose_key
        obs columns of the drug, the control flag, the SMILES, the cell line and (optionally) the dose.

    Returns
    -------
    One row per model (index ``model``: ``"cycleCDR: <variant>"``, ``"baseline: <name>"``): the mean ``r2``,
    ``r2_degs``, ``explained_variance``, ``explained_variance_degs`` and ``pearson_delta`` over the (cell line,
    drug) groups of the test drugs, and ``n_groups``. Plot with :func:`perturbkit.pl.response_bars`.

    Examples
    --------
    >>> table = pk.experiments.cyclecdr_ablation(adata, test_drugs=held_out, variants=["dual AE", "single AE"])
    >>> pk.pl.response_bars(table)
    """
    if drug_encoder not in ("gat", "fingerprint"):
        raise PerturbkitInputError(
            f"drug_encoder={drug_encoder!r}: the test drugs are unseen in training, so they "
            f"need a structure encoder; use 'gat' or 'fingerprint'."
        )
    train_kwargs = trainer_options(
        train_options,
        function="pk.experiments.cyclecdr_ablation",
        trainer="pk.tl.train_cyclecdr",
        reserved=("drug_key", "control_key", "smiles_key", "cell_key", "dose_key", "paired"),
        drug_encoder=drug_encoder,
        seed=seed,
        device=device,
        dose_key=dose_key,
    )
    if variants is None:
        variants = dict(CYCLECDR_ABLATIONS)
    elif isinstance(variants, str) or not isinstance(variants, Mapping):
        variants = [variants] if isinstance(variants, str) else list(variants)
        unknown = [v for v in variants if v not in CYCLECDR_ABLATIONS]
        if unknown:
            raise PerturbkitInputError(
                f"unknown ablation variants {unknown}; choose from {list(CYCLECDR_ABLATIONS)} "
                f"or pass variants={{name: train_cyclecdr settings}}."
            )
        variants = {v: CYCLECDR_ABLATIONS[v] for v in variants}
    test_drugs = [str(d) for d in ([test_drugs] if isinstance(test_drugs, str) else test_drugs)]
    require_columns(
        adata, {"drug_key": drug_key, "smiles_key": smiles_key, "cell_key": cell_key}, purpose="the cycleCDR ablation"
    )
    is_control = control_mask(adata, control_key)
    drug = adata.obs[drug_key].astype(str)
    is_test = drug.isin(test_drugs).to_numpy() & ~is_control
    missing = sorted(set(test_drugs) - set(drug[is_test]))
    if missing:
        raise PerturbkitInputError(f"test drugs {missing[:5]} have no treated rows in adata.")
    train = adata[~is_test].copy()
    truth = adata[is_test | is_control]
    test_cells = set(adata.obs[cell_key].astype(str)[is_test])
    truth = truth[truth.obs[cell_key].astype(str).isin(test_cells).to_numpy()]
    sources = (
        control_means(train, control_key=control_key, cell_key=cell_key)
        if paired
        else train[control_mask(train, control_key)].copy()
    )
    sources = sources[sources.obs[cell_key].astype(str).isin(test_cells).to_numpy()].copy()
    smiles = dict(zip(drug[is_test], adata.obs[smiles_key].astype(str)[is_test], strict=True))
    keys = dict(drug_key=drug_key, control_key=control_key, smiles_key=smiles_key, cell_key=cell_key)
    predictions = {}
    for name, overrides in variants.items():
        model = train_cyclecdr(train, paired=paired, **keys, **{**train_kwargs, **overrides})
        predictions[f"cycleCDR: {name}"] = _predict_test_drugs(
            model, sources, smiles, adata[is_test], drug_key=drug_key, dose_key=dose_key
        )
    if baselines:
        baseline_predictions = response_baselines(
            sources,
            drugs=list(smiles),
            training_data=train,
            drug_key=drug_key,
            control_key=control_key,
            cell_key=cell_key,
        )
        predictions.update({f"baseline: {k}": v for k, v in baseline_predictions.items()})
    columns = ["r2", "r2_degs", "explained_variance", "explained_variance_degs", "pearson_delta"]
    rows = {}
    for name, pred in predictions.items():
        table = evaluate_response(pred, truth, groupby=[cell_key, drug_key], control=control_key, n_degs=n_degs)
        rows[name] = {**{c: float(table[c].mean()) for c in columns if c in table}, "n_groups": len(table)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
