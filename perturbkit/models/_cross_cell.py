"""The cross-cell models' shared face: DeepCellState, the anchor VAE and the dual GAN.

They are built from per-(drug, cell line) profiles and predict one drug's profile in one cell line from its profiles
in others.
"""

from __future__ import annotations

import anndata as ad
import numpy as np

from .._schema import PerturbkitInputError, UnknownCategoryError
from ..train import BaseModel
from ._profiles import CROSS_CELL_DATA_DEFAULTS, CellDrugProfiles, cross_cell_prediction, model_profiles


class CrossCellModel(BaseModel):
    """A model of cell lines ``hparams['cell_lines']`` trained on and predicting per-(drug, cell line) profiles.

    Subclasses give their hyperparameters to ``__init__`` and call :meth:`_from_adata` from their own
    ``from_adata`` (whose signature names every option); they set :attr:`_prediction_key` (the ``uns`` key of
    :meth:`predict`'s output) and may refine :meth:`_unknown_cell_line` and :meth:`_check_profiles`.
    """

    data_defaults = dict(CROSS_CELL_DATA_DEFAULTS)
    #: ``uns`` key under which :meth:`predict` records the target and the sources
    _prediction_key: str = "cross_cell_prediction"
    #: how :meth:`cell_index`'s message tells the user to get a decoder for an unknown cell line
    _add_cell_line_hint: str = ""

    @staticmethod
    def _distinct_cell_lines(cell_lines: list[str]) -> list[str]:
        """``cell_lines`` (names), refused when empty or repeated."""
        if len(cell_lines) < 1 or len(set(cell_lines)) != len(cell_lines):
            raise PerturbkitInputError(f"cell_lines must be distinct and non-empty, got {cell_lines}.")
        return cell_lines

    @staticmethod
    def _check_weights(**weights: float) -> None:
        """Refuse loss weights that are not finite numbers ≥ 0, naming the argument."""
        for name, value in weights.items():
            if not np.isfinite(value) or value < 0:
                raise PerturbkitInputError(f"{name} must be a finite number ≥ 0, got {name}={value!r}.")

    @classmethod
    def _from_adata(cls, adata, options: dict) -> CrossCellModel:
        """The shared ``from_adata``: ``options`` are the subclass's ``from_adata`` arguments (its ``locals()``).

        The data keys and ``cell_lines`` collect the profiles (:meth:`CellDrugProfiles.from_adata`); the model is
        built for their features and cell lines with the data keys, ``layer``, ``device``, ``seed`` and the
        remaining options (the class's hyperparameters).
        """
        options = {name: value for name, value in options.items() if name not in ("cls", "adata")}
        data_keys = {name: options.pop(name) for name in CROSS_CELL_DATA_DEFAULTS}
        cell_lines, layer = options.pop("cell_lines"), options.pop("layer")
        profiles = CellDrugProfiles.from_adata(adata, cell_lines=cell_lines, layer=layer, **data_keys)
        cls._check_profiles(profiles, data_keys)
        return cls(profiles.var_names, cell_lines=profiles.cell_lines, data_keys=data_keys, layer=layer, **options)

    @classmethod
    def _check_profiles(cls, profiles: CellDrugProfiles, data_keys: dict) -> None:
        """Refuse training profiles the class cannot be built for (by default, none)."""

    @property
    def cell_lines(self) -> list[str]:
        return list(self.hparams["cell_lines"])

    def _unknown_cell_line(self, cell_line) -> str:
        """The message of :meth:`cell_index` for a cell line the model does not know."""
        return (
            f"target cell line {cell_line!r} has no decoder in this model; it knows {self.cell_lines}. Train with "
            f"that cell line included{self._add_cell_line_hint}."
        )

    def cell_index(self, cell_line) -> int:
        if str(cell_line) not in self.cell_lines:
            raise UnknownCategoryError(self._unknown_cell_line(cell_line))
        return self.cell_lines.index(str(cell_line))

    def profiles_from(self, adata, *, layer=None, cell_lines=None) -> CellDrugProfiles:
        """Per-(drug, cell line) profiles of ``adata`` in the model's gene order, built as in training."""
        return model_profiles(self, adata, layer=layer, cell_lines=cell_lines)

    @property
    def decoder_names(self) -> tuple[str, ...]:
        """One decoder per cell line."""
        return tuple(self.cell_lines)

    def predict(self, adata, *, target: str, sources=None, layer=None) -> ad.AnnData:
        """Predict profiles in cell line ``target`` from the drugs' profiles in ``sources``.

        Returns an AnnData with one row per drug measured in at least one source, in the input's units; several
        sources are each decoded and the outputs averaged. ``sources=None`` uses every cell line in ``adata`` other
        than ``target``. A source cell line the model never saw is allowed (the encoder is shared). Features are
        matched by name and the control rows are left out, with the obs keys of training (``data_keys``): data
        without the ``control_key`` column raise :class:`~perturbkit.errors.MissingColumnError`.
        """
        self.cell_index(target)
        return cross_cell_prediction(
            self, adata, target=target, sources=sources, layer=layer, uns_key=self._prediction_key
        )
