"""The What-if page's edit list as state: an undo/redo history in ``st.session_state`` and the
list's JSON in a text box (``KEY``), a settings widget, so the list travels in the view's link
(``ui.url_state``) and a keyboard user can type or paste one.

The history is ``{"done": [list₀, list₁, …], "undone": [...]}`` of JSON texts, the current list the
last of ``done``. Every change goes through ``push`` in a widget callback (a selection event, a
button), which also writes the text box before it is drawn; a text typed in the box (or read from a
link) that differs from the current list is pushed when it parses, and refused with its error
otherwise (the list stays as it was).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import streamlit as st

from xai_core.edits import Cells, Edit, edits_from_json, edits_to_json
from xai_core.errors import ParameterError

KEY_PREFIX = "whatif"
KEY = f"{KEY_PREFIX}.edits"
_HISTORY = f"{KEY_PREFIX}_state.history"
_MEMO = f"{KEY_PREFIX}_state.memo"


def _history() -> dict:
    return st.session_state.setdefault(_HISTORY, {"done": ["[]"], "undone": []})


def current() -> list[Edit]:
    """The current edit list (the last pushed)."""
    return edits_from_json(_history()["done"][-1])


def push(edits: Sequence[Edit]) -> None:
    """Make ``edits`` the current list (undoable); the redo list is dropped. In a callback."""
    history = _history()
    text = edits_to_json(edits)
    if text != history["done"][-1]:
        history["done"].append(text)
        history["undone"].clear()
    st.session_state[KEY] = text


def add(edit: Edit) -> None:
    push([*current(), edit])


def toggle_cell(row: int, col: int, cell: int, template: Edit) -> None:
    """Toggle the grid cell (row, col): in the last edit when it is a cell set of this size, mode and
    replacement, else in a new one."""
    edits = current()
    last = edits[-1] if edits else None
    if (last is not None and isinstance(last.region, Cells) and last.region.cell == cell
            and (last.mode, last.replacement, last.constant, last.seed)
            == (template.mode, template.replacement, template.constant, template.seed)):
        edits[-1] = Edit(last.region.toggled(row, col), last.mode, last.replacement, last.constant, last.seed)
    else:
        edits.append(Edit(Cells(frozenset({(row, col)}), cell), template.mode, template.replacement,
                          template.constant, template.seed))
    push([e for e in edits if not (isinstance(e.region, Cells) and not e.region.cells)])


def undo() -> None:
    history = _history()
    if len(history["done"]) > 1:
        history["undone"].append(history["done"].pop())
    st.session_state[KEY] = history["done"][-1]


def redo() -> None:
    history = _history()
    if history["undone"]:
        history["done"].append(history["undone"].pop())
    st.session_state[KEY] = history["done"][-1]


def can_undo() -> bool:
    return len(_history()["done"]) > 1


def can_redo() -> bool:
    return bool(_history()["undone"])


def adopt_typed() -> str | None:
    """Before the text box is drawn: a typed or linked list that differs from the current one becomes
    current when it parses; otherwise the box is put back and the error returned (to show)."""
    history = _history()
    typed = st.session_state.get(KEY)
    if typed is None or not typed.strip():  # nothing typed yet, or the box emptied: no edits
        typed = "[]"
    if typed == history["done"][-1]:
        st.session_state[KEY] = typed
        return None
    try:
        edits = edits_from_json(typed)
    except ParameterError as err:
        st.session_state[KEY] = history["done"][-1]
        return str(err)
    push(edits)
    return None


def memo(key: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()``, kept while ``key`` stays the same: what does not depend on the edits (the k curves
    of the original image) is not recomputed on every edit."""
    kept = st.session_state.get(_MEMO)
    if kept is None or kept[0] != key:
        kept = (key, compute())
        st.session_state[_MEMO] = kept
    return kept[1]
