"""Profiles of the same drugs across cell lines: the one place where profiles are paired by drug."""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

from .._groups import group_means
from .._schema import (
    OBS_KEYS,
    EmptyGroupError,
    GeneMismatchError,
    MissingColumnError,
    PerturbkitInputError,
    UnknownCategoryError,
    check_finite,
    control_mask,
    dense_matrix,
    require_columns,
)


@dataclass
class CellDrugProfiles:
    """One profile per (drug, cell line): ``values[d, c]`` is drug ``d`` in cell line ``c`` where ``present[d, c]``."""

    values: np.ndarray  # (n_drugs, n_cell_lines, n_features) float32, zeros where absent
    present: np.ndarray  # (n_drugs, n_cell_lines) bool
    drugs: pd.Index
    cell_lines: pd.Index
    var_names: pd.Index
    moa: pd.Series | None = None  # per drug

    @classmethod
    def from_adata(
        cls,
        adata,
        *,
        cell_key: str = "cell_line",
        drug_key: str = "drug",
        control_key: str | None = "control",
        moa_key: str | None = "moa",
        average: bool = True,
        layer: str | None = None,
        cell_lines=None,
    ) -> CellDrugProfiles:
        """Collect treated profiles per (drug, cell line), averaging over doses, times and replicates.

        Control rows (``obs[control_key]`` True) are left out; a missing ``control_key`` column raises
        :class:`~perturbkit.errors.MissingColumnError`, since the vehicle rows would otherwise be paired as if the
        vehicle were a drug. ``control_key=None`` says that no row is a control: every row is then a drug. With
        ``average=False`` each (cell line, drug) must have exactly one row. ``cell_lines`` restricts and orders the
        cell lines.
        """
        require_columns(
            adata, {"cell_key": cell_key, "drug_key": drug_key}, purpose="pairing profiles across cell lines"
        )
        keep = np.ones(adata.n_obs, dtype=bool)
        if control_key is not None:
            if control_key not in adata.obs:
                raise MissingColumnError(
                    f"adata.obs has no column {control_key!r} flagging the vehicle (DMSO) controls, so they cannot be "
                    f"left out and would be modelled as a drug. Add it (e.g. adata.obs[{control_key!r}] = "
                    f"adata.obs[{drug_key!r}] == 'DMSO'), pass control_key= naming the column that flags them, or "
                    f"pass control_key=None if no row is a control. Available columns: {list(adata.obs.columns)[:20]}."
                )
            if adata.obs[control_key].astype(bool).any():
                keep &= ~control_mask(adata, control_key)
        if cell_lines is not None:
            cell_lines = pd.Index([str(c) for c in np.atleast_1d(cell_lines)])
            available = adata.obs[cell_key].astype(str)
            unknown = cell_lines.difference(available.unique())
            if len(unknown):
                raise UnknownCategoryError(
                    f"cell line(s) {list(unknown)} not found in obs[{cell_key!r}]; "
                    f"the data has {sorted(available.unique())}."
                )
            keep &= available.isin(cell_lines).to_numpy()
        obs = adata.obs.loc[keep, [cell_key, drug_key]].astype(str)
        X = dense_matrix(adata[keep] if not keep.all() else adata, layer)
        check_finite(X, where="adata.X" if layer is None else f"adata.layers[{layer!r}]")
        if len(obs) == 0:
            raise EmptyGroupError("no treated profiles left after removing controls; check control_key and cell_lines.")
        key = pd.MultiIndex.from_frame(obs[[drug_key, cell_key]])
        if not average and key.has_duplicates:
            dup = key[key.duplicated()][:3].tolist()
            raise PerturbkitInputError(
                f"several profiles per (drug, cell line), e.g. {dup}; pass average=True to average them over doses, "
                f"times and replicates, or aggregate first with pk.pp.aggregate."
            )
        drug_codes, drugs = pd.factorize(obs[drug_key], sort=True)
        if cell_lines is None:
            cell_codes, cell_lines = pd.factorize(obs[cell_key], sort=True)
        else:
            cell_codes = cell_lines.get_indexer(obs[cell_key])
        n_d, n_c = len(drugs), len(cell_lines)
        flat = drug_codes * n_c + cell_codes
        means, counts = group_means(X, flat, n_d * n_c)
        present = counts > 0
        values = np.where(present[:, None], means, 0.0).astype(np.float32)
        moa = None
        if moa_key is not None and moa_key in adata.obs:
            moa_per_row = pd.Series(adata.obs.loc[keep, moa_key].astype(str).to_numpy(), index=obs[drug_key].to_numpy())
            moa = moa_per_row[~moa_per_row.index.duplicated()].reindex(drugs)
        return cls(
            values.reshape(n_d, n_c, -1),
            present.reshape(n_d, n_c),
            pd.Index(drugs),
            pd.Index(cell_lines),
            pd.Index(adata.var_names.astype(str)),
            moa,
        )

    @property
    def n_features(self) -> int:
        return self.values.shape[2]

    def cell_index(self, cell_line: str) -> int:
        if cell_line not in self.cell_lines:
            raise UnknownCategoryError(f"cell line {cell_line!r} is not in this data; it has {list(self.cell_lines)}.")
        return int(self.cell_lines.get_loc(cell_line))

    def subset(self, *, drugs=None, cell_lines=None) -> CellDrugProfiles:
        """A copy restricted to some drugs (names or a boolean mask / integer positions) and cell lines."""
        d = slice(None) if drugs is None else _positions(self.drugs, drugs)
        c = slice(None) if cell_lines is None else _positions(self.cell_lines, cell_lines)
        moa = None if self.moa is None else self.moa.iloc[d]
        return CellDrugProfiles(
            self.values[d][:, c], self.present[d][:, c], self.drugs[d], self.cell_lines[c], self.var_names, moa
        )

    def drugs_in_all(self, cell_lines) -> np.ndarray:
        """Boolean mask of drugs measured in every one of ``cell_lines``."""
        idx = [self.cell_index(c) for c in cell_lines]
        return self.present[:, idx].all(axis=1)

    def pairs(self, target: int, *, sources=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Input/output pairs for one target cell line: every source profile of a drug → its target profile.

        Returns ``(inputs, outputs, drug_positions)``; ``sources`` (positions) defaults to every cell line, the
        target included.
        """
        sources = range(len(self.cell_lines)) if sources is None else sources
        xs, ys, ds = [], [], []
        for s in sources:
            rows = np.flatnonzero(self.present[:, s] & self.present[:, target])
            xs.append(self.values[rows, s])
            ys.append(self.values[rows, target])
            ds.append(rows)
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(ds)

    def with_values(self, values: np.ndarray) -> CellDrugProfiles:
        return CellDrugProfiles(
            values.astype(np.float32), self.present, self.drugs, self.cell_lines, self.var_names, self.moa
        )


def _positions(index: pd.Index, selector) -> np.ndarray:
    selector = np.asarray(selector)
    if selector.dtype == bool:
        return np.flatnonzero(selector)
    if selector.dtype.kind in "iu":
        return selector
    pos = index.get_indexer(selector.astype(str))
    if (pos < 0).any():
        raise UnknownCategoryError(f"{list(selector[pos < 0][:5])} not found; known: {list(index[:10])}...")
    return pos


def model_profiles(model, adata, *, layer=None, cell_lines=None) -> CellDrugProfiles:
    """Per-(drug, cell line) treated profiles of ``adata`` in ``model``'s feature order.

    They are collected with the obs keys the model was trained with (``model.hparams['data_keys']``).
    """
    keys = model.hparams["data_keys"]
    control_key = keys.get("control_key")
    if control_key is not None and control_key not in adata.obs:
        raise MissingColumnError(
            f"this {type(model).__name__} was trained with control_key={control_key!r}, but adata.obs has no column "
            f"{control_key!r}, so its vehicle (DMSO) rows cannot be left out and would be treated as a drug. Add the "
            f"column: adata.obs[{control_key!r}] = adata.obs[{keys['drug_key']!r}] == 'DMSO' (or = False when no row "
            f"is a control)."
        )
    X = model.feature_matrix(adata, layer=layer)
    aligned = ad.AnnData(X, obs=adata.obs, var=pd.DataFrame(index=model.var_names))
    return CellDrugProfiles.from_adata(
        aligned,
        cell_key=keys["cell_key"],
        drug_key=keys["drug_key"],
        control_key=control_key,
        moa_key=keys.get("moa_key"),
        average=keys.get("average", True),
        cell_lines=cell_lines,
    )


# ------------------------------------------------------------------------------------------------------------------
# the cross-cell models (DeepCellState, the anchor VAE, the dual GAN; scGen's target= mode): one drug's profile in
# one cell line predicted from its profiles in others
# ------------------------------------------------------------------------------------------------------------------
#: The obs keys (and averaging) the cross-cell models read.
CROSS_CELL_DATA_DEFAULTS = {
    "cell_key": OBS_KEYS.cell_key,
    "drug_key": OBS_KEYS.drug_key,
    "control_key": OBS_KEYS.control_key,
    "moa_key": OBS_KEYS.moa_key,
    "average": True,
}


def training_profiles(model, adata) -> CellDrugProfiles:
    """The per-(drug, cell line) training profiles of ``adata`` (AnnData or CellDrugProfiles), model gene order.

    CellDrugProfiles keep their own gene order, which must be the model's; their cell lines outside the model's are
    left out.
    """
    if isinstance(adata, CellDrugProfiles):
        profiles = adata
        if list(profiles.var_names) != list(model.var_names):
            raise GeneMismatchError(
                f"the training profiles have {len(profiles.var_names)} features in another order or with other names "
                f"than the model's {model.n_vars}; build the model with the profiles' var_names."
            )
        keep = [c for c in profiles.cell_lines if c in model.cell_lines]
        if len(keep) < len(profiles.cell_lines):
            profiles = profiles.subset(cell_lines=keep)
        return profiles
    cell_key = model.data_keys["cell_key"]
    present = set(adata.obs[cell_key].astype(str)) if cell_key in adata.obs else set()
    return model.profiles_from(adata, cell_lines=[c for c in model.cell_lines if c in present] or None)


def scaled_profiles(model, profiles: CellDrugProfiles) -> CellDrugProfiles:
    """``profiles`` on ``model``'s scale (its fitted scaler), zeros where a profile is absent."""
    values = model.scaler.transform(profiles.values.reshape(-1, model.n_vars)).reshape(profiles.values.shape)
    return profiles.with_values(np.where(profiles.present[..., None], values, 0.0))


def cross_cell_prediction(
    model,
    adata,
    *,
    target: str,
    sources,
    layer,
    uns_key: str,
    predict_rows=None,
    check_sources=None,
    default_sources=None,
) -> ad.AnnData:
    """A cross-cell ``predict``: every drug's profile in each source cell line predicted in ``target``, averaged.

    The profiles are read per (drug, cell line) with the model's obs keys (:func:`model_profiles`: features matched
    by name, control rows left out). ``sources=None`` takes every cell line of the data other than ``target`` (only
    those in ``default_sources`` when given); ``check_sources``, when given, is called with the source list and
    refuses the ones the model cannot use. ``predict_rows(X, source)`` predicts the ``target`` profiles of rows
    ``X`` (cell line ``source``, the data's units); by default ``model.predict_array(X, target=target)``.

    Returns
    -------
    One row per drug measured in at least one source, in the data's units and the model's features; obs
    ``drug_key``, ``target``, ``sources`` (those the drug was measured in), ``n_sources`` and ``moa_key`` when the
    data have it; ``uns[uns_key]`` records the target and the sources.
    """
    target = str(target)
    profiles = model_profiles(model, adata, layer=layer)
    if sources is None:
        sources = [c for c in profiles.cell_lines if c != target]
        if default_sources is not None:
            sources = [c for c in sources if c in default_sources]
    sources = [str(s) for s in np.atleast_1d(sources)]
    if check_sources is not None:
        check_sources(sources)
    if not sources:
        raise PerturbkitInputError(
            f"no source cell line: the data only has {list(profiles.cell_lines)}; pass "
            f"sources= or data from another cell line."
        )
    positions = [profiles.cell_index(s) for s in sources]
    present = profiles.present[:, positions]
    rows = np.flatnonzero(present.any(axis=1))
    if len(rows) == 0:
        raise EmptyGroupError(f"no drug has a profile in the source cell lines {sources}.")
    total = np.zeros((len(rows), model.n_vars), dtype=np.float64)
    for j, (source, s) in enumerate(zip(sources, positions, strict=True)):
        have = present[rows, j]
        if have.any():
            X = profiles.values[rows[have], s]
            total[have] += model.predict_array(X, target=target) if predict_rows is None else predict_rows(X, source)
    n_sources = present[rows].sum(axis=1)
    keys = model.hparams["data_keys"]
    obs = pd.DataFrame(
        {
            keys["drug_key"]: profiles.drugs[rows].to_numpy(),
            "target": target,
            "sources": [",".join(np.array(sources)[present[r]]) for r in rows],
            "n_sources": n_sources,
        },
        index=profiles.drugs[rows].astype(str),
    )
    if profiles.moa is not None:
        obs[keys["moa_key"]] = profiles.moa.iloc[rows].to_numpy()
    out = ad.AnnData((total / n_sources[:, None]).astype(np.float32), obs=obs, var=pd.DataFrame(index=model.var_names))
    out.uns[uns_key] = {"target": target, "sources": sources}
    return out
