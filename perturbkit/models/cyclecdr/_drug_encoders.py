"""Drug encoders for cycleCDR: a molecular-graph attention network, Morgan fingerprints and a one-hot embedding.

All encoders share one interface (:class:`DrugEncoder`). A model embeds each *unique* drug of a batch once::

    names, inverse = np.unique(batch_drug_names, return_inverse=True)
    h = encoder.embed(names, smiles_lookup)[inverse]      # (n_samples, dim)

(:meth:`DrugEncoder.embed_samples` does exactly that.) The featurisation (RDKit graph or fingerprint) is cached
per SMILES, so it is computed once per drug for the life of the encoder; the network runs once per unique drug of
the batch, not once per sample.

An encoder is rebuilt from plain hyperparameters: ``make_drug_encoder(**encoder.config())`` gives the same
architecture, and its weights come from the state dict. The graphs and fingerprints are recomputed from the SMILES
in the config, so nothing RDKit-specific is saved.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..._schema import PerturbkitInputError, UnknownCategoryError
from .._layers import mlp
from ._pretrained_weights import load_pretrained

ENCODER_KINDS = ("gat", "gat_pretrained", "fingerprint", "onehot")

# --- atom features ------------------------------------------------------------------------------------------------
#: Version of the atom feature layout below; a pretrained GAT records it, and one made for another layout is refused.
ATOM_FEATURES_VERSION = 2
ELEMENTS = ("C", "N", "O", "S", "F", "Cl", "Br", "I", "P", "B", "Si", "Se", "Na", "K")
MAX_DEGREE = 5  # one-hot 0..5, larger values share the last slot
FORMAL_CHARGES = (-2, -1, 0, 1, 2)  # others share an extra slot
MAX_HS = 4  # one-hot 0..4
_HYBRIDISATIONS = ("SP", "SP2", "SP3", "SP3D", "SP3D2")

N_ATOM_FEATURES = (
    len(ELEMENTS)
    + 1  # element + other
    + MAX_DEGREE
    + 1  # degree
    + len(FORMAL_CHARGES)
    + 1  # formal charge + other
    + 1  # aromatic
    + len(_HYBRIDISATIONS)
    + 1  # hybridisation + other
    + MAX_HS
    + 1  # total Hs
    + 1  # in ring
)
#: Radii of the circular (Morgan) environments centred on each atom, and the hash buckets each radius's environment
#: identifier falls into (one-hot): the substructure identity fingerprints see, given to the graph network atom by atom.
ENVIRONMENT_RADII = (0, 1, 2)
ENVIRONMENT_BUCKETS = 256
#: the atom's own features come first, its environment slots after them
N_OWN_ATOM_FEATURES = N_ATOM_FEATURES
N_ATOM_FEATURES += len(ENVIRONMENT_RADII) * ENVIRONMENT_BUCKETS


def _one_hot(value, choices: Sequence) -> list[float]:
    """One-hot over ``choices`` plus a final "other" slot."""
    out = [0.0] * (len(choices) + 1)
    try:
        out[list(choices).index(value)] = 1.0
    except ValueError:
        out[-1] = 1.0
    return out


def _capped_one_hot(value: int, cap: int) -> list[float]:
    out = [0.0] * (cap + 1)
    out[min(max(int(value), 0), cap)] = 1.0
    return out


def atom_features(atom) -> list[float]:
    """Feature vector of one RDKit atom (length :data:`N_ATOM_FEATURES`).

    Element one-hot over :data:`ELEMENTS` + other, degree (0..5+), formal charge (−2..+2, other), aromaticity,
    hybridisation (SP, SP2, SP3, SP3D, SP3D2, other), total hydrogens (0..4+) and ring membership.
    """
    return (
        _one_hot(atom.GetSymbol(), ELEMENTS)
        + _capped_one_hot(atom.GetDegree(), MAX_DEGREE)
        + _one_hot(atom.GetFormalCharge(), FORMAL_CHARGES)
        + [float(atom.GetIsAromatic())]
        + _one_hot(str(atom.GetHybridization()), _HYBRIDISATIONS)
        + _capped_one_hot(atom.GetTotalNumHs(), MAX_HS)
        + [float(atom.IsInRing())]
    )


def _mol_from_smiles(name: str, smiles):
    """Parse a SMILES with RDKit; raise :class:`PerturbkitInputError` naming the drug and the SMILES when invalid."""
    from rdkit import Chem, rdBase

    if smiles is None or (isinstance(smiles, float) and math.isnan(smiles)) or not str(smiles).strip():
        raise PerturbkitInputError(
            f"drug {name!r} has no SMILES ({smiles!r}); this drug encoder needs a valid SMILES per drug. Fill the "
            f"smiles column for it, or use drug_encoder='onehot' for drugs seen in training."
        )
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(str(smiles))
    if mol is None or mol.GetNumAtoms() == 0:
        raise PerturbkitInputError(
            f"invalid SMILES for drug {name!r}: {smiles!r} (RDKit cannot parse it). Correct the SMILES of this drug, "
            f"or drop its rows."
        )
    return mol


#: The Morgan fingerprint of the fingerprint encoder and of the GAT's hybrid readout: radius 2 (ECFP4), 2048 bits.
MORGAN_RADIUS = 2
MORGAN_BITS = 2048


@functools.cache
def _morgan_generator(radius: int, n_bits: int):
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def morgan_fingerprint(mol, *, radius: int = MORGAN_RADIUS, n_bits: int = MORGAN_BITS) -> np.ndarray:
    """The folded binary Morgan fingerprint of an RDKit molecule (float32 0/1, length ``n_bits``)."""
    return _morgan_generator(int(radius), int(n_bits)).GetFingerprintAsNumPy(mol).astype(np.float32)


@functools.cache
def _environment_generator():
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=max(ENVIRONMENT_RADII), includeRedundantEnvironments=True)


def atom_environments(mol) -> np.ndarray:
    """One-hot hash buckets of each atom's Morgan environment identifiers at :data:`ENVIRONMENT_RADII` (n_atoms, R × B).

    The identifiers are RDKit's (``rdFingerprintGenerator``'s Morgan generator, redundant environments kept, so
    every atom has one per radius its neighbourhood reaches: an isolated ion has radius 0 alone); identifier ``i``
    of radius ``r`` sets slot ``r × B + i mod B``. Summed or averaged over the atoms, these are a folded Morgan count
    fingerprint; the graph network sees them where they sit.
    """
    from rdkit.Chem import rdFingerprintGenerator

    output = rdFingerprintGenerator.AdditionalOutput()
    output.AllocateAtomToBits()
    _environment_generator().GetSparseCountFingerprint(mol, additionalOutput=output)
    out = np.zeros((mol.GetNumAtoms(), len(ENVIRONMENT_RADII) * ENVIRONMENT_BUCKETS), dtype=np.float32)
    for atom, identifiers in enumerate(output.GetAtomToBits()):
        for r, identifier in zip(ENVIRONMENT_RADII, identifiers, strict=False):  # (an ion has radius 0 alone)
            out[atom, r * ENVIRONMENT_BUCKETS + identifier % ENVIRONMENT_BUCKETS] = 1.0
    return out


@dataclass
class MolGraph:
    """One molecule as a graph.

    Atom features ``x`` (n_atoms, F), directed bonds ``edges`` (2, n_directed_bonds) and, when asked for, the
    molecule's Morgan ``fingerprint`` (the hybrid readout's input).
    """

    x: np.ndarray
    edges: np.ndarray
    fingerprint: np.ndarray | None = None


def mol_graph(name: str, smiles, *, fingerprint_bits: int | None = None) -> MolGraph:
    """The RDKit molecular graph of ``smiles`` (both directions of each bond; self loops are added when batching).

    Disconnected SMILES (salts, ``"A.B"``) give one graph with several components. ``fingerprint_bits`` also
    stores the molecule's :func:`morgan_fingerprint` of that length.
    """
    mol = _mol_from_smiles(name, smiles)
    x = np.asarray([atom_features(a) for a in mol.GetAtoms()], dtype=np.float32)
    x = np.concatenate([x, atom_environments(mol)], axis=1)
    pairs = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    if pairs:
        src, dst = np.asarray(pairs, dtype=np.int64).T
        edges = np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])
    else:
        edges = np.zeros((2, 0), dtype=np.int64)
    fingerprint = None if fingerprint_bits is None else morgan_fingerprint(mol, n_bits=fingerprint_bits)
    return MolGraph(x=x, edges=edges, fingerprint=fingerprint)


@dataclass
class GraphBatch:
    """Several molecules as one disjoint graph.

    Edge index with self loops; ``batch[i]`` is the molecule of atom i; ``fingerprints`` (n_graphs, bits) when the
    graphs carry them.
    """

    x: torch.Tensor
    edge_index: torch.Tensor
    batch: torch.Tensor
    n_graphs: int
    fingerprints: torch.Tensor | None = None

    def to(self, device) -> GraphBatch:
        fingerprints = None if self.fingerprints is None else self.fingerprints.to(device)
        return GraphBatch(
            self.x.to(device), self.edge_index.to(device), self.batch.to(device), self.n_graphs, fingerprints
        )


def batch_graphs(graphs: Sequence[MolGraph]) -> GraphBatch:
    """Stack molecule graphs into one disjoint graph, offsetting atom indices and adding one self loop per atom."""
    xs, edges, batch = [], [], []
    offset = 0
    for g, graph in enumerate(graphs):
        n = graph.x.shape[0]
        loops = np.arange(n, dtype=np.int64)
        edges.append(np.concatenate([graph.edges, np.stack([loops, loops])], axis=1) + offset)
        xs.append(graph.x)
        batch.append(np.full(n, g, dtype=np.int64))
        offset += n
    with_fingerprints = all(graph.fingerprint is not None for graph in graphs)
    return GraphBatch(
        x=torch.from_numpy(np.concatenate(xs)),
        edge_index=torch.from_numpy(np.concatenate(edges, axis=1)),
        batch=torch.from_numpy(np.concatenate(batch)),
        n_graphs=len(graphs),
        fingerprints=torch.from_numpy(np.stack([g.fingerprint for g in graphs])) if with_fingerprints else None,
    )


# --- graph attention ----------------------------------------------------------------------------------------------
def segment_softmax(scores: torch.Tensor, index: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``scores`` (E, H) within the segments given by ``index`` (E,), e.g. the incoming edges of a node.

    The per-segment maximum (``scatter_reduce`` with ``"amax"``) is subtracted first for numerical stability; the
    sums use ``index_add_``.
    """
    idx = index.unsqueeze(-1).expand_as(scores)
    seg_max = scores.new_full((n_segments, scores.shape[1]), -torch.inf)
    seg_max = seg_max.scatter_reduce(0, idx, scores, reduce="amax", include_self=True)
    exp = torch.exp(scores - seg_max.detach()[index])
    seg_sum = scores.new_zeros((n_segments, scores.shape[1])).index_add_(0, index, exp)
    return exp / seg_sum[index].clamp_min(1e-16)


