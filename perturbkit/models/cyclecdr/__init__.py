"""cycleCDR (Huang, Zhu, Liu): cycle-consistent prediction of drug responses, for unseen drugs (methods.md §3)."""

from ._model import CycleCDR
from ._module import CycleCDRNetwork
from .._pairing import control_profiles, random_controls

__all__ = ["CycleCDR", "CycleCDRNetwork", "control_profiles", "random_controls"]
