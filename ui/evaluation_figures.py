"""Pure builders of the Evaluate page's tables and figures: evaluation results in, a pandas
``DataFrame`` or a plotly ``go.Figure`` out; no streamlit here.

Names reach these builders as ``labels`` (registry name → label), so the tables and figures
show what the widgets show.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from xai_core.evaluation import ROW_COLUMNS, MeanCurve
from xai_core.metrics import Metric

from .figures import _LEGEND, _MARGIN, _PALETTE, line_figure

DISTRIBUTION_KINDS = ("box", "violin")
DISTRIBUTION_COLUMNS = 3
"""Subplots per row of the per-image distributions (one per metric)."""
ALL_POINTS_UP_TO = 200
"""Per-image points are drawn next to each box up to this many images; beyond, only the outliers."""
CURVE_AXES = {
    "faithfulness": ("fraction of the pixels, in order of saliency", "probability of the true class"),
    "sanity": ("layers randomised, cumulatively from the top", "similarity with the original map"),
}
"""The axis titles of a metric family's curves (deletion/insertion; cascading randomisation)."""


def direction(higher_is_better: bool) -> str:
    """The arrow shown next to a metric: ↑ when higher is better, ↓ when lower is."""
    return "↑" if higher_is_better else "↓"


def summary_frame(summary: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> pd.DataFrame:
    """One row per method × metric (``EvaluationResult.summary``): mean, 95 % interval, n, direction."""
    return pd.DataFrame([{"Method": labels[s["method"]], "Metric": labels[s["metric"]],
                          "Better": "higher ↑" if s["higher_is_better"] else "lower ↓",
                          "Mean": s["mean"], "95% CI low": s["ci_low"], "95% CI high": s["ci_high"], "n": s["n"]}
                         for s in summary])


def rows_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The per-image rows (``ROW_COLUMNS``) as a frame, in their order: what the CSV download holds."""
    return pd.DataFrame(list(rows), columns=list(ROW_COLUMNS))


def per_image_frame(rows: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> pd.DataFrame:
    """One row per image (index, id, label), one column per method · metric score."""
    frame = rows_frame(rows)
    frame["score of"] = [f"{labels[m]} · {labels[k]}" for m, k in zip(frame["method"], frame["metric"])]
    wide = frame.pivot(index=["index", "image", "label"], columns="score of", values="score")
    return wide[list(dict.fromkeys(frame["score of"]))].reset_index().rename_axis(columns=None)


def score_distributions(rows: Sequence[Mapping[str, Any]], methods: Sequence[str], metrics: Sequence[Metric],
                        labels: Mapping[str, str], kind: str = "box") -> go.Figure:
    """Per-image scores: one subplot per metric (its own scale), one box or violin per method.

    NaN scores (the metric undefined on that image) are left out, as in the means.
    """
    if kind not in DISTRIBUTION_KINDS:
        raise ValueError(f"Unknown distribution plot '{kind}'; choose one of {', '.join(DISTRIBUTION_KINDS)}.")
    scores: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if math.isfinite(row["score"]):
            scores.setdefault((row["method"], row["metric"]), []).append(row["score"])
    columns = min(DISTRIBUTION_COLUMNS, len(metrics))
    grid_rows = -(-len(metrics) // columns)
    fig = make_subplots(grid_rows, columns, subplot_titles=[f"{labels[m.name]} {direction(m.higher_is_better)}"
                                                            for m in metrics], vertical_spacing=0.12)
    images = len({row["index"] for row in rows})
    points = "all" if images <= ALL_POINTS_UP_TO else "outliers"
    for i, metric in enumerate(metrics):
        for j, method in enumerate(methods):
            values = scores.get((method, metric.name), [])
            style = dict(y=values, name=labels[method], legendgroup=method, showlegend=i == 0,
                         marker_color=_PALETTE[j % len(_PALETTE)], hovertemplate="%{y:.4g}<extra>%{fullData.name}"
                                                                                  "</extra>")
            trace = (go.Box(boxpoints=points, jitter=0.4, pointpos=0, **style) if kind == "box"
                     else go.Violin(points=points, box_visible=True, meanline_visible=True, **style))
            fig.add_trace(trace, row=i // columns + 1, col=i % columns + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(margin=_MARGIN, height=80 + 300 * grid_rows, legend=_LEGEND, boxmode="group")
    return fig


def metric_curves_figure(metric: Metric, curves: Mapping[str, MeanCurve], labels: Mapping[str, str]) -> go.Figure:
    """The mean curve of ``metric`` for each method (``method -> MeanCurve``): deletion or insertion
    probabilities over the fraction of pixels, or the sanity check's similarity per randomised layer."""
    x_title, y_title = CURVE_AXES[metric.family]
    x = next(iter(curves.values())).x
    series = {f"{labels[method]} (n = {curve.n})": np.asarray(curve.mean, dtype=np.float64).tolist()
              for method, curve in curves.items()}
    x_values = [f"{v:.3g}" if isinstance(v, float) else v for v in x] if metric.family == "sanity" else x
    return line_figure(x_values, series, x_title, y_title, title=f"{labels[metric.name]}: mean curve per method",
                       markers=len(x) <= 64)
