"""A second L1000-like simulator: a shared low-rank drug-effect map read through cell-line-specific gene modules."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from .._schema import PerturbkitInputError
from ._library import DMSO_SMILES, make_library
from ._simulate import DEFAULT_CELL_LINES, PLATE_CAPACITY, _check_positive, _obs_frame, _params_for_uns

L1000_DOSES = (0.12, 0.37, 1.11, 3.33, 10.0)
L1000_TIMES = (6.0, 24.0)
L1000_CELL_LINES = ["MCF7", "PC3", "A375", "HA1E", "VCAP", "HCC515", "A549", "HEPG2"]


def _dose_time_scale(dose, time, potency, onset: float):
    """Exponential dose saturation times a tanh onset in time (no Hill curve): ``(1 - e^{-dose/k}) tanh(t/τ)``."""
    dose = np.asarray(dose, dtype=float)
    return (1.0 - np.exp(-dose / potency)) * np.tanh(np.asarray(time, dtype=float) / onset)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise PerturbkitInputError(message)


def simulate_l1000(
    *,
    n_drugs: int = 500,
    n_cell_lines: int = 4,
    n_genes: int = 978,
    n_moas: int = 20,
    rank: int = 10,
    n_modules: int = 24,
    frac_silent: float = 0.2,
    module_gain_sd: float = 0.35,
    cell_specific: float = 0.4,
    frac_two_moas: float = 0.1,
    doses: tuple[float, ...] = L1000_DOSES,
    times: tuple[float, ...] = L1000_TIMES,
    conditions_per_drug: int = 4,
    frac_missing: float = 0.15,
    amplitude: float = 2.5,
    noise: float = 1.0,
    noise_df: float = 4.0,
    replicate_correlation: float = 0.3,
    n_controls: int = 4,
    cell_lines: list[str] | None = None,
    seed: int = 0,
) -> ad.AnnData:
    """Simulate L1000 level-5-like signatures with cell-line-specific gene modules, heavy-tailed noise and gaps.

    An independent companion of :func:`~perturbkit.datasets.simulate_bulk`, built differently (see Notes), with the
    same obs schema, so every perturbkit tool reads both.

    Parameters
    ----------
    n_drugs
        Number of drugs.
    n_cell_lines
        Number of cell lines (named from ``cell_lines``, else MCF7, PC3, A375, HA1E, ...).
    n_genes
        Number of genes (978: the L1000 landmark genes).
    n_moas
        Number of MOA families (the drug library's).
    rank
        Rank of the shared drug-effect map (the size of the drugs' latent effect).
    n_modules
        Number of gene modules; every gene belongs to one.
    frac_silent
        Fraction of (cell line, module) pairs whose genes do not respond at all in that cell line.
    module_gain_sd
        SD of the log gain of each (cell line, module) pair on the shared response (0: no gain differences).
    cell_specific
        Share, in [0, 1], of the response variance that comes from each cell line's own thresholded module response.
    frac_two_moas
        Fraction of drugs with two MOAs (``"A|B"``).
    doses, times
        The doses (µM) and times (h) conditions are drawn from.
    conditions_per_drug
        (dose, time) conditions per drug and cell line.
    frac_missing
        Fraction of (cell line, drug) pairs left unmeasured (every drug stays in at least one cell line).
    amplitude
        Gene-wise RMS of a fully active drug's noise-free profile (z-score units).
    noise
        Typical SD of the measurement noise (z-score units); each gene scales it.
    noise_df
        Degrees of freedom of the Student-t noise (heavy tails; ``inf`` gives Gaussian noise).
    replicate_correlation
        Share of the noise variance common to all signatures of one drug in one cell line (it does not average
        away).
    n_controls
        DMSO controls per plate.
    cell_lines
        Cell-line names (default MCF7, PC3, A375, HA1E, VCAP, ...).
    seed
        Seed of every random draw.

    Returns
    -------
    AnnData with float32 ``X`` (signatures × genes ``G0001``...), obs ``cell_line``, ``drug``, ``dose`` (µM),
    ``time`` (h), ``moa``, ``control``, ``smiles``, ``plate``; ``layers['noise_free']``; ``obsm['latent_true']``
    (the drug's latent effect times its dose-time scale); ``uns['simulation']`` with the library truth (as
    :func:`~perturbkit.datasets.simulate_bulk`), ``params``, ``cell_lines``, ``present`` (cell lines × drugs),
    ``gene_module`` (genes), ``module_gain`` (cell lines × modules, 0 for silent modules), ``shared_loadings``
    (genes × rank), ``gene_noise_sd`` and ``potency`` (µM, per drug).

    Notes
    -----
    The generative model, for drug ``d`` with latent effect ``z_d`` (``rank`` dimensions; MOA prototypes plus a
    structure-derived deviation, from perturbkit's drug library) in cell line ``c``:

    1. **Gene modules.** Genes are split into ``n_modules`` modules of unequal size. Each (cell line, module) has a
       gain ``g_cm = exp(N(0, module_gain_sd^2))``; a fraction ``frac_silent`` of them is 0: those genes respond
       only in the other cell lines.
    2. **Shared low-rank map.** ``S z`` with ``S`` (genes × ``rank``) a sparse-ish random loading matrix common to
       all cell lines; cell line ``c`` sees it through its module gains, ``g_c[module] * (S z)``.
    3. **Cell-specific module response.** Each cell line has its own pathway sensitivities ``V_c`` (modules ×
       ``rank``) and thresholds ``theta_c``; module ``m`` fires as ``softplus(4 (V_c z - theta_c)) / 4``, a
       thresholded, one-sided response (a pathway switched on past a cell-line-specific sensitivity), spread on
       the module's genes with fixed signed loadings. Silent modules stay silent.
    4. The two parts are normalised (a fully active drug has gene-wise RMS 1 in each) and mixed as
       ``amplitude * (sqrt(1 - cell_specific) * shared + sqrt(cell_specific) * own)``.
    5. **Dose and time.** The latent effect is scaled by ``(1 - exp(-dose / k_d)) * tanh(time / 12 h)`` (an
       exponential saturation, not a Hill curve; ``k_d`` from the drug's potency) before both maps, so low doses
       may not cross the module thresholds: the profile's shape changes with dose and time, not only its size.
    6. **Noise.** Student-t noise (``noise_df`` degrees of freedom) with a gene-specific SD
       ``noise * exp(N(0, 0.3^2))``; a share ``replicate_correlation`` of it is drawn once per (cell line, drug)
       and shared by all its signatures. DMSO controls (``n_controls`` per plate of ``PLATE_CAPACITY`` treated
       signatures) are noise only.

    Each drug is measured in ``conditions_per_drug`` random (dose, time) pairs per cell line; a fraction
    ``frac_missing`` of (cell line, drug) pairs is absent.

    With the defaults, MCF7 from PC3 with profiles averaged per (drug, cell line): the naive baseline (PCC of a
    drug's profiles in the two cell lines) is about 0.25 and a ridge map between the two cell lines about 0.54 on
    held-out drugs (seed 0).

    Examples
    --------
    >>> adata = pk.datasets.simulate_l1000(n_drugs=200, seed=0)
    >>> table = pk.tl.benchmark(adata, task="cross_cell", methods=["ridge", "naive"], source="PC3", target="MCF7")
    """
    for name, value in (
        ("n_drugs", n_drugs),
        ("n_genes", n_genes),
        ("rank", rank),
        ("n_modules", n_modules),
        ("conditions_per_drug", conditions_per_drug),
    ):
        _check(
            isinstance(value, (int, np.integer)) and value >= 1, f"{name}={value!r} must be a positive whole number."
        )
    _check(n_modules <= n_genes, f"n_modules={n_modules} must not exceed n_genes={n_genes}.")
    for name, value in (("frac_silent", frac_silent), ("frac_missing", frac_missing)):
        _check(0.0 <= value < 1.0, f"{name}={value!r} must be in [0, 1).")
    for name, value in (("cell_specific", cell_specific), ("replicate_correlation", replicate_correlation)):
        _check(0.0 <= value <= 1.0, f"{name}={value!r} must be in [0, 1].")
    _check_positive(amplitude=amplitude, noise_df=noise_df)
    for name, value in (("noise", noise), ("module_gain_sd", module_gain_sd), ("n_controls", n_controls)):
        _check(value >= 0, f"{name}={value!r} must be >= 0.")
    _check(
        len(doses) > 0 and len(times) > 0 and min(doses) > 0 and min(times) > 0,
        f"doses={tuple(doses)} and times={tuple(times)} must each hold at least one positive value.",
    )
    if cell_lines is None:
        _check(
            isinstance(n_cell_lines, (int, np.integer)) and n_cell_lines >= 1,
            f"n_cell_lines={n_cell_lines!r} must be a positive whole number.",
        )
        cell_lines = (
            L1000_CELL_LINES[:n_cell_lines]
            + [c for c in DEFAULT_CELL_LINES if c not in L1000_CELL_LINES][
                : max(0, n_cell_lines - len(L1000_CELL_LINES))
            ]
        )
        cell_lines += [f"CELL{i + 1}" for i in range(len(cell_lines), n_cell_lines)]
    else:
        cell_lines = [str(c) for c in cell_lines]
        _check(
            len(cell_lines) > 0 and len(set(cell_lines)) == len(cell_lines),
            f"cell_lines={cell_lines} must be non-empty and without duplicates.",
        )
    n_cells = len(cell_lines)

    rng = np.random.default_rng(seed)
    lib = make_library(
        rng, n_drugs=n_drugs, n_moas=n_moas, latent_dim=rank, frac_two_moas=frac_two_moas, deviation_scale=0.6
    )
    n_drugs = lib.n
    latent = lib.latent / np.sqrt(np.mean(lib.latent**2))

    # 1. gene modules of unequal size (Dirichlet shares), genes shuffled over modules
    shares = rng.dirichlet(np.full(n_modules, 2.0))
    sizes = np.maximum(1, np.floor(shares * (n_genes - n_modules)).astype(int) + 1)
    sizes[-1] += n_genes - sizes.sum()
    if sizes[-1] < 1:  # rounding pushed the last module empty: take genes from the largest
        sizes[np.argmax(sizes)] -= 1 - sizes[-1]
        sizes[-1] = 1
    gene_module = rng.permutation(np.repeat(np.arange(n_modules), sizes))
    gain = np.exp(rng.normal(0.0, module_gain_sd, (n_cells, n_modules)))
    silent = rng.random((n_cells, n_modules)) < frac_silent
    silent[:, rng.integers(n_modules)] = False  # one module responds everywhere, so no cell line is all silent
    gain[silent] = 0.0

    # 2. the shared low-rank map: each gene loads on a few latent directions
    mask = rng.random((n_genes, rank)) < 0.4
    shared_loadings = rng.standard_normal((n_genes, rank)) * mask
    # 3. each cell line's own thresholded module response
    sensitivity = rng.standard_normal((n_cells, n_modules, rank)) / np.sqrt(rank)
    threshold = rng.uniform(0.0, 1.0, (n_cells, n_modules))
    module_loadings = rng.choice([-1.0, 1.0], n_genes) * rng.uniform(0.3, 1.5, n_genes)

    def softplus(u):
        return np.logaddexp(0.0, 4.0 * u) / 4.0

    def shared_part(c, s):
        return (s @ shared_loadings.T) * gain[c, gene_module]

    def own_part(c, s):
        activity = softplus(s @ sensitivity[c].T - threshold[c]) - softplus(-threshold[c])  # 0 for no drug
        return activity[:, gene_module] * module_loadings * (gain[c, gene_module] > 0)

    def rms(x):
        return max(float(np.sqrt(np.mean(x**2))), 1e-12)

    shared_scale = [rms(shared_part(c, latent)) for c in range(n_cells)]
    own_scale = [rms(own_part(c, latent)) for c in range(n_cells)]

    def profile(c, s):
        return amplitude * (
            np.sqrt(1.0 - cell_specific) * shared_part(c, s) / shared_scale[c]
            + np.sqrt(cell_specific) * own_part(c, s) / own_scale[c]
        )

    # which (cell line, drug) pairs are measured: a drug keeps at least one cell line
    present = np.ones((n_cells, n_drugs), dtype=bool)
    if n_cells > 1 and frac_missing > 0:
        n_missing = min(int(round(frac_missing * n_cells * n_drugs)), (n_cells - 1) * n_drugs)
        keep = rng.integers(n_cells, size=n_drugs)  # the cell line each drug surely keeps
        candidates = np.array([(c, d) for d in range(n_drugs) for c in range(n_cells) if c != keep[d]])
        dropped = candidates[rng.choice(len(candidates), size=n_missing, replace=False)]
        present[dropped[:, 0], dropped[:, 1]] = False

    potency = 10.0 ** (lib.log10_ec50 + 0.3)  # µM: the dose giving 63 % of the maximal effect
    gene_sd = noise * np.exp(rng.normal(0.0, 0.3, n_genes))
    t_scale = np.sqrt((noise_df - 2.0) / noise_df) if np.isfinite(noise_df) and noise_df > 2 else 1.0

    def t_noise(shape):
        if not np.isfinite(noise_df):
            return rng.standard_normal(shape)
        return rng.standard_t(noise_df, shape) * t_scale

    grid = [(float(d), float(t)) for d in doses for t in times]
    k = min(conditions_per_drug, len(grid))
    rows = {key: [] for key in ("cell_line", "drug", "dose", "time", "moa", "control", "smiles", "plate")}
    signal_blocks, noise_blocks, latent_blocks = [], [], []
    moa_strings = lib.moa_strings
    for c, cell in enumerate(cell_lines):
        drugs = np.flatnonzero(present[c])
        drug_idx = np.repeat(drugs, k)
        conditions = np.concatenate([rng.choice(len(grid), size=k, replace=False) for _ in drugs]).astype(int)
        order = rng.permutation(len(drug_idx))
        drug_idx, conditions = drug_idx[order], conditions[order]
        dose_v = np.array([grid[g][0] for g in conditions])
        time_v = np.array([grid[g][1] for g in conditions])
        s = _dose_time_scale(dose_v, time_v, potency[drug_idx], 12.0)[:, None] * latent[drug_idx]
        x = profile(c, s)
        shared_noise = t_noise((n_drugs, n_genes))[drug_idx]  # one draw per (cell line, drug)
        own_noise = t_noise(x.shape)
        eps = (
            np.sqrt(replicate_correlation) * shared_noise + np.sqrt(1.0 - replicate_correlation) * own_noise
        ) * gene_sd

        n_treated = len(drug_idx)
        n_plates = max(1, int(np.ceil(n_treated / PLATE_CAPACITY)))
        plate_of = rng.permutation(np.arange(n_treated) % n_plates)
        ctrl_plate = np.repeat(np.arange(n_plates), n_controls)
        n_ctrl = len(ctrl_plate)
        ctrl_noise = t_noise((n_ctrl, n_genes)) * gene_sd
        plate_names = [f"L1K_{cell}_{p + 1:03d}" for p in range(n_plates)]
        signal_blocks += [x, np.zeros((n_ctrl, n_genes))]
        noise_blocks += [eps, ctrl_noise]
        latent_blocks += [s, np.zeros((n_ctrl, rank))]
        rows["cell_line"] += [cell] * (n_treated + n_ctrl)
        rows["drug"] += [lib.names[d] for d in drug_idx] + ["DMSO"] * n_ctrl
        rows["dose"] += list(dose_v) + [0.0] * n_ctrl
        rows["time"] += list(time_v) + [float(times[i % len(times)]) for i in range(n_ctrl)]
        rows["moa"] += [moa_strings[d] for d in drug_idx] + ["DMSO"] * n_ctrl
        rows["control"] += [False] * n_treated + [True] * n_ctrl
        rows["smiles"] += [lib.smiles[d] for d in drug_idx] + [DMSO_SMILES] * n_ctrl
        rows["plate"] += [plate_names[p] for p in plate_of] + [plate_names[p] for p in ctrl_plate]

    noise_free = np.concatenate(signal_blocks)
    X = noise_free + np.concatenate(noise_blocks)
    adata = ad.AnnData(
        X=X.astype(np.float32),
        obs=_obs_frame(rows),
        var=pd.DataFrame(index=[f"G{i + 1:04d}" for i in range(n_genes)]),
    )
    adata.layers["noise_free"] = noise_free.astype(np.float32)
    adata.obsm["latent_true"] = np.concatenate(latent_blocks).astype(np.float32)
    truth = lib.truth()
    truth["params"] = _params_for_uns(
        kind="l1000",
        n_drugs=n_drugs,
        n_cell_lines=n_cells,
        n_genes=n_genes,
        n_moas=len(lib.moa_names),
        rank=rank,
        n_modules=n_modules,
        frac_silent=frac_silent,
        module_gain_sd=module_gain_sd,
        cell_specific=cell_specific,
        frac_two_moas=frac_two_moas,
        doses=list(doses),
        times=list(times),
        conditions_per_drug=conditions_per_drug,
        frac_missing=frac_missing,
        amplitude=amplitude,
        noise=noise,
        noise_df=float(noise_df),
        replicate_correlation=replicate_correlation,
        n_controls=n_controls,
        seed=seed,
    )
    truth["cell_lines"] = np.asarray(cell_lines, dtype=object)
    truth["present"] = present
    truth["gene_module"] = gene_module.astype(np.int32)
    truth["module_gain"] = gain.astype(np.float32)
    truth["shared_loadings"] = shared_loadings.astype(np.float32)
    truth["gene_noise_sd"] = gene_sd.astype(np.float32)
    truth["potency"] = potency.astype(np.float32)
    truth.update(dict(lib.extra.items()))
    adata.uns["simulation"] = truth
    return adata
