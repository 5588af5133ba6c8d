"""Widgets drawn from a method's ``Param`` specs, so a page never repeats a range or a choice.

``param_widgets(method, model, key_prefix=...)`` draws one widget per parameter and returns
the flat params dict ``cached_explain`` takes; a composing method (the noise tunnel) also
draws the widgets of the base method it wraps and returns them as ``base.NAME``.
``param_widget`` draws a single one, for a page that places each widget itself.

Keys are unique per method and parameter, and values are kept for the session: they survive
reruns, a method being deselected and page switches.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import streamlit as st

from xai_core.methods.base import BASE_PREFIX, Method, Param
from xai_core.model_handle import LoadedModel

from .text import as_text
from .url_state import settled

SLIDER_MAX_STEPS = 10_000
"""A bounded number whose range holds more steps than this gets a number input, not a slider."""
LOG_SLIDER_POINTS = 61
"""Positions of a log-scale slider, from its lower to its upper bound."""


def param_widgets(method: Method, model: LoadedModel, *, key_prefix: str, container: Any = st,
                  columns: int = 1, layers: bool = True) -> dict[str, Any]:
    """Draw a widget for every parameter of ``method`` in ``container``; return ``{name: value}``.

    Keys are ``KEY_PREFIX.METHOD.NAME``. ``columns`` > 1 lays the widgets out in rows of that
    many columns. For a composing method the chosen base method's widgets follow (keys
    ``KEY_PREFIX.METHOD.base.BASE.NAME``, so each base keeps its own values) and its values
    come back as ``base.NAME``. ``layers=False`` leaves out layer pickers (a page comparing
    models runs each on its own default layer).
    """
    prefix = f"{key_prefix}.{method.name}"
    drawn = {name: param for name, param in method.params.items() if layers or widget_kind(name, param) != "layer"}
    values = {}
    for i, (name, param) in enumerate(drawn.items()):
        if i % columns == 0:
            row = container.columns(columns) if columns > 1 else [container]
        values[name] = param_widget(name, param, model, key=f"{prefix}.{name}", container=row[i % columns])
    if method.bases is not None:
        base = method.bases[values["base"]]
        own = param_widgets(base, model, key_prefix=f"{prefix}.base", container=container, columns=columns,
                            layers=layers)
        values |= {BASE_PREFIX + name: value for name, value in own.items()}
    return values


def param_widget(name: str, param: Param, model: LoadedModel, *, key: str, container: Any = st) -> Any:
    """Draw the widget ``param`` prefers (``auto``: from its kind, range and choices) and return its value.

    The value is kept for the session (``persist_state``): it survives reruns, the widget not
    being drawn (a deselected method) and page switches; a kept value the widget no longer
    offers (a layer of another model) falls back to the default.
    """
    kind = widget_kind(name, param)
    common = {"key": key, "persist_state": "session", "help": param.help or None}
    if kind in ("slider", "log_slider", "number"):
        _drop_if_out_of_range(key, param, container)
    label = param.label or name.replace("_", " ").capitalize()
    if kind == "layer":
        layers = model.conv_layers()
        default = model.default_layer if model.default_layer in layers else layers[-1]
        common["help"] = f"{param.help} (default for {model.arch}: {default})".strip()
        return container.selectbox(label, layers, index=layers.index(default), **common)
    if kind == "select":
        return container.selectbox(label, param.choices, index=param.choices.index(param.default), **common)
    if kind == "radio":
        return container.radio(label, param.choices, index=param.choices.index(param.default), horizontal=True,
                               **common)
    if kind == "checkbox":
        return container.checkbox(label, bool(param.default), **common)
    if kind == "text":
        return container.text_input(label, str(param.default), **common)
    if kind == "log_slider":
        options = log_options(param)
        return container.select_slider(label, options, _nearest(options, param.default), format_func=_format(param),
                                       **common)
    low, high = (None if v is None else param.kind(v) for v in (param.low, param.high))
    if kind == "slider":
        step = slider_step(param)
        return container.slider(label, low, high, param.kind(param.default), step,
                                format=None if param.kind is int else _printf(step), **common)
    step = param.kind(param.step) if param.step else (1 if param.kind is int else None)
    return container.number_input(label, low, high, param.kind(param.default), step, **common)


def _drop_if_out_of_range(key: str, param: Param, container: Any) -> None:
    """A kept number that the widget cannot hold (from a link: of another kind, or out of range) would
    stop the page: it is dropped, with a notice, and the widget starts on its default."""
    if key not in st.session_state:
        return
    value = st.session_state[key]
    right_kind = isinstance(value, (int, float) if param.kind is float else int) and not isinstance(value, bool)
    if right_kind and (param.low is None or value >= param.low) and (param.high is None or value <= param.high):
        if type(value) is not param.kind:
            st.session_state[key] = param.kind(value)  # a link's 1 for a float parameter: 1.0
        return
    del st.session_state[key]
    settled(key)
    container.info(f"{as_text(key)} = {as_text(repr(value)[:40])} is not a value this parameter takes "
                   f"({_range_text(param)}): the default is shown.")


def _range_text(param: Param) -> str:
    kind = "a whole number" if param.kind is int else "a number"
    if param.low is not None and param.high is not None:
        return f"{kind} from {param.low} to {param.high}"
    if param.low is not None:
        return f"{kind} ≥ {param.low}"
    return kind + (f" ≤ {param.high}" if param.high is not None else "")


def widget_kind(name: str, param: Param) -> str:
    """The widget drawn for ``param``: its preferred one, or for ``auto`` choices → select,
    bool → checkbox, a layer name → layer, a bounded number → slider (number input when its
    range holds more than ``SLIDER_MAX_STEPS`` steps), anything else → number or text."""
    if param.widget != "auto":
        return param.widget
    if param.choices is not None:
        return "select"
    if param.kind is bool:
        return "checkbox"
    if param.kind is str:
        return "layer" if name == "layer" else "text"
    if param.low is None or param.high is None:
        return "number"
    return "slider" if (param.high - param.low) / slider_step(param) <= SLIDER_MAX_STEPS else "number"


def slider_step(param: Param) -> int | float:
    """The declared step, else 1 for an int and a power of ten giving 20 to 200 steps for a float."""
    if param.step:
        return param.kind(param.step)
    if param.kind is int:
        return 1
    span = (param.high or 0) - (param.low or 0)
    return 10.0 ** math.floor(math.log10(span / 20)) if span > 0 else 0.01


def log_options(param: Param) -> list[int | float]:
    """The positions of a log-scale slider: evenly spaced in log10 from ``low`` to ``high``, plus the default.

    Ints are rounded (so duplicates at the small end disappear); floats keep three significant digits.
    """
    raw = np.logspace(math.log10(param.low), math.log10(param.high), LOG_SLIDER_POINTS)
    if param.kind is int:
        values = {int(round(v)) for v in raw} | {int(param.default)}
    else:
        values = {float(f"{v:.3g}") for v in raw} | {float(param.default)}
    return sorted(v for v in values if param.low <= v <= param.high)


def _nearest(options: list, value: Any) -> Any:
    return min(options, key=lambda o: abs(o - value))


def _format(param: Param) -> Callable[[Any], str]:
    return (lambda v: f"{v:,}") if param.kind is int else (lambda v: f"{v:.3g}")


def _printf(step: float) -> str:
    """A printf format with as many decimals as ``step`` has."""
    return f"%.{max(0, -math.floor(math.log10(step)))}f"
