"""Titles that fit their cell: wrapped at word boundaries, abbreviated with "…" when still too long.

One rule for the plotly figures (``ui.figures``: widths estimated from the character count) and the PNG
exports (``ui.export``: widths measured with the font), so a title breaks alike in both.
"""
from __future__ import annotations

import html
import re
from typing import Callable

ELLIPSIS = "…"
_LINE_BREAK = re.compile(r"\n|<br>")  # a caller's own line breaks (``ui.compare_figures`` joins lines with <br>)


def fit_lines(text: str, width: float, max_lines: int, measure: Callable[[str], float]) -> tuple[list[str], bool]:
    """``text`` as at most ``max_lines`` lines, each at most ``width`` wide by ``measure``, and whether
    anything was cut. Lines break between words (and at the text's own "\\n" or "<br>"); a word wider
    than the line, or a line past ``max_lines``, ends in "…"."""
    lines: list[str] = []
    for paragraph in _LINE_BREAK.split(str(text)):
        current = ""
        for word in paragraph.split():
            candidate = f"{current} {word}" if current else word
            if current and measure(candidate) > width:
                lines.append(current)
                candidate = word
            current = candidate
        lines.append(current)
    cut = len(lines) > max_lines
    kept = lines[:max_lines]
    fitted = [_shortened(line, width, measure, cut and i == len(kept) - 1) for i, line in enumerate(kept)]
    return fitted, fitted != kept


def _shortened(line: str, width: float, measure: Callable[[str], float], forced: bool) -> str:
    """The line, or (too wide, or ``forced``: more text follows) as much of it as fits before "…"."""
    if not forced and measure(line) <= width:
        return line
    body = line
    while body and measure(body + ELLIPSIS) > width:
        body = body[:-1]
    return body.rstrip() + ELLIPSIS


def plotly_text(text: str) -> str:
    """User text (class names, file names) as plotly shows it, not as its pseudo-HTML: ``<``, ``>``, ``&`` escaped."""
    return html.escape(str(text), quote=False)
