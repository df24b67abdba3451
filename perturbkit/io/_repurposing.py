"""The Broad Drug Repurposing Hub tables (Corsello et al. 2017)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._schema import PerturbkitInputError
from ._utils import existing_path, read_delimited

_DRUG_COLUMNS = ["pert_iname", "clinical_phase", "moa", "target", "disease_area", "indication"]


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
