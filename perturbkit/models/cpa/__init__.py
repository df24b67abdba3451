"""CPA / chemCPA: a compositional additive latent model of drug responses (basal state + drug + cell line).

See the CPA methods page.
"""

from ._model import CPA
from ._module import CPANetwork

__all__ = ["CPA", "CPANetwork"]
