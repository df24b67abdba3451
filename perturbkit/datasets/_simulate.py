"""Ground-truth simulators: L1000-like bulk signatures, Cell-Painting-like morphology and single-cell counts."""

from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._schema import PerturbkitInputError
from ..io import parse_cellprofiler_features
from ._library import DMSO_SMILES, hill, make_library, time_factor

DEFAULT_CELL_LINES = ["MCF7", "PC3", "A375", "HA1E", "HT29", "HELA", "YAPC"]
LINCS_DOSES = (0.04, 0.12, 0.37, 1.11, 3.33, 10.0)
PLATE_CAPACITY = 96  # treated bulk signatures per simulated plate


class _RandomNet:
    """A fixed random two-layer network ``s -> B phi(A s)``, ``phi(u) = (1 - eta) u + eta (|u| - mean_k |u_k|)``.

    ``phi`` is positively homogeneous, so ``net(m s) = m net(s)`` for ``m >= 0``: a dose only scales a profile.
    ``eta`` (the even share) sets how nonlinear the map is: 0 is linear; with ``eta > 0`` part of the response
    depends on the magnitude of hidden pathway activities whatever their sign (centred across the hidden units,
    so it adds no generic, drug-independent profile), which a linear map between two cell lines cannot reproduce
    but a nonlinear one can learn.
    """

    def __init__(self, rng, n_in: int, n_out: int, *, hidden: int, eta: float):
        self.A = rng.standard_normal((hidden, n_in)) / np.sqrt(n_in)
        self.B = rng.standard_normal((n_out, hidden)) / np.sqrt(hidden)
        self.eta = eta

    def __call__(self, s: np.ndarray) -> np.ndarray:
        u = s @ self.A.T
        even = np.abs(u)
        even = even - even.mean(axis=1, keepdims=True)
        return ((1.0 - self.eta) * u + self.eta * even) @ self.B.T


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
    obs.index = [f"s{i:06d}" for i in range(len(obs))]
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
    latent_dim: int = 12,
    frac_two_moas: float = 0.15,
    doses: tuple[float, ...] = LINCS_DOSES,
    times: tuple[float, ...] = (6.0, 24.0),
    conditions_per_drug: int = 3,
    n_controls: int = 4,
    frac_missing: float = 0.1,
    noise: float = 1.0,
    shared_fraction: float = 0.38,
    nonlinearity: float = 1.0,
    n_pathways: int = 16,
    amplitude: float = 4.0,
    deviation_scale: float = 0.5,
    baseline: float = 0.0,
    cell_lines: list[str] | None = None,
    compounds: pd.DataFrame | None = None,
    seed: int = 0,
) -> ad.AnnData:
    """Simulate LINCS L1000 level-5-like drug signatures in several cell lines, with the truth kept.

    Parameters
    ----------
    n_drugs
        Number of drugs.
    n_cell_lines
        Number of cell lines (named from ``cell_lines``, else MCF7, PC3, A375, ...).
    n_genes
        Number of genes (978: the L1000 landmark genes).
    n_moas
        Number of MOA families.
    latent_dim
        Size of the true latent drug effect.
    frac_two_moas
        Fraction of drugs with two MOAs (``"A|B"``).
    doses, times
        The doses (µM) and times (h) conditions are drawn from.
    conditions_per_drug
        (dose, time) conditions per drug and cell line.
    n_controls
        DMSO controls per plate.
    frac_missing
        Fraction of (cell line, drug) pairs left unmeasured.
    noise
        SD of the measurement noise (z-score units).
    shared_fraction
        Share of the response variance common to all cell lines.
    nonlinearity
        0: each cell line's own map is linear; 1: it responds to pathway magnitudes.
    n_pathways
        Hidden units of each cell line's own map.
    amplitude
        Gene-wise RMS of a fully active drug's profile.
    deviation_scale
        Size of the structure-derived deviation of a drug from its MOA prototype.
    baseline
        SD of a cell-line expression baseline added to every row (0: level-5-like data).
    cell_lines
        Cell-line names (default MCF7, PC3, ...).
    compounds
        Real compounds (columns ``drug``, ``moa``, ``smiles``) to use instead of the built-in scaffolds.
    seed
        Seed of every random draw.

    Returns
    -------
    AnnData with float32 ``X`` (signatures × genes ``G0001``...), obs columns ``cell_line``, ``drug``, ``dose``
    (µM), ``time`` (h), ``moa``, ``control``, ``smiles``, ``plate``; ``layers['noise_free']`` (``x_c(s)``, plus
    the baseline when used); ``obsm['latent_true']`` (the dose- and time-scaled latent ``s`` of each row);
    ``uns['simulation']`` with ``params``, ``moa_names``, ``moa_prototypes``, ``drug_names``, ``drug_latent``,
    ``drug_deviation``, ``drug_moa_membership`` (drugs × MOAs 0/1), ``drugs`` (table with moa, smiles,
    scaffold, substituents, log10_ec50), ``gene_weights`` (cell lines × genes) and ``cell_lines``.

    Notes
    -----
    The generative model:

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
       ``x_c(s) = amplitude * w_c * (sqrt(shared_fraction) * S(s) + sqrt(1 - shared_fraction) * C_c(s))``.
       ``S`` is a fixed random linear map common to all cell lines (so they are partly similar);
       ``C_c(s) = B_c phi(A_c s)`` is the cell line's own random two-layer network with ``n_pathways`` hidden
       units and ``phi(u) = (1 - nonlinearity) u + nonlinearity (|u| - mean |u|)`` (``nonlinearity=1``: the own
       part responds to pathway magnitudes whatever their sign, which no linear map between cell lines can
       reproduce; fewer pathways, e.g. 8, widen the gap between learned nonlinear and linear maps);
       ``w_c`` are cell-specific lognormal gene weights. Both parts are normalised so a fully active
       drug has gene-wise RMS ``amplitude`` (z-score units). The maps are positively homogeneous: dose and time
       scale a profile without changing its shape.
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

    The defaults reproduce the DeepCellState regime (MCF7 from PC3, 10-fold CV over drugs, profiles averaged per
    (cell line, drug)): the naive baseline (PCC between a drug's profiles in the two cell lines) is ~0.28,
    a ridge map between the cell lines reaches ~0.6-0.7 on held-out drugs (depending on its penalty) and a small
    nonlinear network (a dropout MLP with a 64-unit bottleneck) ~0.72-0.76.

    Examples
    --------
    >>> adata = pk.datasets.simulate_bulk(n_drugs=200, seed=0)
    >>> model = pk.tl.train_deepcellstate(adata)
    """
    _check_positive(
        n_drugs=n_drugs,
        n_cell_lines=n_cell_lines,
        n_genes=n_genes,
        latent_dim=latent_dim,
        conditions_per_drug=conditions_per_drug,
    )
    if not 0.0 <= frac_missing < 1.0:
        raise PerturbkitInputError(f"frac_missing={frac_missing} must be in [0, 1).")
    if not 0.0 <= shared_fraction <= 1.0:
        raise PerturbkitInputError(f"shared_fraction={shared_fraction} must be in [0, 1].")
    if len(doses) == 0 or len(times) == 0:
        raise PerturbkitInputError("doses and times must each hold at least one value.")
    if cell_lines is None:
        cell_lines = DEFAULT_CELL_LINES[:n_cell_lines] + [
            f"CELL{i + 1}" for i in range(len(DEFAULT_CELL_LINES), n_cell_lines)
        ]
    else:
        cell_lines = [str(c) for c in cell_lines]
        if len(set(cell_lines)) != len(cell_lines):
            raise PerturbkitInputError(f"cell_lines={cell_lines} has duplicates.")
        n_cell_lines = len(cell_lines)
    rng = np.random.default_rng(seed)
    lib = make_library(
        rng,
        n_drugs=n_drugs,
        n_moas=n_moas,
        latent_dim=latent_dim,
        frac_two_moas=frac_two_moas,
        deviation_scale=deviation_scale,
        compounds=compounds,
    )
    n_drugs = lib.n

    # Cell-line maps.
    shared = _RandomNet(rng, latent_dim, n_genes, hidden=32, eta=0.0)  # linear: the part all cell lines share
    own = [_RandomNet(rng, latent_dim, n_genes, hidden=n_pathways, eta=nonlinearity) for _ in cell_lines]
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

    adata = ad.AnnData(
        X=X.astype(np.float32), obs=obs, var=pd.DataFrame(index=[f"G{i + 1:04d}" for i in range(n_genes)])
    )
    adata.layers["noise_free"] = noise_free.astype(np.float32)
    adata.obsm["latent_true"] = np.concatenate(latent_blocks).astype(np.float32)
    truth = lib.truth()
    truth["params"] = _params_for_uns(
        kind="bulk",
        n_drugs=n_drugs,
        n_cell_lines=n_cell_lines,
        n_genes=n_genes,
        n_moas=len(lib.moa_names),
        latent_dim=latent_dim,
        frac_two_moas=frac_two_moas,
        doses=list(doses),
        times=list(times),
        conditions_per_drug=conditions_per_drug,
        n_controls=n_controls,
        frac_missing=frac_missing,
        noise=noise,
        shared_fraction=shared_fraction,
        nonlinearity=nonlinearity,
        n_pathways=n_pathways,
        amplitude=amplitude,
        deviation_scale=deviation_scale,
        baseline=baseline,
        compounds="given" if compounds is not None else "None",
        seed=seed,
    )
    truth["cell_lines"] = np.asarray(cell_lines, dtype=object)
    truth["gene_weights"] = gene_weights.astype(np.float32)
    truth["present"] = present
    truth.update({k: v for k, v in lib.extra.items()})
    adata.uns["simulation"] = truth
    return adata


