"""cycleCDR (Huang, Zhu, Liu): cycle-consistent prediction of drug responses, for unseen drugs.

See the cycleCDR methods page.
"""

from .._pairing import control_profiles, random_controls
from ._model import CycleCDR
from ._module import CycleCDRNetwork

__all__ = ["CycleCDR", "CycleCDRNetwork", "control_profiles", "random_controls"]
