"""Match treated profiles with their control profiles (paired bulk data) or with random controls (unpaired cells)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .._groups import group_means
from .._schema import EmptyGroupError, PerturbkitInputError, UnknownCategoryError, control_mask, require_columns
from ._inputs import is_anndata, is_model


def _group_labels(obs: pd.DataFrame, cell_key: str, plate_key: str | None) -> pd.Series:
    labels = obs[cell_key].astype(str)
    if plate_key is not None:
        labels = labels + " / plate " + obs[plate_key].astype(str)
    return labels


def control_profiles(
    adata,
    X: np.ndarray,
    *,
    control_key: str = "control",
    cell_key: str = "cell_line",
    plate_key: str | None = None,
    control_obs: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The control profile matched to every treated row of ``adata``.

    Each treated row gets the mean of the control rows of its cell line (and plate, when ``plate_key`` is given),
    or, with ``control_obs``, the control row whose obs name that column holds.

    Parameters
    ----------
    adata
        Profiles with ``obs[control_key]`` (bool) and ``obs[cell_key]`` (and ``obs[plate_key]``).
    X
        ``adata``'s profiles as a dense array (rows aligned with ``adata.obs``), e.g. from ``model.feature_matrix``.

    Returns
    -------
    ``(treated_rows, controls)``: the positions of the treated rows and a float32 array of their controls.

    Raises
    ------
    EmptyGroupError
        When a treated row's cell line (/plate) has no control rows, naming the group and the fix.
    """
    is_control = control_mask(adata, control_key)
    treated = np.flatnonzero(~is_control)
    if len(treated) == 0:
        raise EmptyGroupError(f"No treated rows: obs[{control_key!r}] is True for all {adata.n_obs} rows.")
    if control_obs is not None:
        require_columns(adata, {"control_obs": control_obs}, purpose="naming each treated row's control row")
        names = adata.obs[control_obs].iloc[treated].astype(str)
        position = pd.Index(adata.obs_names.astype(str)).get_indexer(names)
        bad = names[position < 0]
        if len(bad):
            raise EmptyGroupError(
                f"obs[{control_obs!r}] names control rows that are not in the data for {len(bad)} treated rows "
                f"(e.g. {bad.iloc[:3].tolist()}). It must hold the obs name of each treated row's control row."
            )
        not_control = names[~is_control[position]]
        if len(not_control):
            raise PerturbkitInputError(
                f"obs[{control_obs!r}] points at rows that are not controls (e.g. {not_control.iloc[:3].tolist()}); "
                f"their obs[{control_key!r}] must be True."
            )
        return treated, X[position].astype(np.float32)
    keys = {"cell_key": cell_key} | ({"plate_key": plate_key} if plate_key is not None else {})
    require_columns(adata, keys, purpose="matching treated rows with their controls")
    labels = _group_labels(adata.obs, cell_key, plate_key).to_numpy()
    control_labels = labels[is_control]
    groups = pd.Index(pd.unique(control_labels))
    means = group_means(X[is_control], groups.get_indexer(control_labels), len(groups))[0]
    position = groups.get_indexer(labels[treated])
    if (position < 0).any():
        missing = pd.unique(labels[treated][position < 0])
        where = "cell line / plate" if plate_key is not None else "cell line"
        raise EmptyGroupError(
            f"{len(missing)} {where} group(s) have treated rows but no control rows: {list(missing[:5])}. Add their "
            f"vehicle (DMSO) controls (obs[{control_key!r}] True), drop those treated rows"
            + (", match on the cell line only (plate_key=None)" if plate_key is not None else "")
            + ", or name each treated row's control row with control_obs=."
        )
    return treated, means[position].astype(np.float32)


def cell_lines_with_both(adata, *, control_key: str = "control", cell_key: str = "cell_line") -> list[str]:
    """The values of ``obs[cell_key]`` that have both control and treated rows, in order of first appearance."""
    is_control = control_mask(adata, control_key)
    cells = adata.obs[cell_key].astype(str).to_numpy()
    return [c for c in pd.unique(cells) if (is_control & (cells == c)).any() and (~is_control & (cells == c)).any()]


