"""The report as one self-contained HTML file, as a PDF, or as a zip of one PNG per item.

The HTML opens offline: plotly.js is inlined once, figures are ``plotly.io.to_html`` fragments with
their images already data URIs, and every user-supplied text (titles, notes, class names in tables
and provenance) is ``html.escape``d. The PDF writes text in DejaVu Sans (∂, ×, ’ and the like).
"""
from __future__ import annotations

import base64
import html
import io
import zipfile
from pathlib import Path
from typing import Mapping

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from .labels import plotly_text
from .provenance import caption_lines
from .report import FIGURE, Report, ReportItem
from .static_export import StaticExportUnavailable, figure_image
from .views import file_stem

_ROOT = Path(__file__).resolve().parent.parent
FONT_PATHS = (_ROOT / "assets" / "fonts" / "DejaVuSans.ttf", Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"))
_PDF_TABLE_ROWS = 60  # longer tables are cut, with a note: the HTML and CSV hold them whole
_STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
section { border-top: 1px solid #ccc; margin-top: 2em; padding-top: 1em; }
table { border-collapse: collapse; font-size: 14px; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
.provenance { font-size: 13px; color: #444; }
.note, .notes { white-space: pre-wrap; }
img { max-width: 100%; }
"""
_FIGURE_CONFIG = {"displaylogo": False, "responsive": True}


def _text(value: object) -> str:
    return html.escape(str(value))


def _provenance_html(prov: Mapping[str, str]) -> str:
    rows = "".join(f"<tr><th>{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in prov.items())
    return f'<details class="provenance"><summary>Provenance</summary><table>{rows}</table></details>'


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _item_html(number: int, item: ReportItem) -> str:
    parts = [f"<section><h2>{number}. {_text(item.title)}</h2>"]
    if item.note:
        parts.append(f'<p class="note">{_text(item.note)}</p>')
    if item.kind == FIGURE:
        parts.append(pio.to_html(item.figure(), include_plotlyjs=False, full_html=False, config=_FIGURE_CONFIG))
        if item.png is not None:
            parts.append(f'<details><summary>Image (as exported)</summary><img alt="{_text(item.title)}" '
                         f'src="{_png_uri(item.png)}"></details>')
    else:
        parts.append(item.frame().to_html(index=False, escape=True, na_rep="nan", float_format="{:.4g}".format))
    parts.append(_provenance_html(item.provenance) + "</section>")
    return "\n".join(parts)


def report_html(report: Report) -> str:
    """The report as one HTML document that needs nothing but itself."""
    notes = f'<p class="notes">{_text(report.notes)}</p>' if report.notes else ""
    body = "\n".join(_item_html(i, item) for i, item in enumerate(report.items, 1))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_text(report.title)}</title>'
            f'<style>{_STYLE}</style>\n<script type="text/javascript">{get_plotlyjs()}</script>\n</head>'
            f"<body><h1>{_text(report.title)}</h1>{notes}\n{body}\n</body></html>")


# ----------------------------------------------------------------------------- images
def table_figure(item: ReportItem) -> go.Figure:
    """A table item drawn as a plotly table, for its PNG (text escaped: plotly reads it as HTML)."""
    frame = item.frame()
    cells = [[plotly_text(f"{v:.4g}" if isinstance(v, float) else v) for v in frame[c]] for c in frame.columns]
    ink = dict(color="#222", size=14)
    # Explicit colours: the default template (streamlit registers its own) may draw dark cells.
    fig = go.Figure(go.Table(header=dict(values=[plotly_text(c) for c in frame.columns], fill_color="#e8e8e8",
                                         line_color="#ccc", font=ink, align="left"),
                             cells=dict(values=cells, fill_color="white", line_color="#ccc", font=ink, align="left",
                                        height=28)))
    fig.update_layout(title=plotly_text(item.title), template="plotly_white", height=140 + 28 * min(len(frame), 40),
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig


def item_png(item: ReportItem) -> bytes:
    """The item as a PNG: its library PNG, else kaleido's with the provenance caption."""
    if item.png is not None:
        return item.png
    figure = item.figure() if item.kind == FIGURE else table_figure(item)
    return figure_image(figure, "png", caption_lines(item.provenance))


def pngs_zip(report: Report) -> bytes:
    """One PNG per item, numbered in report order (a .txt saying why, for a figure that needs a browser
    to render when there is none)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for i, item in enumerate(report.items, 1):
            name = f"{i:02d}_{file_stem(item.title)}"
            try:
                archive.writestr(f"{name}.png", item_png(item))
            except StaticExportUnavailable as err:  # the other items still come
                archive.writestr(f"{name}.txt", f"{item.title}: no PNG. {err}\n")
    return buffer.getvalue()


# -------------------------------------------------------------------------------- PDF
def _font_path() -> Path | None:
    return next((p for p in FONT_PATHS if p.is_file()), None)


def report_pdf(report: Report) -> bytes:
    """Title, notes, then per item: its title, note, image (or table) and provenance."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    font = _font_path()
    if font is not None:
        pdf.add_font("DejaVu", "", str(font))
        family = "DejaVu"
    else:  # core font: Latin-1 only
        family = "Helvetica"

    def text(value: object) -> str:
        value = str(value)
        return value if font is not None else value.encode("latin-1", "replace").decode("latin-1")

    def write(line_mm: float, value: object) -> None:
        pdf.multi_cell(0, line_mm, text(value), new_x="LMARGIN", new_y="NEXT")

    pdf.add_page()
    pdf.set_font(family, size=20)
    write(10, report.title)
    if report.notes:
        pdf.set_font(family, size=11)
        write(6, report.notes)
    for number, item in enumerate(report.items, 1):
        pdf.add_page()
        pdf.set_font(family, size=14)
        write(8, f"{number}. {item.title}")
        pdf.set_font(family, size=10)
        if item.note:
            write(5, item.note)
        if item.kind == FIGURE:
            try:
                image = item_png(item)
            except StaticExportUnavailable as err:
                write(5, f"(No image: {err} The HTML report shows the figure.)")
            else:
                pdf.image(io.BytesIO(image), w=pdf.epw)
        else:
            _pdf_table(pdf, item, text, write)
        pdf.ln(2)
        pdf.set_font(family, size=8)
        for key, value in item.provenance.items():
            write(4, f"{key}: {value}")
    return bytes(pdf.output())


def _pdf_table(pdf, item: ReportItem, text, write) -> None:
    from fpdf.fonts import FontFace

    frame = item.frame()
    shown = frame.head(_PDF_TABLE_ROWS)
    pdf.set_font(size=8 if len(frame.columns) > 6 else 9)
    # Plain headings: bold would need a second font file.
    with pdf.table(headings_style=FontFace(emphasis="NONE", fill_color=(230, 230, 230))) as table:
        table.row([text(c) for c in shown.columns])
        for row in shown.itertuples(index=False):
            table.row([text(f"{v:.4g}" if isinstance(v, float) else v) for v in row])
    if len(frame) > len(shown):
        write(5, f"(first {len(shown)} of {len(frame)} rows; the HTML report and the CSV hold all)")

