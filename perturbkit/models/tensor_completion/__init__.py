"""Tensor completion over cell line × drug × gene: FaLRTC (Liu et al. 2013) and DNPP (Hodos et al. 2018).

Both are transductive NumPy algorithms: they fill the missing (cell line, drug) profiles of one tensor and learn no
model that could be saved or applied to other data. :func:`perturbkit.tl.complete_tensor` runs them on AnnData.
"""

from dataclasses import dataclass, field

from ._dnpp import DNPPDefaults, dnpp, drug_similarity
from ._falrtc import FaLRTCDefaults, falrtc


@dataclass(frozen=True)
class TensorCompletionDefaults:
    """The defaults of both methods, each written once in its own module: ``DEFAULTS.falrtc``, ``DEFAULTS.dnpp``."""

    falrtc: FaLRTCDefaults = field(default_factory=FaLRTCDefaults)
    dnpp: DNPPDefaults = field(default_factory=DNPPDefaults)


DEFAULTS = TensorCompletionDefaults()
METHODS = ("falrtc", "dnpp")

__all__ = ["DEFAULTS", "METHODS", "TensorCompletionDefaults", "dnpp", "drug_similarity", "falrtc"]
