"""scGen (Lotfollahi, Wolf & Theis, Nature Methods 2019): latent arithmetic in a VAE of profiles.

See the scGen methods page.
"""

from ._model import ScGen
from ._module import ScGenNetwork, scgen_loss

__all__ = ["ScGen", "ScGenNetwork", "scgen_loss"]
