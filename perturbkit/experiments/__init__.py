"""The papers' experiments (``pk.experiments``): studies that train many models to reproduce a figure or table.

:mod:`pk.tl` holds the tools used in an analysis; the experiments here build on them (and on the models), and
nothing below them imports them. Each returns a tidy table that a :mod:`pk.pl` function draws.

DeepCellState (Umarov et al.):

- :func:`deepcellstate_training_size_curve`, :func:`deepcellstate_latent_size_sweep`,
  :func:`deepcellstate_ablation` (variants: :data:`DEEPCELLSTATE_ABLATIONS`), :func:`deepcellstate_fewer_profiles`.

VAEs and latent space arithmetic (Chow et al.):

- :func:`vae_shuffled_control`: the same VAE trained on real and on column-shuffled profiles.
- :func:`lsa_robustness`: retrain without the best-predicted groups and compare the LSA ranks.

cycleCDR:

- :func:`cyclecdr_ablation` (variants: :data:`CYCLECDR_ABLATIONS`): Table 1, with the baselines.
- :func:`kang_holdout`: the scGen benchmark, one PBMC cell type's IFN-β response held out.

Functions that train models take the trainer's settings as one mapping, ``train_options`` (its defaults apply to
the rest), and ``seed`` and ``device`` as their own arguments.
"""

from ._arithmetic import lsa_robustness
from ._cyclecdr import CYCLECDR_ABLATIONS, cyclecdr_ablation
from ._deepcellstate import (
    DEEPCELLSTATE_ABLATIONS,
    deepcellstate_ablation,
    deepcellstate_fewer_profiles,
    deepcellstate_latent_size_sweep,
    deepcellstate_training_size_curve,
)
from ._kang import kang_holdout
from ._vae import vae_shuffled_control

__all__ = [
    # DeepCellState
    "deepcellstate_training_size_curve",
    "deepcellstate_latent_size_sweep",
    "deepcellstate_ablation",
    "deepcellstate_fewer_profiles",
    "DEEPCELLSTATE_ABLATIONS",
    # VAEs and latent space arithmetic
    "vae_shuffled_control",
    "lsa_robustness",
    # cycleCDR
    "cyclecdr_ablation",
    "CYCLECDR_ABLATIONS",
    "kang_holdout",
]
