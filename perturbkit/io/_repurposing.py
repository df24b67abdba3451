"""The Broad Drug Repurposing Hub tables (Corsello et al. 2017)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._schema import MOA_SEPARATOR, PerturbkitInputError
from ._utils import existing_path, first_present, read_delimited

_DRUG_COLUMNS = ["pert_iname", "clinical_phase", "moa", "target", "disease_area", "indication"]
_MOA_NAME_COLUMNS = ("pert_iname", "drug", "pert_name", "compound", "name")


def read_repurposing_hub(drugs, samples=None) -> pd.DataFrame:
    """Read the Drug Repurposing Hub drug table (and optionally its sample table) into one row per drug.

    Parameters
    ----------
    drugs
        ``repurposing_drugs_*.txt(.gz)`` (tab-separated; lines starting with ``!`` are comments) or a DataFrame
        with a ``pert_iname`` column.
    samples
        ``repurposing_samples_*.txt(.gz)`` or DataFrame (``broad_id``, ``pert_iname``, ``smiles``, ...). A drug
        has several samples (vendors, salts); its ``smiles`` is the most common SMILES among them (ties: the
        first in file order) and its ``broad_id`` the most common compound id (``BRD-K12345678``, the first 13
        characters of the sample id), chosen the same way.

    Returns
    -------
    DataFrame with columns ``drug`` (the hub's ``pert_iname``), ``moa`` ("|"-joined as in the file), ``target``,
    ``clinical_phase``, ``disease_area``, ``indication`` and, with ``samples``, ``smiles``, ``broad_id`` and
    ``inchikey`` (NaN for drugs without a sample). Join it into AnnData with :func:`perturbkit.pp.annotate`.
    """
    table = _load(drugs, "drugs")
    missing = [c for c in ("pert_iname", "moa") if c not in table.columns]
    if missing:
        raise PerturbkitInputError(
            f"The Repurposing Hub drug table lacks {missing}; its columns are {list(table.columns)[:10]}. Pass "
            f"repurposing_drugs_<date>.txt as drugs= (and repurposing_samples_<date>.txt as samples=)."
        )
    table = table[table["pert_iname"].notna()].copy()
    table["pert_iname"] = table["pert_iname"].astype(str).str.strip()
    table = table.drop_duplicates("pert_iname", keep="first")
    out = pd.DataFrame({"drug": table["pert_iname"].to_numpy(dtype=object)})
    for column in _DRUG_COLUMNS[1:]:
        out[column] = table[column].to_numpy(dtype=object) if column in table.columns else np.nan

    if samples is not None:
        s = _load(samples, "samples")
        missing = [c for c in ("pert_iname", "smiles") if c not in s.columns]
        if missing:
            raise PerturbkitInputError(
                f"The Repurposing Hub sample table lacks {missing}; its columns are {list(s.columns)[:10]}."
            )
        s = s[s["pert_iname"].notna()].copy()
        s["pert_iname"] = s["pert_iname"].astype(str).str.strip()
        out["smiles"] = out["drug"].map(_most_common(s, "smiles"))
        if "broad_id" in s.columns:
            s["_compound"] = s["broad_id"].astype(object).map(lambda v: v[:13] if isinstance(v, str) else np.nan)
            out["broad_id"] = out["drug"].map(_most_common(s, "_compound"))
        if "InChIKey" in s.columns:
            out["inchikey"] = out["drug"].map(_most_common(s, "InChIKey"))
    return out


def _load(table, name: str) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    path = existing_path(table, what=f"Repurposing Hub {name} table")
    try:
        return read_delimited(path, comment_prefix="!", dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise PerturbkitInputError(f"'{path}' is not a readable Repurposing Hub {name} table: {err}") from None


def _most_common(samples: pd.DataFrame, column: str) -> pd.Series:
    """Per drug, the most frequent non-missing value of ``column`` (ties: first seen in file order)."""
    s = samples[["pert_iname", column]].dropna()
    s = s.assign(_order=np.arange(len(s)))
    stats = s.groupby(["pert_iname", column], sort=False).agg(n=("_order", "size"), first=("_order", "min"))
    stats = stats.reset_index().sort_values(["pert_iname", "n", "first"], ascending=[True, False, True])
    return stats.drop_duplicates("pert_iname").set_index("pert_iname")[column]


def read_moa_table(path, *, fix_encoding: bool = True) -> pd.DataFrame:
    r"""Read a compound → mechanism-of-action table, e.g. the LINCS Cell Painting ``moa_map`` (TSV/CSV, gzip too).

    One row per line of the file. The schema columns come first: ``drug`` (from ``pert_iname``), ``broad_id``
    (from ``broad_id``, else the first 13 characters of ``broad_sample``) and ``moa`` in perturbkit's convention
    (several mechanisms joined by ``"|"`` without spaces around them, NaN when there is none), then the file's
    other columns unchanged. Every line must have the header's number of fields.

    Parameters
    ----------
    path
        The table (``.tsv``, ``.csv``, ``.txt``, plain or ``.gz``).
    fix_encoding
        Repair text that was encoded as UTF-8 twice (the LINCS table spells "serotonin–norepinephrine" as
        "serotoninâ\x80\x93norepinephrine"), so that MOAs match the Repurposing Hub's spelling.

    Returns
    -------
    pandas.DataFrame
        One row per compound; join it into AnnData with :func:`perturbkit.pp.annotate` (e.g.
        ``on="Metadata_broad_id", table_on="broad_id"``).

    Examples
    --------
    >>> moa = pk.io.read_moa_table("lincs_cell_painting_moa_map.tsv.gz")
    >>> int(moa["moa"].str.contains("|", regex=False).sum())  # compounds with more than one MOA
    214
    """
    path = existing_path(path, what="MOA table")
    try:
        table = read_delimited(path, strict=True, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise PerturbkitInputError(f"'{path}' is not a readable MOA table: {err}") from None
    if "moa" not in table.columns:
        raise PerturbkitInputError(
            f"'{path}' has no 'moa' column; its columns are {list(table.columns)[:10]}. Pass a table with one "
            f"compound per line and its mechanisms of action in 'moa' (several joined by '|')."
        )
    if fix_encoding:
        table = table.apply(lambda column: column.map(_fix_double_utf8))
    out = pd.DataFrame(index=table.index)
    name = first_present(table, _MOA_NAME_COLUMNS)
    out["drug"] = table[name] if name is not None else np.nan
    if "broad_id" in table.columns:
        out["broad_id"] = table["broad_id"]
    elif "broad_sample" in table.columns:
        out["broad_id"] = table["broad_sample"].map(lambda v: v[:13] if isinstance(v, str) else np.nan)
    out["moa"] = table["moa"].map(_join_moa)
    rest = [c for c in table.columns if c not in out.columns]
    return pd.concat([out, table[rest]], axis=1)


def _join_moa(value):
    if not isinstance(value, str):
        return np.nan
    parts = [p.strip() for p in value.split(MOA_SEPARATOR) if p.strip()]
    return MOA_SEPARATOR.join(parts) if parts else np.nan


def _fix_double_utf8(value):
    r"""'serotoninâ\x80\x93norepinephrine' → 'serotonin–norepinephrine'; other values unchanged."""
    if not isinstance(value, str) or value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value