# --------------------------------------------------------------------------------------------------------------
# Cell Painting-like morphology
# --------------------------------------------------------------------------------------------------------------

COMPARTMENTS = ("Cells", "Cytoplasm", "Nuclei")
CHANNELS = ("DNA", "RNA", "AGP", "ER", "Mito")
_INTENSITY = (
    "MeanIntensity",
    "MedianIntensity",
    "IntegratedIntensity",
    "StdIntensity",
    "MassDisplacement",
    "LowerQuartileIntensity",
    "UpperQuartileIntensity",
)
_TEXTURE = (
    "AngularSecondMoment",
    "Contrast",
    "Correlation",
    "Entropy",
    "InverseDifferenceMoment",
    "SumAverage",
    "SumEntropy",
    "Variance",
    "DifferenceEntropy",
)
_AREASHAPE = (
    "Area",
    "Perimeter",
    "FormFactor",
    "Eccentricity",
    "Solidity",
    "Extent",
    "Compactness",
    "MajorAxisLength",
    "MinorAxisLength",
    "Zernike_0_0",
    "Zernike_2_0",
)


def cellprofiler_feature_names() -> pd.DataFrame:
    """Every CellProfiler-style feature the morphology simulator can emit, with its true compartment/channel.

    Returns
    -------
    A DataFrame indexed by feature name with columns ``compartment``, ``feature_type``, ``channel`` (``""`` for
    shape features; the first channel for correlations) and ``sim_group`` (``compartment_channel``, or
    ``compartment_AreaShape``), the unit on which the simulator's latent factors load.

    Examples
    --------
    >>> pk.datasets.cellprofiler_feature_names()["sim_group"].nunique()
    """
    rows = []
    for comp in COMPARTMENTS:
        for ch in CHANNELS:
            rows += [(f"{comp}_Intensity_{m}_{ch}", comp, "Intensity", ch) for m in _INTENSITY]
            rows += [(f"{comp}_Texture_{m}_{ch}_{scale}_0", comp, "Texture", ch) for m in _TEXTURE for scale in (5, 10)]
            rows += [(f"{comp}_Granularity_{k}_{ch}", comp, "Granularity", ch) for k in range(1, 7)]
        for i, ch1 in enumerate(CHANNELS):
            rows += [
                (f"{comp}_Correlation_Correlation_{ch1}_{ch2}", comp, "Correlation", ch1) for ch2 in CHANNELS[i + 1 :]
            ]
        rows += [(f"{comp}_AreaShape_{m}", comp, "AreaShape", "") for m in _AREASHAPE]
    for ch in CHANNELS:
        for m in ("FracAtD", "MeanFrac", "RadialCV"):
            rows += [
                (f"Cells_RadialDistribution_{m}_{ch}_{k}of4", "Cells", "RadialDistribution", ch) for k in range(1, 5)
            ]
    table = pd.DataFrame(rows, columns=["feature", "compartment", "feature_type", "channel"]).set_index("feature")
    table["sim_group"] = table["compartment"] + "_" + table["channel"].where(table["channel"] != "", "AreaShape")
    return table


