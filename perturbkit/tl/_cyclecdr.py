"""pk.tl faces of cycleCDR (methods.md §3): training and the no-change / mean-response baselines."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from .._schema import (
    GeneMismatchError,
    PerturbkitInputError,
    control_mask,
    dense_matrix,
    numeric_column,
    require_columns,
    storable,
)
from ..models.cyclecdr import CycleCDR
from ..models.cyclecdr._pairing import control_profiles, prediction_obs

ENCODERS = ("gat", "fingerprint", "onehot")


def train_cyclecdr(
    adata,
    *,
    drug_key: str = "drug",
    control_key: str = "control",
    smiles_key: str = "smiles",
    dose_key: str | None = None,
    paired: bool = True,
    drug_encoder: str = "gat",
    device: str = "auto",
    seed: int = 0,
    cell_key: str = "cell_line",
    plate_key: str | None = None,
    control_obs: str | None = None,
    latent_dim: int = 128,
    hidden=(512, 512),
    single_autoencoder: bool = False,
    use_reconstruction: bool = True,
    use_cycle: bool | None = None,
    cycle_weight: float = 10.0,
    identity_weight: float | None = None,
    adversarial_weight: float = 1.0,
    gene_weights: bool = False,
    lr: float = 1e-3,
    weight_decay: float = 1e-6,
    batch_size: int = 512,
    max_epochs: int = 100,
    patience: int | None = 10,
    validation_fraction: float = 0.1,
    layer: str | None = None,
    checkpoint_dir=None,
    checkpoint_every: int = 10,
    resume=None,
) -> CycleCDR:
    """Train cycleCDR: control → treated profiles through a drug embedding added in latent space.

    Parameters
    ----------
    adata
        Profiles (rows × genes) with obs ``drug_key``, ``control_key`` (bool), ``smiles_key``, ``cell_key``.
        Use log-scale values (bulk z-scores, or log-normalised single cells); genes are z-scored inside the model.
    paired
        ``True`` (bulk): each treated row is matched with its control — the mean of the control rows of its cell
        line (and plate, with ``plate_key``), or the row named in ``obs[control_obs]`` — and the loss is
        reconstruction + paired MSE. ``False`` (single cells): random controls of the same cell type, with
        discriminators and the adversarial, cycle (λ = ``cycle_weight``) and identity losses.
    drug_encoder
        ``"gat"`` (graph attention network on the SMILES graph), ``"fingerprint"`` (Morgan fingerprint → MLP) or
        ``"onehot"`` (known drugs only).
    dose_key
        With a dose column, the drug embedding is multiplied by a learned dose factor.
    single_autoencoder, use_reconstruction, use_cycle, identity_weight, gene_weights
        The paper's ablation switches and the reference code's |log fold change| gene weights.
    lr, weight_decay, batch_size, max_epochs, patience, validation_fraction
        Adam settings (reference: weight decay 1e-6, batch 512, 100 epochs); early stopping on held-out drugs.
    checkpoint_dir, checkpoint_every, resume
        Write a checkpoint (a loadable model file plus the training state) to ``checkpoint_dir/checkpoint.pt``
        every ``checkpoint_every`` epochs; ``resume=`` that file (or folder) continues the run exactly. Ctrl-C
        ends training with the best weights so far, and the model is returned.

    Returns
    -------
    The trained :class:`~perturbkit.models.cyclecdr.CycleCDR`; settings and a summary go to ``adata.uns['cyclecdr']``.
    """
    if drug_encoder not in ENCODERS:
        raise PerturbkitInputError(f"drug_encoder={drug_encoder!r} is not known; use one of {ENCODERS}.")
    keys = {"drug_key": drug_key, "control_key": control_key, "cell_key": cell_key}
    if drug_encoder != "onehot":
        keys["smiles_key"] = smiles_key
    if dose_key is not None:
        keys["dose_key"] = dose_key
    require_columns(adata, keys, purpose="cycleCDR training")
    treated = ~control_mask(adata, control_key)
    obs = adata.obs.loc[treated]
    if drug_encoder == "onehot" and smiles_key not in adata.obs:
        drugs = {str(d): "" for d in pd.unique(obs[drug_key].astype(str))}
    else:
        table = obs[[drug_key, smiles_key]].astype(str).drop_duplicates()
        clash = table[table[drug_key].duplicated(keep=False)]
        if len(clash):
            raise PerturbkitInputError(f"some drugs have several SMILES, e.g. {clash.head(4).values.tolist()}; each "
                                       f"drug name needs one SMILES.")
        drugs = dict(zip(table[drug_key], table[smiles_key]))
    data_keys = {"drug_key": drug_key, "control_key": control_key, "smiles_key": smiles_key, "dose_key": dose_key,
                 "cell_key": cell_key, "plate_key": plate_key, "control_obs": control_obs}
    model = CycleCDR(adata.var_names, drugs=drugs, drug_encoder=drug_encoder, latent_dim=latent_dim, hidden=hidden,
                     single_autoencoder=single_autoencoder, paired=paired, use_reconstruction=use_reconstruction,
                     use_cycle=use_cycle, cycle_weight=cycle_weight, identity_weight=identity_weight,
                     adversarial_weight=adversarial_weight, gene_weights=gene_weights, use_dose=dose_key is not None,
                     data_keys=data_keys, device=device, seed=seed)
    model.train(adata, layer=layer, lr=lr, weight_decay=weight_decay, batch_size=batch_size, max_epochs=max_epochs,
                patience=patience, validation_fraction=validation_fraction, seed=seed,
                checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume)
    history = model.history_frame
    summary = {"epochs": int(len(history)), "interrupted": bool(model.interrupted)}
    if "validation_loss" in history and history["validation_loss"].notna().any():
        summary["best_validation_loss"] = float(history["validation_loss"].min())
    adata.uns["cyclecdr"] = storable({
        "params": data_keys | {"paired": bool(paired), "drug_encoder": drug_encoder, "latent_dim": int(latent_dim),
           "single_autoencoder": bool(single_autoencoder), "use_reconstruction": bool(use_reconstruction),
           "use_cycle": bool(model.hparams["use_cycle"]), "seed": seed},
        "n_drugs": len(drugs),
        "summary": summary,
    })
    return model


def _drug_names(drugs) -> list[str]:
    names = [str(d) for d in ([drugs] if isinstance(drugs, str) else list(drugs))]
    if not names:
        raise PerturbkitInputError("drugs is empty; name at least one drug to predict.")
    return names


def predict_no_change(adata_controls, *, drugs, drug_key: str = "drug", cell_key: str = "cell_line",
                      layer: str | None = None) -> ad.AnnData:
    """The "no change" baseline: every (control row, drug) is predicted as the control itself (like ``predict``)."""
    names = _drug_names(drugs)
    obs, rows = prediction_obs(adata_controls, names, drug_key=drug_key, cell_key=cell_key)
    X = dense_matrix(adata_controls, layer)[rows]
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=adata_controls.var_names.astype(str)))


def mean_treated_response(adata, *, control_key: str = "control", cell_key: str = "cell_line",
                          plate_key: str | None = None, control_obs: str | None = None,
                          layer: str | None = None) -> np.ndarray:
    """The average drug effect (treated − matched control) over the treated rows of ``adata`` (training data)."""
    X = dense_matrix(adata, layer)
    treated, controls = control_profiles(adata, X, control_key=control_key, cell_key=cell_key,
                                         plate_key=plate_key, control_obs=control_obs)
    return (X[treated] - controls).mean(axis=0).astype(np.float32)


def predict_mean_response(adata_controls, *, drugs, training_data, drug_key: str = "drug",
                          control_key: str = "control", cell_key: str = "cell_line", plate_key: str | None = None,
                          layer: str | None = None) -> ad.AnnData:
    """The "mean treated response" baseline: the control plus the mean training drug effect, for every drug.

    Genes are matched by name: ``training_data`` must have every gene of ``adata_controls`` (in any order).
    """
    genes = pd.Index(adata_controls.var_names.astype(str))
    position = pd.Index(training_data.var_names.astype(str)).get_indexer(genes)
    if (position < 0).any():
        missing = genes[position < 0]
        raise GeneMismatchError(f"training_data lacks {len(missing)} of adata_controls' genes (e.g. "
                                f"{missing[:5].tolist()}); give both the same genes, e.g. "
                                f"adata_controls[:, adata_controls.var_names.isin(training_data.var_names)].")
    effect = mean_treated_response(training_data, control_key=control_key, cell_key=cell_key, plate_key=plate_key,
                                   layer=layer)[position]
    result = predict_no_change(adata_controls, drugs=drugs, drug_key=drug_key, cell_key=cell_key, layer=layer)
    result.X = result.X + effect[None, :]
    return result


def cyclecdr_baselines(adata_controls, *, drugs, training_data, drug_key: str = "drug", control_key: str = "control",
                       cell_key: str = "cell_line", plate_key: str | None = None,
                       layer: str | None = None) -> dict[str, ad.AnnData]:
    """Both baselines at once: ``{"no change": AnnData, "mean treated response": AnnData}`` (rows as ``predict``)."""
    return {
        "no change": predict_no_change(adata_controls, drugs=drugs, drug_key=drug_key, cell_key=cell_key,
                                       layer=layer),
        "mean treated response": predict_mean_response(adata_controls, drugs=drugs, training_data=training_data,
                                                       drug_key=drug_key, control_key=control_key,
                                                       cell_key=cell_key, plate_key=plate_key, layer=layer),
    }


ABLATIONS = {
    "dual AE": {},
    "single AE": {"single_autoencoder": True},
    "dual AE, no reconstruction": {"use_reconstruction": False},
    "dual AE, with cycle": {"use_cycle": True},
    "dual AE, no cycle": {"use_cycle": False},
    "single AE, no reconstruction, no cycle": {"single_autoencoder": True, "use_reconstruction": False,
                                               "use_cycle": False},
}


def control_means(adata, *, control_key: str = "control", cell_key: str = "cell_line",
                  layer: str | None = None) -> ad.AnnData:
    """One row per cell line: the mean of its control rows (the input ``predict`` needs for bulk data)."""
    require_columns(adata, {"cell_key": cell_key}, purpose="averaging the controls per cell line")
    is_control = control_mask(adata, control_key)
    labels = adata.obs[cell_key].astype(str).to_numpy()
    cells = list(pd.unique(labels[is_control]))
    X = dense_matrix(adata, layer)
    means = np.stack([X[is_control & (labels == c)].mean(axis=0) for c in cells]).astype(np.float32)
    return ad.AnnData(means, obs=pd.DataFrame({cell_key: cells}, index=cells),
                      var=pd.DataFrame(index=adata.var_names.astype(str)))


def _predict_test_drugs(model, sources, smiles: dict, test, *, drug_key: str, dose_key: str | None):
    """The model's predictions for the test drugs; a model trained with doses predicts every dose they were given."""
    if not model.hparams["use_dose"]:
        return model.predict(sources, drugs=smiles)
    doses = pd.DataFrame({"drug": test.obs[drug_key].astype(str).to_numpy(),
                          "dose": numeric_column(test, dose_key)}).drop_duplicates()
    parts = [model.predict(sources, drugs={d: smiles[d] for d in group["drug"]}, doses=dose)
             for dose, group in doses.groupby("dose")]
    return ad.concat(parts, index_unique="@")


