"""What if: draw on the image to remove or keep a region and see the prediction and the map change
(issue 17). The edits are ``xai_core.edits``; their history and link are ``ui.edit_state``.

Draw a box or a lasso on the image (plotly's modebar), or click cells; or type a box below. The
top k % of the method's map can be removed or kept alone (the deletion / insertion step). Clicking a
map reports that pixel in every map of the page.
"""
import numpy as np
import streamlit as st

from ui import edit_state
from ui.cache import cached_explain, get_engine
from ui.figures import line_figure, overlay_figure
from ui.params import param_widget
from ui.provenance import provenance
from ui.sidebar import sidebar, use_edited_image
from ui.text import as_text
from ui.url_state import stop_page
from ui.views import file_stem, show_figure, show_table
from ui.whatif_figures import change_table, editable_image_figure, pixel_table
from xai_core.edits import (CELL_PARAM, EDIT_PARAMS, K_PARAM, Box, Edit, TopK, apply_edits, edits_to_json,
                            occluder_positions_at, pixel_report, prediction_change, region_from_selection,
                            region_mask, rise_masks_at, topk_curve)
from xai_core.errors import XAIError
from xai_core.methods import METHODS

KEY_PREFIX = edit_state.KEY_PREFIX
IMAGE_VIEW = "What-if image"
IMAGE_CHART = f"view.{file_stem(IMAGE_VIEW)}.chart"  # the key ui.views gives the image's chart
MAP_VIEW = "What-if maps"
KEEP = "session"
CURVE_STEPS = 20

selection = sidebar()
model = selection.model
st.title("What if — edit the image")
st.caption("Select a box or a lasso on the image (modebar), click cells to toggle them, or type a box: the "
           "region is removed (or kept, everything else replaced) and the prediction and the map are redrawn.")

columns = st.columns(len(EDIT_PARAMS) + 2)
settings = {name: param_widget(name, p, model, key=f"{KEY_PREFIX}.{name}", container=c)
            for (name, p), c in zip(EDIT_PARAMS.items(), columns)}
cell = param_widget("cell", CELL_PARAM, model, key=f"{KEY_PREFIX}.cell", container=columns[-2])
method = columns[-1].selectbox("Method", list(METHODS), index=list(METHODS).index("gradcam"), key=f"{KEY_PREFIX}.method",
                               persist_state=KEEP, format_func=lambda n: METHODS[n].label)


def _settings_now() -> dict:
    """The edit settings as the widgets hold them (in a callback, before they are drawn again)."""
    return {name: st.session_state.get(f"{KEY_PREFIX}.{name}", p.default) for name, p in EDIT_PARAMS.items()}


def _on_image_select() -> None:
    event = st.session_state[IMAGE_CHART].selection
    region = region_from_selection(event)
    if region is not None:
        edit_state.add(Edit(region, **_settings_now()))
    elif event.get("points"):
        size = st.session_state.get(f"{KEY_PREFIX}.cell", CELL_PARAM.default)
        point = event["points"][0]
        edit_state.toggle_cell(int(point["y"]) // size, int(point["x"]) // size, size,
                               Edit(Box(0, 0, 0, 0), **_settings_now()))


def _add_typed_box() -> None:
    x0, y0, x1, y1 = (st.session_state[f"{KEY_PREFIX}.box_{c}"] for c in ("x0", "y0", "x1", "y1"))
    edit_state.add(Edit(Box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), **_settings_now()))


def _add_top_k(mode: str) -> None:
    edit_state.add(Edit(TopK(st.session_state[f"{KEY_PREFIX}.method"], st.session_state[f"{KEY_PREFIX}.k"]),
                        **(_settings_now() | {"mode": mode})))


def _on_map_click(chart_key: str) -> None:
    points = st.session_state[chart_key].selection.get("points")
    if points:
        st.session_state[f"{KEY_PREFIX}.pixel_x"] = int(round(points[0]["x"]))
        st.session_state[f"{KEY_PREFIX}.pixel_y"] = int(round(points[0]["y"]))


