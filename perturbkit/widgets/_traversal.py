"""LatentTraversal: one slider per latent feature, the decoded profile redrawn as the sliders move."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import anndata as ad
import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .._schema import DEFAULT_KEYS, EmptyGroupError, PerturbkitInputError, UnknownCategoryError
from ..models._inputs import check_model_and_data, check_trained, model_matrix
from ._base import (
    ORDERS,
    Panel,
    dropdown,
    feature_groups,
    feature_order,
    figure_widget,
    group_colors,
    label_features,
    message,
    present_keys,
    row_means,
    set_profile_trace,
)

ZERO = "zero vector"
SAMPLE = "sample"  # start-point choice: one row, by obs name
_MAX_SAMPLE_OPTIONS = 5000  # more rows than this make a dropdown unusable; start_from_group still takes any row


def _latent_dim(model) -> int:
    dim = getattr(model, "latent_dim", None) or getattr(model, "hparams", {}).get("latent_dim")
    if not dim or not getattr(model, "decoder_names", ()):
        raise PerturbkitInputError(
            f"{type(model).__name__} has no latent interface (encode_array / decode_array / decoder_names); pass a "
            f"trained VAE, DeepCellState or CycleCDR model."
        )
    return int(dim)


def _slider_grid(low: float, high: float) -> tuple[float, float, float]:
    """Slider bounds and step on a grid of round steps (about 200 of them) that contains 0."""
    raw = (high - low) / 200
    step = float(10 ** np.floor(np.log10(raw)))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    return float(np.floor(low / step) * step), float(np.ceil(high / step) * step), step


class LatentTraversal(Panel):
    """Move latent features with sliders and watch the decoded profile change.

    The latent vector starts at zero (or at the encoding of a chosen group of rows); each slider sets one latent
    feature, the model decodes the vector, and the panel redraws the decoded profile (bars per feature, in feature
    order, sorted, or grouped by a var column such as CellProfiler's compartment × channel ``group``) and its
    difference from the start point. A dropdown picks the decoder when the model has several (DeepCellState: one
    per cell line; cycleCDR: G for treated, G' for control).

    Parameters
    ----------
    adata
        Optional profiles with the model's features: their encodings set the slider ranges and choose which latent
        features get sliders, and groups of their rows (``groupby``) can be the start point.
    model
        A trained VAE, DeepCellState or CycleCDR (anything with ``encode_array``, ``decode_array`` and
        ``decoder_names``).
    features
        Latent features with a slider (default: all when there are at most ``n_sliders``, else the ``n_sliders``
        that vary most over ``adata``'s encodings, or the first ones without data). The others stay at the start
        point's values.
    n_sliders
        How many sliders at most when ``features`` is not given.
    value_range
        ``(low, high)`` of every slider. Default: ±3 (the prior's bulk) without data; with data, each feature's
        range over the encodings, widened by a quarter on each side and always including 0 and ±3·SD (and ±3 for a
        VAE, whose prior is N(0, I)).
    groupby
        obs columns offered for the start point (default: drug, MOA and cell line, where present); ``"sample"``
        (one row, by name) is offered up to 5,000 rows.
    var_groupby
        The var column that colours and groups the features (``"auto"``: ``"group"`` when present).
    layer
        Read ``adata.layers[layer]`` instead of X.
    height
        Height of the figure in pixels.

    Notes
    -----
    DeepCellState's decoders also see their input through the skip connection: from the zero vector they get
    zeros, from a group's encoding they get that group's mean profile. The panel only reads the model and data.

    Attributes
    ----------
    figure
        The plotly FigureWidget (trace 0: decoded profile; 1: start point's profile; 2: difference).
    controls
        ``sliders`` (latent feature → FloatSlider), ``decoder``, ``order``, ``groupby``, ``group`` (dropdowns),
        ``encode``, ``zero`` and ``reset`` (buttons: start from the group's encoding, from zero, back to the start).
    """

    def __init__(
        self,
        adata: ad.AnnData | None = None,
        *,
        model,
        features: Sequence[int] | None = None,
        n_sliders: int = 16,
        value_range: tuple[float, float] | None = None,
        groupby: str | Sequence[str] | None = None,
        var_groupby: Literal["auto"] | str | None = "auto",
        layer: str | None = None,
        height: int = 560,
    ) -> None:
        check_model_and_data(
            adata,
            model,
            function="pk.widgets.LatentTraversal",
            call="pk.widgets.LatentTraversal(adata, model=model)",
            data_required=False,
        )
        check_trained(model)
        dim = _latent_dim(model)
        if adata is not None and adata.n_obs == 0:
            raise EmptyGroupError(
                "adata has no rows, so there is nothing to encode for the slider ranges and start "
                "points. Pass profiles with the model's features (check the selection that made "
                "adata), or leave adata out to traverse from the zero vector with ±3 sliders."
            )
        self.model = model
        self.var_names = pd.Index(model.var_names)
        var = getattr(model, "var_table", None)
        if var is None and adata is not None:
            var = adata.var.reindex(self.var_names)
        self.groups = feature_groups(var, var_groupby)
        self._data, self._codes, self._obs = None, None, None
        if adata is not None:
            self._data = model_matrix(model, adata, layer=layer)
            self._codes = np.asarray(model.encode_array(self._data), dtype=np.float32)
            self._obs = adata.obs
        self.features = self._choose_features(features, n_sliders, dim)
        low_high = self._ranges(value_range, dim)

        self.z = np.zeros(dim, dtype=np.float32)
        self.start = self.z.copy()
        self.start_inputs = None
        self.start_label = ZERO
        self._start_profile = None

        sliders = {}
        for k in self.features:
            lo, hi, step = _slider_grid(*low_high[k])
            sliders[k] = widgets.FloatSlider(
                value=0.0,
                min=lo,
                max=hi,
                step=step,
                description=f"latent {k}",
                continuous_update=True,
                readout_format=".2f",
                style={"description_width": "initial"},
                layout=widgets.Layout(width="320px"),
            )
            sliders[k].observe(self._on_slider, names="value")
        decoder = dropdown("decoder", model.decoder_names, disabled=len(model.decoder_names) < 2)
        order = widgets.ToggleButtons(
            options=[o for o in ORDERS if o != "grouped" or self.groups is not None],
            value="feature order",
            description="order",
            style={"button_width": "110px", "description_width": "initial"},
        )
        start_keys = (
            present_keys(self._obs, groupby or [DEFAULT_KEYS[k] for k in ("drug_key", "moa_key", "cell_key")])
            + ([SAMPLE] if len(self._obs) <= _MAX_SAMPLE_OPTIONS else [])
            if self._obs is not None
            else []
        )
        group_by = dropdown("start from", start_keys, disabled=not start_keys)
        group = dropdown("", self._group_values(group_by.value), disabled=not start_keys)
        encode = widgets.Button(
            description="encode group",
            icon="crosshairs",
            disabled=not start_keys,
            tooltip="set the latent vector to the mean encoding of the chosen rows",
        )
        zero = widgets.Button(description="zero", icon="undo", tooltip="set the latent vector to zero")
        reset = widgets.Button(
            description="back to start", icon="step-backward", tooltip="move the sliders back to the start point"
        )
        for control in (decoder, order):
            control.observe(lambda _: self.redraw(), names="value")
        group_by.observe(lambda change: setattr(group, "options", self._group_values(change["new"])), names="value")
        encode.on_click(lambda _: self.start_from_group(group_by.value, group.value))
        zero.on_click(lambda _: self.start_from_zero())
        reset.on_click(lambda _: self.set_latent(self.start))

        fig = make_subplots(
            rows=2,
            cols=1,
            shared_xaxes=True,
            row_heights=[0.6, 0.4],
            vertical_spacing=0.08,
            subplot_titles=("decoded profile", "difference from the start point"),
        )
        colors = group_colors(self.groups, len(self.var_names))
        self._colors = np.asarray(colors)
        fig.add_trace(
            go.Bar(
                name="decoded",
                marker_color=colors,
                textposition="none",
                hovertemplate="%{text}: %{y:.3f}<extra>decoded</extra>",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                name="start point",
                mode="lines",
                line=dict(color="black", width=1),
                hovertemplate="%{text}: %{y:.3f}<extra>start</extra>",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Bar(
                name="decoded − start",
                marker_color=colors,
                textposition="none",
                hovertemplate="%{text}: %{y:+.3f}<extra>difference</extra>",
            ),
            row=2,
            col=1,
        )
        fig.update_layout(showlegend=False, bargap=0)
        fig.update_xaxes(showticklabels=False, row=1, col=1)
        fig.update_xaxes(title_text="feature", row=2, col=1)
        fig.update_yaxes(title_text="value (data units)", row=1, col=1)
        fig.update_yaxes(title_text="Δ", row=2, col=1)
        self._figure = figure_widget(fig, height=height)

        slider_box = widgets.GridBox(
            list(sliders.values()), layout=widgets.Layout(grid_template_columns="repeat(3, 330px)")
        )
        start_row = widgets.HBox([group_by, group, encode, zero, reset])
        controls = {
            "sliders": sliders,
            "decoder": decoder,
            "order": order,
            "groupby": group_by,
            "group": group,
            "encode": encode,
            "zero": zero,
            "reset": reset,
        }
        super().__init__(
            [message(), widgets.HBox([decoder, order]), start_row, slider_box, self._figure],
            figure=self._figure,
            controls=controls,
        )
        self.redraw()

    # ---------------------------------------------------------------------------------------------- set-up
    def _choose_features(self, features, n_sliders: int, dim: int) -> list[int]:
        if features is not None:
            chosen = [int(k) for k in np.atleast_1d(features)]
            bad = [k for k in chosen if not 0 <= k < dim]
            if bad:
                raise PerturbkitInputError(f"latent features {bad} do not exist; the model has {dim} (0 … {dim - 1}).")
            return chosen
        if dim <= n_sliders:
            return list(range(dim))
        if self._codes is None:
            return list(range(n_sliders))
        return sorted(np.argsort(-self._codes.std(axis=0), kind="stable")[:n_sliders].tolist())

    def _ranges(self, value_range, dim: int) -> list[tuple[float, float]]:
        if value_range is not None:
            lo, hi = (float(v) for v in value_range)
            if not lo < hi:
                raise PerturbkitInputError(f"value_range must be (low, high) with low < high, got {value_range}.")
            return [(lo, hi)] * dim
        if self._codes is None:
            return [(-3.0, 3.0)] * dim
        lo, hi = self._codes.min(axis=0), self._codes.max(axis=0)
        pad = 0.25 * (hi - lo)
        sd = self._codes.std(axis=0)
        lo = np.minimum.reduce([lo - pad, -3 * sd, np.zeros(dim)])
        hi = np.maximum.reduce([hi + pad, 3 * sd, np.zeros(dim)])
        if hasattr(self.model, "sample_latent"):  # a N(0, I) prior: ±3 is its bulk
            lo, hi = np.minimum(lo, -3.0), np.maximum(hi, 3.0)
        hi = np.where(hi - lo > 0, hi, lo + 1.0)
        return [(float(a), float(b)) for a, b in zip(lo.round(3), hi.round(3), strict=True)]

    def _labels(self, key) -> np.ndarray:
        return self._obs.index.astype(str).to_numpy() if key == SAMPLE else self._obs[key].astype(str).to_numpy()

    def _group_values(self, key) -> list[str]:
        if key is None or self._obs is None:
            return []
        values = self._labels(key)
        return list(values) if key == SAMPLE else sorted(pd.unique(values))

    # ---------------------------------------------------------------------------------------------- actions
    def _on_slider(self, change) -> None:
        if self._muting:
            return
        for k, slider in self.controls["sliders"].items():
            if slider is change["owner"]:
                if abs(slider.value - self.z[k]) <= slider.step / 2:
                    return  # the browser snapping a value set from code to the slider's grid: not a move
                self.z[k] = slider.value
        self.redraw()

    def set_latent(self, values) -> None:
        """Set the whole latent vector (array of length latent_dim) or some features (``{feature: value}``).

        The sliders follow and the figure is redrawn once.
        """
        if isinstance(values, dict):
            z = self.z.copy()
            for k, v in values.items():
                z[int(k)] = v
        else:
            z = np.asarray(values, dtype=np.float32).ravel()
            if z.shape != self.z.shape:
                raise PerturbkitInputError(f"expected {len(self.z)} latent values, got {z.shape[0]}.")
        self.z = z.astype(np.float32).copy()
        with self._muted():
            for k, slider in self.controls["sliders"].items():
                slider.min, slider.max = min(slider.min, float(self.z[k])), max(slider.max, float(self.z[k]))
                slider.value = float(self.z[k])
        self.redraw()

    def start_from_zero(self) -> None:
        """Make the zero vector the start point and move there."""
        self._set_start(np.zeros_like(self.z), None, ZERO)

    def start_from_group(self, key: str, value) -> None:
        """Make the mean encoding of the rows with ``obs[key] == value`` the start point and move there.

        With ``key="sample"``: the row named ``value``.
        """
        if self._obs is None:
            raise PerturbkitInputError("the panel has no data; pass adata= to start from a group's encoding.")
        if key != SAMPLE and key not in self._obs:
            raise PerturbkitInputError(
                f"{key!r} is not an obs column; choose one of {list(self._obs.columns)} or {SAMPLE!r}."
            )
        labels = self._labels(key)
        if str(value) not in set(labels):
            raise UnknownCategoryError(f"no row has {'the name' if key == SAMPLE else f'obs[{key!r}] =='} {value!r}.")
        self._set_start(
            row_means(self._codes, labels, str(value)), row_means(self._data, labels, str(value)), f"{key} = {value}"
        )

    def _set_start(self, z, inputs, label: str) -> None:
        self.start, self.start_inputs, self.start_label = np.asarray(z, np.float32), inputs, label
        self._start_profile = None
        self.set_latent(self.start)

    # ---------------------------------------------------------------------------------------------- drawing
    def decode(self, z) -> np.ndarray:
        """The profile the chosen decoder gives for latent vector ``z`` (data units, model feature order)."""
        return self.model.decode_array(
            np.asarray(z, np.float32)[None, :], decoder=self.controls["decoder"].value, inputs=self.start_inputs
        )[0]

    @property
    def profile(self) -> pd.Series:
        """The decoded profile at the current sliders, indexed by feature."""
        return pd.Series(self.decode(self.z), index=self.var_names)

    def redraw(self) -> None:
        """Decode the current latent vector and update the figure."""
        with self._timed():
            decoder = self.controls["decoder"].value
            if self._start_profile is None or self._start_profile[0] != decoder:
                self._start_profile = (decoder, self.decode(self.start))
            start = self._start_profile[1]
            current = self.decode(self.z)
            order = feature_order(current, self.controls["order"].value, self.groups)
            moved = [f"{k}={self.z[k]:+.2f}" for k in np.flatnonzero(np.abs(self.z - self.start) > 1e-6)]
            with self._figure.batch_update():
                for i, values in enumerate((current, start, current - start)):
                    trace = self._figure.data[i]
                    set_profile_trace(trace, values, self.var_names, order)
                    if i != 1 and self.groups is not None:
                        trace.marker.color = self._colors[order]
                label_features(self._figure.layout.xaxis2, self.var_names[order])
                self._figure.layout.title.text = (
                    f"{decoder} · start: {self.start_label}"
                    f" · moved: {', '.join(moved[:6]) or 'nothing'}"
                    f"{' …' if len(moved) > 6 else ''}"
                )