def cyclecdr_ablation(adata, *, test_drugs, variants=None, n_degs: int = 50, drug_key: str = "drug",
                      control_key: str = "control", smiles_key: str = "smiles", cell_key: str = "cell_line",
                      paired: bool = True, baselines: bool = True, **train_kwargs) -> pd.DataFrame:
    """The paper's ablation (Table 1) and the baselines, scored on held-out drugs with ``evaluate_response``.

    Every variant of ``variants`` (names of :data:`ABLATIONS`, or ``{name: train_cyclecdr keyword overrides}``;
    default all) is trained on ``adata`` without ``test_drugs`` and predicts them — from each cell line's control
    mean (``paired=True``) or from every control cell (``paired=False``). ``train_kwargs`` go to every
    :func:`train_cyclecdr` call (use a structure encoder, ``"gat"`` or ``"fingerprint"``: the drugs are unseen);
    with ``dose_key``, each test drug is predicted at every dose it was measured at.

    Returns
    -------
    One row per model: mean ``r2``, ``r2_degs``, ``explained_variance``, ``explained_variance_degs`` and
    ``pearson_delta`` over the (cell line, drug) groups of the test drugs, and ``n_groups``.
    """
    from ..metrics._response import evaluate_response

    if variants is None:
        variants = dict(ABLATIONS)
    elif not isinstance(variants, dict):
        unknown = [v for v in variants if v not in ABLATIONS]
        if unknown:
            raise PerturbkitInputError(f"unknown ablation variants {unknown}; choose from {list(ABLATIONS)} or pass "
                                       f"{{name: train_cyclecdr keyword overrides}}.")
        variants = {v: ABLATIONS[v] for v in variants}
    test_drugs = [str(d) for d in ([test_drugs] if isinstance(test_drugs, str) else test_drugs)]
    require_columns(adata, {"drug_key": drug_key, "smiles_key": smiles_key, "cell_key": cell_key},
                    purpose="the cycleCDR ablation")
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
    sources = control_means(train, control_key=control_key, cell_key=cell_key) if paired else \
        train[control_mask(train, control_key)].copy()
    sources = sources[sources.obs[cell_key].astype(str).isin(test_cells).to_numpy()].copy()
    smiles = dict(zip(drug[is_test], adata.obs[smiles_key].astype(str)[is_test]))
    keys = dict(drug_key=drug_key, control_key=control_key, smiles_key=smiles_key, cell_key=cell_key)
    predictions = {}
    for name, overrides in variants.items():
        options = {**train_kwargs, **overrides}
        model = train_cyclecdr(train, paired=paired, **keys, **options)
        predictions[f"cycleCDR: {name}"] = _predict_test_drugs(model, sources, smiles, adata[is_test],
                                                               drug_key=drug_key, dose_key=options.get("dose_key"))
    if baselines:
        baseline_predictions = cyclecdr_baselines(sources, drugs=list(smiles), training_data=train, drug_key=drug_key,
                                                  control_key=control_key, cell_key=cell_key)
        predictions.update({f"baseline: {k}": v for k, v in baseline_predictions.items()})
    columns = ["r2", "r2_degs", "explained_variance", "explained_variance_degs", "pearson_delta"]
    rows = {}
    for name, pred in predictions.items():
        table = evaluate_response(pred, truth, groupby=[cell_key, drug_key], control=control_key, n_degs=n_degs)
        rows[name] = {**{c: float(table[c].mean()) for c in columns if c in table}, "n_groups": len(table)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
