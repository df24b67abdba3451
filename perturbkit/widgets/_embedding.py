"""EmbeddingExplorer: a UMAP / t-SNE / PCA scatter of profiles or of a model's latent space; click to see a profile."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import anndata as ad
import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .._schema import PerturbkitInputError, dense_matrix
from ..models._inputs import check_model_and_data, check_trained, model_matrix
from ..pl._utils import label, source_scatter
from ..tl._embedding import BASES, embed, project_reconstructions
from ._base import HOVER_KEYS, Panel, dropdown, figure_widget, message, present_keys

SPACES = ("input", "latent")
OVERLAYS = ("reconstructed", "simulated")
_AXIS = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PC"}


def _latent_key_for(model) -> str:
    return f"X_{type(model).__name__.lower()}"


class EmbeddingExplorer(Panel):
    """Scatter of an embedding of the profiles; colour by any obs column, click a point to see its profile.

    Embeddings are computed with scanpy (:func:`perturbkit.tl.embed`) the first time they are shown and cached in
    ``adata.obsm`` (``X_umap``, ``X_tsne``, ``X_pca`` for the input space; ``X_umap_vae`` etc. for a model's latent
    space, whose codes are cached as ``X_vae`` / ``X_deepcellstate`` / ``X_cyclecdr``); nothing else in ``adata``
    changes. With a model that reconstructs (a VAE, or a PCA), the ``reconstructed`` and ``simulated`` overlays show
    the VAE paper's figure: a UMAP fitted on the original profiles with the model's reconstructions and prior
    samples projected into it (:func:`perturbkit.tl.project_reconstructions`).

    Parameters
    ----------
    adata
        Profiles (rows × features).
    basis
        ``"umap"``, ``"tsne"``, ``"pca"`` or any 2-column ``obsm`` key (shown as it is).
    color
        obs column to colour by (default: MOA, else drug, else the first column); changeable in the panel.
    model
        Optional trained model: enables the latent space (its ``encode_array``) and, when it has ``transform`` /
        ``inverse_transform``, the overlays.
    latent_key
        An ``obsm`` key holding latent codes already (e.g. ``"X_vae"`` from :func:`perturbkit.tl.train_vae`).
    projection
        A precomputed :func:`perturbkit.tl.project_reconstructions` result for the overlays.
    hover_keys
        obs columns shown on hover (default: drug, MOA, dose, cell line and time, where present).
    layer, seed
        Profiles from ``adata.layers[layer]``; seed of every embedding.
    marker_size, height
        Marker size and figure height in pixels.

    Attributes
    ----------
    figure
        The scatter (FigureWidget); ``profile_figure`` shows the clicked profile.
    controls
        ``basis``, ``space``, ``color``, ``overlays`` (SelectMultiple of reconstructed / simulated).
    """

    def __init__(
        self,
        adata: ad.AnnData,
        *,
        basis: Literal["umap", "tsne", "pca"] | str = "umap",
        color: str | None = None,
        model=None,
        latent_key: str | None = None,
        projection: ad.AnnData | None = None,
        hover_keys: Sequence[str] | None = None,
        layer: str | None = None,
        seed: int = 0,
        marker_size: float = 6,
        height: int = 520,
    ) -> None:
        check_model_and_data(
            adata,
            model,
            function="pk.widgets.EmbeddingExplorer",
            call="pk.widgets.EmbeddingExplorer(adata, model=model)",
        )
        check_trained(model)
        if adata.n_obs < 3:
            raise PerturbkitInputError(f"an embedding needs at least 3 rows, got {adata.n_obs}.")
        custom = basis not in BASES
        if custom and (basis not in adata.obsm or np.asarray(adata.obsm[basis]).shape[1] < 2):
            raise PerturbkitInputError(
                f"basis must be one of {BASES} or an obsm key with ≥ 2 columns; "
                f"{basis!r} is neither (obsm has {list(adata.obsm.keys())})."
            )
        if latent_key is not None and latent_key not in adata.obsm:
            raise PerturbkitInputError(f"latent_key={latent_key!r} is not in adata.obsm ({list(adata.obsm.keys())}).")
        self.adata, self.model, self.layer, self.seed, self.marker_size = adata, model, layer, seed, marker_size
        self.latent_key = latent_key or (_latent_key_for(model) if hasattr(model, "encode_array") else None)
        self.hover_keys = present_keys(adata.obs, hover_keys or HOVER_KEYS)
        self.projection = projection
        can_overlay = projection is not None or (hasattr(model, "transform") and hasattr(model, "inverse_transform"))
        default_color = (present_keys(adata.obs, ["moa", "drug"]) or list(adata.obs.columns) or [None])[0]
        color = color or default_color
        if color is not None and color not in adata.obs:
            raise PerturbkitInputError(
                f"color={color!r} is not an obs column; choose one of {list(adata.obs.columns)}."
            )

        controls = {
            "basis": dropdown("basis", [basis] if custom else BASES, basis),
            "space": widgets.ToggleButtons(
                options=SPACES,
                value="input",
                description="space",
                disabled=self.latent_key is None,
                style={"description_width": "initial"},
            ),
            "color": dropdown("colour by", list(adata.obs.columns), color),
            "overlays": widgets.SelectMultiple(
                options=OVERLAYS if can_overlay else (),
                value=(),
                description="overlay",
                rows=2,
                disabled=not can_overlay,
                style={"description_width": "initial"},
            ),
        }
        for control in controls.values():
            control.observe(lambda _: self.redraw(), names="value")
        self._figure = figure_widget(go.Figure(), height=height)
        self.profile_figure = figure_widget(go.Figure(go.Bar(marker_color="#4C78A8")), height=300)
        self.profile_figure.update_layout(
            title_text="click a point to see its profile", xaxis_title="feature", yaxis_title="value"
        )
        self._rows: dict[str, int] = {}
        self.selected: int | None = None
        super().__init__(
            [message(), widgets.HBox(list(controls.values())), self._figure, self.profile_figure],
            figure=self._figure,
            controls=controls,
        )
        self.redraw()

    # ---------------------------------------------------------------------------------------------- data
    def _latent_codes(self) -> str:
        if self.latent_key not in self.adata.obsm:
            X = model_matrix(self.model, self.adata, layer=self.layer)
            self.adata.obsm[self.latent_key] = np.asarray(self.model.encode_array(X), dtype=np.float32)
        return self.latent_key

    def coordinates(self, basis: str, space: str) -> np.ndarray:
        """2-D coordinates of ``adata``'s rows for ``basis`` in ``space`` (computed once, cached in obsm)."""
        if basis not in BASES:
            return np.asarray(self.adata.obsm[basis])[:, :2]
        if space == "latent":
            rep = self._latent_codes()
            key = f"X_{basis}_{rep.removeprefix('X_')}"
        else:
            rep, key = None, f"X_{basis}"
        if key not in self.adata.obsm:
            self._say(f"computing the {basis} embedding of the {space} space (cached in obsm[{key!r}]) …")
        embed(self.adata, basis=basis, use_rep=rep, key_added=key, seed=self.seed, n_jobs=1)
        self._say("")
        return np.asarray(self.adata.obsm[key])[:, :2]

    def _projected(self):
        if self.projection is None:
            self._say("projecting reconstructions and simulations into a UMAP of the original profiles …")
            n_sim = self.adata.n_obs if hasattr(self.model, "sample") else 0
            self.projection = project_reconstructions(
                self.adata,
                model=self.model,
                n_simulated=n_sim,
                seed=self.seed,
                layer=self.layer,
                obs_keys=list(self.adata.obs.columns),
            )
            self._say("")
        return self.projection

    def _say(self, text: str) -> None:
        self.status.value = f"<i>{text}</i>" if text else ""

    def frame(self) -> tuple[pd.DataFrame, str]:
        """The points drawn now (columns x, y, obs, maybe ``source``; index = row ids) and the plot's title."""
        c = self.controls
        basis, space, overlays = c["basis"].value, c["space"].value, tuple(c["overlays"].value)
        if overlays:
            proj = self._projected()
            keep = proj.obs["source"].astype(str).isin(("original", *overlays)).to_numpy()
            obs, xy = proj.obs, np.asarray(proj.obsm["X_umap"])
            rows = np.flatnonzero(keep)
            title = "UMAP fitted on the original profiles; " + " and ".join(overlays) + " profiles projected into it"
        else:
            obs, xy, rows = self.adata.obs, self.coordinates(basis, space), np.arange(self.adata.n_obs)
            title = f"{_AXIS.get(basis, basis)} of the {space} space" + (
                f" ({self.latent_key})" if space == "latent" else ""
            )
        frame = obs.iloc[rows].copy()
        frame.index = rows.astype(str)
        frame["x"], frame["y"] = xy[rows, 0], xy[rows, 1]
        return frame, title

    # ---------------------------------------------------------------------------------------------- drawing
    def redraw(self) -> None:
        """Rebuild the scatter from the controls."""
        with self._timed():
            frame, title = self.frame()
            color = self.controls["color"].value
            if color not in frame.columns:
                color = "source"
            axis = _AXIS.get(self.controls["basis"].value, "") if not self.controls["overlays"].value else "UMAP"
            fig, _ = source_scatter(
                frame,
                color=color,
                marker_size=self.marker_size,
                axis_name=axis,
                hover_columns=[*self.hover_keys, color, "source"],
            )
            self._rows = {i: int(i) for i in frame.index}
            with self._figure.batch_update():
                self._figure.data = []
                self._figure.add_traces(list(fig.data))
                self._figure.layout.title.text = f"{title} · coloured by {label(color)}"
                self._figure.layout.xaxis.title.text = f"{axis}1"
                self._figure.layout.yaxis.title.text = f"{axis}2"
                self._figure.layout.legend.title.text = label(color)
            for trace in self._figure.data:
                trace.on_click(self._on_click)

    def _on_click(self, trace, points, state) -> None:
        if points.point_inds:
            self.show_profile(int(trace.ids[points.point_inds[0]]))

    def show_profile(self, row: int) -> None:
        """Show the profile of row ``row`` of the points drawn (an adata row, or a projection row with overlays)."""
        with self._timed():
            source = self.projection if self.controls["overlays"].value else None
            obs = self.adata.obs if source is None else source.obs
            if not 0 <= row < len(obs):
                raise PerturbkitInputError(f"row {row} does not exist ({len(obs)} rows).")
            X = dense_matrix(self.adata, self.layer) if source is None else np.asarray(source.X)
            names = self.adata.var_names if source is None else source.var_names
            info = [f"{label(k)}: {obs[k].iloc[row]}" for k in (*self.hover_keys, "source") if k in obs.columns]
            self.selected = row
            with self.profile_figure.batch_update():
                bar = self.profile_figure.data[0]
                bar.x, bar.y = np.asarray(names, dtype=str), np.asarray(X[row], dtype=float)
                self.profile_figure.layout.title.text = f"{obs.index[row]} · " + ", ".join(info)