typed_error = edit_state.adopt_typed()
try:
    edits = edit_state.current()
    targets = (selection.target,)
    original = cached_explain(model, selection.model_key, selection.image_hash, selection.x.numpy(), method,
                              targets, with_extras=True)[0]
    maps = {method: original[0]}
    x_edited = apply_edits(model, selection.x, edits, maps)
    edited_map = cached_explain(model, selection.model_key, selection.image_hash, x_edited.numpy(), method,
                                targets)[0][0]
    rows = prediction_change(model, selection.x, x_edited)
except XAIError as err:
    st.error(as_text(str(err)))
    stop_page()

height, width = selection.x.shape[-2:]
region = region_mask(edits, height, width, maps)
prov = provenance(selection, method=METHODS[method].label, params=settings, edits=edits_to_json(edits))
left, right = st.columns(2)
with left:
    show_figure(editable_image_figure(model.to_display(x_edited), region, cell, f"Edited ({len(edits)} edits)"),
                IMAGE_VIEW, prov, on_select=_on_image_select, selection_mode=("box", "lasso", "points"),
                arrays={"edited_input": x_edited.numpy(), "region": region})
with right:
    after = max(rows, key=lambda r: r["logit_after"])
    st.metric("Top-1 after the edit", after["name"],
              f"{after['probability_change']:+.3f} p, {after['logit_change']:+.3f} logit")
    show_table(change_table(rows), "What-if prediction change", prov, hide_index=True)

