"""Where an early-stopping (tolerance) run stopped, drawn on a convergence curve."""
from __future__ import annotations

import plotly.graph_objects as go


def mark_stop(fig: go.Figure, used: int, label: str) -> go.Figure:
    """Add a dashed vertical line at ``used`` (the count a tolerance run stopped at) to ``fig``."""
    fig.add_vline(x=used, line_dash="dash", line_color="grey", annotation_text=label,
                  annotation_position="top right")
    return fig