def _feature_var(names: list[str], truth: pd.DataFrame) -> pd.DataFrame:
    """Var for simulated features: perturbkit.io's CellProfiler parser, plus the simulation truth."""
    var = parse_cellprofiler_features(names)
    var.index = pd.Index(names)
    var["sim_group"] = truth.loc[names, "sim_group"].to_numpy()
    return var


def _network_decoder(seed: int, latent: np.ndarray, n_groups: int, *, hidden: int, gain: float):
    """The ``"network"`` decoder of :func:`simulate_morphology`: ``s -> C (tanh(A s + b) - tanh(b))``.

    Drawn from its own generator (``[seed, 1]``) so the other draws of the simulation do not move. ``A`` is
    scaled so that the pre-activations ``A s`` of the fully active compounds (``latent``) have SD ``gain``.
    Returns the map and its Jacobian at ``s = 0`` (groups × latent).
    """
    rng = np.random.default_rng([seed, 1])
    A = rng.standard_normal((hidden, latent.shape[1]))
    spread = float(np.std(latent @ A.T))
    A *= gain / spread if spread > 0 else 0.0
    b = rng.standard_normal(hidden)
    C = rng.standard_normal((n_groups, hidden)) / np.sqrt(hidden)

    def activity(s):
        return (np.tanh(s @ A.T + b) - np.tanh(b)) @ C.T

    return activity, (C * (1.0 - np.tanh(b) ** 2)) @ A


