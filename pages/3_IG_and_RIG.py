"""Integrated Gradients, and Reinforced IG (RIG) following Mazini Rodrigues, Boutry & Najman."""
import numpy as np
import pandas as pd
import streamlit as st

from ui.cache import cached_explain, get_engine, progress_bar, run_with_progress
from ui.colormaps import DIVERGING
from ui.figures import heatmap_grid, learning_curves_figure, outline_regions, overlay_figure
from ui.sidebar import sidebar
from xai_core import dataset, rig
from xai_core.errors import ParameterError, XAIError
from xai_core.methods.integrated_gradients import BASELINES, REDUCTIONS, RULES

PLOT = {"width": "stretch", "config": {"displayModeBar": False}}

selection = sidebar()
model = selection.model
st.title("Integrated Gradients and RIG")

# ----------------------------------------------------------------------------- IG
st.header("Integrated Gradients")
c1, c2, c3, c4 = st.columns(4)
steps = c1.slider("Steps", 4, 256, 32, help="points on the straight path from the baseline to the image")
baseline = c2.selectbox("Baseline", BASELINES, help="mean = the dataset mean (normalised zero); blur: σ = side/16")
rule = c3.selectbox("Integration rule", RULES, index=RULES.index("gausslegendre"))
reduce = c4.selectbox("Channel reduction", REDUCTIONS, help="sum, |sum| or the positive part of the sum")
noise_draws = st.slider("Noise draws", 1, 16, 4) if baseline == "noise" else 4
targets = st.multiselect("Target classes", range(model.num_classes), default=[selection.target],
                         format_func=model.class_label, max_selections=4)
if targets:
    params = {"steps": steps, "baseline": baseline, "rule": rule, "reduce": reduce, "noise_draws": noise_draws}
    bar = progress_bar("Integrated Gradients")
    try:
        results = cached_explain(model, selection.model_key, selection.image_hash, selection.x.numpy(), "ig",
                                 tuple(targets), tuple(sorted(params.items())), _progress=bar, with_extras=True)
    except XAIError as err:
        st.error(str(err))
        results = []
    finally:
        bar.done()
    for column, target, (ig_map, _attribution, _extras) in zip(st.columns(len(targets)), targets, results):
        with column:
            st.plotly_chart(overlay_figure(selection.display_image, ig_map, DIVERGING if reduce == "sum" else "viridis",
                                           title=model.categories[target]), **PLOT)
    st.markdown("**Completeness** — Σ IG should equal f(x) − f(x′) (logits). The gap is quadrature error (the "
                "gradient of a ReLU network jumps along the path); it shrinks, if not monotonically, with more steps.")
    for target, (_map, attribution, extras) in zip(targets, results):
        difference = extras["f_input"] - extras["f_baseline"]
        gap = abs(float(attribution.sum()) - difference)
        cells = st.columns(5)
        cells[0].metric(f"f(x) — {model.categories[target]}", f"{extras['f_input']:.4f}")
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
    "as in the paper: four support networks and five maps for α ∈ {0, 2, 4, 6, 8}.")
st.info("The paper does not state how a feature counts as *present* in a map. Our reading: a pixel is "
        "important in a map when its attribution is at least τ × that map's maximum (negative attributions "
        "dropped); the RIG region is the intersection over all networks.")

embedded = model.name == "embedded"
default_pair = dataset.PART_PAIR if embedded else tuple(p["index"] for p in selection.predictions[:2])
c1, c2 = st.columns(2)
class_a = c1.selectbox("Class A", range(model.num_classes), index=int(default_pair[0]), format_func=model.class_label)
class_b = c2.selectbox("Class B", range(model.num_classes), index=int(default_pair[1]), format_func=model.class_label)
c1, c2, c3, c4 = st.columns(4)
alpha_text = c1.text_input("α values", "0, 2, 4, 6, 8")
epochs = c2.number_input("Epochs", 1, 100, rig.DEFAULT_EPOCHS)
lr = c3.number_input("Learning rate", 1e-7, 1e-1, rig.DEFAULT_LR, format="%.1e")
tau = c4.slider("τ", 0.05, 1.0, rig.DEFAULT_TAU, 0.05, help="important = attribution ≥ τ × the map's max")
c1, c2, c3 = st.columns(3)
rig_steps = c1.slider("IG steps for RIG", 4, 128, 32)
if embedded:
    n_train = c2.select_slider("Training images (embedded dataset)", [64, 128, 256, 512, 1024], 256)
    data_seed = c3.number_input("Training seed", 0, 2**31 - 1, 0)
