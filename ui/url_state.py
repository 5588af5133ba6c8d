"""The view in the link: the sidebar's selection and the current page's settings mirrored into
``st.query_params``, so that a copied link opens the same view in a fresh browser and a reload
restores it.

Each setting is one query parameter named by its widget key (``w.model``, ``rise_page.rise.masks``)
whose value is the JSON of the widget's value (``"embedded"``, ``2000``, ``["gradcam","saliency"]``);
the sidebar's class is its name (``w.target``), never an index. Only known keys travel: the sidebar's
``w.*`` keys (``ui.sidebar.LINK_CHECKS``, those that describe the view: ``link_keys``) and the current
page's ``KEY_PREFIX.*`` settings widgets (those kept for the session, ``persist_state="session"``;
buttons never). The router (``app.py``) calls ``restore`` before anything is drawn and ``sync`` after
the page, in ``finally``; pages end early with ``stop_page`` (not ``st.stop()``, after which no
streamlit call, the link's included, can be made in that run).

A link is untrusted text. On the session's first run ``restore`` keeps only JSON-decodable simple
values of bounded length; the sidebar's are checked against what the sidebar offers; a page's are
checked by its widgets' own checks before they are drawn (class pickers, parameters: ``settled``)
and, for the others, after the page drew (a value its widget did not take is named in an
``st.info``, as text); a page that fails on the values of a link is run again without them, with a
notice. Nothing a link holds can crash the app.
"""
from __future__ import annotations

import contextlib
import json
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Mapping, NoReturn, Sequence

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from .text import as_text

MAX_VALUE_CHARS = 400
"""The longest query value read back: a list of method names fits, a pasted essay does not."""
MAX_ITEMS = 64
_RESTORED, _APPLIED, _NOTICES = "url.restored", "url.applied", "url.notices"


# ----------------------------------------------------------------------- encoding
def is_simple(value: Any) -> bool:
    """A str, a finite number, a bool, or a short list of those: what a link may carry."""
    if isinstance(value, (list, tuple)):
        return len(value) <= MAX_ITEMS and all(is_simple(v) and not isinstance(v, (list, tuple)) for v in value)
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    return isinstance(value, (str, int, bool))


def encode(value: Any) -> str:
    """The query value of a setting: compact JSON, non-ASCII kept (the browser escapes it)."""
    return json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=False, separators=(",", ":"))


def decode(text: str) -> Any:
    """The setting in a query value; ``ValueError`` when it is not a short JSON simple value."""
    if len(text) > MAX_VALUE_CHARS:
        raise ValueError(f"longer than {MAX_VALUE_CHARS} characters")
    value = json.loads(text)  # JSONDecodeError is a ValueError
    if not is_simple(value):
        raise ValueError("not a plain value")
    return value


# ------------------------------------------------------------------------ notices
def _notify(message: str) -> None:
    """A notice about the link, shown at the top of every run of the page it opened, until another page."""
    st.session_state[_NOTICES]["messages"].append(message)


def _show_notices(page_prefix: str | None) -> None:
    notices = st.session_state.get(_NOTICES)
    if notices is None or notices["page"] != page_prefix:
        st.session_state.pop(_NOTICES, None)
        return
    for message in notices["messages"]:
        st.info(message)  # its keys and values are escaped (``_shown``): read as text


def _shown(text: str, limit: int = 60) -> str:
    """A link's key or value, shortened, as plain text inside an ``st.info`` (which reads markdown)."""
    return as_text(text if len(text) <= limit else text[:limit] + "…")


# ---------------------------------------------------------------------- restoring
def restore(page_prefix: str | None, checks: Mapping[str, Callable[[Any], bool]]) -> None:
    """On the session's first run, put the link's settings into ``st.session_state`` before any widget
    is drawn: the keys of ``checks`` (the sidebar's) if their check passes, the page's checked after it
    drew (``sync``). On every run, show the notices about values of the link that were dropped."""
    state = st.session_state
    if _RESTORED not in state:
        state[_RESTORED] = True
        state[_NOTICES] = {"page": page_prefix, "messages": []}
        applied = {}
        for key, text in st.query_params.to_dict().items():
            check = checks.get(key)
            if check is None and not (page_prefix and key.startswith(page_prefix + ".")):
                _notify(f"The link's setting {_shown(key)} is not one of this page's: ignored.")
                continue
            try:
                value = decode(text)
            except ValueError:
                _notify(f"The link's value for {_shown(key)} is not readable: the default is shown.")
                continue
            if check is not None and not check(value):
                _notify(f"The link's {_shown(key)} = {_shown(text)} is not offered here: the default is shown.")
                continue
            state[key] = value
            if check is None:
                applied[key] = value
        state[_APPLIED] = applied
    _show_notices(page_prefix)


