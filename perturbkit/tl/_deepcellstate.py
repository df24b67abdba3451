"""pk.tl faces of DeepCellState: training, cross-validation and the paper's experiments."""

from __future__ import annotations

import pandas as pd

from .._schema import storable
from ..models._inputs import check_model_and_data, check_trained
from ..models._profiles import CellDrugProfiles
from ..models.deepcellstate import DeepCellState
from ..models.deepcellstate import _evaluation as evaluation
from ..models.deepcellstate import _interpretation as interpretation


def _profiles(adata, *, cell_key, drug_key, control_key, moa_key, average, layer, cell_lines=None):
    return CellDrugProfiles.from_adata(adata, cell_key=cell_key, drug_key=drug_key, control_key=control_key,
                                       moa_key=moa_key, average=average, layer=layer, cell_lines=cell_lines)


def train_deepcellstate(
    adata,
    *,
    cell_key: str = "cell_line",
    drug_key: str = "drug",
    cell_lines=None,
    latent_dim: int = 128,
    device: str = "auto",
    seed: int = 0,
    control_key: str | None = "control",
    moa_key: str | None = "moa",
    average: bool = True,
    layer: str | None = None,
    key_added: str = "deepcellstate",
    **options,
) -> DeepCellState:
    """Train DeepCellState to translate drug responses between cell lines.

    Profiles of the same (cell line, drug) are averaged over doses and times (``average=True``), control rows are
    left out, and all profiles are scaled to [-1, 1] by one global max |x| (kept in the model). Training is staged:
    autoencoder pretraining, per-cell-line decoder rounds, then decoder fine-tuning (see
    :meth:`DeepCellState.train`).

    Parameters
    ----------
    adata
        Level-5-like signatures with ``cell_key`` and ``drug_key`` in obs.
    cell_lines
        Cell lines to model (default all in the data); each gets a decoder.
    control_key
        Boolean obs column flagging the vehicle (DMSO) controls, which are left out of training and prediction.
        A missing column raises :class:`~perturbkit.errors.MissingColumnError`; pass ``control_key=None`` when no
        row is a control (every row is then treated as a drug, also by ``model.predict``).
    latent_dim
        Latent size (paper 128).
    device, seed
        ``"auto"|"cpu"|"cuda"``; the seed makes CPU runs reproducible.
    key_added
        ``adata.uns[key_added]`` records the settings and training summary.
    **options
        Architecture: ``hidden=(512, 256)``, ``input_dropout=0.5``, ``l1=1e-7``, ``skip=True``,
        ``decoder_dropout=0``. Training: ``lr=1e-3``, ``decoder_lr=1e-4`` (10× the paper's, as accurate and faster here), ``batch_size=128``, ``max_epochs=200``,
        ``patience=5``, ``epochs_per_round=2``, ``max_rounds=50``, ``validation_fraction=0.05``. Long runs:
        ``checkpoint_dir=`` writes a checkpoint every ``checkpoint_every=10`` epochs (rounds) and after each stage,
        and ``resume=`` that checkpoint continues the run exactly. Ctrl-C ends training with the best weights so
        far, and the model is returned.

    Returns
    -------
    The trained :class:`~perturbkit.models.deepcellstate.DeepCellState`.

    Examples
    --------
    >>> adata = pk.datasets.simulate_bulk()
    >>> model = pk.tl.train_deepcellstate(adata)
    >>> pred = model.predict(adata, target="MCF7", sources=["PC3"])
    """
    model_options, train_options = evaluation.split_options({**options, "device": device})
    profiles = _profiles(adata, cell_key=cell_key, drug_key=drug_key, control_key=control_key, moa_key=moa_key,
                         average=average, layer=layer, cell_lines=cell_lines)
    data_keys = {"cell_key": cell_key, "drug_key": drug_key, "control_key": control_key, "moa_key": moa_key,
                 "average": average}
    model = DeepCellState(profiles.var_names, cell_lines=profiles.cell_lines, latent_dim=latent_dim,
                          data_keys=data_keys, seed=seed, **model_options)
    model.train(profiles, seed=seed, **train_options)
    history = model.history_frame
    adata.uns[key_added] = storable({
        "params": {"cell_key": cell_key, "drug_key": drug_key, "cell_lines": list(profiles.cell_lines),
                   "latent_dim": latent_dim, "seed": seed, "average": average, "layer": layer,
                   **{k: v for k, v in {**model_options, **train_options}.items()
                      if k not in ("device", "checkpoint_dir", "resume")}},
        "n_drugs": {c: int(n) for c, n in zip(profiles.cell_lines, profiles.present.sum(axis=0))},
        "device": str(model.device),
        "n_epochs": len(history),
        "interrupted": bool(model.interrupted),
        "final_validation_loss": float(history["validation_loss"].dropna().iloc[-1])
        if "validation_loss" in history and history["validation_loss"].notna().any() else None,
    })
    return model


def _evaluation_call(function, adata, *, cell_key, drug_key, control_key, moa_key, average, layer, **kwargs):
    profiles = _profiles(adata, cell_key=cell_key, drug_key=drug_key, control_key=control_key, moa_key=moa_key,
                         average=average, layer=layer)
    return function(profiles, **kwargs)