with st.expander("Edit by hand: a box, the edit list, undo", expanded=True):
    box_cols = st.columns(5)
    for c, name, default in zip(box_cols, ("x0", "y0", "x1", "y1"), (0, 0, width // 2, height // 2)):
        c.number_input(name, 0, max(height, width) - 1, default, key=f"{KEY_PREFIX}.box_{name}", persist_state=KEEP)
    box_cols[4].button("Add box", key=f"{KEY_PREFIX}.add_box", on_click=_add_typed_box)
    do_cols = st.columns(4)
    do_cols[0].button("Undo", key=f"{KEY_PREFIX}.undo", on_click=edit_state.undo, disabled=not edit_state.can_undo())
    do_cols[1].button("Redo", key=f"{KEY_PREFIX}.redo", on_click=edit_state.redo, disabled=not edit_state.can_redo())
    do_cols[2].button("Clear", key=f"{KEY_PREFIX}.clear", on_click=edit_state.push, args=([],))
    do_cols[3].button("Use the edited image", key=f"{KEY_PREFIX}.use", disabled=not edits,
                      on_click=use_edited_image, args=(selection, x_edited, edits_to_json(edits), len(edits)),
                      help="every other page explains the edited image (the sidebar says so, with a way back)")
    if typed_error:
        st.error(as_text(typed_error))
    st.text_input("Edit list (JSON)", key=edit_state.KEY, persist_state=KEEP,
                  help='e.g. [{"box":[8,8,40,40]},{"top_k":10,"map":"gradcam","mode":"keep"}]')

st.header("From the map to an edit")
k = param_widget("k", K_PARAM, model, key=f"{KEY_PREFIX}.k")
k_cols = st.columns(2)
k_cols[0].button("Remove the top k %", key=f"{KEY_PREFIX}.remove_k", on_click=_add_top_k, args=("remove",))
k_cols[1].button("Keep only the top k %", key=f"{KEY_PREFIX}.keep_k", on_click=_add_top_k, args=("keep",))
curves = edit_state.memo(
    ("curves", selection.model_key, selection.image_hash, method, selection.target, *settings.values()),
    lambda: {mode: topk_curve(model, selection.x, original[0], selection.target, mode=mode,
                              replacement=settings["replacement"], constant=settings["constant"],
                              seed=settings["seed"], engine=get_engine(selection.device), steps=CURVE_STEPS)
             for mode in ("remove", "keep")})
ks = np.linspace(0, 100, CURVE_STEPS + 1)
curve_fig = line_figure(ks, {f"top k % {m}d": c for m, c in curves.items()}, "k (% of pixels)",
                        f"p({selection.target_name})", "The target's probability over k")
curve_fig.add_vline(x=k, line_dash="dot")
show_figure(curve_fig, "What-if k curve", prov, arrays={"k_percent": ks, **curves}, width="stretch")

st.header(f"{METHODS[method].label}: original and edited")
page_maps = {f"{method} · original": original[0], f"{method} · edited": edited_map}
map_cols = st.columns(2)
for column, (name, heatmap), image in zip(map_cols, page_maps.items(), (selection.x, x_edited)):
    chart = f"view.{file_stem(MAP_VIEW)}.{file_stem(name)}.chart"
    with column:
        show_figure(overlay_figure(model.to_display(image), heatmap, title=name), MAP_VIEW, prov, key=file_stem(name),
                    on_select=lambda chart=chart: _on_map_click(chart), selection_mode="points",
                    arrays={"map": heatmap})

st.subheader("Click a pixel")
compare_cols = st.columns(2)
class_names = {p["index"]: p["name"] for p in selection.predictions} | {selection.target: selection.target_name}
more_methods = compare_cols[0].multiselect(
    "Also at the pixel: methods", [m for m in METHODS if m != method], key=f"{KEY_PREFIX}.pixel_methods",
    persist_state=KEEP, format_func=lambda n: METHODS[n].label,
    help="their maps of the original image, with default settings, are read at the pixel too")
pixel_targets = compare_cols[1].multiselect(
    "Also at the pixel: classes", [c for c in class_names if c != selection.target], key=f"{KEY_PREFIX}.pixel_targets",
    persist_state=KEEP, format_func=lambda c: class_names[c], help="from the top-5 predictions")
try:
    for name in [method, *more_methods]:
        wanted = (selection.target, *pixel_targets)
        for target, result in zip(wanted, cached_explain(model, selection.model_key, selection.image_hash,
                                                         selection.x.numpy(), name, wanted)):
            if (name, target) != (method, selection.target):  # that one is already "· original"
                page_maps[f"{name} · original · {class_names[target]}"] = result[0]
except XAIError as err:
    st.error(as_text(str(err)))
pixel_cols = st.columns(2)
py = pixel_cols[0].number_input("Pixel row (y)", 0, height - 1, height // 2, key=f"{KEY_PREFIX}.pixel_y",
                                persist_state=KEEP)
px = pixel_cols[1].number_input("Pixel column (x)", 0, width - 1, width // 2, key=f"{KEY_PREFIX}.pixel_x",
                                persist_state=KEEP)
show_table(pixel_table(pixel_report(page_maps, int(py), int(px))), "What-if pixel", prov, hide_index=True)
if method == "occlusion":
    extras, spec = original[2], METHODS["occlusion"].params
    positions = occluder_positions_at(np.asarray(extras["probability_grid"]),
                                      float(extras["base_probability"]),
                                      extras["occluder_ys"], extras["occluder_xs"], spec["window"].default,
                                      int(py), int(px))
    st.caption("Occluder positions covering the pixel with the largest probability drop")
    show_table(positions, "What-if occluders", prov, hide_index=True)
elif method == "rise":
    spec = {name: p.default for name, p in METHODS["rise"].params.items()}
    found = rise_masks_at(model, selection.x, selection.target, int(py), int(px), engine=get_engine(selection.device),
                          **{k: spec[k] for k in ("shape", "cell", "p", "seed", "fill", "constant")})
    st.caption("Of RISE's first 64 masks: those keeping the pixel with the highest probability, those removing "
               "it with the lowest")
    show_table([{"kind": kind, "mask": r["index"], "probability": r["probability"]}
                for kind, found_rows in found.items() for r in found_rows], "What-if RISE masks", prov,
               hide_index=True)
