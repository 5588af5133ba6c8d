"""The link's encoding (``ui.url_state``) and its round trip through a small script under AppTest:
which keys travel, what is checked, and that a link's bad values give notices, never a crash."""
from __future__ import annotations

import math

import pytest
from streamlit.testing.v1 import AppTest

from ui.text import as_text
from ui.url_state import MAX_VALUE_CHARS, decode, encode, is_simple


@pytest.mark.parametrize("value", ["embedded", "Dataset sample", "crâne ✓", 0, 2**31 - 1, 0.05, True,
                                   ["gradcam", "saliency"], []])
def test_a_setting_survives_its_query_value(value):
    assert decode(encode(value)) == value
    assert type(decode(encode(value))) is type(value)  # 1.0 stays a float, True a bool


@pytest.mark.parametrize("text", ["embedded", "{bad", '{"a": 1}', "[[1]]", "NaN", "Infinity",
                                  '"' + "x" * MAX_VALUE_CHARS + '"', "[" + ",".join(["1"] * 65) + "]"])
def test_a_query_value_that_is_not_a_short_plain_json_value_is_refused(text):
    with pytest.raises(ValueError):
        decode(text)


def test_only_plain_values_can_travel():
    assert is_simple(("a", 1)) and not is_simple({"a": 1}) and not is_simple(math.nan) and not is_simple(None)


@pytest.mark.parametrize("text, shown", [
    ("**bold** <b>x</b>", r"\*\*bold\*\* \<b\>x\</b\>"),
    (":red[alarm] :smile:", r"\:red\[alarm\] \:smile:"),  # an opening colon escaped: no directive
    ("# title", r"\# title"),
    ("a_b & c", r"a\_b \& c"),
    ("Sample photo: cat (1).jpg", "Sample photo: cat (1).jpg"),  # nothing to escape: left readable
])
def test_user_text_is_escaped_for_markdown_elements(text, shown):
    assert as_text(text) == shown


def _linked_page():
    import streamlit as st

    from ui import url_state

    checks = {"w.colour": lambda v: v in ("red", "blue")}
    url_state.restore("p", checks)
    try:
        with url_state.applying_link():
            st.selectbox("Colour", ["red", "blue"], key="w.colour", persist_state="session")
            st.slider("Amount", 0, 10, 5, key="p.amount", persist_state="session")
            st.selectbox("Shape", ["disc", "square"], key="p.shape", persist_state="session")
            st.slider("Transient", 0, 10, 3, key="p.transient")  # not kept for the session: not in the link
            st.button("Go", key="p.go")
    finally:
        url_state.sync("p", ["w.colour"])


def _open(query: dict[str, str]) -> AppTest:
    at = AppTest.from_function(_linked_page)
    at.query_params.update(query)
    at.run(timeout=30)
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_a_link_restores_the_settings_and_the_view_is_written_back():
    at = _open({"w.colour": '"blue"', "p.amount": "8"})
    assert at.selectbox(key="w.colour").value == "blue" and at.slider(key="p.amount").value == 8
    assert not at.info
    at.slider(key="p.amount").set_value(9).run()
    assert at.query_params == {"w.colour": '"blue"', "p.amount": "9", "p.shape": '"disc"'}  # no button


def test_a_links_bad_values_are_named_and_the_defaults_shown():
    at = _open({"w.colour": '"green"', "p.shape": '"hexagon"', "q.other": "1", "p.go": "true", "p.amount": "{"})
    assert at.selectbox(key="w.colour").value == "red" and at.selectbox(key="p.shape").value == "disc"
    assert at.slider(key="p.amount").value == 5
    notices = " ".join(i.value for i in at.info)
    for named in ("w.colour", "p.shape", "q.other", "p.amount"):
        assert named in notices
    assert not at.button(key="p.go").value  # a button cannot be pressed by a link


def test_a_value_that_would_stop_the_page_is_dropped_and_the_page_drawn_with_its_defaults():
    at = _open({"p.amount": "50", "p.shape": '"square"'})
    assert at.slider(key="p.amount").value == 5 and at.selectbox(key="p.shape").value == "disc"
    assert any("p.amount" in i.value and "could not be applied" in i.value for i in at.info)
    at.run()  # the notice stays on the page it was made for
    assert any("could not be applied" in i.value for i in at.info)
