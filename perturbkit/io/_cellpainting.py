"""Cell Painting profiles (pycytominer / cytominer style) and CellProfiler feature-name parsing."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._schema import FileFormatError, PerturbkitInputError
from ._utils import existing_path, first_present, read_delimited

if TYPE_CHECKING:
    from anndata import AnnData

#: The five Cell Painting channels (Bray et al. 2016), in their usual order.
CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")
_CHANNEL_PREFIXES = ("Orig", "Corr", "Illum")
_NO_CHANNEL = "None"

_DRUG_COLUMNS = (
    "Metadata_pert_iname",
    "Metadata_pert_name",
    "Metadata_compound_name",
    "Metadata_pert_id",
    "Metadata_broad_id",
    "Metadata_broad_sample",
)
_DOSE_COLUMNS = ("Metadata_mmoles_per_liter", "Metadata_dose", "Metadata_concentration")
_MOA_COLUMNS = ("Metadata_moa", "Metadata_MOA")
_CELL_COLUMNS = (
    "Metadata_cell_line",
    "Metadata_cell_id",
    "Metadata_CellLine",
    "Metadata_Cell_Line",
    "Metadata_cell_type",
)
_PLATE_COLUMNS = ("Metadata_Plate", "Metadata_plate", "Metadata_Assay_Plate_Barcode")
_WELL_COLUMNS = ("Metadata_Well", "Metadata_well", "Metadata_well_position", "Metadata_pert_well")
_SMILES_COLUMNS = ("Metadata_smiles", "Metadata_SMILES")
_TIME_COLUMNS = ("Metadata_time", "Metadata_timepoint", "Metadata_time_point")
_CONTROL_TYPES = {"control", "ctl_vehicle", "negcon", "vehicle"}
_VEHICLES = {"dmso"}


def parse_cellprofiler_features(names) -> pd.DataFrame:
    """Split CellProfiler feature names into compartment, feature type, channel and measurement.

    A name reads ``<Compartment>_<FeatureType>_<rest>``, e.g. ``Cells_Intensity_MeanIntensity_DNA`` or
    ``Nuclei_Texture_InfoMeas1_ER_5_0``. Tokens of ``<rest>`` that name a channel (DNA, ER, RNA, AGP, Mito; also
    with an ``Orig``/``Corr``/``Illum`` prefix) form ``channel``; two channels (Correlation features) are joined in
    the order DNA, ER, RNA, AGP, Mito, e.g. ``"DNA_ER"`` for both ``..._K_DNA_ER`` and ``..._K_ER_DNA`` (the name
    keeps the direction); features without one (AreaShape, Neighbors, ...) get ``"None"``. The remaining tokens
    form ``measurement`` (``"None"`` when nothing is left).

    Parameters
    ----------
    names
        Feature names (any iterable of strings).

    Returns
    -------
    DataFrame indexed by ``names`` with columns ``compartment``, ``feature_type``, ``channel``, ``measurement``
    and ``group`` (``f"{compartment}_{channel}"``).
    """
    if isinstance(names, str):
        raise TypeError("parse_cellprofiler_features expects a list of feature names, not a single string.")
    names = [str(n) for n in names]
    rows = []
    for name in names:
        tokens = name.split("_")
        compartment = tokens[0] if tokens[0] else _NO_CHANNEL
        feature_type = tokens[1] if len(tokens) > 1 and tokens[1] else _NO_CHANNEL
        channels, rest = [], []
        for token in tokens[2:]:
            channel = _channel_name(token)
            if channel is not None:
                channels.append(channel)
            elif token:
                rest.append(token)
        channels = sorted(channels, key=CHANNELS.index)  # "RNA_DNA" and "DNA_RNA" form one group
        channel = "_".join(channels) if channels else _NO_CHANNEL
        measurement = "_".join(rest) if rest else _NO_CHANNEL
        rows.append((compartment, feature_type, channel, measurement, f"{compartment}_{channel}"))
    return pd.DataFrame(
        rows,
        index=pd.Index(names, dtype=object),
        columns=["compartment", "feature_type", "channel", "measurement", "group"],
    )


def _channel_name(token: str) -> str | None:
    for prefix in ("", *_CHANNEL_PREFIXES):
        if prefix and not token.startswith(prefix):
            continue
        bare = token[len(prefix) :]
        if bare in CHANNELS:
            return bare
    return None


def read_cell_painting(
    path,
    *,
    control_key: str = "control",
    drug_key: str = "drug",
    dose_key: str = "dose",
    moa_key: str = "moa",
    cell_key: str = "cell_line",
    cell_line: str | None = None,
    metadata_prefix: str = "Metadata_",
    features=None,
    sep: str | None = None,
    decimal: str = ".",
) -> AnnData:
    """Read pycytominer-style Cell Painting profiles (CSV, CSV.gz, TSV or parquet) into AnnData.

    Each row (well or consensus profile) becomes an observation. ``Metadata_*`` columns go to ``obs`` (kept as
    they are) and are mapped to the schema; the other (numeric) columns are the features in ``X`` (float32), and
    ``var`` gets :func:`parse_cellprofiler_features` of their names.

    Mapping (each from the first column present):

    - ``drug`` ← ``Metadata_pert_iname``, ``Metadata_pert_id``, ``Metadata_broad_id`` or ``Metadata_broad_sample``;
      control rows without one get ``"DMSO"``.
    - ``control`` (bool) ← ``Metadata_broad_sample_type`` / ``Metadata_pert_type`` == "control", or drug DMSO.
    - ``moa`` ← ``Metadata_moa`` ("|"-joined as in the file). Controls without an MOA get their drug name
      ("DMSO"), so they form their own class; treated wells without an MOA stay NaN.
    - ``dose`` (float) ← ``Metadata_mmoles_per_liter`` (LINCS Cell Painting stores µM there despite the name),
      0.0 for controls without a dose.
    - ``cell_line`` ← ``Metadata_cell_line`` / ``Metadata_cell_id``, else the ``cell_line`` argument.
    - ``plate`` ← ``Metadata_Plate``; ``well`` ← ``Metadata_Well``; ``smiles`` and ``time`` when present.

    ``obs_names`` are ``"<plate>_<well>"`` when unique, else row numbers.

    A text file is checked as it is read: every line must have the header's number of fields (a truncated row is
    refused, not padded with NaN), the file must end with a line break (else its last value may be cut short),
    column names must be unique, and a NUL byte, bytes that are not UTF-8, a stray quote or a damaged ``.gz``
    raise :class:`~perturbkit.errors.FileFormatError` naming the file and line.

    Parameters
    ----------
    path
        Profile file: ``.csv``, ``.csv.gz``, ``.tsv(.gz)`` or ``.parquet``.
    control_key, drug_key, dose_key, moa_key, cell_key
        Names of the schema columns to create.
    cell_line
        Cell line for files without a cell-line column (e.g. ``"A549"``); ``"unknown"`` (with a warning) if
        neither is given.
    metadata_prefix
        Prefix of metadata columns.
    features
        Feature columns to keep (default: every non-metadata column).
    sep
        Field separator of a text file: ``None`` (default) sniffs tab or comma from the header line; pass ``";"``
        for semicolon-separated files (which are refused when sniffed, as their numbers often use decimal commas).
    decimal
        Decimal mark of the numbers, e.g. ``","`` with ``sep=";"``.

    Returns
    -------
    AnnData (profiles × features).
    """
    import anndata as ad

    path = existing_path(path, what="Cell Painting profile file")
    table = _read_profiles(path, sep=sep, decimal=decimal)
    meta_cols = [c for c in table.columns if str(c).startswith(metadata_prefix)]
    if not meta_cols:
        raise PerturbkitInputError(
            f"'{path}' has no {metadata_prefix}* columns, so it is not a pycytominer-style profile table (columns "
            f"start with {list(table.columns)[:5]}). Pass metadata_prefix= if your metadata columns use another prefix."
        )
    if features is None:
        feature_cols = [c for c in table.columns if c not in meta_cols]
    else:
        features = [features] if isinstance(features, str) else list(features)
        absent = [f for f in features if f not in table.columns]
        if absent:
            raise PerturbkitInputError(f"features= names {len(absent)} columns that '{path}' lacks, e.g. {absent[:5]}.")
        feature_cols = features
    if not feature_cols:
        raise PerturbkitInputError(f"'{path}' has metadata columns but no feature columns.")
    non_numeric = [c for c in feature_cols if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise PerturbkitInputError(
            f"Feature columns must be numeric, but {len(non_numeric)} are not, e.g. {non_numeric[:5]} (values like "
            f"{table[non_numeric[0]].dropna().astype(str).unique()[:3].tolist()}). If they are metadata, rename them "
            f"with the {metadata_prefix!r} prefix; otherwise pass features=."
        )

    obs = table[meta_cols].copy()
    obs = _cell_painting_schema(
        obs,
        control_key=control_key,
        drug_key=drug_key,
        dose_key=dose_key,
        moa_key=moa_key,
        cell_key=cell_key,
        cell_line=cell_line,
    )
    obs.index = _obs_names(obs)
    X = table[feature_cols].to_numpy(dtype=np.float32)
    var = parse_cellprofiler_features([str(c) for c in feature_cols])
    return ad.AnnData(X=np.ascontiguousarray(X), obs=obs, var=var)


def _read_profiles(path, *, sep=None, decimal=".") -> pd.DataFrame:
    name = path.name.lower()
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if name.endswith((".parquet", ".pq")) or magic == b"PAR1":
        try:
            return pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a broken file
            raise FileFormatError(f"'{path}' cannot be read as parquet (damaged or incomplete?): {err}") from None
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        if sep is not None and (not isinstance(sep, str) or len(sep) != 1 or sep in '"\n\r'):
            raise PerturbkitInputError(f"sep={sep!r} is not a field separator; use ',', '\\t' or ';'.")
        try:
            return read_delimited(path, sep=sep, strict=True, low_memory=False, decimal=decimal)
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise FileFormatError(f"'{path}' is not a readable CSV/TSV table: {err}") from None
    raise PerturbkitInputError(f"Unknown profile format for '{path}': expected .csv, .csv.gz, .tsv(.gz) or .parquet.")


def _lower_strings(series: pd.Series) -> pd.Series:
    return series.astype(object).map(lambda v: v.strip().lower() if isinstance(v, str) else "")


def _cell_painting_schema(obs, *, control_key, drug_key, dose_key, moa_key, cell_key, cell_line) -> pd.DataFrame:
    n = len(obs)
    drug_col = first_present(obs, _DRUG_COLUMNS)
    drug = obs[drug_col].astype(object) if drug_col else pd.Series(np.nan, index=obs.index, dtype=object)

    control = np.zeros(n, dtype=bool)
    for col in ("Metadata_broad_sample_type", "Metadata_pert_type", "Metadata_control_type"):
        if col in obs.columns:
            control |= _lower_strings(obs[col]).isin(_CONTROL_TYPES).to_numpy()
    for col in (drug_col, "Metadata_broad_sample"):
        if col is not None and col in obs.columns:
            control |= _lower_strings(obs[col]).isin(_VEHICLES).to_numpy()
    if "Metadata_control" in obs.columns and pd.api.types.is_bool_dtype(obs["Metadata_control"]):
        control |= obs["Metadata_control"].to_numpy(dtype=bool)

    vehicle = "DMSO"
    if "Metadata_pert_vehicle" in obs.columns:
        names = obs.loc[control, "Metadata_pert_vehicle"].dropna().astype(str)
        if len(names):
            vehicle = names.mode().iloc[0]
    drug = drug.where(~(control & drug.isna().to_numpy()), vehicle)
    drug = drug.where(~_lower_strings(drug).isin(_VEHICLES).to_numpy(), "DMSO")

    out = obs.copy()
    out[drug_key] = drug.to_numpy(dtype=object)
    out[control_key] = control

    moa_col = first_present(obs, _MOA_COLUMNS)
    if moa_col is not None:
        moa = obs[moa_col].astype(object)
        out[moa_key] = moa.where(~(control & moa.isna().to_numpy()), drug).to_numpy(dtype=object)

    dose_col = first_present(obs, _DOSE_COLUMNS)
    if dose_col is not None:
        dose = pd.to_numeric(obs[dose_col], errors="coerce").astype(float)
        out[dose_key] = dose.where(~(control & dose.isna().to_numpy()), 0.0)

    cell_col = first_present(obs, _CELL_COLUMNS)
    if cell_col is not None:
        out[cell_key] = obs[cell_col].astype(object).fillna(cell_line if cell_line is not None else np.nan)
    else:
        if cell_line is None:
            warnings.warn(
                "The profiles have no cell-line column (Metadata_cell_line / Metadata_cell_id); cell_line is set to "
                "'unknown'. Pass cell_line='A549' (or the right one) to read_cell_painting.",
                stacklevel=3,
            )
        out[cell_key] = cell_line if cell_line is not None else "unknown"

    for key, candidates in (("plate", _PLATE_COLUMNS), ("well", _WELL_COLUMNS), ("smiles", _SMILES_COLUMNS)):
        col = first_present(obs, candidates)
        if col is not None and key not in out.columns:
            out[key] = obs[col].astype(object) if key != "plate" else obs[col].astype(str)
    time_col = first_present(obs, _TIME_COLUMNS)
    if time_col is not None and "time" not in out.columns:
        out["time"] = pd.to_numeric(obs[time_col], errors="coerce").astype(float)
    return out


def _obs_names(obs: pd.DataFrame) -> pd.Index:
    if "plate" in obs.columns and "well" in obs.columns:
        names = obs["plate"].astype(str) + "_" + obs["well"].astype(str)
        if names.is_unique:
            return pd.Index(names.to_numpy(dtype=object))
    return pd.Index([str(i) for i in range(len(obs))], dtype=object)
