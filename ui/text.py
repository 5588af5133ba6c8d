"""User-supplied text (class names, file names, a link's values) inside streamlit elements that read
markdown (``st.info``, ``st.caption``…): escaped so that it shows as the characters it is."""
import re

_MARKUP = re.compile(r"([\\`*_\[\]<>|~$&{}])|(:)(?=\S)|^([#+\-=])", re.MULTILINE)
"""What markdown or streamlit reads as markup: emphasis, code, links, HTML, tables, strikethrough, maths,
entities, ``:colour[…]``/``:emoji:`` directives, and headings or list marks at a line's start. CommonMark
reads a backslash before any ASCII punctuation mark as the plain character."""


_AUTOLINK = re.compile(r"(?i)(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)")
"""Where GitHub-flavoured markdown turns bare text into a link (``http://…``, ``www.…``, ``a@b.c``): it
does so after parsing, whatever the escapes, so a word joiner (U+2060, invisible) breaks the pattern."""


def as_text(text: str) -> str:
    """``text`` for a markdown element: shown as written, never as emphasis, links, HTML or colour directives."""
    return _MARKUP.sub(lambda m: "\\" + m.group(0), _AUTOLINK.sub("\u2060", text))
