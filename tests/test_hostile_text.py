"""User text never read as markup (issue 15): class names from a checkpoint's class-names box and the
checkpoint's file name, full of markdown and HTML, are shown as the characters they are on every page
(markdown elements hold them escaped; plotly specs hold ``&lt;b&gt;``, never ``<b>`` or a link), and a
bad checkpoint shows its error once in the sidebar while every page goes on with the previous model."""
from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pyarrow
import torch
from streamlit.testing.v1 import AppTest

from ui.text import as_text
from xai_core import dataset, embedded

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py"))
TIMEOUT = 120
HOSTILE = ("**bold** <b>x</b> ![img](http://example.com/x.png) [link](http://example.com) "
           "<a href='http://example.com'>a</a>")
NAMES = [f"{HOSTILE} {i}" for i in range(len(dataset.CLASSES))]
ESCAPED = as_text(HOSTILE)
"""How every class name begins in a markdown element."""
FILE_NAME = "<b>w<i> **bold** [f](http:x.pt) ![i](http:x.png).pt"  # no "/": a file's name is its last part
UNESCAPED = re.compile(r"(?<!\\)<(b|a)[\s>]|(?<!\\)\]\(http|(?<!\\)\*\*bold")
"""Markup of ``HOSTILE`` or ``FILE_NAME`` that a markdown element would interpret."""


def _run(at: AppTest) -> AppTest:
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.message for e in at.exception]
    return at


def _state_dict() -> dict[str, torch.Tensor]:
    state = torch.load(embedded.CHECKPOINT, weights_only=True)
    return state.get("state_dict", state)


def _bytes(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.sidebar.file_uploader(key="w.checkpoint_upload").set_value((name, data, "application/octet-stream"))
    return _run(at)


def _hostile_app() -> AppTest:
    """The router on Home with the embedded weights renamed to ``NAMES`` and uploaded as ``FILE_NAME``."""
    at = _run(AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT))
    at.sidebar.text_area(key="w.class_names_text").set_value("\n".join(NAMES))
    return _upload(at, FILE_NAME, embedded.CHECKPOINT.read_bytes())


def _markdown_bodies(at: AppTest) -> list[str]:
    """The text of every element that streamlit reads as markdown, main area and sidebar."""
    bodies = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader",
                                   "header", "title") for e in getattr(at, kind)]
    bodies += [m.label for m in at.metric] + [b.label for b in at.button]
    bodies += [str(cell) for table in at.table for cell in _table_cells(table)]
    return bodies


def _table_cells(table) -> list[str]:
    """What an ``st.table`` shows (and reads as markdown): a Styler's display values, else its data."""
    arrow = table.proto.arrow_data
    frame = (pyarrow.ipc.open_stream(arrow.styler.display_values).read_all().to_pandas()
             if arrow.styler.display_values else table.value)
    return [*map(str, frame.columns), *map(str, frame.to_numpy().ravel())]


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [s for item in items for s in _strings(item)]


def _plotly_texts(at: AppTest) -> str:
    """Every string of every plotly figure's spec (titles, labels, legends, hover texts, annotations)."""
    return "\n".join(s for chart in at.get("plotly_chart") for s in _strings(json.loads(chart.proto.spec)))


def _assert_shown_as_text(at: AppTest, page: str) -> None:
    for body in _markdown_bodies(at):
        assert not UNESCAPED.search(body), (page, body)
    texts = _plotly_texts(at)
    assert "<b>" not in texts and "<a " not in texts, page  # plotly reads both as HTML
    assert "\\*\\*bold" not in texts, f"{page}: markdown escapes leaked into a figure"


def test_class_names_and_file_names_with_markup_are_shown_as_text_on_every_page():
    at = _hostile_app()
    assert any(ESCAPED in c.value for c in at.sidebar.caption), "the prediction's class, escaped, in the sidebar"
    assert any("Target class for the explanation pages" in m.value and ESCAPED in m.value for m in at.markdown)
    assert any(f"Using {as_text(FILE_NAME)}" in c.value for c in at.sidebar.caption), "the file named as text"
    texts = _plotly_texts(at)
    assert "&lt;b&gt;x&lt;/b&gt;" in texts and "&lt;a href=" in texts, "the prediction bar's names, escaped"
    assert f"Grad-CAM: {NAMES[0][:9]}" in texts, "the Grad-CAM title names the class without markdown escapes"
    _assert_shown_as_text(at, "home")
    for page in PAGES:
        at.switch_page(page)
        _run(at)
        _assert_shown_as_text(at, page)
        if page.endswith("3_IG_and_RIG.py"):
            assert any(ESCAPED in m.label for m in at.metric), "the metric label names the class as text"
            assert "&lt;b&gt;x" in _plotly_texts(at), "the IG map's title, escaped"


def _bad_checkpoints() -> dict[str, bytes]:
    """Random bytes, NaN weights, an int64 state dict: the last is the one issue 15 saw poison every page."""
    state = _state_dict()
    floats = [k for k, v in state.items() if v.is_floating_point()]
    return {"random.pt": os.urandom(4096),
            "nan.pt": _bytes({k: torch.full_like(v, float("nan")) if k in floats else v for k, v in state.items()}),
            "int64.pt": _bytes({k: v.to(torch.int64) if k in floats else v for k, v in state.items()})}


def _assert_previous_model_kept(at: AppTest, bad: str, previous: list[str], page: str) -> None:
    errors = [e.value for e in at.sidebar.error]
    assert len(errors) == 1 and bad in errors[0], (page, errors)
    assert any("Still showing embedded with its previous weights" in c.value for c in at.sidebar.caption), page
    assert [c.value for c in at.sidebar.caption if c.value.startswith("Explaining the prediction")] == previous, \
        f"{page}: the renamed model is still the one in use"


def test_a_bad_checkpoint_shows_its_error_once_and_every_page_goes_on_with_the_previous_model():
    at = _hostile_app()
    previous = [c.value for c in at.sidebar.caption if c.value.startswith("Explaining the prediction")]
    assert previous and ESCAPED in previous[0]
    for bad, data in _bad_checkpoints().items():
        _upload(at, bad, data)
        _assert_previous_model_kept(at, bad, previous, "home")
    for page in PAGES:
        at.switch_page(page)
        _run(at)
        _assert_previous_model_kept(at, bad, previous, page)


def test_bare_urls_and_addresses_in_user_text_are_not_autolinked():
    """GitHub-flavoured markdown links bare ``http://``, ``www.`` and ``a@b`` after parsing, whatever the
    escapes: ``as_text`` breaks each pattern with an invisible word joiner, leaving the text as written."""
    from ui.text import as_text

    for text in ("see http://example.com/x.png", "WWW.example.com", "me@example.com"):
        shown = as_text(text)
        assert "://" not in shown and "www." not in shown.lower() and "@e" not in shown
        assert shown.replace("\u2060", "").replace("\\", "") == text
