"""Integrated Gradients, and Reinforced IG (RIG) following Mazini Rodrigues, Boutry & Najman.

Each section is widgets → one library call → one figure or table. IG's widgets come from its
registered ``Param`` specs. RIG runs on the sidebar's model and, as the paper's tables do, on a
second architecture picked here, side by side; what the session remembers between reruns
(second model, training images, networks, explanations) is ``ui/rig_session.py``, the tables
are ``ui/rig_tables.py``.
"""
import numpy as np
import streamlit as st

from ui.cache import cached_explain, get_engine, get_model, model_key, progress_bar, run_with_progress
from ui.colormaps import DIVERGING
from ui.data_folders import folder_picker
from ui.figures import heatmap_grid, learning_curves_figure, outline_regions, overlay_figure
from ui.params import param_widgets
from ui.provenance import provenance
from ui.rig_session import (NO_SECOND_MODEL, RigSession, TrainingRequest, architectures, default_pair,
                            explained_inputs, second_model_default)
from ui.rig_tables import accuracy_frame, area_frame, occlusion_frame, part_share_frame, side_by_side
from ui.sidebar import class_choices, keep_known_classes, sidebar
from ui.text import as_text
from ui.url_state import stop_page
from ui.views import show_figure, show_grid, show_table
from xai_core import rig
from xai_core.errors import XAIError
from xai_core.methods import METHODS
from xai_core.models import list_models

PLOT = {"width": "stretch", "config": {"displayModeBar": False}}
IG = METHODS["ig"]
TRAINING_SIZES = sorted({64, 128, 256, 512, 1024, rig.DEFAULT_N})
KEY_PREFIX = "ig_rig"
KEEP = "session"

selection = sidebar()
model = selection.model
st.title("Integrated Gradients and RIG")

# ----------------------------------------------------------------------------- IG
st.header("Integrated Gradients")
params = param_widgets(IG, model, key_prefix=KEY_PREFIX, columns=4)
classes = class_choices(model)  # every class picker keeps its classes by name across a model change
for picker in ("targets", "class_a", "class_b"):
    keep_known_classes(f"{KEY_PREFIX}.{picker}", model, classes)


def class_label(choice: str) -> str:
    return model.class_label(classes[choice])


targets = [classes[c] for c in st.multiselect(
    "Target classes", list(classes), default=[list(classes)[selection.target]], max_selections=4,
    format_func=class_label, key=f"{KEY_PREFIX}.targets", persist_state=KEEP)]
if targets:
    bar = progress_bar(IG.label)
    try:
        results = cached_explain(model, selection.model_key, selection.image_hash, selection.x.numpy(), IG.name,
                                 tuple(targets), tuple(sorted(params.items())), _progress=bar, with_extras=True)
    except XAIError as err:
        st.error(as_text(str(err)))
        results = []
    finally:
        bar.done()
    colormap = DIVERGING if params["reduce"] == "sum" else "viridis"
    for column, target, (ig_map, attribution, _extras) in zip(st.columns(len(targets)), targets, results):
        show_figure(overlay_figure(selection.display_image, ig_map, colormap, title=model.categories[target],
                                   outlines=selection.outlines),
                    f"Integrated Gradients {model.categories[target]}", provenance(
                        selection, method=IG.label, params=params, target=model.class_label(target)),
                    container=column, arrays={"map": ig_map, "attribution": attribution}, key=str(target), **PLOT)
    st.markdown("**Completeness** — Σ IG should equal f(x) − f(x′) (logits). The gap is quadrature error (the "
                "gradient of a ReLU network jumps along the path); it shrinks, if not monotonically, with more steps.")
    for target, (_map, attribution, extras) in zip(targets, results):
        difference = extras["f_input"] - extras["f_baseline"]
        gap = float(extras["completeness_gap"])
        cells = st.columns(5)
        cells[0].metric(f"f(x) — {as_text(model.categories[target])}", f"{extras['f_input']:.4f}")
        cells[1].metric("f(x′) (baseline)", f"{extras['f_baseline']:.4f}")
        cells[2].metric("Σ IG", f"{float(attribution.sum()):.4f}")
        cells[3].metric("Gap |Σ IG − (f(x) − f(x′))|", f"{gap:.3g}")
        cells[4].metric("Relative gap", f"{gap / abs(difference):.2%}" if difference else "—",
                        help="gap / |f(x) − f(x′)|")

