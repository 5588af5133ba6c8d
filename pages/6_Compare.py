"""Two to four models on the sidebar's image: models (rows) × methods (columns) for one class chosen by
name, each model's top-5 predictions, how much the models' maps agree, and each model's class
visualisation (or deep dream of the image) side by side."""
import streamlit as st

from ui.cache import cached_predict, get_engine
from ui.compare_figures import agreement_frame, comparison_grid, inversion_figure, predictions_column
from ui.compare_session import (CompareInversion, cached_maps, class_options, has_shared_params, load_compared,
                                model_options, sidebar_option)
from ui.inversion_controls import stop_resume_advance
from ui.params import param_widgets
from ui.provenance import provenance
from ui.sidebar import sidebar
from ui.text import as_text
from ui.url_state import stop_page
from ui.views import file_stem, show_figure, show_table
from xai_core.compare import compare_models, match_classes
from xai_core.errors import XAIError
from xai_core.inversion import InversionSettings
from xai_core.methods import METHODS
from xai_core.render import COLORMAPS

KEY = "compare"
DEFAULT_MODELS = ("embedded", "embedded_resnet", "embedded_vgg", "embedded_vit")  # after the sidebar's model
DEFAULT_METHODS = ("gradcam", "saliency")
MAX_MODELS = 4
CELL_PX = 200
PARAMETER_COLUMNS = 3
PLOT = {"width": "stretch", "config": {"displayModeBar": False}}
SCALES = {"per model": False, "shared across models": "column"}
NOISE, DREAM = "class visualisation (from noise)", "deep dream (from the sidebar image)"

selection = sidebar()
st.title("Compare models")
st.caption("The same image and the same class on several models: where each one looks, what it predicts, "
           "how much their maps agree, and what each has learnt of the class.")

options = model_options(selection)
defaults = [sidebar_option(selection)] + [name for name in DEFAULT_MODELS if options.get(name)]
c1, c2 = st.columns([3, 1])
labels = c1.multiselect("Models (rows)", list(options), default=list(dict.fromkeys(defaults))[:2],
                        max_selections=MAX_MODELS, key=f"{KEY}.models", persist_state="session",
                        format_func=lambda o: o if options[o] else f"{o} (weights unavailable)")
timm_name = c2.text_input("… and a timm model", "", key=f"{KEY}.timm", persist_state="session",
                          placeholder="e.g. resnet18", help="Any timm model by name; its weights come from "
                          "your local cache (nothing is downloaded).").strip()
if timm_name:
    labels = labels + [timm_name if timm_name.startswith("timm:") else f"timm:{timm_name}"]
if len(labels) > MAX_MODELS:
    st.warning(f"At most {MAX_MODELS} models: {as_text(', '.join(labels[MAX_MODELS:]))} left out.")
methods = st.multiselect("Methods (columns)", list(METHODS), default=[m for m in DEFAULT_METHODS if m in METHODS],
                         key=f"{KEY}.methods", persist_state="session", format_func=lambda m: METHODS[m].label)

compared, load_errors = load_compared(labels[:MAX_MODELS], selection, st.session_state)
for message in load_errors:
    st.warning(as_text(message))
if not compared or not methods:
    st.info("Choose at least one model that loads and one method.")
    stop_page()

matches = match_classes([row.model.categories for row in compared])
if not matches:
    st.error("These models share no class name, so they cannot be compared on one class: "
             + "; ".join(f"{as_text(row.label)} has {as_text(', '.join(row.model.categories[:3]))}…"
                         for row in compared))
    stop_page()
classes = class_options(matches)
wanted = selection.target_name.casefold()
default_class = next((i for i, m in enumerate(classes.values()) if m.name.casefold() == wanted), 0)
class_label = st.selectbox(f"Class (by name; {len(classes)} shared by every model)", list(classes),
                           index=default_class, key=f"{KEY}.class", persist_state="session")
match = classes[class_label]

c1, c2, c3, c4 = st.columns(4)
scale = SCALES[c1.radio("Colour scale", list(SCALES), horizontal=True, key=f"{KEY}.scale", persist_state="session",
                        help="per model: each map spans the whole colormap (two networks' scores, hence their "
                             "maps, have their own units); shared across models: one range per method, so a "
                             "method's maps compare in strength across the models.")]
percent = c2.slider("Top-k % for the overlap", 1, 50, 10, key=f"{KEY}.percent", persist_state="session")
colormap = c3.selectbox("Colormap", COLORMAPS, key=f"{KEY}.colormap", persist_state="session")
opacity = c4.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key=f"{KEY}.opacity", persist_state="session")