def segment_max(x: torch.Tensor, index: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Maximum of the rows of ``x`` (N, D) per segment ``index`` (N,) (global max pooling per molecule)."""
    idx = index.unsqueeze(-1).expand_as(x)
    out = x.new_full((n_segments, x.shape[1]), -torch.inf)
    return out.scatter_reduce(0, idx, x, reduce="amax", include_self=True)


POOLINGS = ("mean", "max")


def pool_atoms(h: torch.Tensor, index: torch.Tensor, n_graphs: int, how: str = "mean") -> torch.Tensor:
    """One row per molecule from its atoms' rows of ``h``: their mean (default) or maximum (the paper's)."""
    if how == "max":
        return segment_max(h, index, n_graphs)
    if how != "mean":
        raise PerturbkitInputError(f"pooling={how!r} is not known; choose one of {list(POOLINGS)}.")
    sums = h.new_zeros((n_graphs, h.shape[1])).index_add_(0, index, h)
    return sums / torch.bincount(index, minlength=n_graphs).clamp_min(1).unsqueeze(1).to(h.dtype)


class GraphAttentionLayer(nn.Module):
    """A multi-head graph attention layer (Veličković et al. 2018), written directly in torch.

    For an edge j → i, head k scores ``e_ijk = LeakyReLU(a_src_k · W_k x_j + a_dst_k · W_k x_i)``; the scores are
    soft-maxed over the incoming edges of node i (self loop included) and the node's output is
    ``Σ_j α_ijk W_k x_j`` plus a bias. Heads are concatenated (``concat=True``) or averaged.

    Why not torch-geometric's ``GATConv``: it would be an extra dependency for one layer, and it would rename the
    weights of every saved GAT model. Its speed was measured (``benchmarks/drug_encoder.py --gatconv``, one CPU
    thread, torch_geometric 2.8 without pyg-lib / torch-scatter): on the two-layer trunk it is 1.2× (256 molecules)
    to 1.6× (32 molecules) faster for forward + backward. The GAT is most of a cycleCDR step, so switching would be
    worth it together with the dependency and a mapping of the saved weight names.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.heads, self.out_features, self.concat = heads, out_features, concat
        self.lin = nn.Linear(in_features, heads * out_features, bias=False)
        self.att_src = nn.Parameter(torch.empty(heads, out_features))
        self.att_dst = nn.Parameter(torch.empty(heads, out_features))
        self.bias = nn.Parameter(torch.zeros(heads * out_features if concat else out_features))
        self.leaky = nn.LeakyReLU(negative_slope)
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)

    @property
    def out_dim(self) -> int:
        return self.heads * self.out_features if self.concat else self.out_features

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, *, return_attention: bool = False):
        n = x.shape[0]
        h = self.lin(x).view(n, self.heads, self.out_features)
        src, dst = edge_index
        score_src = (h * self.att_src).sum(-1)  # (N, H)
        score_dst = (h * self.att_dst).sum(-1)
        scores = self.leaky(score_src[src] + score_dst[dst])  # (E, H)
        alpha = segment_softmax(scores, dst, n)
        messages = h[src] * self.dropout(alpha).unsqueeze(-1)  # (E, H, C)
        out = h.new_zeros((n, self.heads, self.out_features)).index_add_(0, dst, messages)
        out = out.reshape(n, -1) if self.concat else out.mean(1)
        out = out + self.bias
        return (out, alpha) if return_attention else out