# ---------------------------------------------------------------------------- RIG
st.header("Reinforced Integrated Gradients (RIG)")
st.markdown(
    "For two classes A and B, support **regression** networks are trained from copies of the classifier: "
    "on images of A the B logit is lowered by α, on images of B the A logit, everything else unchanged "
    "(MSE, Adam). IG (black baseline) is computed on the classifier and on every support network; RIG keeps "
    "what is important in **every** map. α = 0 is the classifier itself (its targets are its own outputs), "
    "as in the paper: four support networks and five maps for α ∈ {0, 2, 4, 6, 8}. The paper reports every "
    "table for two architectures: pick a second model to run the same pair on both.")
st.info("The paper does not state how a feature counts as *present* in a map. Our reading: a pixel is "
        "important in a map when its attribution is at least τ × that map's maximum (negative attributions "
        "dropped); the RIG region is the intersection over all networks.")

session = RigSession(st.session_state)
rows = {row["name"]: row for row in list_models() if row["name"] != model.name}
second_options = [NO_SECOND_MODEL, *rows]
second_name = st.selectbox(
    "Second architecture", second_options,
    index=second_options.index(second_model_default(model, list(rows), [n for n, r in rows.items()
                                                                        if r["weights_available"]])),
    format_func=lambda n: n if n == NO_SECOND_MODEL or rows[n]["weights_available"] else f"{n} (weights unavailable)",
    key=f"{KEY_PREFIX}.second_model", persist_state=KEEP,
    help="Trained and explained with the same settings, on the same pair (matched by class name) and image.")
second_key = None if second_name == NO_SECOND_MODEL else model_key(second_name, None, None, selection.device)
try:
    second = session.second_model(second_key, lambda: get_model(second_name, None, None, selection.device))
except XAIError as err:
    st.warning(f"{err} Showing {as_text(model.name)} alone.")  # a registry model's error: no user text
    second = None
models = [(selection.model_key, model), *([(second_key, second)] if second is not None else [])]

embedded = rig.uses_embedded_dataset(model)
pair = default_pair(model, selection.predictions)
c1, c2 = st.columns(2)
c1, c2 = st.columns(2)
class_a = classes[c1.selectbox("Class A", list(classes), index=int(pair[0]), format_func=class_label,
                               key=f"{KEY_PREFIX}.class_a", persist_state=KEEP)]
class_b = classes[c2.selectbox("Class B", list(classes), index=int(pair[1]), format_func=class_label,
                               key=f"{KEY_PREFIX}.class_b", persist_state=KEEP)]
c1, c2, c3, c4 = st.columns(4)
alpha_text = c1.text_input("α values", rig.format_alphas(rig.DEFAULT_ALPHAS), key=f"{KEY_PREFIX}.alphas",
                           persist_state=KEEP)
epochs = c2.number_input("Epochs", 1, 100, rig.DEFAULT_EPOCHS, key=f"{KEY_PREFIX}.epochs", persist_state=KEEP)
lr = c3.number_input("Learning rate", 1e-7, 1e-1, rig.DEFAULT_LR, format="%.1e", key=f"{KEY_PREFIX}.lr",
                     persist_state=KEEP)
tau = c4.slider("τ", 0.05, 1.0, rig.DEFAULT_TAU, 0.05, help="important = attribution ≥ τ × the map's max",
                key=f"{KEY_PREFIX}.tau", persist_state=KEEP)
c1, c2, c3 = st.columns(3)
rig_steps = c1.slider("IG steps for RIG", 4, 128, rig.DEFAULT_STEPS, key=f"{KEY_PREFIX}.rig_steps",
                      persist_state=KEEP)
folder, n_train, data_seed = None, rig.DEFAULT_N, rig.DEFAULT_SEED
if embedded:
    n_train = c2.select_slider("Training images (embedded dataset)", TRAINING_SIZES, rig.DEFAULT_N,
                               key=f"{KEY_PREFIX}.n_train", persist_state=KEEP)
    data_seed = int(c3.number_input("Training seed", 0, 2**31 - 1, rig.DEFAULT_SEED, key=f"{KEY_PREFIX}.data_seed",
                                    persist_state=KEEP))
else:
    folder = folder_picker(c2, "Folder of training images of the two classes", f"{KEY_PREFIX}.folder",
                           "A dataset-export folder, or one with a subfolder of images per class named by class.")


