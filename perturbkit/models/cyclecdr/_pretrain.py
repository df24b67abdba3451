"""Self-supervised pretraining of the GAT drug encoder's trunk on unlabelled SMILES.

Two tasks share the trunk of :class:`~perturbkit.models.cyclecdr._drug_encoders.GATEncoder` (two graph attention
layers), trained together on every batch of molecules:

* **masked atom prediction** (Hu et al. 2020, "attribute masking"): in each view ``mask_fraction`` of the atoms have
  their whole feature vector replaced by zeros (no real atom has all-zero features: its degree slot is always set),
  and the atoms within two bonds of them lose their Morgan environment slots (which contain the masked atom)
  and a linear head predicts their element class (:data:`~._drug_encoders.ELEMENTS` + other) from the trunk's
  atom embedding — a cross-entropy over the masked atoms;
* **a contrastive view** (GraphCL, You et al. 2020; MolCLR, Wang et al. 2022): two augmented views of each molecule
  (the atom masking above plus ``edge_drop`` of the bonds removed, both directions together) are mean-pooled like
  the encoder does, passed through a small projection head and compared with the NT-Xent loss: the two views of a
  molecule are pulled together, the other molecules of the batch pushed apart.

The network and losses are here (:class:`PretrainNetwork`, :func:`pretrain_loss`); the loop is the engine's
:func:`~perturbkit.train.fit` over molecule indices (a batch is a set of molecules, turned into graph views inside
the loss with the run's own seeded generator). The result, :class:`~._pretrained_weights.PretrainedDrugEncoder`,
keeps only the trunk's weights and its metadata; ``GATEncoder(..., pretrained=result)`` (or the saved file) starts
from them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..._schema import EmptyGroupError, PerturbkitInputError
from .._layers import mlp
from ._drug_encoders import (
    ATOM_FEATURES_VERSION,
    ELEMENTS,
    ENVIRONMENT_RADII,
    N_ATOM_FEATURES,
    N_OWN_ATOM_FEATURES,
    GraphAttentionLayer,
    GraphBatch,
    MolGraph,
    mol_graph,
    pool_atoms,
)
from ._pretrained_weights import PretrainedDrugEncoder

#: Element classes the masked-atom head predicts: :data:`ELEMENTS` plus "other" (the first slots of the features).
N_ELEMENT_CLASSES = len(ELEMENTS) + 1
TRUNK_PREFIXES = ("gat1.", "gat2.")


@dataclass(frozen=True)
class PretrainDefaults:
    """Pretraining defaults, written once (sources in the cycleCDR methods page).

    ``hidden``/``heads``: cycleCDR's GAT (:class:`GATEncoder`). ``mask_fraction`` 0.15, ``lr`` 1e-3, ``batch_size``
    256: Hu et al. 2020 (pretrain-gnns). ``edge_drop`` 0.2: GraphCL's augmentation ratio. ``temperature`` 0.1 and
    the projection head: MolCLR. ``max_epochs`` fits the shipped checkpoint's CPU budget.
    """

    hidden: int = 64
    heads: int = 10
    projection_dim: int = 64
    mask_fraction: float = 0.15
    edge_drop: float = 0.2
    temperature: float = 0.1
    contrastive_weight: float = 1.0
    fingerprint_weight: float = 1.0
    fingerprint_bits: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    max_epochs: int = 20
    validation_fraction: float = 0.05


DEFAULTS = PretrainDefaults()


# ------------------------------------------------------------------------------------------------------- network
class PretrainNetwork(nn.Module):
    """The GAT trunk (exactly :class:`GATEncoder`'s ``gat1``/``gat2``) with a masked-atom head and a projection head."""

    def __init__(
        self,
        *,
        hidden: int = DEFAULTS.hidden,
        heads: int = DEFAULTS.heads,
        projection_dim: int = DEFAULTS.projection_dim,
        fingerprint_bits: int = DEFAULTS.fingerprint_bits,
    ):
        super().__init__()
        self.hidden, self.heads = int(hidden), int(heads)
        self.gat1 = GraphAttentionLayer(N_ATOM_FEATURES, hidden, heads=heads, concat=True)
        self.gat2 = GraphAttentionLayer(self.gat1.out_dim, hidden, heads=1, concat=False)
        self.act = nn.ELU()
        self.atom_head = nn.Linear(hidden, N_ELEMENT_CLASSES)
        self.projection = mlp([hidden, hidden, projection_dim], activation_name="relu")
        self.fingerprint_head = nn.Linear(hidden, fingerprint_bits)

    def node_embeddings(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """The trunk, as :meth:`GATEncoder.node_embeddings` runs it."""
        return self.gat2(self.act(self.gat1(x, edge_index)), edge_index)

    def forward(self, g: GraphBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(element logits per atom, projected molecule embeddings, fingerprint logits) of a batch of graph views."""
        h = self.node_embeddings(g.x, g.edge_index)
        pooled = pool_atoms(h, g.batch, g.n_graphs)  # mean, as GATEncoder pools by default
        return self.atom_head(h), self.projection(pooled), self.fingerprint_head(pooled)

    def trunk_state(self) -> dict[str, torch.Tensor]:
        """The trunk's weights under the names :class:`GATEncoder` uses."""
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items() if k.startswith(TRUNK_PREFIXES)}


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (normalised temperature-scaled cross-entropy) of two aligned views (n, d) of n molecules."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -torch.inf)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


def element_classes(x: np.ndarray) -> np.ndarray:
    """Element class (index into :data:`ELEMENTS` + other) of each atom row of the feature matrix."""
    return np.argmax(x[:, :N_ELEMENT_CLASSES], axis=1)


def _within_two_bonds(atoms: np.ndarray, edges: np.ndarray, n: int) -> np.ndarray:
    """Mask over ``n`` atoms: ``atoms`` and every atom at most two bonds from one of them."""
    near = np.zeros(n, dtype=bool)
    near[atoms] = True
    for _ in range(max(ENVIRONMENT_RADII)):
        near[edges[1][near[edges[0]]]] = True
    return near


def graph_view(
    graphs: Sequence[MolGraph], rng: np.random.Generator, *, mask_fraction: float, edge_drop: float
) -> tuple[GraphBatch, torch.Tensor, torch.Tensor]:
    """One augmented view of ``graphs`` as a batch: (graph batch, masked atom indices, their element classes).

    ``mask_fraction`` of each molecule's atoms (at least one) get all-zero features, and the atoms within two bonds of
    them lose their environment slots (which contain the masked atom); ``edge_drop`` of all bonds are
    removed (both directions). Self loops are added to every atom, as :func:`~._drug_encoders.batch_graphs` does.
    """
    xs, edges, batch, masked = [], [], [], []
    offset = 0
    for g, graph in enumerate(graphs):
        n = graph.x.shape[0]
        x = graph.x.copy()
        n_mask = max(1, int(round(mask_fraction * n))) if mask_fraction > 0 else 0
        atoms = rng.choice(n, size=min(n_mask, n), replace=False)
        x[atoms] = 0.0
        # the environments of the atoms within two bonds contain the masked atom: hide them, or they name its element
        x[_within_two_bonds(atoms, graph.edges, n), N_OWN_ATOM_FEATURES:] = 0.0
        n_bonds = graph.edges.shape[1] // 2  # mol_graph stores every bond as i→j (first half) and j→i
        keep = rng.random(n_bonds) >= edge_drop
        keep = np.concatenate([keep, keep])
        loops = np.arange(n, dtype=np.int64)
        edges.append(np.concatenate([graph.edges[:, keep], np.stack([loops, loops])], axis=1) + offset)
        xs.append(x)
        batch.append(np.full(n, g, dtype=np.int64))
        masked.append(atoms + offset)
        offset += n
    masked = np.concatenate(masked).astype(np.int64)
    classes = element_classes(np.concatenate([graph.x for graph in graphs]))[masked]
    view = GraphBatch(
        x=torch.from_numpy(np.concatenate(xs)),
        edge_index=torch.from_numpy(np.concatenate(edges, axis=1)),
        batch=torch.from_numpy(np.concatenate(batch)),
        n_graphs=len(graphs),
    )
    return view, torch.from_numpy(masked), torch.from_numpy(classes.astype(np.int64))


def pretrain_loss(
    net: PretrainNetwork,
    graphs: Sequence[MolGraph],
    fingerprints: torch.Tensor,
    rng: np.random.Generator,
    *,
    mask_fraction: float,
    edge_drop: float,
    temperature: float,
    contrastive_weight: float,
    fingerprint_weight: float,
) -> dict[str, torch.Tensor]:
    """Masked-atom cross-entropy + ``contrastive_weight`` · NT-Xent + ``fingerprint_weight`` · fingerprint BCE.

    All three are computed on both augmented views; ``fingerprints`` (n_molecules, bits) are the 0/1 Morgan bits of
    the intact molecules. Also returns the masked-atom accuracy.
    """
    device = next(net.parameters()).device
    logits, projections, targets, bits = [], [], [], []
    for _ in range(2):
        view, masked, classes = graph_view(graphs, rng, mask_fraction=mask_fraction, edge_drop=edge_drop)
        atom_logits, z, fingerprint_logits = net(view.to(device))
        logits.append(atom_logits[masked.to(device)])
        targets.append(classes.to(device))
        projections.append(z)
        bits.append(fingerprint_logits)
    logits, targets = torch.cat(logits), torch.cat(targets)
    masked_loss = F.cross_entropy(logits, targets)
    contrastive = nt_xent(projections[0], projections[1], temperature)
    fingerprint_target = fingerprints.to(device=device, dtype=torch.float32)
    fingerprint = F.binary_cross_entropy_with_logits(torch.cat(bits), torch.cat([fingerprint_target] * 2))
    accuracy = (logits.argmax(1) == targets).float().mean()
    return {
        "loss": masked_loss + contrastive_weight * contrastive + fingerprint_weight * fingerprint,
        "masked_atom": masked_loss,
        "contrastive": contrastive,
        "fingerprint": fingerprint,
        "masked_accuracy": accuracy.detach(),
    }


# ------------------------------------------------------------------------------------------------------- the run
def parse_smiles(smiles, *, fingerprint_bits: int = DEFAULTS.fingerprint_bits):
    """The valid unique SMILES (stripped, in first-seen order), their graphs, Morgan bits, and the number invalid.

    Missing or empty entries count as invalid. Duplicates are dropped before parsing (not counted as invalid). The
    fingerprints (radius 2, ``fingerprint_bits`` bits, as :class:`~._drug_encoders.FingerprintEncoder`) are a
    (molecules × bits) uint8 array.
    """
    values = _as_list(smiles)
    unique = list(dict.fromkeys(values))
    kept, graphs, fingerprints, n_invalid = [], [], [], 0
    for i, smi in enumerate(unique):
        try:
            graph = mol_graph(f"#{i}", smi, fingerprint_bits=int(fingerprint_bits))
        except PerturbkitInputError:
            n_invalid += 1
            continue
        kept.append(str(smi).strip())
        fingerprints.append(graph.fingerprint.astype(np.uint8))  # kept apart as uint8: a quarter of the memory
        graphs.append(replace(graph, fingerprint=None))
    fingerprints = np.stack(fingerprints) if fingerprints else np.zeros((0, int(fingerprint_bits)), np.uint8)
    return kept, graphs, fingerprints, n_invalid


def _as_list(smiles) -> list:
    import pandas as pd

    if isinstance(smiles, pd.DataFrame):
        if smiles.shape[1] != 1:
            raise PerturbkitInputError(
                f"smiles is a DataFrame with {smiles.shape[1]} columns; pass one column (e.g. table['smiles'])."
            )
        smiles = smiles.iloc[:, 0]
    if isinstance(smiles, str) or not hasattr(smiles, "__iter__"):
        raise PerturbkitInputError(
            "smiles must be a sequence of SMILES strings (a list, array or pandas Series), not a single "
            f"{type(smiles).__name__}; wrap one SMILES in a list."
        )
    return [s.strip() if isinstance(s, str) else s for s in smiles]


def pretrain(
    smiles,
    *,
    hidden: int = DEFAULTS.hidden,
    heads: int = DEFAULTS.heads,
    projection_dim: int = DEFAULTS.projection_dim,
    mask_fraction: float = DEFAULTS.mask_fraction,
    edge_drop: float = DEFAULTS.edge_drop,
    temperature: float = DEFAULTS.temperature,
    contrastive_weight: float = DEFAULTS.contrastive_weight,
    fingerprint_weight: float = DEFAULTS.fingerprint_weight,
    fingerprint_bits: int = DEFAULTS.fingerprint_bits,
    lr: float = DEFAULTS.lr,
    weight_decay: float = DEFAULTS.weight_decay,
    batch_size: int = DEFAULTS.batch_size,
    max_epochs: int = DEFAULTS.max_epochs,
    validation_fraction: float = DEFAULTS.validation_fraction,
    device=None,
    seed: int | None = 0,
    progress: bool | None = None,
) -> PretrainedDrugEncoder:
    """Pretrain the GAT trunk on ``smiles`` (see :func:`perturbkit.tl.pretrain_drug_encoder` for the parameters)."""
    from ..._settings import resolve_device, seeded
    from ...train import History, Objective, fit, split_indices

    if not 0 <= mask_fraction < 1 or not 0 <= edge_drop < 1:
        raise PerturbkitInputError(
            f"mask_fraction={mask_fraction} and edge_drop={edge_drop} must be in [0, 1); the defaults are "
            f"{DEFAULTS.mask_fraction} and {DEFAULTS.edge_drop}."
        )
    if temperature <= 0:
        raise PerturbkitInputError(f"temperature={temperature} must be positive (default {DEFAULTS.temperature}).")
    kept, graphs, fingerprints, n_invalid = parse_smiles(smiles, fingerprint_bits=fingerprint_bits)
    fingerprints = torch.from_numpy(fingerprints)
    if not graphs:
        raise EmptyGroupError(
            f"none of the {len(_as_list(smiles))} SMILES is valid (RDKit parsed none of them); pass a column of "
            f"valid SMILES strings (e.g. the smiles column of the Drug Repurposing Hub sample table)."
        )
    seed_value = 0 if seed is None else int(seed)
    train_rows, val_rows = split_indices(len(graphs), validation_fraction=validation_fraction, seed=seed_value)
    if len(graphs) < 2:
        train_rows, val_rows = np.arange(len(graphs)), np.arange(0)
    device = resolve_device(device)
    with seeded(seed):
        net = PretrainNetwork(
            hidden=hidden, heads=heads, projection_dim=projection_dim, fingerprint_bits=fingerprint_bits
        ).to(device)
    options = dict(
        mask_fraction=mask_fraction,
        edge_drop=edge_drop,
        temperature=temperature,
        contrastive_weight=contrastive_weight,
        fingerprint_weight=fingerprint_weight,
    )
    rng = np.random.default_rng([seed_value, 1])  # the views of the training batches

    def loss(batch):
        ids = batch[0].cpu().numpy()
        # validation views are the same every epoch, so the monitored loss is comparable between epochs
        generator = rng if net.training else np.random.default_rng([seed_value, 2, int(ids[0]), len(ids)])
        return pretrain_loss(net, [graphs[i] for i in ids], fingerprints[ids], generator, **options)

    history = History()
    start = time.perf_counter()
    fit(
        net,
        Objective(loss, net.parameters(), lr=lr, weight_decay=weight_decay, name="pretrain"),
        (train_rows,),
        validation=(val_rows,) if len(val_rows) else None,
        max_epochs=max_epochs,
        batch_size=batch_size,
        patience=None,
        device=device,
        seed=seed,
        stage="pretrain_drug_encoder",
        history=history,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    evaluation_rows = val_rows if len(val_rows) else train_rows
    evaluation = masked_atom_accuracy(
        net, [graphs[i] for i in evaluation_rows], mask_fraction=mask_fraction, seed=seed_value
    )
    last = history.records[-1]
    metadata = {
        "atom_features_version": ATOM_FEATURES_VERSION,
        "n_atom_features": N_ATOM_FEATURES,
        "elements": list(ELEMENTS),
        "hidden": int(hidden),
        "heads": int(heads),
        "n_smiles": len(graphs),
        "n_invalid": int(n_invalid),
        "n_train": len(train_rows),
        "n_validation": len(val_rows),
        "epochs": len(history),
        "seed": seed,
        "settings": {
            "projection_dim": int(projection_dim),
            "fingerprint_bits": int(fingerprint_bits),
            **options,
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "batch_size": int(batch_size),
            "max_epochs": int(max_epochs),
            "validation_fraction": float(validation_fraction),
        },
        "final_losses": {k[len("train_") :]: float(v) for k, v in last.items() if k.startswith("train_")},
        "first_losses": {k[len("train_") :]: float(v) for k, v in history.records[0].items() if k.startswith("train_")},
        **evaluation,
        "seconds": round(seconds, 1),
        "device": str(device),
    }
    return PretrainedDrugEncoder(state=net.trunk_state(), metadata=metadata, history=list(history.records))


@torch.no_grad()
def masked_atom_accuracy(net: PretrainNetwork, graphs: Sequence[MolGraph], *, mask_fraction: float, seed: int) -> dict:
    """Accuracy of the masked-atom head on ``graphs`` (no edges dropped) and of always guessing the majority class.

    The majority class is the most common element among the masked atoms themselves (carbon, in drug-like sets),
    so the baseline is as strong as a constant guess can be.
    """
    was_training = net.training
    net.eval()
    rng = np.random.default_rng([seed, 3])
    device = next(net.parameters()).device
    correct, targets = [], []
    for start in range(0, len(graphs), 512):
        view, masked, classes = graph_view(graphs[start : start + 512], rng, mask_fraction=mask_fraction, edge_drop=0)
        logits, _, _ = net(view.to(device))
        correct.append((logits[masked.to(device)].argmax(1).cpu() == classes).numpy())
        targets.append(classes.numpy())
    net.train(was_training)
    correct, targets = np.concatenate(correct), np.concatenate(targets)
    majority = np.bincount(targets, minlength=N_ELEMENT_CLASSES).max() / max(len(targets), 1)
    return {
        "masked_accuracy": float(correct.mean()),
        "majority_accuracy": float(majority),
        "n_masked_atoms": len(targets),
    }
