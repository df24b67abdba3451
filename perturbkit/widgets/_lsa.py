"""LSAExplorer: latent space arithmetic A − control + B, against the real A|B profile and the shuffled control."""

from __future__ import annotations

import anndata as ad
import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .._schema import MOA_SEPARATOR, OBS_KEYS, EmptyGroupError, PerturbkitInputError, require_columns
from ..models._inputs import check_model_and_data, check_trained, model_feature_names, transform_rows
from ..models.vae._arithmetic import arithmetic_table, lsa_filter
from ..tl._arithmetic import lsa_inputs
from ._base import Panel, dropdown, figure_widget, label_features, legend_right, message, set_profile_trace

_MAX_LATENT_BARS = 40


class LSAExplorer(Panel):
    """Pick A, B and the control; see ``decode(mean z(A) − mean z(control) + mean z(B))`` next to the real A|B.

    The numbers are those of :func:`perturbkit.tl.latent_arithmetic` (the same rows, filtering rules, group means,
    label permutations and seed): the L2 distance and Pearson correlation to the mean real A|B profile, the L2
    distances of the ``n_shuffles`` shuffled-label predictions, and the z-score. Any two single groups can be
    combined; only a pair measured together has a real A|B to compare with. The table of every eligible A|B (sorted
    by z) is a list: clicking a row selects that pair.

    Parameters
    ----------
    adata
        Profiles with an MOA column (two-MOA compounds labelled ``"A|B"``), e.g. min-max scaled Cell Painting.
    model
        ``None`` (the original feature space), ``"pca"`` (PCA(10) fitted on all rows), or a fitted model with
        ``transform`` / ``inverse_transform`` (a perturbkit VAE, an sklearn PCA). Features are matched to a
        model's by name, as in :func:`perturbkit.tl.latent_arithmetic`.
    moa_key, control, n_shuffles, seed, layer
        As in :func:`perturbkit.tl.latent_arithmetic`. ``moa_key`` can be any column labelled that way, e.g. drug
        names with combinations written ``"drugA|drugB"``.
    height
        Height of the figure in pixels.

    Attributes
    ----------
    figure
        FigureWidget: predicted vs real A|B profile (traces 0–1), shuffled-control L2 histogram and this L2 (2–3),
        latent vectors of A, B, control and the result (4–7).
    controls
        ``A``, ``B``, ``control`` (dropdowns) and ``table`` (a Select of the eligible pairs).
    table
        The results table, as :func:`perturbkit.tl.latent_arithmetic` returns it.
    result
        The numbers shown now (dict: group, l2, pearson, l2_shuffled, z, has_real).
    """

    def __init__(
        self,
        adata: ad.AnnData,
        *,
        model=None,
        moa_key: str = OBS_KEYS.moa_key,
        control: str = "DMSO",
        n_shuffles: int = 10,
        seed: int = 0,
        layer: str | None = None,
        height: int = 720,
    ) -> None:
        check_model_and_data(
            adata, model, function="pk.widgets.LSAExplorer", call="pk.widgets.LSAExplorer(adata, model=model)"
        )
        check_trained(model)
        require_columns(adata, {"moa_key": moa_key}, purpose="latent space arithmetic")
        groups = lsa_filter(adata.obs[moa_key].to_numpy(dtype=object), control=control)
        kept = groups.kept
        row_group = np.asarray(groups.row_group[kept], dtype=str)
        if control not in set(row_group):
            raise EmptyGroupError(
                f"no row has obs[{moa_key!r}] == {control!r}; pass control= naming the control's MOA value."
            )
        X, self.model, self.model_name = lsa_inputs(adata, model, kept, layer=layer, seed=seed)
        self.X = np.asarray(X, dtype=np.float64)
        self.Z = np.asarray(transform_rows(self.model, X), dtype=np.float64)
        self.row_group, self.n_shuffles, self.seed = row_group, int(n_shuffles), int(seed)
        self.var_names = model_feature_names(self.model, adata)
        self.table = (
            arithmetic_table(
                self.Z,
                self.X,
                row_group,
                groups.pairs[groups.pairs["eligible"]],
                self.model,
                control=control,
                n_shuffles=n_shuffles,
                seed=seed,
            )
            if groups.eligible
            else pd.DataFrame(columns=["group", "A", "B", "l2", "pearson", "z", "p"])
        )
        labels = sorted(set(row_group))
        singles = [g for g in labels if MOA_SEPARATOR not in g and g != control]
        if len(singles) < 2:
            raise EmptyGroupError(
                f"LSA needs at least two single-MOA groups besides the control; the kept rows have "
                f"{singles}. {groups.message}"
            )
        self.pairs = set(g for g in labels if MOA_SEPARATOR in g)
        ranked = self.table.sort_values("z") if len(self.table) else self.table
        first = (ranked["A"].iloc[0], ranked["B"].iloc[0]) if len(ranked) else (singles[0], singles[1])

        controls = {
            "A": dropdown("A", singles, first[0]),
            "B": dropdown("B", singles, first[1]),
            "control": dropdown("control", [g for g in labels if MOA_SEPARATOR not in g], control),
            "table": widgets.Select(
                options=[(self._row_text(r), g) for g, r in ranked.iterrows()],
                value=ranked.index[0] if len(ranked) else None,
                rows=min(10, max(2, len(ranked))),
                description="A|B results",
                style={"description_width": "initial"},
                layout=widgets.Layout(width="100%"),
            ),
        }
        for name in ("A", "B", "control"):
            controls[name].observe(lambda _: self.redraw(), names="value")
        controls["table"].observe(self._on_table, names="value")

        fig = make_subplots(
            rows=2,
            cols=2,
            specs=[[{"colspan": 2}, None], [{}, {}]],
            row_heights=[0.5, 0.5],
            vertical_spacing=0.14,
            horizontal_spacing=0.1,
            subplot_titles=("profiles (features sorted by the real A|B)", "shuffled-label control", "latent vectors"),
        )
        fig.add_trace(
            go.Bar(name="real A|B", marker_color="#9ECAE9", textposition="none", hovertemplate="%{text}: %{y:.3f}"),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                name="predicted A|B",
                mode="lines",
                line=dict(color="#E45756", width=1.5),
                hovertemplate="%{text}: %{y:.3f}",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Histogram(name="shuffled L2", marker_color="#BAB0AC", nbinsx=20, showlegend=False), row=2, col=1
        )
        fig.add_trace(
            go.Scatter(name="this L2", mode="lines", line=dict(color="#E45756", width=3), showlegend=False),
            row=2,
            col=1,
        )
        for name, colour in (
            ("A", "#4C78A8"),
            ("B", "#F58518"),
            ("control", "#54A24B"),
            ("A − control + B", "#E45756"),
        ):
            fig.add_trace(go.Bar(name=f"z: {name}", marker_color=colour), row=2, col=2)
        fig.update_layout(barmode="group")
        legend_right(fig)
        fig.update_xaxes(title_text="feature", row=1, col=1)
        fig.update_xaxes(title_text="L2 to the real A|B", row=2, col=1)
        fig.update_yaxes(title_text="shuffles", row=2, col=1)
        fig.update_xaxes(title_text="latent feature", row=2, col=2)
        self._figure = figure_widget(fig, height=height)
        self.result: dict = {}
        controls["table"].add_class("pk-monospace")
        header = message(
            f"<style>.pk-monospace select {{font-family: monospace; white-space: pre}}</style>"
            f"<b>Latent space arithmetic</b> in {self.model_name} space · {groups.message}"
        )
        super().__init__(
            [
                message(),
                header,
                widgets.HBox([controls["A"], controls["B"], controls["control"]]),
                self._figure,
                controls["table"],
            ],
            figure=self._figure,
            controls=controls,
        )
        self.redraw()

    @staticmethod
    def _row_text(row) -> str:
        return f"{row['group']:<48.48} L2 {row['l2']:8.3f}  r {row['pearson']:6.3f}  z {row['z']:7.2f}"

    def _on_table(self, change) -> None:
        if change["new"] is None:
            return
        row = self.table.loc[change["new"]]
        self.select(row["A"], row["B"])

    def select(self, a: str, b: str, control: str | None = None) -> None:
        """Choose A, B (and the control) and redraw once."""
        c = self.controls
        for name, value in (("A", a), ("B", b), ("control", control)):
            if value is not None and value not in c[name].options:
                raise PerturbkitInputError(f"{name}={value!r} is not one of the groups {list(c[name].options)}.")
        with self._muted():
            c["A"].value, c["B"].value = a, b
            if control is not None:
                c["control"].value = control
        self.redraw()

    def compute(self, a: str, b: str, control: str) -> dict:
        """Prediction, latent vectors and scores for ``a`` − ``control`` + ``b`` (numbers as in latent_arithmetic)."""
        group = MOA_SEPARATOR.join(sorted((a, b)))
        means = {g: self.Z[self.row_group == g].mean(axis=0) for g in (a, b, control)}
        latent = means[a] - means[control] + means[b]
        predicted = np.asarray(self.model.inverse_transform(latent[None, :]), dtype=np.float64)[0]
        out = {
            "group": group,
            "A": a,
            "B": b,
            "control": control,
            "latent": {"A": means[a], "B": means[b], "control": means[control], "result": latent},
            "predicted": predicted,
            "has_real": group in self.pairs and a != b,
            "real": None,
            "l2": np.nan,
            "pearson": np.nan,
            "l2_shuffled": [],
            "z": np.nan,
        }
        if out["has_real"]:
            pair = pd.DataFrame({"group": [group], "A": [min(a, b)], "B": [max(a, b)]})
            row = arithmetic_table(
                self.Z,
                self.X,
                self.row_group,
                pair,
                self.model,
                control=control,
                n_shuffles=self.n_shuffles,
                seed=self.seed,
            ).iloc[0]
            out.update(
                real=self.X[self.row_group == group].mean(axis=0),
                l2=float(row["l2"]),
                pearson=float(row["pearson"]),
                l2_shuffled=list(row["l2_shuffled"]),
                z=float(row["z"]),
            )
        return out

    def redraw(self) -> None:
        """Recompute for the chosen A, B and control and update the figure."""
        if self._muting:
            return
        with self._timed():
            c = self.controls
            r = self.result = self.compute(c["A"].value, c["B"].value, c["control"].value)
            reference = r["real"] if r["has_real"] else r["predicted"]
            order = np.argsort(-reference, kind="stable")
            latent_dims = self._latent_dims(r["latent"]["result"])
            with self._figure.batch_update():
                real, pred, hist, line = self._figure.data[:4]
                set_profile_trace(
                    real,
                    r["real"] if r["has_real"] else np.zeros(0),
                    self.var_names,
                    order if r["has_real"] else np.zeros(0, dtype=int),
                )
                set_profile_trace(pred, r["predicted"], self.var_names, order)
                label_features(self._figure.layout.xaxis, self.var_names[order])
                hist.x = r["l2_shuffled"]
                top = max(1, len(r["l2_shuffled"]) // 3)
                line.x, line.y = ([r["l2"], r["l2"]], [0, top]) if r["has_real"] else ([], [])
                spread = [*r["l2_shuffled"], r["l2"]] if r["has_real"] else []
                pad = 0.05 * (max(spread) - min(spread)) if spread else 0
                self._figure.layout.xaxis2.range = [min(spread) - pad, max(spread) + pad] if spread else None
                for trace, key in zip(self._figure.data[4:], ("A", "B", "control", "result"), strict=True):
                    trace.x, trace.y = [str(k) for k in latent_dims], r["latent"][key][latent_dims]
                self._figure.layout.title.text = (
                    f"{r['A']} − {r['control']} + {r['B']}: L2 {r['l2']:.3f}, r {r['pearson']:.3f}, z {r['z']:.2f}"
                    + self._shuffled_text(r["l2_shuffled"])
                    if r["has_real"]
                    else f"{r['A']} − {r['control']} + {r['B']}: no measured {r['group']} "
                    "to compare with (prediction only)"
                )
            self.status.value = (
                "" if r["has_real"] else f"<i>{r['group']} was not measured: the panel shows the prediction only.</i>"
            )

    @staticmethod
    def _shuffled_text(values) -> str:
        if len(values) < 2:
            return ""
        return f" (shuffled L2 {np.mean(values):.3f} ± {np.std(values, ddof=1):.3f})"

    @staticmethod
    def _latent_dims(result: np.ndarray) -> np.ndarray:
        if len(result) <= _MAX_LATENT_BARS:
            return np.arange(len(result))
        return np.sort(np.argsort(-np.abs(result), kind="stable")[:_MAX_LATENT_BARS])
