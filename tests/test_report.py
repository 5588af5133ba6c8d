"""The report: list operations and bounds, the offline HTML, the PDF, and the Report page."""
from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs
from streamlit.testing.v1 import AppTest

from ui import report
from ui.report_export import report_html, report_pdf

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "<b>x</b> & ∂×’"
PROV = {"model": "embedded", "image": "Upload: <script>alert(1)</script>.png", "target": f"{HOSTILE} (3)",
        "param: steps": "32"}


def _figure(values: list[float], title: str) -> go.Figure:
    return go.Figure(go.Bar(x=["a", "b", "c"], y=values), layout=dict(title=title))


def _items() -> list[report.ReportItem]:
    return [report.figure_item(_figure([1.25, 2.5, 3.75], "first"), f"Grid of {HOSTILE}", PROV),
            report.table_item(pd.DataFrame({"class": [HOSTILE, "circle"], "score": [0.125, 0.5]}), "Scores", PROV),
            report.figure_item(_figure([9.5, 8.25, 7.125], "third"), "Curve", PROV)]


def _titles(items) -> list[str]:
    return [i.title for i in items]


def test_move_remove_and_set_note_return_new_lists_in_the_expected_order():
    items = _items()
    a, b, c = _titles(items)
    assert _titles(report.move(items, 2, -1)) == [a, c, b]
    assert _titles(report.move(items, 0, 1)) == [b, a, c]
    assert _titles(report.move(items, 0, -1)) == [a, b, c]  # clamped at the top
    assert _titles(report.move(items, 2, 1)) == [a, b, c]   # and at the bottom
    assert _titles(report.remove(items, 1)) == [a, c]
    noted = report.set_note(items, 1, "look here")
    assert [i.note for i in noted] == ["", "look here", ""] and items[1].note == ""  # the input is untouched
    assert noted[1].id == items[1].id


def test_add_refuses_past_the_item_and_byte_bounds_with_a_message():
    items = _items()
    assert len(report.add(items, items[0], max_items=4)) == 4
    with pytest.raises(report.ReportFull, match="at most 3 items"):
        report.add(items, items[0], max_items=3)
    total = sum(i.size for i in items)
    with pytest.raises(report.ReportFull, match="MB"):
        report.add(items, items[0], max_bytes=total + items[0].size - 1)


def test_a_table_item_keeps_a_labelled_index_as_its_first_column():
    frame = pd.DataFrame({"score": [1.0, 2.0]}, index=pd.Index(["gradcam", "saliency"], name="method"))
    item = report.table_item(frame, "t", PROV)
    assert item.columns == ("method", "score")
    assert item.frame()["method"].tolist() == ["gradcam", "saliency"]


def _outside_plotlyjs(page: str) -> str:
    return page.replace(get_plotlyjs(), "")


def test_html_is_self_contained_and_shows_user_text_as_text():
    page = report_html(report.Report(title=f"Meeting {HOSTILE}", notes="first line\n<i>second</i>", items=_items()))
    assert page.count(get_plotlyjs()) == 1
    assert page.count("<script") - page.count("Plotly.newPlot") == 1  # the bundle, then one call per figure
    rest = _outside_plotlyjs(page)
    for forbidden in ('src="http', "src='http", 'href="http', "href='http", "cdn", "mathjax"):
        assert forbidden not in rest.lower()
    assert "<b>x</b>" not in rest and "<script>alert" not in rest
    assert rest.count("&lt;b&gt;x&lt;/b&gt; &amp; ∂×’") >= 5  # report title twice, item title, table cell, provenance
    assert "&lt;i&gt;second&lt;/i&gt;" in rest
    for title in ("Grid of &lt;b&gt;x&lt;/b&gt;", "Scores", "Curve"):
        assert f". {title}" in rest
    assert "param: steps" in rest
    # each figure's data, in report order
    first, third = rest.index("[1.25,2.5,3.75]"), rest.index("[9.5,8.25,7.125]")
    assert first < rest.index("Scores") < third


def test_pdf_parses_with_a_page_per_item_and_the_title_in_unicode():
    items = _items()
    data = report_pdf(report.Report(title="Report ∂×", notes="notes", items=[items[1]]))
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pages = re.search(rb"/Type\s*/Pages\s*/Kids\s*\[[^\]]*\]\s*/Count\s*(\d+)", data) or \
        re.search(rb"/Count\s*(\d+)", data)
    assert int(pages.group(1)) >= 2  # the title page and the table's
    assert b"/FontFile2" in data  # DejaVu Sans embedded: ∂ and × need it


# ------------------------------------------------------------------------------ the page
def _page(items) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "8_Report.py"), default_timeout=120)
    at.session_state["xai.report"] = report.Report(items=list(items))
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _shown_titles(at: AppTest) -> list[str]:
    return [t.value.split(". ", 1)[1] for t in at.text if re.match(r"\d+\. ", t.value)]


def test_report_page_reorders_and_removes_items_and_keeps_them_in_session_state():
    first, second = _items()[:2]
    at = _page([first, second])
    assert _shown_titles(at) == [first.title, second.title]
    assert len(at.get("plotly_chart")) == 1
    at.button(key=f"report.up.{second.id}").click().run()
    assert _shown_titles(at) == [second.title, first.title]
    assert _titles(at.session_state["xai.report"].items) == [second.title, first.title]
    at.button(key=f"report.remove.{second.id}").click().run()
    assert _shown_titles(at) == [first.title]
    at.text_area(key=f"report.note.{first.id}").input("bring this up").run()
    assert at.session_state["xai.report"].items[0].note == "bring this up"


def test_report_page_without_items_says_how_to_add_them():
    at = _page([])
    assert any("Add to report" in i.value for i in at.info)


def test_a_view_added_on_a_page_is_on_the_report_page_after_switching_pages():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/1_Gradients_and_CAM.py").run()
    at.button(key="view.gradients_and_cam.report").click().run()
    at.switch_page("pages/8_Report.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert _shown_titles(at) == ["Gradients and CAM"]
    item = at.session_state["xai.report"].items[0]
    assert item.png.startswith(b"\x89PNG")  # the library's grid, with its caption
    assert item.provenance["model"] == "embedded" and "param: gradcam.layer" in item.provenance
    assert len(at.get("plotly_chart")) == 1


def test_pngs_zip_has_one_file_per_item_in_order_and_says_why_when_a_figure_cannot_be_drawn(monkeypatch):
    from ui import static_export
    from ui.report_export import pngs_zip, table_figure

    monkeypatch.setattr(static_export, "browser_path", lambda: None)
    grid = report.figure_item(_figure([1, 2, 3], "g"), "Grid", PROV, png=b"\x89PNG library")
    data = pngs_zip(report.Report(items=[grid, _items()[0]]))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert names[0] == "01_grid.png" and archive.read(names[0]) == b"\x89PNG library"
        assert names[1].startswith("02_grid_of_") and names[1].endswith(".txt")
        assert "camera button" in archive.read(names[1]).decode()
    table = table_figure(_items()[1])
    assert table.data[0].cells.values[0][0] == "&lt;b&gt;x&lt;/b&gt; &amp; ∂×’"