class PageStopped(BaseException):
    """A page ended early under the router (``stop_page``). A BaseException, like streamlit's own stop,
    so that no ``except Exception`` of a page swallows it."""


_ROUTED: ContextVar[bool] = ContextVar("xai_routed", default=False)


@contextlib.contextmanager
def routed() -> Iterator[None]:
    """The router's run of the sidebar and the page: a ``stop_page`` ends it here, quietly."""
    token = _ROUTED.set(True)
    try:
        yield
    except PageStopped:
        pass
    finally:
        _ROUTED.reset(token)


def stop_page() -> NoReturn:
    """End the page here (instead of ``st.stop()``). ``st.stop()`` leaves a stop request that makes every
    later streamlit call raise, so the router could not write the link afterwards; under the router this
    ends the page with ``PageStopped`` instead. A page run on its own (the tests) stops as usual."""
    if _ROUTED.get():
        raise PageStopped
    st.stop()


@contextlib.contextmanager
def applying_link() -> Iterator[None]:
    """Around the page: when it fails on the run that applied a link's page settings, those settings
    are dropped (named in a notice) and the page runs again with its defaults."""
    try:
        yield
    except Exception as error:  # st.stop() and st.rerun() are BaseExceptions: they pass through
        applied = st.session_state.get(_APPLIED)
        if not applied:
            raise
        for key in applied:
            st.session_state.pop(key, None)
        st.session_state[_APPLIED] = {}
        _notify(f"The link's settings {', '.join(_shown(k) for k in applied)} could not be applied "
                f"({_shown(str(error), 200)}): the defaults are shown.")
        st.rerun()


def _settings_keys(prefix: str) -> list[str]:
    """The session-state keys under ``prefix`` of widgets kept for the session (settings, not buttons)."""
    ctx = get_script_run_ctx()
    if ctx is None:
        return []
    widgets = ctx.session_state._state  # SessionState: which widget registered each key, and how
    keys = []
    for key in st.session_state:
        if not str(key).startswith(prefix + "."):
            continue
        widget_id = widgets.get_widget_id_from_key(key)
        metadata = widgets.get_widget_metadata(widget_id) if widget_id else None
        if metadata is not None and metadata.persist_state == "session" and "trigger" not in metadata.value_type:
            keys.append(key)
    return keys


def settled(key: str) -> None:
    """A page's own check replaced a link's value of ``key`` and said so: ``sync`` need not."""
    st.session_state.get(_APPLIED, {}).pop(key, None)


def link_state(page_prefix: str | None, fixed_keys: Sequence[str]) -> dict[str, str]:
    """The query parameters that describe the current view: ``fixed_keys`` and the page's settings."""
    state = st.session_state
    keys = [k for k in fixed_keys if k in state] + (_settings_keys(page_prefix) if page_prefix else [])
    return {key: encode(state[key]) for key in keys if is_simple(state[key])}


def sync(page_prefix: str | None, fixed_keys: Sequence[str]) -> None:
    """After the page: name the link's page settings its widgets did not take, then write the view
    (``fixed_keys``: the sidebar's, and the page's settings) into ``st.query_params``, only when it
    changed, so an unchanged view sends nothing."""
    state = st.session_state
    for key, value in state.pop(_APPLIED, {}).items():
        kept = state.get(key)
        if (list(kept) if isinstance(kept, tuple) else kept) != value:
            message = (f"The link's {_shown(key)} = {_shown(encode(value))} is not offered here: "
                       f"{_shown(encode(kept)) if is_simple(kept) else 'the default'} is shown.")
            st.info(message)  # at the foot of this run, then at the top of the page's next runs
            _notify(message)
    wanted = link_state(page_prefix, fixed_keys)
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