def random_controls(
    adata, *, control_key: str = "control", cell_key: str = "cell_line", seed: int | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unpaired data: for every treated row, the position of a random control row of the same cell line (type).

    Returns ``(treated_rows, control_rows)``; raises :class:`EmptyGroupError` for a cell line without controls.
    """
    require_columns(adata, {"cell_key": cell_key}, purpose="drawing controls of the same cell type")
    is_control = control_mask(adata, control_key)
    labels = adata.obs[cell_key].astype(str).to_numpy()
    treated = np.flatnonzero(~is_control)
    rng = np.random.default_rng(seed)
    chosen = np.empty(len(treated), dtype=np.int64)
    for label in pd.unique(labels[treated]):
        pool = np.flatnonzero(is_control & (labels == label))
        rows = np.flatnonzero(labels[treated] == label)
        if len(pool) == 0:
            raise EmptyGroupError(
                f"cell line {label!r} has treated cells but no control cells; add its controls "
                f"(obs[{control_key!r}] True) or drop its treated cells."
            )
        chosen[rows] = rng.choice(pool, size=len(rows), replace=True)
    return treated, chosen


def prediction_obs(
    adata_controls, names: list[str], *, drug_key: str, cell_key: str, doses=None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Obs of a prediction with one row per (drug, control row), drugs outer, and the control row of each.

    Columns: ``drug_key``, ``control_row`` (the control's obs name), ``dose`` (one per drug, or one for all; 0 when
    ``None``) and the control's ``cell_key`` when it has one; rows are named ``"control|drug"``.
    """
    n = adata_controls.n_obs
    rows = np.tile(np.arange(n), len(names))
    drug_rows = np.repeat(np.arange(len(names)), n)
    dose = np.zeros(len(names)) if doses is None else np.broadcast_to(np.asarray(doses, float), (len(names),))
    obs = pd.DataFrame(
        {
            drug_key: [names[d] for d in drug_rows],
            "control_row": adata_controls.obs_names.astype(str)[rows],
            "dose": dose[drug_rows],
        }
    )
    if cell_key in adata_controls.obs:
        obs[cell_key] = adata_controls.obs[cell_key].astype(str).to_numpy()[rows]
    obs.index = [f"{c}|{d}" for c, d in zip(obs["control_row"], obs[drug_key], strict=True)]
    return obs, rows


def check_control_profiles(adata_controls) -> None:
    """Refuse what ``predict`` cannot turn into treated profiles: no AnnData (or a model), or no rows."""
    if is_model(adata_controls) or not is_anndata(adata_controls):
        raise PerturbkitInputError(
            f"adata_controls must be an AnnData of control profiles, got a "
            f"{type(adata_controls).__name__}; call model.predict(adata_controls, "
            f"drugs=[...]), e.g. with pk.tl.control_means(adata)."
        )
    if adata_controls.n_obs == 0:
        raise EmptyGroupError(
            "adata_controls has no rows: predict turns each control profile into a treated one, so it needs at "
            "least one. Pass control profiles, e.g. pk.tl.control_means(adata) (one mean control per cell line) "
            "or adata[adata.obs['control']] (single control rows); check that your selection of controls is "
            "not empty."
        )


def resolve_drugs(known: Mapping[str, str], drugs, *, encoders: str) -> tuple[list[str], dict]:
    """The drug names to predict and the SMILES lookup: the ``known`` training drugs plus any given ``{name: SMILES}``.

    ``drugs`` is a name, a list of names (each must be ``known``) or ``{name: SMILES}``; ``encoders`` names the
    structure encoders in the message for unknown names (e.g. ``"'gat' or 'fingerprint'"``).
    """
    lookup = dict(known)
    if isinstance(drugs, Mapping):
        names = [str(d) for d in drugs]
        lookup.update({str(k): str(v) for k, v in drugs.items()})
    else:
        names = [str(d) for d in ([drugs] if isinstance(drugs, str) else drugs)]
        unknown = [d for d in names if d not in lookup]
        if unknown:
            raise UnknownCategoryError(
                f"drugs {unknown[:5]} are not among the model's {len(lookup)} training drugs and have no SMILES. "
                f"Pass drugs={{name: SMILES}} for unseen drugs (with the {encoders} encoder)."
            )
    if not names:
        raise PerturbkitInputError("drugs is empty; name at least one drug to predict.")
    return names, lookup


def drug_smiles(treated_obs: pd.DataFrame, *, drug_key: str, smiles_key: str) -> dict[str, str]:
    """``{drug: SMILES}`` of the treated rows' obs, each drug with one SMILES; without a SMILES column, empty SMILES.

    A drug named with several SMILES raises, naming them.
    """
    if smiles_key not in treated_obs:  # the one-hot encoder needs no structures
        return {str(d): "" for d in pd.unique(treated_obs[drug_key].astype(str))}
    table = treated_obs[[drug_key, smiles_key]].astype(str).drop_duplicates()
    clash = table[table[drug_key].duplicated(keep=False)]
    if len(clash):
        raise PerturbkitInputError(
            f"some drugs have several SMILES, e.g. {clash.head(4).values.tolist()}; "
            f"each drug name needs one SMILES (obs[{smiles_key!r}])."
        )
    return dict(zip(table[drug_key], table[smiles_key], strict=True))
