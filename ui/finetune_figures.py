"""Figures of page 7 (pure plotly): learning curves, confusion matrices, the start-vs-final table."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from xai_core.finetune import EpochRecord

from .figures import _LEGEND, _MARGIN, _PALETTE
from .labels import plotly_text

if TYPE_CHECKING:
    from .finetune_session import Snapshot

CURVES = {"accuracy": "Accuracy", "magtr": "MAGTR (Grad-CAM mass on the object)", "ce": "Cross-entropy",
          "loss": "Loss"}
"""The four panels, by ``EpochRecord`` field."""
SPLITS = {"train": "train (as seen during the epoch)", "val": "validation"}
COMPARED = {"accuracy": "accuracy", "magtr": "MAGTR", "mangtr": "MANGTR", "ce": "cross-entropy"}


def learning_curves(records: Sequence[EpochRecord], before: EpochRecord | None = None) -> go.Figure:
    """Accuracy, MAGTR, CE and loss against the epoch, one line per split; ``before`` (the validation
    scores before any step) is drawn at epoch 0, the epochs counting from 1."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=list(CURVES.values()), horizontal_spacing=0.1,
                        vertical_spacing=0.16)
    for i, (split, name) in enumerate(SPLITS.items()):
        points = [r for r in records if r.split == split]
        if split == "val" and before is not None:
            points = [before, *points]
        for panel, field in enumerate(CURVES):
            fig.add_trace(go.Scatter(x=[r.epoch + 1 for r in points], y=[getattr(r, field) for r in points],
                                     mode="lines+markers", name=name, legendgroup=split, showlegend=panel == 0,
                                     line=dict(color=_PALETTE[i])),
                          row=panel // 2 + 1, col=panel % 2 + 1)
    fig.update_xaxes(title_text="epoch (0 = before fine-tuning)", row=2)
    fig.update_layout(margin=dict(_MARGIN, t=50), height=560, legend=_LEGEND)
    return fig


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str) -> go.Figure:
    """Counts of true class (rows) × predicted class (columns), the count written in each cell."""
    names = [plotly_text(name) for name in class_names]
    fig = go.Figure(go.Heatmap(z=matrix, x=names, y=names, colorscale="Blues", showscale=False,
                               text=matrix, texttemplate="%{text}",
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    fig.update_layout(title=plotly_text(title), margin=_MARGIN, height=420, xaxis_title="predicted",
                      yaxis_title="true")
    fig.update_yaxes(autorange="reversed")
    return fig


def comparison_table(start: Snapshot, final: Snapshot) -> pd.DataFrame:
    """Validation scores (and the accuracy where the cue agrees) at the start and at the end of the run,
    and their change."""
    rows = {label: [getattr(start.record, field), getattr(final.record, field)] for field, label in COMPARED.items()}
    rows["accuracy where the cue agrees (training split)"] = [start.cue_accuracy, final.cue_accuracy]
    rows["pointing game (Grad-CAM)"] = [start.pointing_game, final.pointing_game]
    frame = pd.DataFrame(rows, index=["start", "final"]).T
    frame["change"] = frame["final"] - frame["start"]
    return frame
