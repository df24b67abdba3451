"""ResponseExplorer: a drug's input, predicted and measured profiles, for DeepCellState and cycleCDR."""

from __future__ import annotations

import anndata as ad
import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .._schema import PerturbkitInputError, numeric_column
from .._stats import pearson_rows
from ..metrics import r2_rows
from ..models._inputs import check_model_and_data, check_trained
from ..models._profiles import model_profiles
from ..models.baselines import control_means
from ._base import Panel, dropdown, figure_widget, legend_right, message

COLOURS = {"input": "#BAB0AC", "predicted": "#E45756", "measured": "#4C78A8"}


def _kind(model) -> str:
    name = type(model).__name__
    if name not in ("DeepCellState", "CycleCDR"):
        raise PerturbkitInputError(f"ResponseExplorer takes a DeepCellState or CycleCDR model, got {name}.")
    return name


class ResponseExplorer(Panel):
    """Pick a drug, a source and a target; compare the input, predicted and measured profiles.

    DeepCellState: the input is the drug's profile in the source cell line, the prediction its decoding into the
    target cell line, the measurement the drug's profile there. cycleCDR: the input is the source cell line's mean
    control profile, the prediction ``G(F(control) + drug embedding)`` (drugs the model never saw are embedded from
    ``obs[smiles_key]``), the measurement the drug's mean treated profile in that cell line (target = source).
    Profiles are averaged over doses, times and replicates, as in training.

    The left plot shows the ``n_genes`` genes that the measured response moves most (or the prediction, when the
    target was not measured); the right one every gene, predicted against measured, with the Pearson correlation
    and r² (clipped at 0, as in :func:`perturbkit.metrics.evaluate_response`) of the prediction and, for reference,
    of the input.

    Parameters
    ----------
    adata
        Profiles with the model's genes and its drug and cell-line columns (and, for cycleCDR, the controls and
        ``obs[smiles_key]``).
    model
        A trained DeepCellState or CycleCDR.
    layer
        Read ``adata.layers[layer]`` instead of X.
    n_genes
        How many genes the left plot shows.
    height
        Height of the figure in pixels.

    Attributes
    ----------
    figure
        FigureWidget: bars of input, predicted, measured (traces 0–2); gene scatter (3) and identity line (4).
    controls
        ``drug``, ``source`` and ``target`` dropdowns.
    result
        The profiles and scores shown now (dict).

    Examples
    --------
    >>> pk.widgets.ResponseExplorer(test, model=model)
    """

    def __init__(
        self, adata: ad.AnnData, *, model, layer: str | None = None, n_genes: int = 40, height: int = 520
    ) -> None:
        check_model_and_data(
            adata, model, function="pk.widgets.ResponseExplorer", call="pk.widgets.ResponseExplorer(adata, model=model)"
        )
        self.kind = _kind(model)
        check_trained(model)
        self.model, self.n_genes = model, int(n_genes)
        keys = model.hparams["data_keys"]
        self.data_keys = keys
        self.profiles = model_profiles(model, adata, layer=layer)
        self.genes = pd.Index(model.var_names)
        if self.kind == "CycleCDR":
            means = control_means(adata, control_key=keys["control_key"], cell_key=keys["cell_key"], layer=layer)
            self.controls_by_cell = dict(zip(means.obs_names, model.feature_matrix(means), strict=True))
            smiles_key = keys.get("smiles_key")
            self.smiles = (
                {}
                if smiles_key not in adata.obs
                else dict(zip(adata.obs[keys["drug_key"]].astype(str), adata.obs[smiles_key].astype(str), strict=True))
            )
            self.doses = self._median_doses(adata) if model.hparams.get("use_dose") else None
        drugs = list(self.profiles.drugs)
        controls = {"drug": dropdown("drug", drugs), "source": dropdown("source", []), "target": dropdown("target", [])}
        controls["target"].disabled = self.kind == "CycleCDR"  # cycleCDR predicts within the source cell line
        controls["drug"].observe(lambda _: self._on_drug(), names="value")
        controls["source"].observe(lambda _: self._on_source(), names="value")
        controls["target"].observe(lambda _: self.redraw(), names="value")

        fig = make_subplots(
            rows=1,
            cols=2,
            column_widths=[0.6, 0.4],
            horizontal_spacing=0.08,
            subplot_titles=(f"top {self.n_genes} responding genes", "all genes"),
        )
        for name, colour in COLOURS.items():
            fig.add_trace(go.Bar(name=name, marker_color=colour, hovertemplate="%{x}: %{y:.3f}"), row=1, col=1)
        fig.add_trace(
            go.Scattergl(
                name="genes",
                mode="markers",
                marker=dict(size=4, color="#4C78A8", opacity=0.6),
                text=self.genes.to_numpy(),
                showlegend=False,
                hovertemplate="%{text}<br>measured %{x:.3f}<br>predicted %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=2,
        )
        fig.add_trace(
            go.Scatter(
                name="y = x",
                mode="lines",
                line=dict(color="black", dash="dot", width=1),
                showlegend=False,
                hoverinfo="skip",
            ),
            row=1,
            col=2,
        )
        fig.update_layout(barmode="group")
        legend_right(fig)
        fig.update_xaxes(title_text="measured", row=1, col=2)
        fig.update_yaxes(title_text="predicted", row=1, col=2)
        fig.update_yaxes(title_text="expression (data units)", row=1, col=1)
        self._figure = figure_widget(fig, height=height)
        self.result: dict = {}
        super().__init__(
            [message(), widgets.HBox(list(controls.values())), self._figure], figure=self._figure, controls=controls
        )
        self._on_drug()

    def _median_doses(self, adata) -> dict:
        keys = self.data_keys
        doses = pd.Series(numeric_column(adata, keys["dose_key"]), index=adata.obs[keys["drug_key"]].astype(str))
        return doses.groupby(level=0).median().to_dict()

    # ---------------------------------------------------------------------------------------------- options
    def source_options(self, drug) -> list[str]:
        d = self.profiles.drugs.get_loc(drug)
        if self.kind == "DeepCellState":
            return [str(c) for c, p in zip(self.profiles.cell_lines, self.profiles.present[d], strict=True) if p]
        return [c for c in self.controls_by_cell if c in self.profiles.cell_lines]

    def target_options(self, source) -> list[str]:
        if self.kind == "CycleCDR":
            return [source]
        return [c for c in self.model.cell_lines if c != source]

    def _offer(self, name: str, options: list[str]) -> None:
        """Set a dropdown's options, keeping its value when it is still one of them."""
        control = self.controls[name]
        previous = control.value
        control.options = options
        if options:
            control.value = previous if previous in options else options[0]

    def _on_drug(self) -> None:
        if self._muting:
            return
        c = self.controls
        with self._muted():
            self._offer("source", self.source_options(c["drug"].value))
            self._offer("target", self.target_options(c["source"].value))
        self.redraw()

    def _on_source(self) -> None:
        if self._muting:
            return
        with self._muted():
            self._offer("target", self.target_options(self.controls["source"].value))
        self.redraw()

    def select(self, drug, source=None, target=None) -> None:
        """Choose a drug (and source / target) from code; redraws once."""
        c = self.controls
        if drug not in c["drug"].options:
            raise PerturbkitInputError(
                f"drug {drug!r} has no treated profile in the data; e.g. {list(c['drug'].options)[:8]}."
            )
        with self._muted():
            c["drug"].value = drug
            self._offer("source", self.source_options(drug))
            for name, value in (("source", source), ("target", target)):
                if name == "target":
                    self._offer("target", self.target_options(c["source"].value))
                if value is not None:
                    if value not in c[name].options:
                        raise PerturbkitInputError(
                            f"{name}={value!r} is not available for {drug!r}; choose one of {list(c[name].options)}."
                        )
                    c[name].value = value
        self.redraw()

    # ---------------------------------------------------------------------------------------------- numbers
    def compute(self, drug: str, source: str, target: str) -> dict:
        """Input, predicted and measured profiles of ``drug`` (model gene order) and the scores."""
        P = self.profiles
        d = P.drugs.get_loc(drug)
        if self.kind == "DeepCellState":
            x = P.values[d, P.cell_index(source)]
            predicted = self.model.predict_array(x[None, :], target=target)[0]
        else:
            x = self.controls_by_cell[source]
            dose = None if self.doses is None else [self.doses[drug]]
            predicted = self.model.predict_array(x[None, :], [drug], smiles=self.smiles, doses=dose)[0]
        measured = None
        if target in P.cell_lines and P.present[d, P.cell_index(target)]:
            measured = P.values[d, P.cell_index(target)]
        out = {
            "drug": drug,
            "source": source,
            "target": target,
            "input": np.asarray(x, float),
            "predicted": np.asarray(predicted, float),
            "measured": measured,
        }
        if measured is not None:
            pair = np.stack([predicted, x]).astype(float)
            truth = np.stack([measured, measured]).astype(float)
            (out["pcc"], out["pcc_input"]) = pearson_rows(pair, truth)
            (out["r2"], out["r2_input"]) = r2_rows(pair, truth)
        return out

    def redraw(self) -> None:
        """Recompute for the chosen drug, source and target and update the figure."""
        c = self.controls
        if self._muting or c["target"].value is None:
            return
        with self._timed():
            try:
                r = self.result = self.compute(c["drug"].value, c["source"].value, c["target"].value)
            except PerturbkitInputError as error:  # e.g. an unseen drug without SMILES
                self.status.value = f"<b>Cannot predict:</b> {error}"
                return
            moved = (r["measured"] if r["measured"] is not None else r["predicted"]) - r["input"]
            top = np.argsort(-np.abs(moved), kind="stable")[: self.n_genes]
            names = self.genes.to_numpy()[top]
            with self._figure.batch_update():
                for trace, key in zip(self._figure.data[:3], ("input", "predicted", "measured"), strict=True):
                    values = r[key]
                    trace.x, trace.y = (names, values[top]) if values is not None else ([], [])
                scatter, line = self._figure.data[3:5]
                if r["measured"] is not None:
                    scatter.x, scatter.y = r["measured"], r["predicted"]
                    lo, hi = (
                        float(min(r["measured"].min(), r["predicted"].min())),
                        float(max(r["measured"].max(), r["predicted"].max())),
                    )
                    line.x, line.y = [lo, hi], [lo, hi]
                else:
                    scatter.x = scatter.y = line.x = line.y = []
                where = (
                    f"{r['source']} → {r['target']}"
                    if self.kind == "DeepCellState"
                    else f"{r['source']} control + drug"
                )
                scores = (
                    (
                        f" · prediction PCC {r['pcc']:.3f}, r² {r['r2']:.3f} · input PCC {r['pcc_input']:.3f}, "
                        f"r² {r['r2_input']:.3f}"
                    )
                    if r["measured"] is not None
                    else ""
                )
                self._figure.layout.title.text = f"{r['drug']}: {where}{scores}"
            self.status.value = (
                ""
                if r["measured"] is not None
                else f"<i>{r['drug']} was not measured in {r['target']}: the panel shows the prediction only.</i>"
            )
