"""The report: the views added with "Add to report" on every page, in order, with a title and notes;
exported as one self-contained HTML file, a PDF, or one PNG per item."""
import pandas as pd
import streamlit as st

from ui import report
from ui.report_export import pngs_zip, report_html, report_pdf
from ui.sidebar import sidebar
from ui.static_export import unavailable_reason
from ui.url_state import stop_page
from ui.views import file_stem

KEY = "report"

sidebar()
st.title("Report")
current = report.session_report()
current.title = st.text_input("Report title", current.title, key=f"{KEY}.title")
current.notes = st.text_area("Notes", current.notes, key=f"{KEY}.notes",
                             placeholder="What the meeting should take away; written at the top of the report.")

if not current.items:
    st.info("The report is empty: every figure and table in the app has an Export menu with \"Add to report\".")
    stop_page()


def _move(index: int, delta: int) -> None:
    current.items = report.move(current.items, index, delta)


def _remove(index: int) -> None:
    current.items = report.remove(current.items, index)


stem = file_stem(current.title)
html_col, pdf_col, png_col = st.columns(3)
html_col.download_button("Download HTML (one file, opens offline)", lambda: report_html(current), f"{stem}.html",
                         "text/html", key=f"{KEY}.html", on_click="ignore", type="primary")
pdf_col.download_button("Download PDF", lambda: report_pdf(current), f"{stem}.pdf", "application/pdf",
                        key=f"{KEY}.pdf", on_click="ignore")
png_col.download_button("Download a PNG per item (zip)", lambda: pngs_zip(current), f"{stem}_png.zip",
                        "application/zip", key=f"{KEY}.zip", on_click="ignore")
missing = unavailable_reason()
if missing is not None:
    st.warning(f"{missing} The PDF and the PNGs then hold only the pages' own images (heatmap grids) and tables.")
st.caption(f"{len(current.items)} item(s), about {sum(i.size for i in current.items) / 2**20:.1f} MB "
           f"(at most {report.MAX_ITEMS} items and {report.MAX_BYTES // 2**20} MB).")

last = len(current.items) - 1
for index, item in enumerate(current.items):
    with st.container(border=True):
        title_col, up_col, down_col, remove_col = st.columns([10, 1, 1, 1], vertical_alignment="center")
        title_col.text(f"{index + 1}. {item.title}")  # plain text: titles carry class names
        up_col.button("↑", key=f"{KEY}.up.{item.id}", help="Move up", on_click=_move, args=(index, -1),
                      disabled=index == 0)
        down_col.button("↓", key=f"{KEY}.down.{item.id}", help="Move down", on_click=_move, args=(index, 1),
                        disabled=index == last)
        remove_col.button("✕", key=f"{KEY}.remove.{item.id}", help="Remove from the report", on_click=_remove,
                          args=(index,))
        note = st.text_area("Note on this item", item.note, key=f"{KEY}.note.{item.id}", height=68)
        if note != item.note:
            current.items = report.set_note(current.items, index, note)
        if item.kind == report.FIGURE:
            st.plotly_chart(item.figure(), key=f"{KEY}.figure.{item.id}", width="stretch")
        else:
            st.dataframe(item.frame(), hide_index=True, key=f"{KEY}.table.{item.id}")
        with st.expander("Provenance"):
            st.dataframe(pd.DataFrame({"": list(item.provenance), "value": list(item.provenance.values())}),
                         hide_index=True)