chosen = {name: {} for name in methods}
tunable = [name for name in methods if has_shared_params(METHODS[name])]
slots = st.columns(PARAMETER_COLUMNS) if tunable else []
for i, name in enumerate(tunable):
    spec = METHODS[name]
    with slots[i % PARAMETER_COLUMNS].expander(f"{spec.label} parameters, for every model"):
        chosen[name] = param_widgets(spec, compared[0].model, key_prefix=KEY, layers=False)
if any(METHODS[name].uses_layer for name in methods):
    st.caption("Layer methods run on each model's own default layer: "
               + ", ".join(f"{as_text(row.label)} → `{row.model.default_layer}`" for row in compared) + ".")

comparison = compare_models([row.model for row in compared], [row.input for row in compared], match, chosen,
                            maps=cached_maps(compared, selection.image_hash))

# ------------------------------------------------------------------------ grid
row_labels = [(row.label, row.model.class_label(t)) for row, t in zip(compared, comparison.targets)]
grid = comparison_grid([row.display_image for row in compared], comparison.maps, row_labels,
                       [METHODS[m].label for m in methods], comparison.refusals, colormap, opacity, scale, CELL_PX)
prov = provenance(selection, method=", ".join(METHODS[m].label for m in methods), target=match.name,
                  models=[row.label for row in compared], params={
                      "colour scale": scale or "per model", "top-k %": percent, "colormap": colormap,
                      "opacity": opacity, **{f"{m}.{k}": v for m, values in chosen.items() for k, v in values.items()}})
grid_col, predictions_col = st.columns([max(2, len(methods)), 1.3])
show_figure(grid, "Compare models", prov, container=grid_col, arrays={  # one entry per map: input sizes differ
    f"map_{file_stem(row.label)}_{m}": heatmap for row, maps in zip(compared, comparison.maps)
    for m, heatmap in zip(methods, maps) if heatmap is not None}, **PLOT)
show_figure(predictions_column(
    [cached_predict(row.model, row.key, selection.image_hash, row.x, 5) for row in compared], grid),
    "Compare predictions", prov, container=predictions_col, **PLOT)
for (r, c), reason in comparison.refusals.items():
    st.warning(f"{METHODS[methods[c]].label} on {as_text(compared[r].label)}: {as_text(reason)}")

st.subheader("Agreement between models")
if len(compared) < 2:
    st.info("Choose a second model to see how the maps agree.")
else:
    show_table(agreement_frame(comparison.agreement(percent), [row.label for row in compared],
                               {m: METHODS[m].label for m in methods}, percent), "Compare agreement", prov,
               hide_index=True)
    st.caption(f"Spearman ρ: rank correlation of the two maps' pixels (1: same order, −1: reversed). IoU: "
               f"intersection over union of each map's top {percent} % pixels. Maps of models with different "
               "input sizes are compared at the smaller size.")

# ------------------------------------------------------------------ inversion
st.subheader(f"What each model has learnt of {as_text(match.name)}")
session = CompareInversion(st.session_state)
inversion_defaults = InversionSettings()
with st.form(f"{KEY}.inversion_form"):
    c1, c2 = st.columns(2)
    mode = c1.radio("Start", (NOISE, DREAM), horizontal=True, key=f"{KEY}.inversion_start", persist_state="session")
    steps = c2.slider("Steps", 10, 2000, inversion_defaults.steps, step=10, key=f"{KEY}.inversion_steps",
                      persist_state="session")
    submitted = st.form_submit_button("Run on every model", type="primary")
settings = InversionSettings(steps=steps)
dream = mode == DREAM
start_image = selection.image if dream else None
inversion_key = CompareInversion.key(compared, match, settings, selection.image_hash if dream else None)
session.keep_only(inversion_key)
if submitted:
    try:
        session.start_compared(compared, match, settings, start_image=start_image, key=inversion_key,
                               engine=get_engine(selection.device))
    except XAIError as err:
        st.error(as_text(str(err)))
stop_resume_advance(session, key=f"{KEY}.inv", label="Optimising every model (Stop keeps what is reached)")
results = session.results()
if results:
    show_figure(inversion_figure(results), f"Compare inversion {match.name}",
                provenance(selection, method="Model inversion", target=match.name, models=[row.label for row in compared],
                           params={"start": mode, "steps": steps}), **PLOT | {"width": "content"})
    st.caption("Gradient ascent on the class score of each model (library defaults, "
               "`xai_core.inversion.InversionSettings`); the numbers are the score before → after.")
else:
    st.caption("Long work: each model optimises an image for the class; Stop keeps what is reached.")
