"""The report: views captured with their provenance, kept in ``st.session_state`` for the session.

Items are immutable records; the list operations are pure functions (new list out), so they are
tested without streamlit and the Report page only stores what they return.
"""
from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

MAX_ITEMS = 60
MAX_BYTES = 80 * 2**20
FIGURE, TABLE = "figure", "table"
_STATE = "xai.report"


class ReportFull(ValueError):
    """Adding the item would pass the report's bounds; the message says which and what to do."""


@dataclasses.dataclass(frozen=True)
class ReportItem:
    """One captured view: a plotly figure (as its JSON) or a table (records and columns)."""
    title: str
    kind: str                        # FIGURE or TABLE
    figure_json: str | None          # plotly JSON (``fig.to_json()``) for figures
    columns: tuple[str, ...]         # tables: column names, in order
    records: tuple[dict, ...]        # tables: one dict per row
    png: bytes | None                # the library-rendered PNG, when the view has one (heatmap grids)
    provenance: Mapping[str, str]
    note: str = ""
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def size(self) -> int:
        """Approximate bytes held (the bound is on memory, not exact)."""
        table = sum(len(str(v)) for row in self.records for v in row.values())
        return len(self.figure_json or "") + len(self.png or b"") + table

    def figure(self) -> go.Figure:
        return pio.from_json(self.figure_json)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.records), columns=list(self.columns))


def figure_item(fig: go.Figure, title: str, prov: Mapping[str, str], png: bytes | None = None) -> ReportItem:
    return ReportItem(title=title, kind=FIGURE, figure_json=fig.to_json(), columns=(), records=(), png=png,
                      provenance=dict(prov))


def table_item(frame: pd.DataFrame, title: str, prov: Mapping[str, str]) -> ReportItem:
    """A table item; the index, when it carries labels, becomes the first column."""
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()
    frame = frame.copy()
    frame.columns = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in frame.columns]
    records = tuple({k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records"))
    return ReportItem(title=title, kind=TABLE, figure_json=None, columns=tuple(frame.columns), records=records,
                      png=None, provenance=dict(prov))


def _plain(value: Any) -> Any:
    """numpy scalars as Python's, so records stay plain data."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


# ------------------------------------------------------------------ pure list operations
def add(items: Sequence[ReportItem], item: ReportItem, *, max_items: int = MAX_ITEMS,
        max_bytes: int = MAX_BYTES) -> list[ReportItem]:
    if len(items) >= max_items:
        raise ReportFull(f"The report holds at most {max_items} items: remove some on the Report page first.")
    used = sum(i.size for i in items)
    if used + item.size > max_bytes:
        raise ReportFull(f"The report would pass {max_bytes / 2**20:.0f} MB ({used / 2**20:.1f} MB used, this item "
                         f"{item.size / 2**20:.1f} MB): remove some items on the Report page first.")
    return [*items, item]


def move(items: Sequence[ReportItem], index: int, delta: int) -> list[ReportItem]:
    """The item at ``index`` moved ``delta`` places (-1: up), clamped to the list's ends."""
    moved = list(items)
    target = min(max(index + delta, 0), len(moved) - 1)
    moved.insert(target, moved.pop(index))
    return moved


def remove(items: Sequence[ReportItem], index: int) -> list[ReportItem]:
    return [item for i, item in enumerate(items) if i != index]


def set_note(items: Sequence[ReportItem], index: int, note: str) -> list[ReportItem]:
    return [dataclasses.replace(item, note=note) if i == index else item for i, item in enumerate(items)]


# ------------------------------------------------------------------ session state
@dataclasses.dataclass
class Report:
    title: str = "XAI Lab report"
    notes: str = ""
    items: list[ReportItem] = dataclasses.field(default_factory=list)


def session_report() -> Report:
    """This session's report (created empty on first use); it survives page switches."""
    if _STATE not in st.session_state:
        st.session_state[_STATE] = Report()
    return st.session_state[_STATE]


def add_to_session(item: ReportItem) -> int:
    """Append ``item`` to the session's report; the new item count. ``ReportFull`` beyond the bounds."""
    report = session_report()
    report.items = add(report.items, item)
    return len(report.items)