_KEYS_DOC = """
    cell_key, drug_key, control_key, moa_key, average, layer
        As in :func:`train_deepcellstate`.
    **options
        Model and training options passed through (see :func:`train_deepcellstate`)."""


def cross_validate_deepcellstate(adata, *, source, target, n_folds: int = 10, split: str = "drug", seed: int = 0,
                                 folds=None, test_drugs=None, cell_key: str = "cell_line", drug_key: str = "drug",
                                 control_key: str | None = "control", moa_key: str | None = "moa",
                                 average: bool = True, layer: str | None = None, **options) -> pd.DataFrame:
    """Cross-validate DeepCellState, holding out drugs (``split="drug"``) or whole MOA families (``"moa"``).

    Test drugs are unseen in every cell line; 5% of the rest validate early stopping. ``source`` may be one cell
    line or several (decoded outputs averaged); ``folds`` runs only some of the ``n_folds`` folds; ``test_drugs``
    restricts which perturbations are held out and scored.

    Loss-of-function workflow: DeepCellState treats every perturbation alike, so shRNA/CRISPR signatures (LINCS
    ``pert_type == "trt_sh"``) join the compounds as rows whose ``drug_key`` names the perturbation (e.g.
    ``"sh:TP53"``). Train on compounds and knockdowns together, and score the knockdowns alone with
    ``test_drugs=adata.obs.loc[adata.obs.pert_type == "trt_sh", "drug"].unique()`` (paper: PCC 0.56 on LoF).

    Returns
    -------
    One row per test drug: fold, drug, moa, pcc (model), baseline_pcc (the source profile itself), ridge_pcc (a
    ridge map between the cell lines). Summarise with :func:`deepcellstate_compare_to_baseline`; plot with
    :func:`perturbkit.pl.pcc_scatter`.
    """
    return _evaluation_call(evaluation.cross_validate, adata, source=source, target=target, n_folds=n_folds,
                            split=split, seed=seed, folds=folds, test_drugs=test_drugs, cell_key=cell_key, drug_key=drug_key,
                            control_key=control_key, moa_key=moa_key, average=average, layer=layer, **options)


def deepcellstate_compare_to_baseline(cv: pd.DataFrame, *, model: str = "pcc", baseline: str = "baseline_pcc"):
    """Paired t-test and fold increase of the model's per-drug PCC over a baseline's (a pandas Series)."""
    return evaluation.compare_to_baseline(cv, model=model, baseline=baseline)


def _experiment_face(function, name: str, what: str):
    def face(adata, *, source, target, seed: int = 0, cell_key: str = "cell_line", drug_key: str = "drug",
             control_key: str | None = "control", moa_key: str | None = "moa", average: bool = True,
             layer: str | None = None, **kwargs) -> pd.DataFrame:
        return _evaluation_call(function, adata, source=source, target=target, seed=seed, cell_key=cell_key,
                                drug_key=drug_key, control_key=control_key, moa_key=moa_key, average=average,
                                layer=layer, **kwargs)

    face.__name__ = face.__qualname__ = name
    face.__doc__ = f"""{what}

    Thin face over :func:`perturbkit.models.deepcellstate.{function.__name__}`, whose keyword arguments it takes
    (e.g. ``n_repeats``, ``test_fraction``). Returns one row per condition and repeat with the mean pcc,
    baseline_pcc and ridge_pcc over the test drugs.
    {_KEYS_DOC}
    """
    return face


deepcellstate_training_size_curve = _experiment_face(
    evaluation.training_size_curve, "deepcellstate_training_size_curve",
    "Accuracy against the fraction of training drugs kept (``fractions=``).")
deepcellstate_latent_size_sweep = _experiment_face(
    evaluation.latent_size_sweep, "deepcellstate_latent_size_sweep",
    "Accuracy against the latent size (``latent_dims=(8, 16, 32, 64, 128)``).")
deepcellstate_ablation = _experiment_face(
    evaluation.ablation, "deepcellstate_ablation",
    "The ablation without input dropout, the L1 penalty and the skip connection (``variants=``).")
deepcellstate_fewer_profiles = _experiment_face(
    evaluation.fewer_profiles, "deepcellstate_fewer_profiles",
    "Accuracy with ``fraction_removed`` (default 70%) of the training profiles removed in the source, the target "
    "or both cell lines.")


def _adata_first(function, name: str):
    """Expose ``function(model, adata, **kw)`` as scanpy-style ``name(adata, *, model, **kw)``."""

    def face(adata, *, model, **kwargs):
        check_model_and_data(adata, model, function=f"pk.tl.{name}", call=f"pk.tl.{name}(adata, model=model)",
                             model_class=DeepCellState)
        check_trained(model)
        return function(model, adata, **kwargs)

    face.__name__ = face.__qualname__ = name
    face.__doc__ = (f"``{name}(adata, *, model, ...)``: see "
                    f":func:`perturbkit.models.deepcellstate.{function.__name__}`.\n\n" + (function.__doc__ or ""))
    return face


latent_embeddings = _adata_first(interpretation.latent_embeddings, "latent_embeddings")
latent_correlation = _adata_first(interpretation.latent_correlation, "latent_correlation")
gene_importance = _adata_first(interpretation.gene_importance, "gene_importance")
pair_distance_ratio = interpretation.pair_distance_ratio
diagonal_summary = interpretation.diagonal_summary
tf_targets = interpretation.tf_targets
