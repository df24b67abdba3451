"""The shared ground truth of every simulator: a library of drugs with MOAs, SMILES and latent effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from .._schema import MOA_SEPARATOR, PerturbkitInputError, split_moa
from ._smiles import (
    LINKERS,
    MOA_FAMILIES,
    SCAFFOLDS,
    SUBSTITUENTS,
    fill_template,
    shift_ring_digits,
    smiles_ngram_features,
)

DMSO_SMILES = "CS(C)=O"


@dataclass
class DrugLibrary:
    """Drugs with their MOAs, SMILES and true latent effects (one row per drug, same order everywhere)."""

    names: list[str]
    moas: list[list[str]]
    smiles: list[str]
    scaffold: list[str]
    substituents: list[str]
    latent: np.ndarray  # (n_drugs, latent_dim): sum of MOA prototypes + deviation
    deviation: np.ndarray  # (n_drugs, latent_dim)
    log10_ec50: np.ndarray  # (n_drugs,) potency in log10 µM
    moa_names: list[str]
    prototypes: np.ndarray  # (n_moas, latent_dim)
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def moa_strings(self) -> list[str]:
        return [MOA_SEPARATOR.join(m) for m in self.moas]

    def membership(self) -> np.ndarray:
        """(n_drugs, n_moas) 0/1 matrix: which MOA prototypes each drug's latent effect sums."""
        index = {m: i for i, m in enumerate(self.moa_names)}
        out = np.zeros((self.n, len(self.moa_names)), dtype=np.int8)
        for row, parts in enumerate(self.moas):
            for part in parts:
                out[row, index[part]] = 1
        return out

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "drug": self.names,
                "moa": self.moa_strings,
                "smiles": self.smiles,
                "scaffold": self.scaffold,
                "substituents": self.substituents,
                "log10_ec50": self.log10_ec50.astype(float),
                "n_moas": [len(m) for m in self.moas],
            }
        )

    def truth(self) -> dict:
        """The library's ground truth in an h5ad-writable form (for ``adata.uns['simulation']``)."""
        return {
            "moa_names": np.asarray(self.moa_names, dtype=object),
            "moa_prototypes": self.prototypes.astype(np.float32),
            "drug_names": np.asarray(self.names, dtype=object),
            "drug_latent": self.latent.astype(np.float32),
            "drug_deviation": self.deviation.astype(np.float32),
            "drug_moa_membership": self.membership(),
            "drugs": self.table(),
        }