# --- the encoders -------------------------------------------------------------------------------------------------
def _resolve_smiles(names: Sequence[str], smiles, known: Mapping[str, str | None]) -> list:
    """SMILES for each name: from ``smiles`` (a mapping or a sequence aligned with ``names``), else the vocabulary."""
    if smiles is None:
        lookup = {}
    elif isinstance(smiles, Mapping):
        lookup = dict(smiles)
    else:
        seq = list(smiles)
        if len(seq) != len(names):
            raise PerturbkitInputError(f"got {len(seq)} SMILES for {len(names)} drugs; pass one per drug or a mapping.")
        lookup = dict(zip(names, seq, strict=True))
    out = []
    unknown = []
    for name in names:
        if _has_smiles(lookup.get(name)) or (name in lookup and name not in known):
            out.append(lookup[name])
        elif name in known and known[name] is not None:
            out.append(known[name])
        else:
            unknown.append(name)
    if unknown:
        raise UnknownCategoryError(
            f"no SMILES for drug(s) {unknown[:10]}{' ...' if len(unknown) > 10 else ''}: they are not among the "
            f"{len(known)} training drugs. Pass drugs={{name: SMILES}} for drugs the model has never seen."
        )
    return out


def _has_smiles(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


class DrugEncoder(nn.Module):
    """Base of the drug encoders: maps drug names (+ SMILES) to embeddings of size ``dim``.

    Parameters
    ----------
    drugs
        The training drugs ``{name: SMILES}`` (SMILES may be ``None`` for the one-hot encoder). This is the
        encoder's vocabulary; it is saved in :meth:`config`.
    dim
        Size of the embedding.

    Use :meth:`embed` with the unique drug names of a batch (or :meth:`embed_samples` with per-sample names);
    :meth:`featurize` prepares the network input and :meth:`forward` runs the network on it.
    """

    kind: str = ""

    def __init__(self, drugs: Mapping[str, str | None], dim: int, **options):
        super().__init__()
        if not isinstance(drugs, Mapping) or not drugs:
            raise PerturbkitInputError("a drug encoder needs the training drugs as a non-empty {name: SMILES} mapping.")
        if int(dim) < 1:
            raise PerturbkitInputError(f"the drug embedding size must be positive, got dim={dim}.")
        self.drugs = {str(k): (v.strip() if _has_smiles(v) else None) for k, v in drugs.items()}
        self.dim = int(dim)
        self.options = dict(options)
        self.n_featurized = 0  # how many drugs were featurised (RDKit work), for tests and benchmarks

    def config(self) -> dict:
        """Plain hyperparameters that rebuild this encoder with :func:`make_drug_encoder`."""
        return {"kind": self.kind, "dim": self.dim, "drugs": dict(self.drugs), **self.options}

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def featurize(self, names: Sequence[str], smiles=None):
        """Network input for the drugs ``names`` (unique names; ``smiles`` a mapping or a list aligned with them)."""
        raise NotImplementedError

    def forward(self, drug_batch) -> torch.Tensor:
        """Embeddings (n_drugs, dim) of a batch made by :meth:`featurize`."""
        raise NotImplementedError

    def embed(self, names: Sequence[str], smiles=None) -> torch.Tensor:
        """Embeddings (len(names), dim) of the given drugs, one row per name (pass each drug once)."""
        names = [str(n) for n in names]
        return self(self.featurize(names, smiles))

    def embed_samples(self, names: Iterable[str], smiles=None) -> torch.Tensor:
        """Per-sample embeddings (n_samples, dim): runs :meth:`embed` once on the unique names and indexes rows."""
        names = np.asarray([str(n) for n in names], dtype=object)
        unique, inverse = np.unique(names, return_inverse=True)
        emb = self.embed(list(unique), smiles)
        return emb[torch.as_tensor(inverse, device=emb.device)]

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, dim={self.dim}, n_training_drugs={len(self.drugs)}"


class _CachedFeaturesEncoder(DrugEncoder):
    """An encoder whose per-drug input is computed from the SMILES once and cached (keyed by name and SMILES)."""

    def __init__(self, drugs, dim, **options):
        super().__init__(drugs, dim, **options)
        self._cache: dict[tuple[str, str], object] = {}
        missing = [n for n, s in self.drugs.items() if s is None]
        if missing:
            raise PerturbkitInputError(
                f"drug_encoder={self.kind!r} needs a SMILES for every training drug, but {missing[:10]} have none. "
                f"Fill the smiles column, or use drug_encoder='onehot'."
            )
        for name, smi in self.drugs.items():  # validate (and cache) every training SMILES up front
            self._features(name, smi)

    def _compute(self, name: str, smiles: str):
        raise NotImplementedError

    def _features(self, name: str, smiles):
        key = (name, str(smiles))
        if key not in self._cache:
            self._cache[key] = self._compute(name, smiles)
            self.n_featurized += 1
        return self._cache[key]

    def _features_for(self, names, smiles) -> list:
        resolved = _resolve_smiles(names, smiles, self.drugs)
        return [self._features(n, s) for n, s in zip(names, resolved, strict=True)]


READOUTS = ("hybrid", "graph")


class GATEncoder(_CachedFeaturesEncoder):
    """Graph attention network on the RDKit molecular graph of each drug (cycleCDR's drug encoder).

    Atom features (:func:`atom_features` and the atom's hashed Morgan environments, :func:`atom_environments`) →
    GAT layer with ``heads`` heads (concatenated) → ELU → GAT layer with one head → pooling per molecule
    (``pooling``: ``"mean"`` by default, ``"max"`` as in the paper) → readout to ``dim``. The attention layer is
    :class:`GraphAttentionLayer` (own torch code, no torch-geometric; see there why).

    The readout (``readout``):

    * ``"hybrid"`` (default), as Chemprop does with ``--features_generator morgan``: the pooled graph embedding
      (with dropout ``graph_dropout``) is concatenated with the molecule's Morgan fingerprint (radius 2, 2048 bits,
      the :class:`FingerprintEncoder`'s) and passed through an MLP with ``readout_hidden`` ReLU units;
    * ``"graph"``: the paper's linear layer on the pooled graph embedding alone.

    The departures from the paper (atom environments, mean pooling, hybrid readout) were chosen on unseen drugs of
    the simulator (seeds 0 and 2; the cycleCDR methods page has the tables). With the graph readout the GAT trailed
    the Morgan fingerprint there by 0.12–0.20 DEG r²; the hybrid readout closes that gap, and the graph branch
    needs its dropout (without it the graph embedding overfits the few training drugs and costs 0.07 to 0.16).

    The paper's pretrained weights are not available, so by default the GAT is trained from scratch.
    ``pretrained=`` initialises the two GAT layers (the trunk) from a self-supervised pretraining run
    (:func:`perturbkit.tl.pretrain_drug_encoder`: its result, a
    :class:`~perturbkit.models.cyclecdr._pretrained_weights.PretrainedDrugEncoder`, or the result's saved file, or
    ``"shipped"`` for the checkpoint that comes with perturbkit); the readout starts fresh.
    ``freeze=True`` keeps the trunk fixed during training. Only the initialisation comes from ``pretrained``: a
    saved model carries all its weights, so ``pretrained`` is not part of :meth:`config`.
    """

    kind = "gat"
    atom_features_version = ATOM_FEATURES_VERSION  # checked against a pretrained checkpoint's

    def __init__(
        self,
        drugs,
        dim: int,
        *,
        hidden: int = 64,
        heads: int = 10,
        dropout: float = 0.0,
        pooling: str = "mean",
        readout: str = "hybrid",
        graph_dropout: float = 0.5,
        readout_hidden: int = 256,
        pretrained=None,
        freeze: bool = False,
    ):
        if pooling not in POOLINGS:
            raise PerturbkitInputError(f"pooling={pooling!r} is not known; choose one of {list(POOLINGS)}.")
        if readout not in READOUTS:
            raise PerturbkitInputError(f"readout={readout!r} is not known; choose one of {list(READOUTS)}.")
        if not 0.0 <= float(graph_dropout) < 1.0:
            raise PerturbkitInputError(f"graph_dropout must be in [0, 1), got {graph_dropout!r}.")
        super().__init__(
            drugs,
            dim,
            hidden=int(hidden),
            heads=int(heads),
            dropout=float(dropout),
            pooling=str(pooling),
            readout=str(readout),
            graph_dropout=float(graph_dropout),
            readout_hidden=int(readout_hidden),
            freeze=bool(freeze),
        )
        self.gat1 = GraphAttentionLayer(N_ATOM_FEATURES, hidden, heads=heads, concat=True, dropout=dropout)
        self.gat2 = GraphAttentionLayer(self.gat1.out_dim, hidden, heads=1, concat=False, dropout=dropout)
        self.act = nn.ELU()
        if readout == "hybrid":
            self.graph_dropout = nn.Dropout(graph_dropout)
            self.out = mlp([hidden + MORGAN_BITS, readout_hidden, dim], activation_name="relu")
        else:
            self.out = nn.Linear(hidden, dim)
        if pretrained is not None:
            load_pretrained(pretrained).initialise(self)
            if readout == "graph":
                # the pretrained features are several times larger than a fresh trunk's: start the readout at zero,
                # so that the drug embedding (a shift in the model's latent space) starts at "no effect" instead of
                # large random shifts, and grows as the readout learns
                nn.init.zeros_(self.out.weight)
                nn.init.zeros_(self.out.bias)
        if freeze:
            for p in (*self.gat1.parameters(), *self.gat2.parameters()):
                p.requires_grad_(False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        weight = state_dict.get(prefix + "gat1.lin.weight")
        if weight is not None and weight.shape[1] != N_ATOM_FEATURES:
            raise PerturbkitInputError(
                f"this GAT drug encoder was saved for {weight.shape[1]} atom features, but this perturbkit gives "
                f"{N_ATOM_FEATURES} (atom feature layout version {ATOM_FEATURES_VERSION}: atoms now carry their "
                f"hashed Morgan environments). Retrain the model, or load it with the perturbkit version that saved it."
            )
        if self.options["readout"] == "hybrid" and prefix + "out.weight" in state_dict:
            raise PerturbkitInputError(
                "this GAT drug encoder was saved with the graph-only readout (a linear layer on the pooled atoms), "
                "but this perturbkit's GAT reads out the graph embedding together with the Morgan fingerprint "
                "(readout='hybrid'). Retrain the model, or load it with the perturbkit version that saved it."
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def node_embeddings(self, g: GraphBatch) -> torch.Tensor:
        """Per-atom embeddings (n_atoms, hidden) of the two GAT layers (the trunk that pretraining trains)."""
        return self.gat2(self.act(self.gat1(g.x, g.edge_index)), g.edge_index)

    def _compute(self, name, smiles):
        return mol_graph(name, smiles, fingerprint_bits=MORGAN_BITS if self.options["readout"] == "hybrid" else None)

    def featurize(self, names, smiles=None) -> GraphBatch:
        return batch_graphs(self._features_for(list(names), smiles))

    def forward(self, drug_batch: GraphBatch, *, return_attention: bool = False):
        g = drug_batch.to(self.device)
        h, att1 = self.gat1(g.x, g.edge_index, return_attention=True)
        h = self.act(h)
        h, att2 = self.gat2(h, g.edge_index, return_attention=True)
        pooled = pool_atoms(h, g.batch, g.n_graphs, self.options["pooling"])
        if self.options["readout"] == "hybrid":
            if g.fingerprints is None:
                raise PerturbkitInputError(
                    "the GAT's hybrid readout needs the molecules' fingerprints: batch graphs made by this encoder's "
                    "featurize() (mol_graph(..., fingerprint_bits=2048))."
                )
            pooled = torch.cat([self.graph_dropout(pooled), g.fingerprints], dim=1)
        out = self.out(pooled)
        return (out, (att1, att2)) if return_attention else out


class PretrainedGATEncoder(GATEncoder):
    """:class:`GATEncoder` whose trunk starts from perturbkit's shipped pretrained checkpoint, fine-tuned.

    ``drug_encoder="gat_pretrained"``. The checkpoint (``perturbkit/data/drug_encoder_gat.pt``) was pretrained on
    the unique SMILES of the Drug Repurposing Hub by masked-atom prediction and a contrastive view (see
    :func:`perturbkit.tl.pretrain_drug_encoder` and the cycleCDR methods page); it fixes ``hidden`` and ``heads``.
    """

    kind = "gat_pretrained"

    def __init__(
        self,
        drugs,
        dim: int,
        *,
        dropout: float = 0.0,
        pooling: str = "mean",
        readout: str = "hybrid",
        graph_dropout: float = 0.5,
        readout_hidden: int = 256,
        freeze: bool = False,
        pretrained="shipped",
    ):
        checkpoint = load_pretrained(pretrained)
        super().__init__(
            drugs,
            dim,
            hidden=checkpoint.hidden,
            heads=checkpoint.heads,
            dropout=dropout,
            pooling=pooling,
            readout=readout,
            graph_dropout=graph_dropout,
            readout_hidden=readout_hidden,
            pretrained=checkpoint,
            freeze=freeze,
        )
        del self.options["hidden"], self.options["heads"]  # they come from the checkpoint


class FingerprintEncoder(_CachedFeaturesEncoder):
    """Morgan fingerprint (radius 2, 2048 bits, RDKit's ``rdFingerprintGenerator``) → MLP → ``dim``."""

    kind = "fingerprint"

    def __init__(
        self,
        drugs,
        dim: int,
        *,
        hidden: int = 256,
        radius: int = MORGAN_RADIUS,
        n_bits: int = MORGAN_BITS,
        dropout: float = 0.0,
    ):
        super().__init__(drugs, dim, hidden=int(hidden), radius=int(radius), n_bits=int(n_bits), dropout=float(dropout))
        self.net = mlp([n_bits, hidden, dim], activation_name="relu", dropout=dropout)

    def _compute(self, name, smiles) -> np.ndarray:
        mol = _mol_from_smiles(name, smiles)
        return morgan_fingerprint(mol, radius=self.options["radius"], n_bits=self.options["n_bits"])

    def featurize(self, names, smiles=None) -> torch.Tensor:
        return torch.from_numpy(np.stack(self._features_for(list(names), smiles)))

    def forward(self, drug_batch: torch.Tensor) -> torch.Tensor:
        return self.net(drug_batch.to(self.device))


class OneHotEncoder(DrugEncoder):
    """A learned embedding per training drug (rows in sorted name order). Unseen drugs raise an error."""

    kind = "onehot"

    def __init__(self, drugs, dim: int):
        super().__init__(drugs, dim)
        self.names = sorted(self.drugs)
        self._index = {n: i for i, n in enumerate(self.names)}
        self.embedding = nn.Embedding(len(self.names), dim)

    def featurize(self, names, smiles=None) -> torch.Tensor:
        names = [str(n) for n in names]
        unseen = [n for n in names if n not in self._index]
        if unseen:
            raise UnknownCategoryError(
                f"drug(s) {unseen[:10]}{' ...' if len(unseen) > 10 else ''} were not in training, and "
                f"drug_encoder='onehot' only knows the {len(self.names)} training drugs. To predict unseen drugs, "
                f"train with drug_encoder='gat' or drug_encoder='fingerprint' and pass their SMILES "
                f"(drugs={{name: SMILES}})."
            )
        return torch.as_tensor([self._index[n] for n in names], dtype=torch.long)

    def forward(self, drug_batch: torch.Tensor) -> torch.Tensor:
        return self.embedding(drug_batch.to(self.device))


class DoseEncoder(nn.Module):
    """Small MLP on ``log10(dose + eps)`` → ``dim``; the model multiplies it element-wise with the drug embedding."""

    def __init__(self, dim: int, *, hidden: int = 32, eps: float = 1e-3):
        super().__init__()
        self.dim, self.eps = int(dim), float(eps)
        self.net = mlp([1, hidden, dim], activation_name="relu")

    def forward(self, doses) -> torch.Tensor:
        device = next(self.parameters()).device
        d = torch.as_tensor(doses, dtype=torch.float32, device=device).reshape(-1, 1)
        if d.device.type == "cpu" or not isinstance(doses, torch.Tensor):  # no per-batch GPU sync for tensors
            if (d < 0).any() or not torch.isfinite(d).all():
                raise PerturbkitInputError("doses must be finite and non-negative.")
        return self.net(torch.log10(d + self.eps))


_ENCODERS = {
    "gat": GATEncoder,
    "gat_pretrained": PretrainedGATEncoder,
    "fingerprint": FingerprintEncoder,
    "onehot": OneHotEncoder,
}


def make_drug_encoder(kind: str, *, dim: int, drugs: Mapping[str, str | None], **options) -> DrugEncoder:
    """Build a drug encoder.

    ``kind`` is ``"gat"``, ``"gat_pretrained"``, ``"fingerprint"`` or ``"onehot"``; ``drugs`` the training drugs
    ``{name: SMILES}``; ``options`` go to the encoder class (e.g. ``hidden=``, ``heads=``).

    ``make_drug_encoder(**encoder.config())`` rebuilds an encoder (then load its state dict).
    """
    if kind not in _ENCODERS:
        raise PerturbkitInputError(f"unknown drug_encoder={kind!r}; choose from {list(ENCODER_KINDS)}.")
    return _ENCODERS[kind](drugs, dim, **options)