else:
    folder = c2.text_input("ImageFolder of the two classes (one subfolder per class, named by class)", "")


def _training_sets():
    """(train, validation) for the chosen pair; ParameterError when impossible."""
    pair = (class_a, class_b)
    if class_a == class_b:
        raise ParameterError("Choose two different classes.")
    if embedded:
        return rig.embedded_data(model, pair, int(data_seed), n_train), \
            rig.embedded_data(model, pair, int(data_seed) + 1, max(64, n_train // 4))
    if not folder:
        raise ParameterError("Give the folder of training images of the two classes.")
    return rig.folder_data(model, folder, pair)


def _parse_alphas():
    try:
        return [float(v) for v in alpha_text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ParameterError("α values must be numbers separated by commas.") from None


state = st.session_state.setdefault("rig", {"data": {}, "supports": {}, "explanations": {}, "occlusion": {},
                                            "accuracy": {}})
data_key = (selection.model_key, class_a, class_b, *((n_train, data_seed) if embedded else (folder,)))
try:
    if data_key not in state["data"]:  # generating or reading the images takes seconds: once per session
        state["data"][data_key] = _training_sets()
    train, val = state["data"][data_key]
    alphas = _parse_alphas()
except XAIError as err:
    st.warning(str(err))
    st.stop()
settings = (selection.model_key, train.identity, tuple(alphas), float(lr), int(epochs))
supports = state["supports"].get(settings)
if st.button("Train or load the support networks", type="primary", disabled=supports is not None):
    try:
        supports = run_with_progress("Support networks", lambda p: rig.train_support_networks(
            model, train, alphas, lr=float(lr), epochs=int(epochs), progress=p))
        state["supports"][settings] = supports
    except XAIError as err:
        st.error(str(err))
if supports is None:
    st.caption("Trained networks are stored on disk under a key of every setting, so the same request later "
               "(or after a restart) loads them instead of training.")
    st.stop()

names = [model.categories[c] for c in supports.classes]
st.success(("Loaded from disk" if supports.loaded_from_disk else "Trained and stored") +
           f" — {len(supports.networks)} support networks in {supports.directory}")
left, right = st.columns(2)
with left:
    st.plotly_chart(learning_curves_figure({f"α = {a:g}": c for a, c in supports.curves.items()}), **PLOT)
with right:
    st.subheader("Accuracy per class (paper's Table 1 layout)")
    if settings not in state["accuracy"]:
        state["accuracy"][settings] = rig.accuracy_table(model, supports, train, val)
    table = pd.DataFrame(state["accuracy"][settings]).set_index("network")
    table.index.name = None
    table.columns = pd.MultiIndex.from_tuples([tuple(c.split(" ", 1)) for c in table.columns])
    st.dataframe(table.T.style.format("{:.1f}"), width="stretch")  # networks as columns: fits half the page
    st.caption(f"Prediction = the larger of the two logits. Train: {train.source}; validation: {val.source}.")

# ------------------------------------------------------------ IG vs RIG on several images
st.subheader("IG and RIG side by side")
count = st.slider("Images (the selected one plus held-out ones)", 1, 6, 3)
inputs = [("selected", selection.x)] + [(f"held-out {i + 1}", val.images[i])
                                       for i in range(min(count - 1, len(val.labels)))]
explain_key = (settings, selection.image_hash, count, float(tau), rig_steps)
if explain_key not in state["explanations"] and st.button("Explain these images with IG and RIG"):
    engine = get_engine(selection.device)
    state["explanations"][explain_key] = run_with_progress("IG on every network", lambda p: [
        rig.rig_explain(model, x, supports, tau=tau, steps=rig_steps, engine=engine,
                        progress=lambda f, m, i=i: p((i + f) / len(inputs), m)) for i, (_, x) in enumerate(inputs)])
explanations = state["explanations"].get(explain_key)
if explanations is None:
    st.stop()

images = [model.to_display(x) for _, x in inputs]
grid = heatmap_grid(images, [[e.ig[0], e.rig[0], e.ig[1], e.rig[1]] for e in explanations], [n for n, _ in inputs],
                    [f"IG {names[0]}", f"RIG {names[0]}", f"IG {names[1]}", f"RIG {names[1]}"], colormap=DIVERGING,
                    shared_scale=False)
st.plotly_chart(outline_regions(grid, {(row, 1 + 2 * c): e.region[c] for row, e in enumerate(explanations)
                                       for c in range(2)}, "RIG region"), **PLOT)
pixels = explanations[0].region[0].size
st.caption(f"Signed IG and RIG (blue < 0 < red, each map to its own ±max). Green squares outline the RIG region "
           f"(pixels important in every network's map at τ = {tau:g}); it is often only a few of the {pixels} pixels.")
kinds = {"ig_important": "IG ≥ τ·max", "rig": "RIG"}
st.dataframe(pd.DataFrame([{"image": n, **{f"{kinds[kind]} {names[i]}": f"{100 * float(e.area[kind][i]):.2f} % "
                                           f"({round(float(e.area[kind][i]) * pixels)} px)"
                                           for kind in kinds for i in range(2)}}
                           for (n, _), e in zip(inputs, explanations)]).set_index("image"), width="stretch")
st.caption("Area kept: share (and number) of pixels important in the classifier's IG map (≥ τ × max) and in the "
           "RIG region.")

with st.expander("Each network's IG map"):
    shown = st.selectbox("Image", range(len(inputs)), format_func=lambda i: inputs[i][0])
    e = explanations[shown]
    st.plotly_chart(heatmap_grid(images[shown], [[e.network_maps[k][c] for k in range(len(e.network_names))]
                                                 for c in range(2)], names, e.network_names,
                                 colormap=DIVERGING, shared_scale=False), **PLOT)
    st.caption("Completeness gap per network and class: " + "; ".join(
        f"{n}: {g[0]:.1e}, {g[1]:.1e}" for n, g in zip(e.network_names, e.completeness_gap)))

# ------------------------------------------------------------------------ occlusion
st.subheader("Pre-softmax logits after occlusion (paper's Table 3 layout)")
rows = {}
for index, ((_, x), e) in enumerate(zip(inputs, explanations), start=1):
    logits = rig.occlusion_logits(model, x, supports.classes, e.occlusion_region, e.ig_scores)
    rows[f"{index}.1 (RIG region)"] = [*logits[1], *logits[0]]
    rows[f"{index}.2 (same area, IG)"] = [*logits[2], np.nan, np.nan]
columns = [f"{names[0]} (occl.)", f"{names[1]} (occl.)", f"{names[0]} (orig.)", f"{names[1]} (orig.)"]
state["occlusion"][selection.model_key] = (model.arch, pd.DataFrame.from_dict(rows, orient="index", columns=columns))
recent = list(state["occlusion"].values())[-2:]
same_rows = len(recent) == 2 and recent[0][1].index.equals(recent[1][1].index)
tables = recent if same_rows else recent[-1:]
# Formatted to text here: the data grid shows a missing number as "None", whatever the Styler's na_rep says.
st.dataframe(pd.concat({arch: frame for arch, frame in tables}, axis=1).map(
    lambda v: "—" if pd.isna(v) else f"{v:.3f}"), width="stretch")
st.caption("Black (the IG baseline) over the RIG regions of both classes (.1), and over an equally large region "
           "of the classifier's strongest IG pixels (.2; — : the original logits are in row .1). With two "
           "architectures explained in this session on "
           "the same images, both appear side by side.")

# ------------------------------------------------------------------------ part share
if embedded:
    st.subheader("Does RIG find the discriminative part? (embedded dataset)")
    c1, c2 = st.columns(2)
    n_held_out = c1.slider("Held-out images", 4, 64, 16)
    held_out_seed = c2.number_input("Held-out seed", 0, 2**31 - 1, 10_000)
    if st.button("Compute the part-share report"):
        report = run_with_progress("Part-share report", lambda p: rig.part_share_report(
            model, supports, seed=int(held_out_seed), n=n_held_out, tau=tau, steps=rig_steps,
            engine=get_engine(selection.device), progress=p))
        summary = {k: v for k, v in report.items() if k != "per_image"}
        st.table(pd.DataFrame({"value": summary}).astype(str))
        st.caption("share: positive attribution inside the part over all positive attribution; precision: share of "
                   "the selected pixels on the part (RIG region vs the equally large top-IG region); part_area is "
                   "chance level; margin: own-class minus other-class logit, original and after blacking out the "
                   "RIG region or the equally large top-IG region; flipped: share of decisions changed.")
