"""The README's metric table, generated from the metric registry (as the method table is)."""
from __future__ import annotations

from .base import FAMILIES
from .registry import METRICS


def markdown_table() -> str:
    """One row per registered metric, grouped by family, with its parameters and reference."""
    rows = ["| family | `--metrics` | metric | better | parameters | reference (parity tests) |",
            "|---|---|---|---|---|---|"]
    for family in FAMILIES:
        for m in (m for m in METRICS.values() if m.family == family):
            params = "<br>".join(f"`{name}` {p.describe()}" for name, p in m.params.items()).replace("|", "\\|")
            better = "higher" if m.higher_is_better else "lower"
            rows.append(f"| {family} | `{m.name}` | {m.label} | {better} | {params or '—'} | {m.reference} |")
    return "\n".join(rows)