def _assign_counts(n: int, k: int) -> np.ndarray:
    counts = np.full(k, n // k)
    counts[: n % k] += 1
    return counts


def make_library(
    rng: np.random.Generator,
    *,
    n_drugs: int,
    n_moas: int,
    latent_dim: int,
    frac_two_moas: float,
    deviation_scale: float = 0.25,
    potency_range: tuple[float, float] = (-1.0, 0.5),
    potency_sd: float = 0.35,
    pair_group_size: int = 4,
    compounds: pd.DataFrame | None = None,
) -> DrugLibrary:
    """Build a drug library with a latent MOA model (see :func:`perturbkit.datasets.simulate_bulk`)."""
    if compounds is not None:
        return _library_from_compounds(
            rng,
            compounds,
            n_drugs=n_drugs,
            latent_dim=latent_dim,
            deviation_scale=deviation_scale,
            potency_range=potency_range,
            potency_sd=potency_sd,
        )
    if not 1 <= n_moas <= len(MOA_FAMILIES):
        raise PerturbkitInputError(
            f"n_moas={n_moas} is out of range: the built-in scaffold table has {len(MOA_FAMILIES)} MOA families. "
            f"Use 1 <= n_moas <= {len(MOA_FAMILIES)}, or pass compounds= (a table with columns drug, moa, smiles) "
            f"to simulate real compounds and their MOAs."
        )
    if not 0.0 <= frac_two_moas < 1.0:
        raise PerturbkitInputError(f"frac_two_moas={frac_two_moas} must be in [0, 1).")
    n_two = int(round(frac_two_moas * n_drugs)) if n_moas >= 2 else 0
    n_single = n_drugs - n_two
    if n_single < n_moas:
        raise PerturbkitInputError(
            f"n_drugs={n_drugs} is too small for n_moas={n_moas}: every MOA needs at least one single-MOA drug. "
            f"Raise n_drugs or lower n_moas / frac_two_moas."
        )
    moa_names = MOA_FAMILIES[:n_moas]
    prototypes = rng.standard_normal((n_moas, latent_dim))
    n_sub = len(SUBSTITUENTS)
    sub_effect = rng.standard_normal((n_sub, latent_dim))
    sub_effect[0] = 0.0  # hydrogen: the parent drug sits exactly on its MOA prototype
    link_effect = rng.standard_normal((len(LINKERS), latent_dim))
    sub_potency = rng.normal(0.0, potency_sd, n_sub)
    sub_potency[0] = 0.0
    templates = {moa: SCAFFOLDS[moa] for moa in moa_names}
    scaffold_potency = {parent: rng.uniform(*potency_range) for moa in moa_names for parent, _ in templates[moa]}

    names, moas, smiles, scaffold, subs, latent, deviation, potency = [], [], [], [], [], [], [], []
    counters: dict[str, int] = {}

    def _name(parent: str, is_parent: bool) -> str:
        if is_parent:
            return parent
        counters[parent] = counters.get(parent, 0) + 1
        return f"{parent}-{counters[parent]}"

    # Single-MOA drugs: balanced over families; each family lists its real parent drugs first, then analogs.
    single_counts = _assign_counts(n_single, n_moas)
    for m, moa in enumerate(moa_names):
        fam = templates[moa]
        combos = [(t, 0, 0) for t in range(len(fam))]
        rest = [(t, a, b) for t in range(len(fam)) for a in range(n_sub) for b in range(n_sub) if (a, b) != (0, 0)]
        if single_counts[m] > len(combos) + len(rest):
            raise PerturbkitInputError(
                f"n_drugs={n_drugs} needs more analogs per family than the scaffold table allows."
            )
        order = rng.permutation(len(rest))[: max(0, single_counts[m] - len(combos))]
        combos = (combos + [rest[i] for i in order])[: single_counts[m]]
        for t, a, b in combos:
            parent, template = fam[t]
            dev = deviation_scale * (sub_effect[a] + sub_effect[b])
            names.append(_name(parent, a == 0 and b == 0))
            moas.append([moa])
            smiles.append(fill_template(template, SUBSTITUENTS[a][1], SUBSTITUENTS[b][1]))
            scaffold.append(parent)
            subs.append(f"R1={SUBSTITUENTS[a][0]};R2={SUBSTITUENTS[b][0]}")
            deviation.append(dev)
            latent.append(prototypes[m] + dev)
            potency.append(scaffold_potency[parent] + sub_potency[a] + sub_potency[b])

    # Two-MOA drugs: a limited set of MOA pairs, several compounds each, so that "A|B" groups have members.
    if n_two:
        all_pairs = list(combinations(range(n_moas), 2))
        n_pairs = min(len(all_pairs), max(1, int(np.ceil(n_two / pair_group_size))))
        pairs = [all_pairs[i] for i in rng.choice(len(all_pairs), size=n_pairs, replace=False)]
        pair_counts = _assign_counts(n_two, n_pairs)
        used: set[tuple] = set()
        for (ma, mb), count in zip(pairs, pair_counts, strict=True):
            for _ in range(count):
                for _attempt in range(1000):
                    key = (
                        ma,
                        mb,
                        int(rng.integers(len(templates[moa_names[ma]]))),
                        int(rng.integers(len(templates[moa_names[mb]]))),
                        int(rng.integers(n_sub)),
                        int(rng.integers(n_sub)),
                        int(rng.integers(n_sub)),
                        int(rng.integers(len(LINKERS))),
                    )
                    if key not in used:
                        break
                used.add(key)
                _, _, th, tg, a, c, d, lk = key
                host_parent, host = templates[moa_names[ma]][th]
                guest_parent, guest = templates[moa_names[mb]][tg]
                guest_smiles = shift_ring_digits(fill_template(guest, SUBSTITUENTS[c][1], SUBSTITUENTS[d][1]))
                dev = deviation_scale * (sub_effect[a] + sub_effect[c] + sub_effect[d] + link_effect[lk])
                names.append(_name(f"{host_parent}~{guest_parent}", False))
                moas.append([moa_names[ma], moa_names[mb]])
                smiles.append(fill_template(host, SUBSTITUENTS[a][1], LINKERS[lk][1] + guest_smiles))
                scaffold.append(f"{host_parent}~{guest_parent}")
                subs.append(
                    f"R1={SUBSTITUENTS[a][0]};linker={LINKERS[lk][0]};"
                    f"guest_R1={SUBSTITUENTS[c][0]};guest_R2={SUBSTITUENTS[d][0]}"
                )
                deviation.append(dev)
                latent.append(prototypes[ma] + prototypes[mb] + dev)
                potency.append(
                    0.5 * (scaffold_potency[host_parent] + scaffold_potency[guest_parent])
                    + sub_potency[a]
                    + sub_potency[c]
                    + sub_potency[d]
                )
    return DrugLibrary(
        names=names,
        moas=moas,
        smiles=smiles,
        scaffold=scaffold,
        substituents=subs,
        latent=np.asarray(latent),
        deviation=np.asarray(deviation),
        log10_ec50=np.asarray(potency),
        moa_names=list(moa_names),
        prototypes=prototypes,
        extra={
            "substituent_names": np.asarray([s[0] for s in SUBSTITUENTS], dtype=object),
            "substituent_effects": (deviation_scale * sub_effect).astype(np.float32),
        },
    )


def _library_from_compounds(rng, compounds, *, n_drugs, latent_dim, deviation_scale, potency_range, potency_sd):
    if not isinstance(compounds, pd.DataFrame):
        raise PerturbkitInputError("compounds= must be a pandas DataFrame with columns drug, moa, smiles.")
    missing = [c for c in ("drug", "moa", "smiles") if c not in compounds.columns]
    if missing:
        raise PerturbkitInputError(
            f"compounds= lacks column(s) {missing}; it needs drug, moa and smiles (e.g. from "
            f"pk.io.read_repurposing_hub, renaming pert_iname to drug if needed)."
        )
    table = compounds[["drug", "moa", "smiles"]].dropna()
    table = table[(table["moa"].astype(str).str.strip() != "") & (table["smiles"].astype(str).str.strip() != "")]
    table = table.drop_duplicates("drug").drop_duplicates("smiles").reset_index(drop=True)
    if len(table) == 0:
        raise PerturbkitInputError("compounds= has no row with a drug name, an MOA and a SMILES.")
    if len(table) > n_drugs:
        table = table.iloc[np.sort(rng.choice(len(table), size=n_drugs, replace=False))].reset_index(drop=True)
    moas = [split_moa(m) for m in table["moa"]]
    moa_names = sorted({p for parts in moas for p in parts})
    index = {m: i for i, m in enumerate(moa_names)}
    prototypes = rng.standard_normal((len(moa_names), latent_dim))
    n_buckets = 256
    projection = rng.standard_normal((n_buckets, latent_dim))
    potency_proj = rng.standard_normal(n_buckets)
    moa_potency = rng.uniform(*potency_range, size=len(moa_names))
    feats = np.stack([smiles_ngram_features(str(s), n_buckets) for s in table["smiles"]])
    deviation = deviation_scale * np.sqrt(2.0) * feats @ projection
    latent = np.stack([prototypes[[index[p] for p in parts]].sum(axis=0) for parts in moas]) + deviation
    potency = (
        np.array([moa_potency[[index[p] for p in parts]].mean() for parts in moas]) + potency_sd * feats @ potency_proj
    )
    return DrugLibrary(
        names=[str(d) for d in table["drug"]],
        moas=moas,
        smiles=[str(s) for s in table["smiles"]],
        scaffold=[str(d) for d in table["drug"]],
        substituents=["real compound"] * len(table),
        latent=latent,
        deviation=deviation,
        log10_ec50=potency,
        moa_names=moa_names,
        prototypes=prototypes,
    )


def hill(dose, log10_ec50, hill_coefficient: float = 1.0):
    """Fraction of the maximal effect at ``dose`` (µM) for a drug with the given log10 EC50 (µM)."""
    dose = np.asarray(dose, dtype=float)
    ec50 = 10.0 ** np.asarray(log10_ec50, dtype=float)
    with np.errstate(divide="ignore"):
        ratio = np.where(dose > 0, (dose / ec50) ** hill_coefficient, 0.0)
    return ratio / (1.0 + ratio)


def time_factor(time, tau: float = 8.0):
    """Fraction of the full response reached after ``time`` hours (first-order onset with time constant tau)."""
    return 1.0 - np.exp(-np.asarray(time, dtype=float) / tau)
