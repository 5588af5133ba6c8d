"""Figures and the agreement table of the Compare page: numpy, library results in; ``go.Figure`` or a
pandas frame out; no streamlit here.

The models × methods grid is ``ui.figures.heatmap_grid`` (rows = models) with what the comparison
needs around it: row titles with each model's class, the refusal written in the cell a method left
empty, the top-5 predictions of each model in a column of the grid's height (so each row's bars face
its maps), the agreement of every pair of models, and the class visualisations side by side.
"""
from __future__ import annotations

import textwrap
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from xai_core.compare import PairAgreement
from xai_core.inversion import InversionResult

from .figures import heatmap_grid, image_grid_figure, png_data_uri
from .labels import plotly_text

ROW_TITLE_WRAP = 26  # rotated row titles: characters per line of the model's name
REFUSAL_WRAP = 30  # characters per line of a refusal written in a grid cell
BLANK_GREY = 242  # the cell of a refused map


def comparison_grid(images: Sequence[np.ndarray], maps: Sequence[Sequence[np.ndarray | None]],
                    row_labels: Sequence[tuple[str, str]], col_labels: Sequence[str],
                    refusals: Mapping[tuple[int, int], str], colormap: str, opacity: float,
                    shared_scale: bool | str, cell_px: int) -> go.Figure:
    """``heatmap_grid`` of models (rows, each over its own input) × methods. Row titles are
    ``(model, class)`` pairs, the model's name wrapped to the cell's height, the class on the last line;
    each refusal is written in its cell, over a blank of the image's size."""
    titles = [textwrap.wrap(model, ROW_TITLE_WRAP) + [target] for model, target in row_labels]
    fig = heatmap_grid(list(images), maps, ["<br>".join(lines) for lines in titles], col_labels, colormap, opacity,
                       shared_scale, cell_px)
    n_cols = len(col_labels)
    for (row, col), reason in refusals.items():
        # The blank gives the cell its axes (plotly drops the axes of an empty cell, and a note
        # referring to them would land in the first cell) and the size of the row's other cells.
        blank = np.full_like(np.asarray(images[row], dtype=np.uint8), BLANK_GREY)
        fig.add_trace(go.Image(source=png_data_uri(blank), hoverinfo="skip"), row=row + 1, col=col + 1)
        axis = "" if row * n_cols + col == 0 else str(row * n_cols + col + 1)
        fig.add_annotation(text="<br>".join(plotly_text(line) for line in textwrap.wrap(reason, REFUSAL_WRAP)),
                           showarrow=False,
                           xref=f"x{axis} domain", yref=f"y{axis} domain", x=0.5, y=0.5,
                           font=dict(size=11, color="#a33"), align="center")
    return fig


def predictions_column(predictions: Sequence[Sequence[dict]], grid: go.Figure,
                       title: str = "Top-5 predictions") -> go.Figure:
    """Each model's ``[{index, name, probability}]`` as horizontal bars, one subplot per model, laid
    out like the rows of ``grid`` (a ``comparison_grid``): same height, margins and row domains, so
    each model's bars face its maps."""
    n = len(predictions)
    title = plotly_text(title)
    fig = make_subplots(rows=n, cols=1, column_titles=[title])
    for row, top in enumerate(predictions, start=1):
        probabilities = [float(p["probability"]) for p in top]
        fig.add_trace(go.Bar(x=probabilities, y=[plotly_text(f"{p['name']} ({p['index']})") for p in top],
                             orientation="h",
                             text=[f"{q:.1%}" for q in probabilities], textposition="auto", marker_color="#4c78a8",
                             showlegend=False, hovertemplate="%{y}: %{x:.2%}<extra></extra>"), row=row, col=1)
    row_domains = sorted({tuple(axis.domain) for axis in grid.select_yaxes()}, reverse=True)  # top row first
    for row, domain in enumerate(row_domains[:n], start=1):
        fig.update_yaxes(domain=domain, row=row, col=1)
    fig.update_annotations(y=row_domains[0][1], yanchor="bottom", selector=dict(text=title))
    fig.update_xaxes(range=[0, 1], tickformat=".0%", showticklabels=False)
    fig.update_xaxes(showticklabels=True, row=n, col=1)  # one scale, under the last model's bars
    fig.update_yaxes(autorange="reversed", automargin=True)
    margin = grid.layout.margin
    fig.update_layout(margin=dict(l=10, r=10, t=margin.t, b=margin.b), height=grid.layout.height)
    return fig


def agreement_frame(rows: Sequence[PairAgreement], model_labels: Sequence[str], method_labels: Mapping[str, str],
                    percent: float) -> pd.DataFrame:
    """One line per method and pair of models: Spearman's ρ, the top-``percent`` % IoU, and why a score is blank."""
    return pd.DataFrame({
        "method": [method_labels[r.method] for r in rows],
        "models": [f"{model_labels[r.first]} · {model_labels[r.second]}" for r in rows],
        "Spearman ρ": [r.spearman for r in rows],
        f"top-{percent:g} % IoU": [r.overlap for r in rows],
        "note": [r.note for r in rows],
    })


def inversion_figure(results: Sequence[tuple[str, InversionResult]], cell_px: int = 240) -> go.Figure:
    """The image each model reached for the class, side by side, with its class score before → after."""
    images = [np.asarray(result.images[0]) for _, result in results]
    labels = [f"{label}: {result.score_start[0]:.2f} → {result.score_end[0]:.2f}"
              + (f" (stopped at {result.steps_done}/{result.steps_planned})" if result.stopped else "")
              for label, result in results]
    return image_grid_figure(images, labels, cols=max(1, len(images)), cell_px=cell_px)
