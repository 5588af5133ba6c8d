"""Gradient, path and CAM explanations side by side: one row per target class, one column per method.

The methods offered are the registry's methods of ``PAGE_FAMILIES``, grouped by family, and their
parameter widgets come from their ``Param`` specs: a method registered in
``xai_core/methods/registry.py`` appears here with no edit to this page.
"""
import numpy as np
import streamlit as st

from ui.cache import cached_explain, progress_bar
from ui.params import param_widgets
from ui.provenance import provenance
from ui.sidebar import class_choices, keep_known_classes, sidebar
from ui.text import as_text
from ui.url_state import stop_page
from ui.views import map_stack, show_grid
from xai_core.errors import XAIError
from xai_core.methods import METHODS
from xai_core.methods.base import FAMILIES
from xai_core.render import COLORMAPS

PAGE_FAMILIES = ("gradient", "cam", "path", "attention")
DEFAULT_METHODS = ("saliency", "smoothgrad", "guided_backprop", "gradcam")  # those still registered are preselected
KEY_PREFIX = "gradients_cam"
PARAMETER_COLUMNS = 3

selection = sidebar()
model = selection.model
st.title("Gradients and CAM")

offered = {family: [name for name, spec in METHODS.items() if spec.family == family]
           for family in FAMILIES if family in PAGE_FAMILIES}
methods = []
for column, (family, names) in zip(st.columns(len(offered)), offered.items()):
    methods += column.multiselect(f"{FAMILIES[family]} (columns)", names, key=f"{KEY_PREFIX}.methods.{family}",
                                  default=[n for n in DEFAULT_METHODS if n in names], persist_state="session",
                                  format_func=lambda name: METHODS[name].label)
classes = class_choices(model)  # kept by name: a model change keeps the classes it also has
keep_known_classes(f"{KEY_PREFIX}.targets", model, classes)
targets = [classes[c] for c in st.multiselect(
    "Target classes (rows) — type to search any class by name", list(classes),
    default=[list(classes)[selection.target]], format_func=lambda c: model.class_label(classes[c]),
    max_selections=8, key=f"{KEY_PREFIX}.targets", persist_state="session")]

c1, c2, c3 = st.columns(3)
opacity = c1.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key=f"{KEY_PREFIX}.opacity", persist_state="session")
colormap = c2.selectbox("Colormap", COLORMAPS, key=f"{KEY_PREFIX}.colormap", persist_state="session")
SCALINGS = {"per map": False, "shared per method": "column"}
shared_scale = SCALINGS[c3.radio(
    "Colour scaling", list(SCALINGS), horizontal=True, key=f"{KEY_PREFIX}.scaling", persist_state="session",
    help="per map: each map spans the whole colormap. shared per method: one colour range down each method's "
         "column, so one method's maps compare across the target classes; methods are never put on one scale, "
         "as their values have different units (Grad-CAM++ reaches tens where a gradient stays below 1).")]

# Each method receives only its own parameters, so changing one re-computes only that column.
chosen = {name: {} for name in methods}
with_params = [name for name in methods if METHODS[name].params]
slots = st.columns(PARAMETER_COLUMNS) if with_params else []
for i, name in enumerate(with_params):
    with slots[i % PARAMETER_COLUMNS].expander(f"{METHODS[name].label} parameters"):
        chosen[name] = param_widgets(METHODS[name], model, key_prefix=KEY_PREFIX)

if not methods or not targets:
    st.info("Choose at least one method and one target class.")
    stop_page()

maps = [[None] * len(methods) for _ in targets]
attributions = [[None] * len(methods) for _ in targets]  # input attributions (C×H×W) of the methods that have one
for col, name in enumerate(methods):
    spec = METHODS[name]
    bar = progress_bar(spec.label)
    try:
        results = cached_explain(model, selection.model_key, selection.image_hash, selection.x.numpy(), name,
                                 tuple(targets), tuple(sorted(chosen[name].items())), _progress=bar)
    except XAIError as err:
        st.warning(f"{spec.label}: {as_text(str(err))}")
        continue
    finally:
        bar.done()
    for row, (heatmap, attribution) in enumerate(results):
        maps[row][col], attributions[row][col] = heatmap, attribution

row_labels = [model.categories[t] for t in targets]
col_labels = [METHODS[m].label + (" (class-agnostic)" if METHODS[m].class_agnostic else "") for m in methods]
prov = provenance(selection, method=", ".join(col_labels), target=[model.class_label(t) for t in targets],
                  params={f"{m}.{k}": v for m in methods for k, v in chosen[m].items()} | {
                      "colormap": colormap, "opacity": opacity, "colour scaling": shared_scale or "per map"})
show_grid(selection.display_image, maps, row_labels, col_labels, "Gradients and CAM", prov, colormap=colormap,
          opacity=opacity, shared_scale=shared_scale, outlines=selection.outlines,
          arrays={"targets": np.array(targets), "methods": np.array(methods)}
          | ({} if (stacked := map_stack(attributions)) is None else {"attributions": stacked}))

with st.expander("About these methods"):
    for name in methods:
        spec = METHODS[name]
        agnostic = " Class-agnostic: one map whatever the target, repeated on every row." if spec.class_agnostic else ""
        settings = ", ".join(f"{k} = {v}" for k, v in chosen[name].items())
        st.markdown(f"**{spec.label}** — {spec.description}{agnostic}"
                    + (f" *Parameters: {settings}.*" if settings else ""))
    st.caption(f"Rows: {as_text(', '.join(row_labels))}. Maps are not normalised; the colour range is per map or "
               "shared down each method's column (written under its title).")