def simulate_morphology(
    *,
    n_compounds: int = 240,
    n_moas: int = 12,
    doses: tuple[float, ...] = LINCS_DOSES,
    n_replicates: int = 3,
    n_controls: int = 24,
    frac_two_moas: float = 0.2,
    latent_dim: int = 10,
    n_plates: int = 12,
    n_features: int = 300,
    effect_size: float = 3.0,
    saturation: float = 2.5,
    noise: float = 1.0,
    batch_effect: float = 0.3,
    deviation_scale: float = 0.15,
    decoder: Literal["saturating", "network"] = "saturating",
    decoder_hidden: int = 32,
    nonlinearity: float = 1.0,
    seed: int = 0,
) -> ad.AnnData:
    """Simulate Cell Painting-like well-level morphology profiles of A549 cells, with the truth kept.

    Parameters
    ----------
    n_compounds
        Number of compounds.
    n_moas
        Number of MOA families.
    doses
        The doses (µM) each compound is measured at.
    n_replicates
        Wells per compound and dose.
    n_controls
        DMSO wells per plate.
    frac_two_moas
        Fraction of compounds with two MOAs (``"A|B"``).
    latent_dim
        Size of the true latent effect.
    n_plates
        Number of plates.
    n_features
        Number of CellProfiler-style features.
    effect_size
        Feature RMS of a fully active compound before saturation.
    saturation
        Scale of the tanh saturation.
    noise
        Total SD of the well noise.
    batch_effect
        SD of the per-plate offsets.
    deviation_scale
        Size of the structure-derived deviation of a compound from its MOA prototype.
    decoder
        How the latent effect becomes features: ``"saturating"`` (a linear map with a mild per-feature tanh
        saturation, close to linear) or ``"network"`` (a fixed random network with a smooth nonlinearity, under
        which arithmetic is exact only in the latent space; see Notes).
    decoder_hidden
        Hidden units of the ``"network"`` decoder (ignored by ``"saturating"``).
    nonlinearity
        SD of the ``"network"`` decoder's hidden pre-activations for a fully active compound: 0 is linear, 1 bends
        the hidden units into their saturation, 2 far into it (ignored by ``"saturating"``).
    seed
        Seed of every random draw.

    Returns
    -------
    AnnData (wells × features, float32) with obs ``cell_line`` ("A549"), ``drug``, ``dose`` (µM), ``time``
    (48.0 h), ``moa``, ``control``, ``smiles``, ``plate``, ``replicate``; var parsed by
    :func:`perturbkit.io.parse_cellprofiler_features`, plus ``sim_group``;
    ``layers['noise_free']`` (no noise, no plate offset); ``obsm['latent_true']`` (``s`` per well);
    ``uns['simulation']`` with the library truth (``moa_prototypes``, ``drug_latent``, ...) and
    ``group_names``, ``group_loadings`` (groups × latent), ``plate_names``, ``plate_offsets`` and ``params``.

    Notes
    -----
    The generative model:

    1. **Compounds, MOAs, SMILES, latent effects** exactly as in :func:`simulate_bulk` (real drug scaffolds and
       their analogs; ``z = sum of MOA prototypes + structure-derived deviation``). Every MOA has single-MOA
       compounds, and the ``frac_two_moas`` two-MOA compounds fall in a few ``"A|B"`` groups (about four
       compounds each), so the latent arithmetic ``mean(A) - mean(DMSO) + mean(B) ~ mean(A|B)`` holds by
       construction in the true latent space (DMSO is the origin).
    2. **Dose.** ``s = hill(dose; EC50) * z`` (48 h, one time point).
    3. **Feature groups.** Features are named like CellProfiler output (``Cells_Intensity_MeanIntensity_DNA``,
       ``Nuclei_Texture_AngularSecondMoment_RNA_10_0``, ``Cytoplasm_Granularity_3_Mito``,
       ``Cells_Correlation_Correlation_DNA_ER``, ``Cells_AreaShape_Area``, ...) and belong to a group
       (compartment × channel, or compartment × AreaShape). Each latent factor loads strongly on two or three
       groups and weakly on the rest: group activity ``a = G s``.
    4. **Nonlinear decoding.** Feature ``f`` of group ``g`` gets ``v_f = l_f a_g + small cross-group terms`` and
       the noise-free profile is ``saturation * tanh(v_f / saturation)`` scaled so a fully active compound has
       feature RMS ``effect_size`` before saturation: large and combined effects saturate, so feature-space
       arithmetic is only approximately additive while the latent space is exactly additive.

       ``decoder="network"`` replaces the linear group activity by a random network: group activity
       ``a = C (tanh(A s + b) - tanh(b))`` with ``decoder_hidden`` hidden units (``A`` scaled so the
       pre-activations of a fully active compound have SD ``nonlinearity``, biases ``b ~ N(0, 1)``), and no
       per-feature saturation. DMSO (``s = 0``) stays the zero profile, the map is smooth and (generically)
       one-to-one, but it bends the latent space so much that no 10-dimensional linear space holds the profiles:
       combinations are far from the sum of their parts in feature space and in any PCA, and exactly additive in
       ``s``. Its weights come from a generator of their own, so the compounds, wells and noise are those of the
       ``"saturating"`` simulation with the same seed; ``group_loadings`` then holds the linearisation at
       ``s = 0`` (``C diag(1 - tanh(b)^2) A``).
    5. **Plates and wells.** Each compound-dose has ``n_replicates`` wells on random plates; every plate has
       ``n_controls`` DMSO wells and an additive batch offset ``N(0, batch_effect^2)`` per feature; well noise
       has a group-shared part and a feature-specific part with total SD ``noise``. Values are in units of the
       DMSO spread, like robust z-scored (normalized) profiles.

    Examples
    --------
    >>> adata = pk.datasets.simulate_morphology(seed=0)
    >>> pk.pp.scale(adata, method="minmax")
    """
    _check_positive(
        n_compounds=n_compounds,
        n_replicates=n_replicates,
        latent_dim=latent_dim,
        n_plates=n_plates,
        n_features=n_features,
    )
    if n_controls < 0:
        raise PerturbkitInputError(f"n_controls={n_controls} must be >= 0.")
    if decoder not in ("saturating", "network"):
        raise PerturbkitInputError(f"decoder={decoder!r} is not known; use 'saturating' or 'network'.")
    if decoder == "network":
        _check_positive(decoder_hidden=decoder_hidden)
        if nonlinearity < 0:
            raise PerturbkitInputError(f"nonlinearity={nonlinearity} must be >= 0 (0 is a linear decoder).")
    rng = np.random.default_rng(seed)
    lib = make_library(
        rng,
        n_drugs=n_compounds,
        n_moas=n_moas,
        latent_dim=latent_dim,
        frac_two_moas=frac_two_moas,
        deviation_scale=deviation_scale,
        pair_group_size=4,
    )
    catalogue = cellprofiler_feature_names()
    n_features = min(n_features, len(catalogue))
    chosen = np.sort(rng.choice(len(catalogue), size=n_features, replace=False))
    features = catalogue.iloc[chosen]
    groups = pd.Index(sorted(features["sim_group"].unique()))
    gidx = groups.get_indexer(features["sim_group"])
    n_groups = len(groups)

    # Latent factor -> group activity: each factor loads mainly on 2-3 groups.
    G = rng.normal(0.0, 0.1, (n_groups, latent_dim))
    for k in range(latent_dim):
        main = rng.choice(n_groups, size=int(rng.integers(2, 4)), replace=False)
        G[main, k] = rng.choice([-1.0, 1.0], size=len(main)) * rng.uniform(0.7, 1.5, size=len(main))
    loading = rng.choice([-1.0, 1.0], n_features) * rng.uniform(0.5, 1.5, n_features)
    cross = rng.normal(0.0, 0.15, (n_features, n_groups))

    if decoder == "network":
        group_activity, G = _network_decoder(seed, lib.latent, n_groups, hidden=decoder_hidden, gain=nonlinearity)
    else:

        def group_activity(s):
            return s @ G.T

    def pre_activation(s):
        a = group_activity(s)
        return loading * a[:, gidx] + a @ cross.T

    full_scale = np.sqrt(np.mean(pre_activation(lib.latent) ** 2))

    def decode(s):
        v = effect_size * pre_activation(s) / full_scale
        return v if decoder == "network" else saturation * np.tanh(v / saturation)

    # Wells.
    drug_idx = np.repeat(np.arange(lib.n), len(doses) * n_replicates)
    dose_v = np.tile(np.repeat(np.asarray(doses, dtype=float), n_replicates), lib.n)
    rep_v = np.tile(np.arange(1, n_replicates + 1), lib.n * len(doses))
    n_treated = len(drug_idx)
    plate_of = rng.permutation(np.arange(n_treated) % n_plates)
    s = hill(dose_v, lib.log10_ec50[drug_idx])[:, None] * lib.latent[drug_idx]
    signal = decode(s)
    ctrl_plate = np.repeat(np.arange(n_plates), n_controls)
    n_ctrl = len(ctrl_plate)
    noise_free = np.concatenate([signal, np.zeros((n_ctrl, n_features))])
    latent = np.concatenate([s, np.zeros((n_ctrl, latent_dim))])
    plates = np.concatenate([plate_of, ctrl_plate])
    plate_offsets = rng.normal(0.0, batch_effect, (n_plates, n_features))
    n_rows = n_treated + n_ctrl
    group_noise = rng.standard_normal((n_rows, n_groups))[:, gidx]
    well_noise = noise * (0.6 * group_noise + 0.8 * rng.standard_normal((n_rows, n_features)))
    X = noise_free + plate_offsets[plates] + well_noise

    plate_names = [f"SQ{100001 + p:08d}" for p in range(n_plates)]
    moa_strings = lib.moa_strings
    rows = {
        "cell_line": ["A549"] * n_rows,
        "drug": [lib.names[d] for d in drug_idx] + ["DMSO"] * n_ctrl,
        "dose": list(dose_v) + [0.0] * n_ctrl,
        "time": [48.0] * n_rows,
        "moa": [moa_strings[d] for d in drug_idx] + ["DMSO"] * n_ctrl,
        "control": [False] * n_treated + [True] * n_ctrl,
        "smiles": [lib.smiles[d] for d in drug_idx] + [DMSO_SMILES] * n_ctrl,
        "plate": [plate_names[p] for p in plates],
    }
    obs = _obs_frame(rows)
    obs["replicate"] = np.concatenate([rep_v, np.arange(n_ctrl) % max(n_controls, 1) + 1]).astype(int)
    names = list(features.index)
    adata = ad.AnnData(X=X.astype(np.float32), obs=obs, var=_feature_var(names, catalogue))
    adata.layers["noise_free"] = noise_free.astype(np.float32)
    adata.obsm["latent_true"] = latent.astype(np.float32)
    truth = lib.truth()
    truth["params"] = _params_for_uns(
        kind="morphology",
        n_compounds=lib.n,
        n_moas=len(lib.moa_names),
        doses=list(doses),
        n_replicates=n_replicates,
        n_controls=n_controls,
        frac_two_moas=frac_two_moas,
        latent_dim=latent_dim,
        n_plates=n_plates,
        n_features=n_features,
        effect_size=effect_size,
        saturation=saturation,
        noise=noise,
        batch_effect=batch_effect,
        deviation_scale=deviation_scale,
        seed=seed,
    )
    if decoder == "network":  # the saturating simulation's record stays as it was
        truth["params"].update(decoder=decoder, decoder_hidden=decoder_hidden, nonlinearity=nonlinearity)
    truth["group_names"] = np.asarray(groups, dtype=object)
    truth["group_loadings"] = G.astype(np.float32)
    truth["plate_names"] = np.asarray(plate_names, dtype=object)
    truth["plate_offsets"] = plate_offsets.astype(np.float32)
    adata.uns["simulation"] = truth
    return adata


