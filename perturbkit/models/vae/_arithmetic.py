"""Latent space arithmetic (LSA) for polypharmacology: the numerical core (Chow et al., PLOS Comput Biol 2022).

For every two-MOA group ``"A|B"`` whose parts are present as single-MOA groups, the prediction is
``inverse_transform(mean_z(A) - mean_z(DMSO) + mean_z(B))`` and is compared with the mean real ``A|B`` profile.
The control shuffles the MOA labels (DMSO included) among the kept rows, repeats the arithmetic with the shuffled
groups and scores those predictions against the same real ``A|B`` profile.

This module works on arrays; :mod:`perturbkit.tl._arithmetic` is the AnnData face (``pk.tl.latent_arithmetic``).
A *model* is any object with ``transform(X) -> Z`` and ``inverse_transform(Z) -> X`` on numpy arrays in data
units (the VAE, a fitted :class:`sklearn.decomposition.PCA`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

from ..._groups import group_means
from ..._schema import MOA_SEPARATOR, GeneMismatchError, PerturbkitInputError, split_moa
from ..._stats import pearson_rows

PCA_COMPONENTS = 10

RESULT_COLUMNS = [
    "group",
    "A",
    "B",
    "n_rows",
    "n_rows_A",
    "n_rows_B",
    "l2",
    "pearson",
    "l2_shuffled",
    "l2_shuffled_mean",
    "l2_shuffled_std",
    "pearson_shuffled_mean",
    "z",
    "p",
    "p_empirical",
]


class IdentityModel:
    """The original feature space as a "model": ``transform`` and ``inverse_transform`` return their input."""

    def transform(self, X):
        return np.asarray(X)

    def inverse_transform(self, Z):
        return np.asarray(Z)

    def __repr__(self) -> str:
        return "IdentityModel()"


def resolve_model(model, X_fit: np.ndarray | None = None, *, seed: int = 0):
    """Return ``(model, name)``: ``None`` → identity, ``"pca"`` → PCA(10) fitted on ``X_fit``, else ``model``.

    Raises :class:`PerturbkitInputError` when ``model`` lacks ``transform``/``inverse_transform``.
    """
    if model is None:
        return IdentityModel(), "original"
    if isinstance(model, str):
        if model.lower() != "pca":
            raise PerturbkitInputError(f"model={model!r} is not understood; pass None, 'pca' or a fitted model.")
        from sklearn.decomposition import PCA

        n_comp = min(PCA_COMPONENTS, *X_fit.shape)
        return PCA(n_components=n_comp, random_state=seed).fit(X_fit), f"pca{n_comp}"
    missing = [m for m in ("transform", "inverse_transform") if not callable(getattr(model, m, None))]
    if missing:
        raise PerturbkitInputError(
            f"model {type(model).__name__} has no {' / '.join(missing)} method. LSA needs an object with "
            f"transform(X) -> Z and inverse_transform(Z) -> X (a perturbkit VAE, a fitted sklearn PCA, ...), "
            f"model=None for the original feature space, or model='pca'."
        )
    return model, type(model).__name__


# ----------------------------------------------------------------------------------------------------------------
# Filtering rules
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class LSAGroups:
    """Outcome of the paper's LSA filtering rules (see :func:`lsa_filter`).

    Attributes
    ----------
    row_group
        Canonical group per row (``"DMSO"``, ``"A"`` or ``"A|B"`` with sorted parts); ``None`` for dropped rows.
    values
        One row per distinct raw MOA value: ``moa``, ``canonical``, ``n_parts``, ``n_rows``, ``kind``
        (``control``/``single``/``pair``/``multi``/``missing``), ``kept``, ``reason``.
    pairs
        One row per canonical two-MOA group: ``group``, ``A``, ``B``, ``n_rows``, ``A_present``, ``B_present``,
        ``eligible``, ``reason``; sorted by group.
    eligible
        The eligible ``"A|B"`` groups (both parts present as kept single-MOA groups), sorted.
    message
        Human-readable summary; says why nothing is eligible when that is the case.
    """

    row_group: np.ndarray
    values: pd.DataFrame
    pairs: pd.DataFrame
    eligible: list = field(default_factory=list)
    control: str = "DMSO"
    message: str = ""

    @property
    def kept(self) -> np.ndarray:
        """Boolean mask of the rows kept by the rules."""
        return np.array([g is not None for g in self.row_group], dtype=bool)


def _canonical(value) -> tuple[str | None, int]:
    parts = sorted(dict.fromkeys(split_moa(value)))
    if not parts:
        return None, 0
    return MOA_SEPARATOR.join(parts), len(parts)


def lsa_filter(moa, *, control: str = "DMSO") -> LSAGroups:
    """Apply the paper's LSA filtering rules to a vector of MOA strings.

    Rules (Chow et al. 2022): keep compounds with one or two MOAs (``"A"`` or ``"A|B"``; three or more are
    dropped); keep a single-MOA group only if some two-MOA group uses it; keep the control (``moa == control``).
    ``"A|B"`` and ``"B|A"`` are the same group (parts are sorted). Two-MOA groups are kept whether or not their
    parts are present (they stay in the label-shuffling pool); only those with both parts present are *eligible*
    for the arithmetic. Missing MOA values are dropped.

    Parameters
    ----------
    moa
        One MOA string per row, parts joined by ``"|"``.
    control
        The MOA value of the control rows.

    Returns
    -------
    :class:`LSAGroups`
    """
    raw = pd.Series(np.asarray(moa, dtype=object))
    raw_str = raw.where(raw.notna(), None)
    uniques = pd.unique(raw_str)
    info = {}
    for value in uniques:
        if value is not None and str(value).strip() == control:
            info[value] = (control, 1, "control")
            continue
        canon, n = _canonical(value)
        kind = {0: "missing", 1: "single", 2: "pair"}.get(n, "multi")
        info[value] = (canon, n, kind)
    used_parts = {part for canon, n, kind in info.values() if kind == "pair" for part in canon.split(MOA_SEPARATOR)}
    counts = raw_str.value_counts(dropna=False)

    rows = []
    for value in uniques:
        canon, n, kind = info[value]
        if kind == "control":
            kept, reason = True, "control"
        elif kind == "missing":
            kept, reason = False, "no MOA annotation"
        elif kind == "multi":
            kept, reason = False, f"{n} MOAs (only one or two are allowed)"
        elif kind == "pair":
            kept, reason = True, "two-MOA group"
        elif canon in used_parts:
            kept, reason = True, "single MOA used by a two-MOA group"
        else:
            kept, reason = False, "single MOA not used by any two-MOA group"
        n_rows = int(counts.get(value, 0)) if value is not None else int(raw_str.isna().sum())
        rows.append(
            {
                "moa": value,
                "canonical": canon,
                "n_parts": n,
                "n_rows": n_rows,
                "kind": kind,
                "kept": kept,
                "reason": reason,
            }
        )
    values = pd.DataFrame(rows, columns=["moa", "canonical", "n_parts", "n_rows", "kind", "kept", "reason"])
    keep_map = {v: (info[v][0] if kept else None) for v, kept in zip(values["moa"], values["kept"], strict=True)}
    row_group = np.array([keep_map[v] for v in raw_str], dtype=object)

    singles = set(values.loc[values["kept"] & (values["kind"] == "single"), "canonical"])
    pair_rows = []
    pair_counts = values[values["kind"] == "pair"].groupby("canonical")["n_rows"].sum()
    for group, n_rows in pair_counts.sort_index().items():
        a, b = group.split(MOA_SEPARATOR)
        a_in, b_in = a in singles, b in singles
        missing = [p for p, present in ((a, a_in), (b, b_in)) if not present]
        reason = "eligible" if not missing else "missing single-MOA part(s): " + ", ".join(map(repr, missing))
        pair_rows.append(
            {
                "group": group,
                "A": a,
                "B": b,
                "n_rows": int(n_rows),
                "A_present": a_in,
                "B_present": b_in,
                "eligible": not missing,
                "reason": reason,
            }
        )
    pairs = pd.DataFrame(
        pair_rows, columns=["group", "A", "B", "n_rows", "A_present", "B_present", "eligible", "reason"]
    )
    eligible = pairs.loc[pairs["eligible"], "group"].tolist()
    out = LSAGroups(row_group=row_group, values=values, pairs=pairs, eligible=eligible, control=control)
    out.message = _message(out)
    return out


def _message(groups: LSAGroups) -> str:
    n_kept = int(groups.kept.sum())
    n_multi = int(groups.values.loc[groups.values["kind"] == "multi", "n_rows"].sum())
    head = (
        f"LSA filtering kept {n_kept} of {len(groups.row_group)} rows "
        f"({len(groups.pairs)} two-MOA groups; {n_multi} rows with three or more MOAs dropped)."
    )
    if groups.eligible:
        return head + f" {len(groups.eligible)} eligible A|B group(s): {groups.eligible}."
    if groups.pairs.empty:
        return head + " No A|B is eligible: the data hold no two-MOA ('A|B') group."
    detail = "; ".join(
        f"{g!r} lacks {r.split(': ', 1)[1]}" for g, r in zip(groups.pairs["group"], groups.pairs["reason"], strict=True)
    )
    return (
        head + f" No A|B is eligible: no two-MOA group has both of its parts present as single-MOA compounds. {detail}."
    )


# ----------------------------------------------------------------------------------------------------------------
# Arithmetic
# ----------------------------------------------------------------------------------------------------------------


def _predict(model, Zm, Xm, a_idx, b_idx, ab_idx, ctrl_idx, n_features):
    """Predicted and real mean A|B profiles for (possibly stacked) group means."""
    latent = Zm[a_idx] - Zm[ctrl_idx] + Zm[b_idx]
    pred = np.asarray(model.inverse_transform(latent), dtype=np.float64)
    if pred.ndim != 2 or pred.shape[1] != n_features:
        raise GeneMismatchError(
            f"model.inverse_transform returned shape {pred.shape}, but the data have {n_features} features; "
            f"the model was trained on different features."
        )
    return pred, Xm[ab_idx]


def arithmetic_table(
    Z: np.ndarray,
    X: np.ndarray,
    row_group,
    pairs: pd.DataFrame,
    model,
    *,
    control: str = "DMSO",
    n_shuffles: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """LSA results for the eligible pairs, from rows already encoded.

    Parameters
    ----------
    Z
        Encoded kept rows (``model.transform(X)``), rows × latent.
    X
        The kept rows in the data's feature space (rows × features).
    row_group
        Canonical group label per kept row (no ``None``).
    pairs
        Eligible pairs: columns ``group``, ``A``, ``B``.
    model
        Object with ``inverse_transform``.
    control, n_shuffles, seed
        Control label; number of label permutations (DMSO included) and their seed.

    Returns
    -------
    DataFrame with :data:`RESULT_COLUMNS`, one row per pair, indexed by group.

    Notes
    -----
    Shuffled control: the labels of the kept rows (control included) are permuted ``n_shuffles`` times; the
    group means of the encoded rows under each permutation give a shuffled prediction
    ``inverse_transform(mean_z(A') - mean_z(DMSO') + mean_z(B'))``, scored against the same real mean ``A|B``
    profile (true labels), as in the paper's code. All permutations are done by one sparse indicator multiply
    and one ``inverse_transform`` call.

    ``z = (l2 - mean(l2_shuffled)) / std(l2_shuffled)`` with the sample SD (ddof=1). ``p = Phi(z)`` is the
    one-sided normal-approximation p-value that ``l2`` is this small under the shuffled distribution;
    ``p_empirical = (1 + #{l2_shuffled <= l2}) / (1 + n_shuffles)`` is the permutation p-value (its floor is
    ``1 / (1 + n_shuffles)``).
    """
    Z = np.asarray(Z, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    labels, codes = np.unique(np.asarray(row_group, dtype=str), return_inverse=True)
    index = {g: i for i, g in enumerate(labels)}
    a_idx = np.array([index[a] for a in pairs["A"]], dtype=int)
    b_idx = np.array([index[b] for b in pairs["B"]], dtype=int)
    ab_idx = np.array([index[g] for g in pairs["group"]], dtype=int)
    ctrl_idx = index[control]
    G, P, F = len(labels), len(pairs), X.shape[1]

    Zm, Xm = (group_means(A, codes, G)[0] for A in (Z, X))
    pred, real = _predict(model, Zm, Xm, a_idx, b_idx, ab_idx, ctrl_idx, F)
    l2 = np.linalg.norm(pred - real, axis=1)
    pearson = pearson_rows(pred, real)

    if n_shuffles > 0:
        rng = np.random.default_rng(seed)
        perms = np.stack([rng.permutation(codes) for _ in range(n_shuffles)])  # shuffles × rows
        stacked = perms + (np.arange(n_shuffles) * G)[:, None]
        Zs = group_means(Z, stacked, n_shuffles * G)[0]
        off = (np.arange(n_shuffles) * G)[:, None]
        pred_s, _ = _predict(
            model, Zs, Xm, (off + a_idx).ravel(), (off + b_idx).ravel(), ab_idx, np.repeat(off.ravel() + ctrl_idx, P), F
        )
        real_s = np.tile(real, (n_shuffles, 1))  # the shuffled predictions are scored against the real A|B
        l2_s = np.linalg.norm(pred_s - real_s, axis=1).reshape(n_shuffles, P).T  # pairs × shuffles
        r_s = pearson_rows(pred_s, real_s).reshape(n_shuffles, P).T
        mean_s = l2_s.mean(axis=1)
        std_s = l2_s.std(axis=1, ddof=1) if n_shuffles > 1 else np.full(P, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(std_s > 0, (l2 - mean_s) / std_s, np.nan)
        p = norm.cdf(z)
        p_emp = (1.0 + (l2_s <= l2[:, None]).sum(axis=1)) / (1.0 + n_shuffles)
        pearson_s = np.nanmean(r_s, axis=1) if np.isfinite(r_s).any() else np.full(P, np.nan)
    else:
        l2_s = np.empty((P, 0))
        mean_s = std_s = z = p = p_emp = pearson_s = np.full(P, np.nan)

    size = np.bincount(codes, minlength=G)
    table = pd.DataFrame(
        {
            "group": pairs["group"].to_numpy(),
            "A": pairs["A"].to_numpy(),
            "B": pairs["B"].to_numpy(),
            "n_rows": size[ab_idx],
            "n_rows_A": size[a_idx],
            "n_rows_B": size[b_idx],
            "l2": l2,
            "pearson": pearson,
            "l2_shuffled": [list(map(float, row)) for row in l2_s],
            "l2_shuffled_mean": mean_s,
            "l2_shuffled_std": std_s,
            "pearson_shuffled_mean": pearson_s,
            "z": z,
            "p": p,
            "p_empirical": p_emp,
        },
        columns=RESULT_COLUMNS,
    )
    table.index = pd.Index(table["group"].to_numpy(), name=None)
    return table


def empty_table() -> pd.DataFrame:
    """An empty LSA result with the right columns and dtypes."""
    dtypes = {
        "group": object,
        "A": object,
        "B": object,
        "n_rows": int,
        "n_rows_A": int,
        "n_rows_B": int,
        "l2_shuffled": object,
    }
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, float)) for c in RESULT_COLUMNS})
