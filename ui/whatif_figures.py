"""Pure builders of the What-if page's views: the editable image, the before/after table.

The image is a ``go.Image`` (pixel (r, c) centred at (x = c, y = r), the edit coordinates of
``xai_core.edits``) under a scatter of invisible markers at the grid cells' centres: plotly images emit
no points on a click, the markers do, so a click toggles a cell while box and lasso select regions.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from xai_core import render

from .figures import png_data_uri

def editable_image_figure(image: np.ndarray, region: np.ndarray, cell: int, title: str | None = None) -> go.Figure:
    """The image with the edited region outlined, box/lasso selection on, a clickable cell grid."""
    h, w = image.shape[:2]
    shown = render.draw_outlines(image, {"edited region": region}, size=(h, w)) if region.any() else image
    rows, cols = np.meshgrid(np.arange(0, h, cell), np.arange(0, w, cell), indexing="ij")
    centres = go.Scatter(x=(cols + (cell - 1) / 2).ravel(), y=(rows + (cell - 1) / 2).ravel(), mode="markers",
                         marker=dict(size=max(4, cell), opacity=0.01, color="white"),
                         customdata=np.stack([rows.ravel() // cell, cols.ravel() // cell], axis=1),
                         hovertemplate="cell row %{customdata[0]}, column %{customdata[1]}<extra></extra>")
    fig = go.Figure([go.Image(source=png_data_uri(shown), hoverinfo="skip"), centres])
    fig.update_layout(title=title, dragmode="select", margin=dict(l=0, r=0, t=30 if title else 0, b=0),
                      height=420, showlegend=False)
    fig.update_xaxes(visible=False, range=[-0.5, w - 0.5])
    fig.update_yaxes(visible=False, range=[h - 0.5, -0.5], scaleanchor="x")
    return fig


def change_table(rows: Sequence[dict]) -> pd.DataFrame:
    """``xai_core.edits.prediction_change`` rows as the before/after table (RIG's occlusion table)."""
    return pd.DataFrame([{"class": r["name"], "rank before": r["rank_before"], "rank after": r["rank_after"],
                          "logit before": r["logit_before"], "logit after": r["logit_after"],
                          "Δ logit": r["logit_change"], "p before": r["probability_before"],
                          "p after": r["probability_after"], "Δ p": r["probability_change"]} for r in rows])


def pixel_table(report: dict[str, dict]) -> pd.DataFrame:
    """``xai_core.edits.pixel_report`` as a table: one row per map."""
    return pd.DataFrame([{"map": name, "value": r["value"], "percentile": r["percentile"], "rank": r["rank"]}
                         for name, r in report.items()])
