"""Ground-truth simulators: L1000-like bulk signatures, Cell-Painting-like morphology and single-cell counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._schema import PerturbkitInputError
from ._library import DMSO_SMILES, DrugLibrary, hill, make_library, time_factor

DEFAULT_CELL_LINES = ["MCF7", "PC3", "A375", "HA1E", "HT29", "HELA", "YAPC"]
LINCS_DOSES = (0.04, 0.12, 0.37, 1.11, 3.33, 10.0)
PLATE_CAPACITY = 96  # treated bulk signatures per simulated plate


class _RandomNet:
    """A fixed random two-layer network ``s -> B tanh(A s + c) - B tanh(c)`` (zero effect maps to zero)."""

    def __init__(self, rng, n_in: int, n_out: int, *, hidden: int, gain: float, bias_sd: float = 0.5):
        self.A = rng.standard_normal((hidden, n_in)) * (gain / np.sqrt(n_in))
        self.c = rng.normal(0.0, bias_sd, hidden)
        self.B = rng.standard_normal((n_out, hidden)) / np.sqrt(hidden)

    def __call__(self, s: np.ndarray) -> np.ndarray:
        return (np.tanh(s @ self.A.T + self.c) - np.tanh(self.c)) @ self.B.T


def _check_positive(**values):
    for name, value in values.items():
        if value is None or value <= 0:
            raise PerturbkitInputError(f"{name}={value!r} must be a positive number.")


def _obs_frame(rows: dict) -> pd.DataFrame:
    obs = pd.DataFrame(rows)
    obs["dose"] = obs["dose"].astype(float)
    obs["time"] = obs["time"].astype(float)
    obs["control"] = obs["control"].astype(bool)
    for col in ("cell_line", "drug", "moa", "smiles", "plate"):
        obs[col] = obs[col].astype(str)
    obs.index = [f"{prefix}{i:06d}" for i, prefix in zip(range(len(obs)), ["s"] * len(obs))]
    return obs


def _params_for_uns(**params) -> dict:
    out = {}
    for key, value in params.items():
        if value is None:
            out[key] = "None"
        elif isinstance(value, (list, tuple)):
            out[key] = np.asarray(value)
        else:
            out[key] = value
    return out


def simulate_bulk(
    *,
    n_drugs: int = 500,
    n_cell_lines: int = 2,
    n_genes: int = 978,
    n_moas: int = 20,
    latent_dim: int = 24,
    frac_two_moas: float = 0.15,
    doses: tuple[float, ...] = LINCS_DOSES,
    times: tuple[float, ...] = (6.0, 24.0),
    conditions_per_drug: int = 3,
    n_controls: int = 4,
    frac_missing: float = 0.1,
    noise: float = 1.0,
    shared_fraction: float = 0.45,
    nonlinearity: float = 1.5,
    amplitude: float = 2.5,
    deviation_scale: float = 0.25,
    baseline: float = 0.0,
    cell_lines: list[str] | None = None,
    compounds: pd.DataFrame | None = None,
    seed: int = 0,
):
    """Simulate LINCS L1000 level-5-like drug signatures in several cell lines, with the truth kept.

    Generative model
    ----------------
    1. **Drugs and MOAs.** ``n_moas`` mechanism-of-action families are taken from a built-in table of real drug
       scaffolds (EGFR inhibitors from gefitinib/erlotinib, HDAC inhibitors from vorinostat/panobinostat, ...).
       Each MOA ``m`` has a latent prototype ``P_m ~ N(0, I_latent_dim)``. Drugs of a family are the real parent
       drugs and analogs made by putting substituents (F, Cl, methoxy, morpholino, ...) at two positions of the
       scaffold, so every drug has a real, RDKit-valid, unique SMILES. A fraction ``frac_two_moas`` of drugs are
       conjugates of two families' scaffolds joined by a linker; their MOA is ``"A|B"`` (a limited set of pairs,
       several drugs each).
    2. **Latent drug effect.** ``z_d = sum of its MOA prototypes + deviation_d`` — exactly additive for two-MOA
       drugs (polypharmacology). The deviation is a deterministic function of the drug's structure: the sum of
       fixed random latent vectors of its substituents (and linker), times ``deviation_scale``; parent drugs sit
       exactly on their prototype. Potency (log10 EC50 in µM) is a scaffold value plus substituent shifts.
    3. **Dose and time.** ``s = hill(dose; EC50) * (1 - exp(-time / 8 h)) * z_d``.
    4. **Cell lines.** Every cell line maps the SHARED latent effect through its OWN nonlinear map:
       ``x_c(s) = amplitude * w_c * (sqrt(shared_fraction) * S(s) + sqrt(1 - shared_fraction) * C_c(s))``, where
       ``S`` (common to all cell lines) and ``C_c`` (one per cell line) are fixed random two-layer tanh networks
       (``nonlinearity`` is the input gain: 0 is linear, larger saturates more) with ``S(0) = C_c(0) = 0``, and
       ``w_c`` are cell-specific lognormal gene weights. The maps are scaled so that a fully active drug has
       gene-wise RMS ``amplitude`` (z-score units).
    5. **Measurement.** ``X = x_c(s) + N(0, noise^2)`` per signature. DMSO controls (``n_controls`` per plate,
       ``PLATE_CAPACITY`` = 96 treated signatures per plate) are pure noise, like level-5 vehicle signatures.
       With ``baseline > 0`` every row of a cell line also gets a cell-line expression baseline
       ``N(0, baseline^2)`` and a plate offset ``N(0, (0.2 baseline)^2)`` (a level-3-like variant, where
       control → treated models need the controls).

    Each drug is measured in ``conditions_per_drug`` random (dose, time) pairs per cell line; a fraction
    ``frac_missing`` of (cell line, drug) pairs is absent, but every drug is in at least one cell line.

    With ``compounds=`` (a DataFrame with columns ``drug``, ``moa``, ``smiles``, e.g. from
    ``pk.io.read_repurposing_hub``) real compounds are used instead of the scaffold table (at most ``n_drugs``,
    a seeded random subset): every real MOA gets a prototype, and the deviation is a fixed random projection of
    hashed SMILES character 3-grams (still a deterministic function of structure).

    The defaults reproduce the DeepCellState regime: after averaging each (cell line, drug) over doses and
    times, the PCC between a drug's profiles in two cell lines averages ~0.3, a ridge map between the cell lines
    reaches ~0.5 on held-out drugs and a nonlinear map more.

    Returns
    -------
    AnnData with float32 ``X`` (signatures × genes ``G0001``...), obs columns ``cell_line``, ``drug``, ``dose``
    (µM), ``time`` (h), ``moa``, ``control``, ``smiles``, ``plate``; ``layers['noise_free']`` (``x_c(s)``, plus
    the baseline when used); ``obsm['latent_true']`` (the dose- and time-scaled latent ``s`` of each row);
    ``uns['simulation']`` with ``params``, ``moa_names``, ``moa_prototypes``, ``drug_names``, ``drug_latent``,
    ``drug_deviation``, ``drug_moa_membership`` (drugs × MOAs 0/1), ``drugs`` (table with moa, smiles,
    scaffold, substituents, log10_ec50), ``gene_weights`` (cell lines × genes) and ``cell_lines``.
    """
    import anndata as ad

    _check_positive(n_drugs=n_drugs, n_cell_lines=n_cell_lines, n_genes=n_genes, latent_dim=latent_dim,
                    conditions_per_drug=conditions_per_drug)
    if not 0.0 <= frac_missing < 1.0:
        raise PerturbkitInputError(f"frac_missing={frac_missing} must be in [0, 1).")
    if not 0.0 <= shared_fraction <= 1.0:
        raise PerturbkitInputError(f"shared_fraction={shared_fraction} must be in [0, 1].")
    if len(doses) == 0 or len(times) == 0:
        raise PerturbkitInputError("doses and times must each hold at least one value.")
    if cell_lines is None:
        cell_lines = DEFAULT_CELL_LINES[:n_cell_lines] + [f"CELL{i + 1}" for i in range(len(DEFAULT_CELL_LINES), n_cell_lines)]
    else:
        cell_lines = [str(c) for c in cell_lines]
        if len(set(cell_lines)) != len(cell_lines):
            raise PerturbkitInputError(f"cell_lines={cell_lines} has duplicates.")
        n_cell_lines = len(cell_lines)
    rng = np.random.default_rng(seed)
    lib = make_library(rng, n_drugs=n_drugs, n_moas=n_moas, latent_dim=latent_dim, frac_two_moas=frac_two_moas,
                       deviation_scale=deviation_scale, compounds=compounds)
    n_drugs = lib.n

    # Cell-line maps.
    hidden = 64
    shared = _RandomNet(rng, latent_dim, n_genes, hidden=hidden, gain=nonlinearity)
    own = [_RandomNet(rng, latent_dim, n_genes, hidden=hidden, gain=nonlinearity) for _ in cell_lines]
    gene_weights = np.exp(rng.normal(0.0, 0.3, (n_cell_lines, n_genes)))
    # Normalise each component so that a fully active drug has unit gene-wise RMS.
    full = lib.latent * time_factor(24.0)
    s_scale = np.sqrt(np.mean(shared(full) ** 2))
    o_scale = [np.sqrt(np.mean(net(full) ** 2)) for net in own]

    def profile(c: int, s: np.ndarray) -> np.ndarray:
        mix = np.sqrt(shared_fraction) * shared(s) / s_scale + np.sqrt(1.0 - shared_fraction) * own[c](s) / o_scale[c]
        return amplitude * gene_weights[c] * mix

    # Which (cell line, drug) pairs exist.
    present = np.ones((n_cell_lines, n_drugs), dtype=bool)
    n_missing = int(round(frac_missing * n_cell_lines * n_drugs))
    if n_missing and n_cell_lines > 1:
        per_drug = present.sum(axis=0)
        dropped = 0
        for flat in rng.permutation(n_cell_lines * n_drugs):
            c, d = divmod(int(flat), n_drugs)
            if per_drug[d] > 1:
                present[c, d] = False
                per_drug[d] -= 1
                dropped += 1
                if dropped == n_missing:
                    break

    grid = [(float(d), float(t)) for d in doses for t in times]
    k = min(conditions_per_drug, len(grid))
    baseline_vec = rng.normal(0.0, 1.0, (n_cell_lines, n_genes)) * baseline
    rows = {key: [] for key in ("cell_line", "drug", "dose", "time", "moa", "control", "smiles", "plate")}
    signal_blocks, latent_blocks = [], []
    moa_strings = lib.moa_strings
    for c, cell in enumerate(cell_lines):
        drug_idx, dose_v, time_v = [], [], []
        for d in np.flatnonzero(present[c]):
            for g in rng.choice(len(grid), size=k, replace=False):
                drug_idx.append(d)
                dose_v.append(grid[g][0])
                time_v.append(grid[g][1])
        order = rng.permutation(len(drug_idx))
        drug_idx = np.asarray(drug_idx)[order]
        dose_v = np.asarray(dose_v)[order]
        time_v = np.asarray(time_v)[order]
        n_treated = len(drug_idx)
        n_plates = max(1, int(np.ceil(n_treated / PLATE_CAPACITY)))
        plate_of = np.arange(n_treated) % n_plates
        factor = hill(dose_v, lib.log10_ec50[drug_idx]) * time_factor(time_v)
        s = factor[:, None] * lib.latent[drug_idx]
        x = profile(c, s)
        plate_names = [f"{cell}_P{p + 1:02d}" for p in range(n_plates)]
        ctrl_plate = np.repeat(np.arange(n_plates), n_controls)
        n_ctrl = len(ctrl_plate)
        ctrl_times = np.asarray(times, dtype=float)[np.arange(n_ctrl) % len(times)]
        signal_blocks += [x, np.zeros((n_ctrl, n_genes))]
        latent_blocks += [s, np.zeros((n_ctrl, latent_dim))]
        rows["cell_line"] += [cell] * (n_treated + n_ctrl)
        rows["drug"] += [lib.names[d] for d in drug_idx] + ["DMSO"] * n_ctrl
        rows["dose"] += list(dose_v) + [0.0] * n_ctrl
        rows["time"] += list(time_v) + list(ctrl_times)
        rows["moa"] += [moa_strings[d] for d in drug_idx] + ["DMSO"] * n_ctrl
        rows["control"] += [False] * n_treated + [True] * n_ctrl
        rows["smiles"] += [lib.smiles[d] for d in drug_idx] + [DMSO_SMILES] * n_ctrl
        rows["plate"] += [plate_names[p] for p in plate_of] + [plate_names[p] for p in ctrl_plate]

    noise_free = np.concatenate(signal_blocks)
    obs = _obs_frame(rows)
    if baseline > 0:
        cell_index = pd.Index(cell_lines).get_indexer(obs["cell_line"])
        plates = pd.Index(sorted(set(rows["plate"])))
        plate_offsets = rng.normal(0.0, 0.2 * baseline, (len(plates), n_genes))
        noise_free = noise_free + baseline_vec[cell_index] + plate_offsets[plates.get_indexer(obs["plate"])]
    X = noise_free + rng.normal(0.0, noise, noise_free.shape)

    adata = ad.AnnData(X=X.astype(np.float32), obs=obs, var=pd.DataFrame(index=[f"G{i + 1:04d}" for i in range(n_genes)]))
    adata.layers["noise_free"] = noise_free.astype(np.float32)
    adata.obsm["latent_true"] = np.concatenate(latent_blocks).astype(np.float32)
    truth = lib.truth()
    truth["params"] = _params_for_uns(
        kind="bulk", n_drugs=n_drugs, n_cell_lines=n_cell_lines, n_genes=n_genes, n_moas=len(lib.moa_names),
        latent_dim=latent_dim, frac_two_moas=frac_two_moas, doses=list(doses), times=list(times),
        conditions_per_drug=conditions_per_drug, n_controls=n_controls, frac_missing=frac_missing, noise=noise,
        shared_fraction=shared_fraction, nonlinearity=nonlinearity, amplitude=amplitude,
        deviation_scale=deviation_scale, baseline=baseline, compounds="given" if compounds is not None else "None",
        seed=seed,
    )
    truth["cell_lines"] = np.asarray(cell_lines, dtype=object)
    truth["gene_weights"] = gene_weights.astype(np.float32)
    truth["present"] = present
    truth.update({k: v for k, v in lib.extra.items()})
    adata.uns["simulation"] = truth
    return adata