def training_data() -> list[tuple[rig.TrainingData, rig.TrainingData]]:
    """(train, validation) per architecture; a warning and the page's end on a bad source."""
    try:
        return [session.training_sets(a.model, a.classes, folder=folder, seed=data_seed, n=n_train) for a in archs]
    except XAIError as err:
        st.warning(as_text(str(err)))
        stop_page()


try:
    archs, left_out = architectures(models, [class_a, class_b], selection.image, selection.x)
    requests = [TrainingRequest(a.model_key, session.data_key(a.model, a.classes, folder=folder, seed=data_seed,
                                                              n=n_train), tuple(rig.parse_alphas(alpha_text)),
                                float(lr), int(epochs)) for a in archs]
except XAIError as err:
    st.warning(as_text(str(err)))
    stop_page()
# Generated images wait until training needs them (seconds on a first view); a folder is read now, so
# that its errors show before any training.
data = None if embedded else training_data()
for note in left_out:
    st.warning(as_text(note))
names = [model.categories[c] for c in archs[0].classes]  # the pair as the sidebar's model names it
rig_prov = provenance(selection, method="Reinforced IG", target=names, models=[a.label for a in archs], params={
    "alphas": alpha_text, "epochs": epochs, "learning rate": lr, "tau": tau, "IG steps": rig_steps,
    **({"training images": n_train, "training seed": data_seed} if embedded else {"folder": folder})})

supports = [session.supports(request) for request in requests]
if st.button("Train or load the support networks", type="primary", disabled=None not in supports):
    data = data or training_data()
    for i, a in enumerate(archs):
        if supports[i] is None:
            try:
                supports[i] = run_with_progress(f"Support networks of {a.label}", lambda p, i=i: session.train(
                    archs[i].model, data[i][0], requests[i], p))
            except XAIError as err:
                st.error(f"{a.label}: {as_text(str(err))}")
if None in supports:
    st.caption("Trained networks are stored on disk under a key of every setting (the architecture and its "
               "weights included), so the same request later (or after a restart) loads them instead of training.")
    stop_page()
data = data or training_data()

for column, a, s, (train, val), request in zip(st.columns(len(archs)), archs, supports, data, requests):
    with column:
        st.subheader(a.label)  # model names: the registry's, or a timm name of letters, digits, "_.-"
        stored = s.loaded_from_disk or s.directory.is_dir()  # a set the store could not write leaves no folder
        if stored:
            st.success(("Loaded from disk" if s.loaded_from_disk else "Trained and stored") +
                       f" — {len(s.networks)} support networks in {as_text(str(s.directory))}")
        else:
            st.info(f"Trained, not stored — {len(s.networks)} support networks, held in memory only")
        for notice in s.notices:  # the store's: a damaged set deleted and trained again, a set not stored
            st.warning(as_text(notice))
        show_figure(learning_curves_figure({f"α = {alpha:g}": c for alpha, c in s.curves.items()}),
                    f"RIG support networks learning curves {a.label}", rig_prov, **PLOT)
        st.markdown("**Accuracy per class (paper's Table 1 layout)**")
        show_table(accuracy_frame(session.accuracy(a.model, request, s, train, val)).style.format("{:.1f}"),
                   f"RIG accuracy per class {a.label}", rig_prov, width="stretch")
        st.caption(f"Prediction = the larger of the two logits. Train: {as_text(train.source)}; validation: "
                   f"{as_text(val.source)}.")

# ------------------------------------------------------------ IG vs RIG on several images
st.subheader("IG and RIG side by side")
count = st.slider("Images (the selected one plus held-out ones)", 1, 6, 3, key=f"{KEY_PREFIX}.count",
                  persist_state=KEEP)
inputs = [explained_inputs(a.x, val, count) for a, (_, val) in zip(archs, data)]
explain_keys = [(request, selection.image_hash, count, float(tau), rig_steps) for request in requests]
explanations = [session.explanations(key) for key in explain_keys]
if None in explanations and st.button("Explain these images with IG and RIG"):
    for i, a in enumerate(archs):
        if explanations[i] is None:
            explanations[i] = run_with_progress(f"IG on every network of {a.label}", lambda p, i=i: session.explain(
                explain_keys[i], archs[i].model, supports[i], inputs[i], tau=tau, steps=rig_steps,
                engine=get_engine(selection.device), progress=p))
if None in explanations:
    stop_page()

