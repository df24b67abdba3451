"""Interpreting a trained DeepCellState (see "Interpretation" on the DeepCellState methods page).

Pure functions of a trained model and data; nothing here changes the model.

- :func:`latent_embeddings` and :func:`pair_distance_ratio`: the same drugs from several cell lines in the latent
  space and in the input space (the paper's t-SNE figure: a drug's two cell-line profiles land together in latent
  space but not in input space).
- :func:`latent_correlation` and :func:`diagonal_summary`: the drug × drug correlation of latent codes between two
  cell lines (the paper's strong diagonal).
- :func:`gene_importance`: which input genes a decoder relies on, by random gene subsets.
- :func:`tf_targets`: a transcription factor's predicted targets, by gradient ascent on the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import torch

from ..._schema import EmptyGroupError, PerturbkitInputError, UnknownCategoryError, require_columns
from ..._stats import pearson_rows
from .._inputs import is_anndata
from .._profiles import CellDrugProfiles

__all__ = [
    "latent_embeddings",
    "pair_distance_ratio",
    "latent_correlation",
    "diagonal_summary",
    "gene_importance",
    "tf_targets",
    "TFTargets",
]

_UNS_KEY = "latent_embeddings"


# ------------------------------------------------------------------------------------------------------ helpers
def _known(values, n: int = 8) -> str:
    values = [str(v) for v in values]
    more = f" … ({len(values)} in all)" if len(values) > n else ""
    return f"{values[:n]}{more}"


def _drug_positions(profiles: CellDrugProfiles, drugs) -> np.ndarray:
    """Positions of ``drugs`` (names; ``None`` = all) in ``profiles``; unknown names raise with a few known ones."""
    if drugs is None:
        return np.arange(len(profiles.drugs))
    names = pd.Index([str(d) for d in np.atleast_1d(drugs)])
    pos = profiles.drugs.get_indexer(names)
    if (pos < 0).any():
        raise UnknownCategoryError(
            f"drug(s) {list(names[pos < 0][:5])} have no profile in this data; known drugs include "
            f"{_known(profiles.drugs)}."
        )
    return pos


def _cell_positions(profiles: CellDrugProfiles, cell_lines) -> list[int]:
    if cell_lines is None:
        return list(range(len(profiles.cell_lines)))
    return [profiles.cell_index(str(c)) for c in np.atleast_1d(cell_lines)]


def _check_trained(model, adata=None, *, function: str = "this function", data: bool = True) -> None:
    """Refuse anything but a trained DeepCellState as ``model`` (and an AnnData as ``adata``), e.g. swapped ones."""
    from ._model import DeepCellState

    if not isinstance(model, DeepCellState) or (data and not is_anndata(adata)):
        what = f"a {type(model).__name__} and a {type(adata).__name__}" if data else f"a {type(model).__name__}"
        call = f"{function}(model, adata, ...)" if data else f"{function}(model, ...)"
        raise PerturbkitInputError(
            f"{function} takes a trained DeepCellState first"
            f"{' and the data second' if data else ''}: {call}; got {what}."
        )
    if model.scaler is None:
        raise PerturbkitInputError(
            "this DeepCellState has no fitted scaler: train it first (pk.tl.train_deepcellstate or model.train)."
        )


# -------------------------------------------------------------------------------------------- latent embeddings
def latent_embeddings(model, adata, *, cell_lines=None, drugs=None, layer=None) -> ad.AnnData:
    """Latent codes of every (drug, cell line) profile, with the input profiles beside them.

    Profiles are built as in training (averaged over doses, times and replicates; controls left out).

    Parameters
    ----------
    model
        A trained :class:`~perturbkit.models.deepcellstate.DeepCellState`.
    adata
        Profiles with the model's genes and its cell-line and drug columns.
    cell_lines, drugs
        Restrict to these (default: all in ``adata``). Cell lines the model never saw are allowed.
    layer
        Read profiles from this layer instead of ``X``.

    Returns
    -------
    AnnData
        One row per (drug, cell line) profile present. ``X``: latent codes (vars ``latent_0`` …);
        ``obsm['X_input']``: the input profiles (the data's units, model gene order); ``obs``: the drug, cell line
        and (when known) MOA columns under the model's obs keys; ``uns['latent_embeddings']``: those keys. Run
        ``sc.pp.neighbors(emb, use_rep='X')`` + ``sc.tl.umap`` (or ``use_rep='X_input'``) and plot with
        :func:`perturbkit.pl.embedding`.
    """
    _check_trained(model, adata, function="latent_embeddings")
    keys = model.hparams["data_keys"]
    profiles = model.profiles_from(adata, layer=layer)
    d_pos = _drug_positions(profiles, drugs)
    c_pos = _cell_positions(profiles, cell_lines)
    present = profiles.present[np.ix_(d_pos, c_pos)]
    dd, cc = np.nonzero(present)  # drug-major order: a drug's cell lines sit next to each other
    if len(dd) == 0:
        raise EmptyGroupError("none of the selected drugs has a profile in the selected cell lines.")
    rows_d, rows_c = d_pos[dd], np.asarray(c_pos)[cc]
    inputs = profiles.values[rows_d, rows_c]
    codes = model.encode_array(inputs)
    drug_names = profiles.drugs[rows_d].astype(str)
    cell_names = profiles.cell_lines[rows_c].astype(str)
    obs = pd.DataFrame(
        {keys["drug_key"]: drug_names, keys["cell_key"]: cell_names},
        index=[f"{d} | {c}" for d, c in zip(drug_names, cell_names, strict=True)],
    )
    if profiles.moa is not None:
        obs[keys["moa_key"]] = profiles.moa.iloc[rows_d].to_numpy()
    for col in obs.columns:
        obs[col] = pd.Categorical(obs[col])
    emb = ad.AnnData(
        codes.astype(np.float32), obs=obs, var=pd.DataFrame(index=[f"latent_{i}" for i in range(codes.shape[1])])
    )
    emb.obsm["X_input"] = inputs.astype(np.float32)
    emb.uns[_UNS_KEY] = {
        "drug_key": keys["drug_key"],
        "cell_key": keys["cell_key"],
        "moa_key": keys["moa_key"] if profiles.moa is not None else None,
        "cell_lines": [str(profiles.cell_lines[c]) for c in c_pos],
        "genes": list(model.var_names),
    }
    return emb


def _emb_keys(emb, drug_key, cell_key) -> tuple[str, str]:
    stored = emb.uns.get(_UNS_KEY, {})
    drug_key = drug_key or stored.get("drug_key", "drug")
    cell_key = cell_key or stored.get("cell_key", "cell_line")
    require_columns(emb, {"drug_key": drug_key, "cell_key": cell_key}, purpose="pairing the embedded profiles")
    return drug_key, cell_key


def _space(emb, space: str) -> np.ndarray:
    if space == "X":
        X = emb.X
    elif space in emb.obsm:
        X = emb.obsm[space]
    else:
        raise PerturbkitInputError(
            f"no space {space!r}: use 'X' (latent codes) or one of emb.obsm {list(emb.obsm.keys())}."
        )
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)


def pair_distance_ratio(
    emb, space: str = "X", *, n_random: int = 10000, seed: int = 0, drug_key=None, cell_key=None
) -> float:
    """How close the same drug's profiles from different cell lines are, relative to different drugs.

    Mean Euclidean distance between points of the same drug in different cell lines, divided by the mean distance
    between random pairs of points of *different* drugs in *different* cell lines. Both halves cross cell lines, so
    a shift between cell lines affects them alike: about 1 means the space does not pair a drug's profiles across
    cell lines, near 0 means it places them together (the paper's latent space, unlike its input space).

    Parameters
    ----------
    emb
        From :func:`latent_embeddings` (or any AnnData with drug and cell-line obs columns).
    space
        ``"X"`` (latent codes), ``"X_input"`` (input profiles) or any ``obsm`` key (e.g. ``"X_umap"``).
    n_random
        Number of random different-drug pairs drawn for the denominator.
    seed
        Seed of those draws.
    drug_key, cell_key
        obs columns; default those recorded by :func:`latent_embeddings` (``drug``, ``cell_line``).
    """
    drug_key, cell_key = _emb_keys(emb, drug_key, cell_key)
    X = _space(emb, space)
    drug = pd.factorize(emb.obs[drug_key].astype(str))[0]
    cell = pd.factorize(emb.obs[cell_key].astype(str))[0]
    i, j = _same_drug_pairs(drug)
    same = (drug[i] == drug[j]) & (cell[i] != cell[j])
    if not same.any():
        raise EmptyGroupError("no drug has profiles in two cell lines here; the ratio needs such pairs.")
    same_dist = np.linalg.norm(X[i[same]] - X[j[same]], axis=1).mean()
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(X), size=4 * n_random)
    b = rng.integers(0, len(X), size=4 * n_random)
    ok = (drug[a] != drug[b]) & (cell[a] != cell[b])
    a, b = a[ok][:n_random], b[ok][:n_random]
    if len(a) == 0:
        raise EmptyGroupError("no pair of different drugs in different cell lines to compare with.")
    return float(same_dist / np.linalg.norm(X[a] - X[b], axis=1).mean())


def _same_drug_pairs(drug: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of positions that share a drug (without forming every pair of points)."""
    order = np.argsort(drug, kind="stable")
    bounds = np.flatnonzero(np.diff(drug[order])) + 1
    firsts, seconds = [], []
    for group in np.split(order, bounds):
        if len(group) > 1:
            gi, gj = np.triu_indices(len(group), k=1)
            firsts.append(group[gi])
            seconds.append(group[gj])
    if not firsts:
        return np.array([], dtype=int), np.array([], dtype=int)
    return np.concatenate(firsts), np.concatenate(seconds)


# ------------------------------------------------------------------------------------------ latent correlation
def latent_correlation(model, adata, *, cell_lines, drugs=None, layer=None) -> pd.DataFrame:
    """Drug × drug Pearson correlation of latent codes between two cell lines.

    Parameters
    ----------
    model
        A trained DeepCellState.
    adata
        Profiles with the model's genes.
    cell_lines
        ``(a, b)``: rows are drugs' latent codes from cell line ``a``, columns from ``b``.
    drugs
        Restrict to these drugs (default: every drug measured in both).

    Returns
    -------
    DataFrame
        ``corr.loc[d1, d2]`` = correlation of ``d1``'s code in ``a`` with ``d2``'s code in ``b``; index and columns
        are the drugs measured in both (same order), named after the cell lines. ``attrs`` holds
        :func:`diagonal_summary` of the matrix and the two cell lines. A strong diagonal means each drug lands at
        the same place in latent space whichever cell line it was measured in.
    """
    _check_trained(model, adata, function="latent_correlation")
    if isinstance(cell_lines, str) or len(cell_lines) != 2:
        raise PerturbkitInputError(f"cell_lines must be two cell lines (a, b), got {cell_lines!r}.")
    a, b = (str(c) for c in cell_lines)
    profiles = model.profiles_from(adata, layer=layer)
    ia, ib = profiles.cell_index(a), profiles.cell_index(b)
    d_pos = _drug_positions(profiles, drugs)
    d_pos = d_pos[profiles.present[d_pos, ia] & profiles.present[d_pos, ib]]
    if len(d_pos) < 2:
        raise EmptyGroupError(f"{len(d_pos)} of the selected drugs are measured in both {a} and {b}; need at least 2.")
    za = model.encode_array(profiles.values[d_pos, ia]).astype(np.float64)
    zb = model.encode_array(profiles.values[d_pos, ib]).astype(np.float64)
    n = len(d_pos)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.corrcoef(za, zb)[:n, n:]
    names = profiles.drugs[d_pos].astype(str)
    corr = pd.DataFrame(matrix, index=pd.Index(names, name=a), columns=pd.Index(names, name=b))
    corr.attrs.update(diagonal_summary(corr))
    corr.attrs["cell_lines"] = [a, b]
    return corr


def diagonal_summary(corr: pd.DataFrame) -> dict:
    """How strong the diagonal of a square drug × drug matrix is.

    Returns
    -------
    dict
        ``mean_diagonal``, ``mean_off_diagonal`` and their difference ``diagonal_minus_off_diagonal``;
        ``mean_diagonal_rank``: the mean rank of each row's diagonal value within its row (1 = the highest, so 1.0
        is perfect; random is about (n + 1) / 2); ``top1_fraction``: the fraction of rows whose diagonal is the row's
        highest value. NaN entries are ignored.
    """
    values = np.asarray(corr, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise PerturbkitInputError(f"need a square drug × drug matrix, got shape {values.shape}.")
    n = len(values)
    diag = np.diag(values)
    off = values[~np.eye(n, dtype=bool)]
    filled = np.where(np.isnan(values), -np.inf, values)
    ranks = 1 + (filled > filled[np.arange(n), np.arange(n)][:, None]).sum(axis=1)
    mean_diag, mean_off = float(np.nanmean(diag)), float(np.nanmean(off)) if n > 1 else float("nan")
    return {
        "mean_diagonal": mean_diag,
        "mean_off_diagonal": mean_off,
        "diagonal_minus_off_diagonal": mean_diag - mean_off,
        "mean_diagonal_rank": float(ranks.mean()),
        "top1_fraction": float((ranks == 1).mean()),
        "n_drugs": int(n),
    }


# ----------------------------------------------------------------------------------------------- gene importance
@torch.no_grad()
def gene_importance(
    model,
    adata,
    *,
    target,
    source,
    n_subsets: int = 100,
    subset_size: int = 100,
    top: int = 10,
    drugs=None,
    compare_with: str = "auto",
    seed: int = 0,
    layer=None,
    batch_rows: int = 8192,
) -> pd.DataFrame:
    """Input genes that a decoder relies on, by random gene subsets (the paper's method).

    For each drug's profile in ``source``: draw ``n_subsets`` random subsets of ``subset_size`` genes, keep only
    those genes of the scaled input (the others set to 0, which on the model's scale means "no change"), predict the
    profile in ``target`` from each, and keep the ``top`` subsets whose prediction correlates best (Pearson over
    genes) with the reference profile. Genes are ranked by how often they appear in the kept subsets, over all drugs.

    Parameters
    ----------
    model
        A trained DeepCellState.
    adata
        Profiles with the model's genes.
    target
        The decoder's cell line (must be one the model knows).
    source
        The cell line whose profiles are fed in (may be one the model never saw, or ``target`` itself).
    n_subsets, subset_size, top
        The paper's 100 subsets of 100 genes, 10 kept. ``subset_size`` is clamped to the number of genes and ``top``
        to ``n_subsets``.
    drugs
        Restrict to these drugs (default: every drug measured in ``source``).
    compare_with
        The reference each subset's prediction is scored against: ``"measured"`` — the drug's measured profile in
        ``target`` (the paper's choice; drugs not measured there are skipped); ``"prediction"`` — the model's
        prediction from the full input (asks what the decoder uses, whatever the truth); ``"auto"`` (default) —
        the measured profile where there is one, else the full-input prediction.
    seed
        Seed of the random subsets.
    batch_rows
        How many subset inputs go through the network at once (memory bound; all subsets of a drug are always
        batched together).

    Returns
    -------
    DataFrame
        Columns ``gene``, ``count`` (times in a kept subset), ``frequency`` (count / (profiles × top)), one row per
        gene, most frequent first. ``attrs``: ``target``, ``source``, ``n_profiles``, ``n_compared_with_measured``,
        ``n_subsets``, ``subset_size``, ``top``, ``expected_frequency`` (= subset_size / n_genes, the frequency of a
        gene that does not matter).
    """
    _check_trained(model, adata, function="gene_importance")
    if compare_with not in ("auto", "measured", "prediction"):
        raise PerturbkitInputError(f"compare_with must be 'auto', 'measured' or 'prediction', got {compare_with!r}.")
    if n_subsets < 1 or subset_size < 1 or top < 1:
        raise PerturbkitInputError("n_subsets, subset_size and top must be positive.")
    cell = model.cell_index(target)
    profiles = model.profiles_from(adata, layer=layer)
    s = profiles.cell_index(str(source))
    t = profiles.cell_index(str(target)) if str(target) in profiles.cell_lines else None
    d_pos = _drug_positions(profiles, drugs)
    d_pos = d_pos[profiles.present[d_pos, s]]
    measured = np.zeros(len(d_pos), dtype=bool) if t is None else profiles.present[d_pos, t]
    if compare_with == "measured":
        if not measured.any():
            raise EmptyGroupError(
                f"no selected drug is measured in both {source} and {target}; use "
                f"compare_with='prediction' to score against the full-input prediction."
            )
        d_pos, measured = d_pos[measured], measured[measured]
    elif compare_with == "prediction":
        measured[:] = False
    if len(d_pos) == 0:
        raise EmptyGroupError(f"no selected drug has a profile in {source}.")

    n_genes = model.n_vars
    size = min(int(subset_size), n_genes)
    top = min(int(top), int(n_subsets))
    module, device = model.module, model.device
    module.eval()
    x = model.scale_rows(profiles.values[d_pos, s])
    reference = np.zeros_like(x)
    if measured.any():
        reference[measured] = model.scale_rows(profiles.values[d_pos[measured], t])
    if not measured.all():
        out, _ = module(torch.from_numpy(x[~measured]).to(device), cell)
        reference[~measured] = out.cpu().numpy()

    rng = np.random.default_rng(seed)
    counts = np.zeros(n_genes, dtype=np.int64)
    per_chunk = max(1, int(batch_rows) // int(n_subsets))
    for start in range(0, len(d_pos), per_chunk):
        stop = min(start + per_chunk, len(d_pos))
        keys = rng.random((stop - start, n_subsets, n_genes))
        cutoff = np.partition(keys, size - 1, axis=2)[:, :, size - 1 : size]
        masks = keys <= cutoff  # exactly `size` genes per subset
        inputs = (masks * x[start:stop, None, :]).astype(np.float32).reshape(-1, n_genes)
        out, _ = module(torch.from_numpy(inputs).to(device), cell)
        pcc = pearson_rows(out.cpu().numpy(), np.repeat(reference[start:stop], n_subsets, axis=0))
        pcc = np.nan_to_num(pcc.reshape(stop - start, n_subsets), nan=-np.inf)
        best = np.argsort(-pcc, axis=1, kind="stable")[:, :top]
        counts += masks[np.arange(stop - start)[:, None], best].sum(axis=(0, 1))

    result = pd.DataFrame(
        {"gene": model.var_names.astype(str), "count": counts, "frequency": counts / (len(d_pos) * top)}
    )
    result = result.sort_values(["count", "gene"], ascending=[False, True], kind="stable").reset_index(drop=True)
    result.attrs.update(
        {
            "target": str(target),
            "source": str(source),
            "n_profiles": int(len(d_pos)),
            "n_compared_with_measured": int(measured.sum()),
            "n_subsets": int(n_subsets),
            "subset_size": size,
            "top": top,
            "expected_frequency": size / n_genes,
        }
    )
    return result


# --------------------------------------------------------------------------------------------------- TF targets
@dataclass
class TFTargets:
    """Predicted targets of a transcription factor (from :func:`tf_targets`).

    Attributes
    ----------
    tf_gene, target_cell_line
        What was maximised, in which decoder.
    targets
        The ``n_top`` predicted targets: columns ``gene``, ``value`` (the optimised input, scaled units, mean over
        starts), highest first.
    input
        The optimised input for every gene (the TF itself included), indexed by gene.
    output_value
        The TF's predicted value (scaled units, in [-1, 1]) for the optimised input, mean over starts.
    reference, overlap
        The reference targets among the model's genes (TF excluded) and those among the predicted targets.
    fold_enrichment, p_value
        ``(overlap / n_top) / (n_reference / n_genes)`` and the one-sided binomial p-value of seeing at least
        ``len(overlap)`` reference genes in ``n_top`` draws with success rate ``n_reference / n_genes``
        (NaN when no reference was given).
    n_genes
        The genes that could be predicted (the model's genes minus the TF).
    """

    tf_gene: str
    target_cell_line: str
    targets: pd.DataFrame
    input: pd.Series
    output_value: float
    n_genes: int
    reference: list[str] = field(default_factory=list)
    overlap: list[str] = field(default_factory=list)
    fold_enrichment: float = float("nan")
    p_value: float = float("nan")

    @property
    def n_top(self) -> int:
        return len(self.targets)

    def summary(self) -> dict:
        """The numbers, as a flat dict."""
        return {
            "tf_gene": self.tf_gene,
            "target_cell_line": self.target_cell_line,
            "n_top": self.n_top,
            "n_genes": self.n_genes,
            "n_reference": len(self.reference),
            "n_overlap": len(self.overlap),
            "fold_enrichment": self.fold_enrichment,
            "p_value": self.p_value,
            "output_value": self.output_value,
        }

    def __repr__(self) -> str:
        head = ", ".join(self.targets["gene"].head(5))
        text = f"TFTargets({self.tf_gene} in {self.target_cell_line}: top {self.n_top} = {head}, …"
        if self.reference:
            text += (
                f"; {len(self.overlap)}/{self.n_top} in the reference of {len(self.reference)}, fold enrichment "
                f"{self.fold_enrichment:.2f}, p = {self.p_value:.2g}"
            )
        return text + ")"


def tf_targets(
    model,
    *,
    tf_gene,
    target_cell_line,
    n_top: int = 50,
    steps: int = 200,
    lr: float = 0.1,
    n_starts: int = 8,
    seed: int = 0,
    reference_targets=None,
) -> TFTargets:
    """Predict a transcription factor's targets by gradient ascent on the input (the paper's method).

    Starting from random inputs (scaled units, uniform in [-0.5, 0.5]), the input is changed step by step to raise
    the TF's output in the ``target_cell_line`` decoder. The input is kept within [-1, 1] by writing it as
    ``tanh(p)``; each step moves ``p`` a distance ``lr`` along the gradient direction (normalised gradient ascent:
    genes move in proportion to their effect, whatever the network's gradient scale). What is maximised is the
    TF's value before the decoder's tanh, which would otherwise saturate and stop the ascent. The genes with the
    highest optimised input (the TF excluded) are the predicted targets: raising them raises the TF's predicted
    expression. ``n_starts`` random starts are optimised together and their inputs averaged, which averages away
    genes left near their random start value.

    Parameters
    ----------
    model
        A trained DeepCellState.
    tf_gene
        The gene to maximise (one of ``model.var_names``).
    target_cell_line
        The decoder to use.
    n_top
        How many targets to return (paper: 50); clamped to the number of genes minus one.
    steps, lr
        Number of ascent steps and the length of each step in ``p``.
    n_starts
        Independent random starts (paper: 1).
    seed
        Seed of the random starts.
    reference_targets
        Known targets of the TF (gene names). Genes outside the model's set and the TF itself are ignored.

    Returns
    -------
    TFTargets
        ``targets`` (gene, value), the full optimised ``input``, and, with ``reference_targets``,
        ``fold_enrichment`` and the one-sided binomial ``p_value`` (scipy.stats.binomtest).
    """
    from scipy.stats import binomtest

    _check_trained(model, function="tf_targets", data=False)
    cell = model.cell_index(target_cell_line)
    tf_gene = str(tf_gene)
    if tf_gene not in model.var_names:
        raise UnknownCategoryError(
            f"gene {tf_gene!r} is not one of the model's {model.n_vars} genes, e.g. {_known(model.var_names)}."
        )
    if steps < 1 or n_starts < 1 or n_top < 1 or lr <= 0:
        raise PerturbkitInputError("steps, n_starts, n_top and lr must be positive.")
    tf = int(model.var_names.get_loc(tf_gene))
    module, device = model.module, model.device
    module.eval()
    x, value = _maximise_output(
        module,
        cell,
        tf,
        n_vars=model.n_vars,
        steps=int(steps),
        lr=float(lr),
        n_starts=int(n_starts),
        seed=int(seed),
        device=device,
    )
    optimised = pd.Series(
        x.mean(axis=0).astype(np.float64), index=model.var_names.astype(str), name=f"input maximising {tf_gene}"
    )
    candidates = optimised.drop(tf_gene)
    n_top = min(int(n_top), len(candidates))
    ranked = candidates.sort_values(ascending=False, kind="stable").head(n_top)
    targets = pd.DataFrame({"gene": ranked.index.to_numpy(), "value": ranked.to_numpy()})
    result = TFTargets(
        tf_gene=tf_gene,
        target_cell_line=str(target_cell_line),
        targets=targets,
        input=optimised,
        output_value=value,
        n_genes=len(candidates),
    )
    if reference_targets is not None:
        wanted = pd.Index([str(g) for g in np.atleast_1d(reference_targets)]).unique()
        reference = [g for g in wanted if g in candidates.index]
        if not reference:
            raise PerturbkitInputError(
                f"none of the {len(wanted)} reference targets (e.g. {list(wanted[:5])}) is among the model's genes "
                f"(other than {tf_gene}); map the gene identifiers to the model's naming first."
            )
        in_reference = set(reference)
        overlap = [g for g in targets["gene"] if g in in_reference]
        rate = len(reference) / result.n_genes
        result.reference, result.overlap = reference, overlap
        result.fold_enrichment = float((len(overlap) / n_top) / rate)
        result.p_value = float(binomtest(len(overlap), n_top, rate, alternative="greater").pvalue)
    return result


def _maximise_output(
    module, cell: int, gene: int, *, n_vars: int, steps: int, lr: float, n_starts: int, seed: int, device
) -> tuple[np.ndarray, float]:
    """Normalised gradient ascent of one output gene's pre-tanh value over inputs ``tanh(p)``.

    Returns the optimised inputs (starts × genes) and the gene's mean output for them.
    """
    decoder = module.decoders[cell]
    captured = {}
    last = getattr(decoder, "output", None)
    hook = None
    if isinstance(last, torch.nn.Linear):  # the layer before the tanh
        hook = last.register_forward_hook(lambda _layer, _inputs, output: captured.__setitem__("pre", output))
    generator = torch.Generator().manual_seed(seed)
    start = torch.rand(n_starts, n_vars, generator=generator) - 0.5
    raw = torch.atanh(start).to(device).requires_grad_(True)
    try:
        for _ in range(steps):
            out, _ = module(torch.tanh(raw), cell)
            objective = captured["pre"][:, gene] if hook is not None else out[:, gene]
            (grad,) = torch.autograd.grad(objective.sum(), raw)
            with torch.no_grad():
                raw += lr * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
        with torch.no_grad():
            x = torch.tanh(raw)
            value = float(module(x, cell)[0][:, gene].mean())
    finally:
        if hook is not None:
            hook.remove()
    return x.detach().cpu().numpy(), value