# --------------------------------------------------------------------------------------------------------------
# Single-cell counts
# --------------------------------------------------------------------------------------------------------------


def simulate_single_cell(
    *,
    n_cells: int = 3000,
    n_genes: int = 1000,
    cell_types: tuple[str, ...] = ("A549", "K562", "MCF7"),
    n_drugs: int = 12,
    n_moas: int = 4,
    doses: tuple[float, ...] = (0.1, 1.0, 10.0),
    frac_control: float = 0.25,
    frac_de_genes: float = 0.1,
    latent_dim: int = 8,
    frac_two_moas: float = 0.0,
    lfc_scale: float = 1.0,
    mean_umis: float = 3000.0,
    dispersion: float = 0.2,
    seed: int = 0,
) -> ad.AnnData:
    """Simulate unpaired single-cell UMI counts of control (DMSO) and drug-treated cells, with the truth kept.

    Parameters
    ----------
    n_cells
        Number of cells.
    n_genes
        Number of genes.
    cell_types
        The cell types (obs ``cell_line``).
    n_drugs
        Number of drugs.
    n_moas
        Number of MOA families.
    doses
        The doses (µM) treated cells get.
    frac_control
        Fraction of control (DMSO) cells.
    frac_de_genes
        Fraction of genes that respond to drugs.
    latent_dim
        Size of the true latent drug effect.
    frac_two_moas
        Fraction of drugs with two MOAs.
    lfc_scale
        Log-fold-change RMS of a fully active drug on the responding genes.
    mean_umis
        Mean UMIs per cell.
    dispersion
        Median negative-binomial dispersion of the genes.
    seed
        Seed of every random draw.

    Returns
    -------
    AnnData with sparse CSR float32 integer counts; obs ``cell_line`` (the cell type), ``drug``, ``dose``,
    ``time`` (24.0), ``moa``, ``control``, ``smiles``, ``plate`` (sequencing lane), ``condition``
    ("control"/"treated"), ``size_factor``; var ``de`` (True for responding genes);
    ``layers['log_mean']`` (the true log-mean of every cell and gene, size factor included);
    ``uns['simulation']`` with the library truth, ``de_genes``, ``baseline_log_mean`` (cell types × genes),
    ``true_lfc`` (cell types × drugs × doses × genes), ``dispersion`` and ``params``.

    Notes
    -----
    The generative model:

    1. **Drugs** as in :func:`simulate_bulk`: MOA families of real scaffolds and analogs with SMILES, latent
       effect ``z = sum of MOA prototypes + structure-derived deviation``, potency (EC50), ``s = hill(dose) z``.
    2. **Baseline expression.** Gene log-means ``N(-1, 1.2^2)``, rescaled so a cell has ``mean_umis`` UMIs on
       average; each cell type adds ``N(0, 0.4^2)`` per gene and +1.5 on its own 5% marker genes.
    3. **Drug response.** A fixed subset of ``frac_de_genes`` genes responds. Each cell type maps ``s`` to
       log-fold changes on those genes through its own nonlinear map (a shared linear part plus a cell-type
       specific random two-layer net, see :func:`simulate_bulk`), scaled so a fully active drug has LFC RMS
       ``lfc_scale`` (natural log). Other genes do not change.
    4. **Counts.** Library size factor ``l_i ~ lognormal(0, 0.35)``; ``counts ~ Poisson(l_i mu * Gamma(1/phi,
       phi))``, i.e. negative binomial with gene dispersion ``phi ~ dispersion * lognormal(0, 0.5)``.

    Controls and treated cells are independent draws: nothing pairs them.

    Examples
    --------
    >>> adata = pk.datasets.simulate_single_cell(n_cells=2000, seed=0)
    """
    _check_positive(n_cells=n_cells, n_genes=n_genes, n_drugs=n_drugs, latent_dim=latent_dim)
    cell_types = [str(c) for c in cell_types]
    if len(cell_types) == 0 or len(set(cell_types)) != len(cell_types):
        raise PerturbkitInputError(f"cell_types={cell_types} must be non-empty and unique.")
    if not 0.0 < frac_control < 1.0:
        raise PerturbkitInputError(f"frac_control={frac_control} must be in (0, 1).")
    rng = np.random.default_rng(seed)
    lib = make_library(
        rng, n_drugs=n_drugs, n_moas=n_moas, latent_dim=latent_dim, frac_two_moas=frac_two_moas, deviation_scale=0.5
    )
    n_types = len(cell_types)

    base = rng.normal(-1.0, 1.2, n_genes)
    base += np.log(mean_umis) - np.log(np.exp(base).sum())
    type_shift = rng.normal(0.0, 0.4, (n_types, n_genes))
    for t in range(n_types):
        markers = rng.choice(n_genes, size=max(1, n_genes // 20), replace=False)
        type_shift[t, markers] += 1.5
    baseline = base + type_shift
    baseline -= np.log(np.exp(baseline).sum(axis=1, keepdims=True)) - np.log(mean_umis)

    n_de = max(1, int(round(frac_de_genes * n_genes)))
    de_genes = np.sort(rng.choice(n_genes, size=n_de, replace=False))
    shared = _RandomNet(rng, latent_dim, n_de, hidden=16, eta=0.0)
    own = [_RandomNet(rng, latent_dim, n_de, hidden=16, eta=1.0) for _ in cell_types]
    full = lib.latent
    s_scale = np.sqrt(np.mean(shared(full) ** 2))
    o_scale = [np.sqrt(np.mean(net(full) ** 2)) for net in own]

    def lfc(t, s):
        mix = np.sqrt(0.5) * shared(s) / s_scale + np.sqrt(0.5) * own[t](s) / o_scale[t]
        return lfc_scale * mix

    dose_arr = np.asarray(doses, dtype=float)
    true_lfc = np.zeros((n_types, lib.n, len(dose_arr), n_genes))
    for t in range(n_types):
        for j, dose in enumerate(dose_arr):
            s = hill(dose, lib.log10_ec50)[:, None] * lib.latent
            true_lfc[t, :, j][:, de_genes] = lfc(t, s)

    # Cells: split over cell types; a fraction are controls, the rest spread over (drug, dose).
    type_of = np.sort(np.arange(n_cells) % n_types)
    is_ctrl = np.zeros(n_cells, dtype=bool)
    cond = np.full(n_cells, -1)
    for t in range(n_types):
        members = np.flatnonzero(type_of == t)
        members = rng.permutation(members)
        n_c = int(round(frac_control * len(members)))
        is_ctrl[members[:n_c]] = True
        treated = members[n_c:]
        cond[treated] = rng.permutation(np.arange(len(treated)) % (lib.n * len(dose_arr)))
    drug_of = np.where(is_ctrl, -1, cond // len(dose_arr))
    dose_of = np.where(is_ctrl, -1, cond % len(dose_arr))
    size_factor = np.exp(rng.normal(0.0, 0.35, n_cells))
    log_mean = baseline[type_of].copy()
    treated_rows = np.flatnonzero(~is_ctrl)
    log_mean[treated_rows] += true_lfc[type_of[treated_rows], drug_of[treated_rows], dose_of[treated_rows]]
    log_mean += np.log(size_factor)[:, None]
    phi = dispersion * np.exp(rng.normal(0.0, 0.5, n_genes))
    lam = np.exp(log_mean) * rng.gamma(1.0 / phi, phi, size=(n_cells, n_genes))
    counts = rng.poisson(lam).astype(np.float32)

    moa_strings = lib.moa_strings
    rows = {
        "cell_line": [cell_types[t] for t in type_of],
        "drug": ["DMSO" if c else lib.names[d] for c, d in zip(is_ctrl, drug_of, strict=True)],
        "dose": [0.0 if c else float(dose_arr[j]) for c, j in zip(is_ctrl, dose_of, strict=True)],
        "time": [24.0] * n_cells,
        "moa": ["DMSO" if c else moa_strings[d] for c, d in zip(is_ctrl, drug_of, strict=True)],
        "control": list(is_ctrl),
        "smiles": [DMSO_SMILES if c else lib.smiles[d] for c, d in zip(is_ctrl, drug_of, strict=True)],
        "plate": [f"lane{k + 1}" for k in rng.integers(0, 4, n_cells)],
    }
    obs = _obs_frame(rows)
    obs.index = [f"cell{i:06d}" for i in range(n_cells)]
    obs["condition"] = np.where(is_ctrl, "control", "treated")
    obs["size_factor"] = size_factor.astype(np.float32)
    var = pd.DataFrame(index=[f"G{i + 1:04d}" for i in range(n_genes)])
    var["de"] = np.isin(np.arange(n_genes), de_genes)
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)
    adata.layers["log_mean"] = log_mean.astype(np.float32)
    truth = lib.truth()
    truth["params"] = _params_for_uns(
        kind="single_cell",
        n_cells=n_cells,
        n_genes=n_genes,
        cell_types=cell_types,
        n_drugs=lib.n,
        n_moas=len(lib.moa_names),
        doses=list(doses),
        frac_control=frac_control,
        frac_de_genes=frac_de_genes,
        latent_dim=latent_dim,
        frac_two_moas=frac_two_moas,
        lfc_scale=lfc_scale,
        mean_umis=mean_umis,
        dispersion=dispersion,
        seed=seed,
    )
    truth["cell_types"] = np.asarray(cell_types, dtype=object)
    truth["de_genes"] = np.asarray(var.index[de_genes], dtype=object)
    truth["baseline_log_mean"] = baseline.astype(np.float32)
    truth["true_lfc"] = true_lfc.astype(np.float32)
    truth["doses"] = dose_arr
    truth["dispersion"] = phi.astype(np.float32)
    adata.uns["simulation"] = truth
    return adata