map_titles = [f"{kind} {name}" for name in names for kind in ("IG", "RIG")]
for column, a, shown, found in zip(st.columns(len(archs)), archs, inputs, explanations):
    grid = heatmap_grid([a.model.to_display(x) for _, x in shown], [[e.ig[0], e.rig[0], e.ig[1], e.rig[1]]
                                                                    for e in found],
                        [n for n, _ in shown], map_titles, colormap=DIVERGING, shared_scale=False)
    column.markdown(f"**{a.label}**")
    show_figure(outline_regions(grid, {(row, 1 + 2 * c): e.region[c] for row, e in enumerate(found)
                                       for c in range(2)}, "RIG region"), f"IG and RIG {a.label}", rig_prov,
                container=column, arrays={"ig": np.array([e.ig for e in found]), "rig": np.array([e.rig for e in found]),
                                          "rig_region": np.array([e.region for e in found]),
                                          "images": np.array([n for n, _ in shown])}, **PLOT)
st.caption(f"Signed IG and RIG (blue < 0 < red, each map to its own ±max). Green squares outline the RIG region "
           f"(pixels important in every network's map at τ = {tau:g}); it is often only a few of the "
           f"{explanations[0][0].region[0].size} pixels.")
show_table(side_by_side({a.label: area_frame(names, shown, found)
                         for a, shown, found in zip(archs, inputs, explanations)}), "RIG area kept", rig_prov,
           width="stretch")
st.caption("Area kept: share (and number) of pixels important in the classifier's IG map (≥ τ × max) and in the "
           "RIG region.")

with st.expander("Each network's IG map"):
    c1, c2 = st.columns(2)
    arch = c1.selectbox("Architecture", range(len(archs)), format_func=lambda i: archs[i].label,
                        key=f"{KEY_PREFIX}.network_maps_arch", persist_state=KEEP)
    picked = c2.selectbox("Image", range(len(inputs[arch])), format_func=lambda i: inputs[arch][i][0],
                          key=f"{KEY_PREFIX}.network_maps_image", persist_state=KEEP)
    e = explanations[arch][picked]
    show_grid(archs[arch].model.to_display(inputs[arch][picked][1]),
              [[e.network_maps[k][c] for k in range(len(e.network_names))] for c in range(2)], names,
              e.network_names, f"IG per network {archs[arch].label} {inputs[arch][picked][0]}", rig_prov,
              colormap=DIVERGING, shared_scale=False, **PLOT)
    st.caption("Completeness gap per network and class: " + "; ".join(
        f"{n}: {g[0]:.1e}, {g[1]:.1e}" for n, g in zip(e.network_names, e.completeness_gap)))

# ------------------------------------------------------------------------ occlusion
st.subheader("Pre-softmax logits after occlusion (paper's Table 3 layout)")
show_table(side_by_side({a.label: occlusion_frame(a.model, names, shown, found)
                         for a, shown, found in zip(archs, inputs, explanations)}), "RIG logits after occlusion",
           rig_prov, width="stretch")
st.caption("Black (the IG baseline) over the RIG regions of both classes (.1), and over an equally large region "
           "of the classifier's strongest IG pixels (.2; — : the original logits are in row .1), per architecture.")

# ------------------------------------------------------------------------ part share
if embedded:
    st.subheader("Does RIG find the discriminative part? (embedded dataset)")
    c1, c2 = st.columns(2)
    n_held_out = c1.slider("Held-out images", 4, 64, rig.DEFAULT_REPORT_N, key=f"{KEY_PREFIX}.n_held_out",
                           persist_state=KEEP)
    held_out_seed = c2.number_input("Held-out seed", 0, 2**31 - 1, rig.DEFAULT_REPORT_SEED,
                                    key=f"{KEY_PREFIX}.held_out_seed", persist_state=KEEP)
    if st.button("Compute the part-share report"):
        reports = {a.label: run_with_progress(f"Part-share report of {a.label}", lambda p, a=a, s=s: (
            rig.part_share_report(a.model, s, seed=int(held_out_seed), n=n_held_out, tau=tau, steps=rig_steps,
                                  engine=get_engine(selection.device), progress=p))) for a, s in zip(archs, supports)}
        show_table(part_share_frame(reports), "RIG part share", rig_prov | {
            "held-out images": str(n_held_out), "held-out seed": str(held_out_seed)}, table=True)
        st.caption("share: positive attribution inside the part over all positive attribution; precision: share of "
                   "the selected pixels on the part (RIG region vs the equally large top-IG region); part_area is "
                   "chance level; margin: own-class minus other-class logit, original and after blacking out the "
                   "RIG region or the equally large top-IG region; flipped: share of decisions changed.")
