"""The method catalogue as text: the README's method table and the CLI's method list are
generated here from the registry, so a method registered with one line is documented too."""
from __future__ import annotations

from .base import BASE_PREFIX, FAMILIES, Method
from .registry import METHODS


def parameter_lines(method: Method) -> list[str]:
    """``name: range (default d) — help`` for each parameter, the base's as ``base.NAME``."""
    lines = [f"{name}: {p.describe()} — {p.help}" for name, p in method.params.items()]
    if method.bases is not None:
        lines.append(f"{BASE_PREFIX}NAME: the chosen base method's parameters")
    return lines


def _cell(method: Method) -> str:
    names = [f"`{name}` {p.describe()}" for name, p in method.params.items()]
    if method.bases is not None:
        names.append(f"`{BASE_PREFIX}NAME`: the base's parameters")
    return "<br>".join(names).replace("|", "\\|") or "—"


def markdown_table() -> str:
    """The README's method table: one row per registered method, grouped by family."""
    rows = ["| family | `--method` | method | parameters | reference (parity tests) |",
            "|---|---|---|---|---|"]
    for family, title in FAMILIES.items():
        for m in (m for m in METHODS.values() if m.family == family):
            label = m.label.replace("|", "\\|") + (" (class-agnostic)" if m.class_agnostic else "")
            rows.append(f"| {title} | `{m.name}` | {label} | {_cell(m)} | {m.reference} |")
    return "\n".join(rows)
