"""Pretrained GAT trunk weights: the checkpoint object, its file format, and the checkpoint shipped with perturbkit.

Kept apart from the pretraining run (:mod:`._pretrain`) so that the drug encoders can load a checkpoint without
importing the pretraining code, which itself builds on the encoders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..._atomic import atomic_write
from ..._schema import ModelFileError, PerturbkitInputError

FORMAT_NAME = "perturbkit-drug-encoder"
FORMAT = f"{FORMAT_NAME}/1"
#: The checkpoint that ships with perturbkit (built by scripts/pretrain_drug_encoder.py).
SHIPPED_PATH = Path(__file__).resolve().parents[2] / "data" / "drug_encoder_gat.pt"


# ------------------------------------------------------------------------------------------------------- result
@dataclass
class PretrainedDrugEncoder:
    """Pretrained GAT trunk weights and their record; ``GATEncoder(..., pretrained=this)`` starts from them.

    Attributes
    ----------
    state
        The trunk's weights (``gat1.*``, ``gat2.*``), as in :class:`GATEncoder`'s state dict.
    metadata
        ``atom_features_version``, ``n_atom_features``, ``hidden``, ``heads``, the number of SMILES used and
        skipped, epochs, seed, the settings, the final losses, the held-out masked-atom accuracy and the
        majority-class accuracy on the same atoms, and the training seconds.
    history
        One record per epoch (the engine's :class:`~perturbkit.train.History` records).
    """

    state: dict[str, torch.Tensor]
    metadata: dict
    history: list[dict] = field(default_factory=list)

    @property
    def hidden(self) -> int:
        return int(self.metadata["hidden"])

    @property
    def heads(self) -> int:
        return int(self.metadata["heads"])

    @property
    def n_invalid(self) -> int:
        """How many SMILES were skipped because RDKit cannot parse them."""
        return int(self.metadata["n_invalid"])

    def initialise(self, encoder) -> None:
        """Copy the trunk weights into ``encoder``'s GAT layers (its sizes must match)."""
        if self.metadata.get("atom_features_version") != encoder.atom_features_version:
            raise PerturbkitInputError(
                f"this pretrained drug encoder was made for atom feature layout version "
                f"{self.metadata.get('atom_features_version')}, but this perturbkit uses "
                f"{encoder.atom_features_version}. "
                f"Pretrain again with pk.tl.pretrain_drug_encoder."
            )
        sizes = (int(encoder.options["hidden"]), encoder.gat1.heads)
        if sizes != (self.hidden, self.heads):
            raise PerturbkitInputError(
                f"the pretrained drug encoder has hidden={self.hidden}, heads={self.heads}, but the GAT was built with "
                f"hidden={sizes[0]}, heads={sizes[1]}; build the GAT with the pretrained sizes."
            )
        own = encoder.state_dict()
        with torch.no_grad():
            for key, value in self.state.items():
                own[key].copy_(value)

    def save(self, path) -> Path:
        """Write the weights and metadata to ``path`` (atomically: a failed write leaves an existing file intact)."""
        path = Path(path)
        payload = {
            "format": FORMAT,
            "state": {k: v.detach().cpu().contiguous() for k, v in self.state.items()},
            "metadata": _plain(self.metadata),
            "history": _plain(self.history),
        }
        with atomic_write(path) as tmp:
            torch.save(payload, tmp)
        return path

    @classmethod
    def load(cls, path) -> PretrainedDrugEncoder:
        """Read a file written by :meth:`save` (plain data only: ``torch.load(weights_only=True)``)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no pretrained drug encoder at {path}.")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ModelFileError(
                f"{path} could not be read as a pretrained drug encoder ({type(error).__name__}); it is damaged or "
                f"of another kind. Write it again with PretrainedDrugEncoder.save."
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ModelFileError(f"{path} is not a pretrained drug encoder file (expected format {FORMAT!r}).")
        return cls(state=dict(payload["state"]), metadata=dict(payload["metadata"]), history=list(payload["history"]))

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"PretrainedDrugEncoder(hidden={m['hidden']}, heads={m['heads']}, n_smiles={m['n_smiles']}, "
            f"epochs={m['epochs']}, masked_accuracy={m.get('masked_accuracy')}, "
            f"majority_accuracy={m.get('majority_accuracy')})"
        )


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


_SHIPPED: PretrainedDrugEncoder | None = None


def load_pretrained(pretrained) -> PretrainedDrugEncoder:
    """``pretrained`` as a :class:`PretrainedDrugEncoder`: the object itself, a saved file, or ``"shipped"``."""
    global _SHIPPED
    if isinstance(pretrained, PretrainedDrugEncoder):
        return pretrained
    if isinstance(pretrained, str) and pretrained == "shipped":
        if _SHIPPED is None:
            if not SHIPPED_PATH.exists():
                raise FileNotFoundError(
                    f"perturbkit's pretrained drug encoder {SHIPPED_PATH} is missing (a broken install?); reinstall "
                    f"perturbkit, or build it with scripts/pretrain_drug_encoder.py."
                )
            _SHIPPED = PretrainedDrugEncoder.load(SHIPPED_PATH)
        return _SHIPPED
    if isinstance(pretrained, (str, Path)):
        return PretrainedDrugEncoder.load(pretrained)
    raise PerturbkitInputError(
        f"pretrained={type(pretrained).__name__} is not a pretrained drug encoder; pass the result of "
        f"pk.tl.pretrain_drug_encoder, the path of its saved file, or 'shipped'."
    )
