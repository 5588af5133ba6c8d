"""Model inversion and deep dream (lab handout, exercise 1); Zeiler & Fergus's occlusion sensitivity,
DeconvNet projections and rotation / scale / shift sensitivity."""
import dataclasses

import numpy as np
import streamlit as st

from ui.cache import (cached_deconv_projections, cached_occlusion, cached_transform_sensitivity, get_engine,
                      get_model)
from ui.colormaps import DIVERGING
from ui.figures import (categorical_map_figure, history_figure, image_figure, image_grid_figure, line_figure,
                        overlay_figure, position_map_figure)
from ui.inversion_controls import stop_resume_advance
from ui.inversion_session import InversionSession
from ui.params import param_widget
from ui.provenance import provenance
from ui.sidebar import class_choices, keep_known_classes, sidebar
from ui.text import as_text
from ui.views import show_figure
from xai_core.errors import XAIError
from xai_core.inversion import OPTIMIZERS, PARAMETERIZATIONS, InversionSettings
from xai_core.methods.occlusion import OCCLUSION
from xai_core.models import list_models
from xai_core.zeiler_fergus import DECONV_TOP, PROJECTION_MODES, TRANSFORM_TOP, TRANSFORMS, transform_values

PLOT = {"width": "stretch", "config": {"displayModeBar": False}}
GRID = PLOT | {"width": "content"}  # a grid of small images keeps its own width instead of spreading out
KEY_PREFIX = "inversion"
KEEP = "session"

selection = sidebar()
model = selection.model
image = selection.display_image
st.title("Inversion and Zeiler & Fergus")
tab_inversion, tab_occlusion, tab_deconv, tab_transform = st.tabs(
    ["Model inversion / deep dream", "Occlusion sensitivity", "DeconvNet projections", "Rotation, scale, shift"])
layers = model.conv_layers()
default_layer = layers.index(model.default_layer) if model.default_layer in layers else len(layers) - 1

# The quick, cached sections run first; the inversion (long, interruptible) runs last.
# ------------------------------------------------------------------------ occlusion
with tab_occlusion:
    st.markdown("A square occluder slides over the image (Zeiler & Fergus, fig. 7): **(a)** the target's "
                "probability with the occluder at each position, **(b)** the most probable class there, "
                "**(c)** the total activation of the layer's strongest feature map (strongest on the intact image).")
    size = model.input_size
    c1, c2, c3, c4 = st.columns(4)
    window = c1.slider("Occluder size (px)", 1, size, max(1, size // 4), key=f"{KEY_PREFIX}.occ.window",
                       persist_state=KEEP)
    stride = c2.slider("Stride (px)", 1, window, max(1, window // 4), key=f"{KEY_PREFIX}.occ.stride",
                       persist_state=KEEP)
    fill = param_widget("fill", OCCLUSION.params["fill"], model, key=f"{KEY_PREFIX}.occ.fill", container=c3)
    layer = c4.selectbox("Layer for (c)", layers, index=default_layer, key=f"{KEY_PREFIX}.occ.layer",
                         persist_state=KEEP)
    try:
        occ = cached_occlusion(model, selection.model_key, selection.image_hash, selection.x.numpy(),
                               selection.target, window, stride, fill, layer)
    except XAIError as err:
        st.error(as_text(str(err)))
        occ = None
    if occ is not None:
        occ_prov = provenance(selection, method="Occlusion sensitivity (Zeiler & Fergus)",
                              params={"window": window, "stride": stride, "fill": fill, "layer": layer})
        positions = {"ys": np.asarray(occ.ys), "xs": np.asarray(occ.xs)}
        a, b, c = st.columns(3)
        show_figure(position_map_figure(image, occ.probability, occ.ys, occ.xs, occ.window,
                                        title=f"(a) p({selection.target_name})", value_label="probability"),
                    "Occlusion target probability", occ_prov, container=a,
                    arrays={"probability": occ.probability, **positions}, **PLOT)
        show_figure(categorical_map_figure(image, occ.top_class, occ.top_class_names, occ.ys, occ.xs,
                                           occ.window, title="(b) most probable class"),
                    "Occlusion most probable class", occ_prov, container=b,
                    arrays={"top_class": occ.top_class, **positions}, **PLOT)
        show_figure(position_map_figure(image, occ.feature_activation, occ.ys, occ.xs, occ.window,
                                        colormap="inferno", value_label="activation",
                                        title=f"(c) {layer}, map {occ.feature_channel}"),
                    "Occlusion feature activation", occ_prov, container=c,
                    arrays={"feature_activation": occ.feature_activation, **positions}, **PLOT)
        left, right = st.columns([1, 2])
        show_figure(overlay_figure(image, occ.drop_map, DIVERGING, title="Probability drop per pixel",
                                   outlines=selection.outlines),
                    "Occlusion probability drop per pixel", occ_prov, container=left,
                    arrays={"drop_map": occ.drop_map}, **PLOT)
        right.caption(f"{len(occ.ys) * len(occ.xs)} occluder positions, evaluated in batches. Intact image: "
                      f"p = {occ.base_probability:.3f}. The per-pixel map is p(x) − p(occluded), averaged over the "
                      "windows covering each pixel — Captum's `Occlusion` with a softmax output. Also on the "
                      "command line: `python -m xai_core explain --method occlusion --param window=.. "
                      "--param stride=.. --param fill=..`.")

# ------------------------------------------------------------------------ DeconvNet
with tab_deconv:
    st.markdown(f"The image's {DECONV_TOP} strongest feature maps of a layer, each sent back to pixel space "
                "alone through the DeconvNet (unpooling with the forward switches, rectification of the backward "
                "signal, transposed convolutions).")
    c1, c2 = st.columns(2)
    deconv_layer = c1.selectbox("Layer", layers, index=default_layer, key=f"{KEY_PREFIX}.zf.layer", persist_state=KEEP)
    mode = c2.radio("Signal sent back", PROJECTION_MODES, horizontal=True, key=f"{KEY_PREFIX}.zf.mode",
                    persist_state=KEEP,
                    format_func=lambda m: {"map": "whole feature map", "max": "its strongest activation only"}[m])
    try:
        proj = cached_deconv_projections(model, selection.model_key, selection.image_hash, selection.x.numpy(),
                                         deconv_layer, DECONV_TOP, mode)
    except XAIError as err:
        st.error(as_text(str(err)))
        proj = None
    if proj is not None:
        show_figure(image_grid_figure(proj.display(), [f"map {c} (max {a:.2f})" for c, a in
                                                       zip(proj.channels, proj.activations)]),
                    "DeconvNet projections", provenance(selection, method="DeconvNet projections",
                                                        params={"layer": deconv_layer, "mode": mode, "top": DECONV_TOP}),
                    arrays={"projections": np.asarray(proj.display()), "channels": np.asarray(proj.channels),
                            "activations": np.asarray(proj.activations)}, **GRID)
        st.caption("Each projection is scaled to its own largest |value| around mid-grey. A fine checkerboard is "
                   "expected: the DeconvNet ignores the forward ReLU masks, so the grid of the strided "
                   "(transposed) convolutions shows through, more than in a plain gradient of the same map."
                   + ("" if proj.relu_calls else " This network has no ReLU: these are plain gradients."))

# ------------------------------------------------------------------ transformations
with tab_transform:
    c1, c2 = st.columns(2)
    kind = c1.radio("Transformation", list(TRANSFORMS), horizontal=True, key=f"{KEY_PREFIX}.rot.kind",
                    persist_state=KEEP,
                    format_func=lambda k: TRANSFORMS[k])
    count = c2.slider("Values", 5, 73, 37, key=f"{KEY_PREFIX}.rot.count", persist_state=KEEP)
    values = transform_values(kind, count, model.input_size)
    try:
        sens = cached_transform_sensitivity(model, selection.model_key, selection.image_hash, selection.x.numpy(),
                                            kind, tuple(float(v) for v in values), TRANSFORM_TOP)
    except XAIError as err:
        st.error(as_text(str(err)))
        sens = None
    if sens is not None:
        sens_prov = provenance(selection, method=f"{TRANSFORMS[kind]} sensitivity", params={"values": count})
        curve, picture = st.columns([2, 1])
        show_figure(line_figure(sens.values, {f"{n} ({c})": sens.probabilities[:, i] for i, (c, n) in
                                              enumerate(zip(sens.classes, sens.class_names))},
                                x_title=TRANSFORMS[kind], y_title="probability"),
                    f"{TRANSFORMS[kind]} sensitivity", sens_prov, container=curve,
                    arrays={"values": np.asarray(sens.values), "probabilities": np.asarray(sens.probabilities),
                            "classes": np.asarray(sens.classes)}, **PLOT)
        curve.caption(f"Probabilities of the intact image's top {TRANSFORM_TOP} classes; uncovered pixels show the "
                      "dataset mean.")
        shown = picture.select_slider("Transformed input", range(len(sens.values)), value=len(sens.values) // 2,
                                      format_func=lambda i: f"{sens.values[i]:.3g}", key=f"{KEY_PREFIX}.rot.shown",
                                      persist_state=KEEP)
        show_figure(image_figure(sens.images[shown], title="predicted: "
                                 f"{model.categories[int(sens.predicted[shown])]}"),
                    f"{TRANSFORMS[kind]} input {sens.values[shown]:.3g}", sens_prov, container=picture,
                    arrays={"image": np.asarray(sens.images[shown])}, key="input", **PLOT)

# ------------------------------------------------------------------------ inversion
HISTORY_TITLES = {"score": "class score (logit)", "probability": "probability", "l2": "L2: mean(x²)",
                  "tv": "total variation", "objective": "objective = score − λ·L2 − μ·TV"}
NO_SECOND_MODEL = "(none)"
defaults = InversionSettings()

with tab_inversion:
    st.markdown("Gradient ascent on the pixels to maximise class scores (one batch row per class). From noise it "
                "shows what the network has learnt of a class; from the sidebar image it is a *deep dream*: the "
                "network amplifies what it already sees there.")
    classes = class_choices(model)  # kept by name across a model change
    keep_known_classes(f"{KEY_PREFIX}.targets", model, classes)
    with st.form(f"{KEY_PREFIX}.form"):
        targets = [classes[c] for c in st.multiselect(
            "Target classes", list(classes), default=[list(classes)[selection.target]], max_selections=6,
            format_func=lambda c: model.class_label(classes[c]), key=f"{KEY_PREFIX}.targets", persist_state=KEEP)]
        c1, c2, c3, c4 = st.columns(4)
        from_image = c1.radio("Start", ["noise", "sidebar image (deep dream)"], key=f"{KEY_PREFIX}.start",
                              persist_state=KEEP) != "noise"
        optimizer = c2.selectbox("Optimiser", OPTIMIZERS, index=OPTIMIZERS.index(defaults.optimizer),
                                 key=f"{KEY_PREFIX}.optimizer", persist_state=KEEP)
        lr = c3.number_input("Learning rate", 1e-4, 100.0, defaults.lr, format="%.4f", key=f"{KEY_PREFIX}.lr",
                             persist_state=KEEP)
        seed = c4.number_input("Seed", 0, 2**31 - 1, defaults.seed, key=f"{KEY_PREFIX}.seed", persist_state=KEEP)
        steps = st.slider("Steps", 10, 2000, defaults.steps, step=10, key=f"{KEY_PREFIX}.steps", persist_state=KEEP)
        c1, c2, c3, c4, c5 = st.columns(5)
        blur_every = c1.slider("Blur every k steps (0: off)", 0, 50, defaults.blur_every,
                               key=f"{KEY_PREFIX}.blur_every", persist_state=KEEP)
        blur_sigma = c2.slider("Blur σ", 0.1, 3.0, defaults.blur_sigma, 0.1, key=f"{KEY_PREFIX}.blur_sigma",
                               persist_state=KEEP)
        l2 = c3.number_input("L2 decay weight", 0.0, 10.0, defaults.l2, format="%.4f", key=f"{KEY_PREFIX}.l2",
                             persist_state=KEEP)
        tv = c4.number_input("Total variation weight", 0.0, 100.0, defaults.tv, format="%.4f",
                             key=f"{KEY_PREFIX}.tv", persist_state=KEEP)
        jitter = c5.slider("Jitter (px)", 0, 32, defaults.jitter, key=f"{KEY_PREFIX}.jitter", persist_state=KEEP)
        c1, c2, c3 = st.columns(3)
        parameterization = c1.radio("Parameterisation", PARAMETERIZATIONS, horizontal=True,
                                    index=PARAMETERIZATIONS.index(defaults.parameterization),
                                    key=f"{KEY_PREFIX}.parameterization", persist_state=KEEP,
                                    help="fourier: Lucid's decorrelated colour + scaled Fourier spectrum")
        frame_every = c2.slider("Keep a frame every m steps", 1, 100, defaults.frame_every,
                                key=f"{KEY_PREFIX}.frame_every", persist_state=KEEP)
        others = [row["name"] for row in list_models() if row["name"] != model.name and row["weights_available"]]
        other_name = c3.selectbox("Same classes on a second architecture", [NO_SECOND_MODEL, *others],
                                  key=f"{KEY_PREFIX}.second_model", persist_state=KEEP)
        submitted = st.form_submit_button("Run inversion", type="primary")

    session = InversionSession(st.session_state)
    if submitted and targets:
        try:
            settings = InversionSettings(steps=steps, optimizer=optimizer, lr=float(lr), blur_every=blur_every,
                                         blur_sigma=float(blur_sigma), l2=float(l2), tv=float(tv), jitter=jitter,
                                         parameterization=parameterization, frame_every=frame_every, seed=int(seed))
            second = [] if other_name == NO_SECOND_MODEL else [get_model(other_name, None, None, selection.device)]
            session.start(model, targets, settings, others=second,
                          start_image=selection.image if from_image else None, engine=get_engine(selection.device))
        except XAIError as err:
            st.error(as_text(str(err)))
    stop_resume_advance(session, key=f"{KEY_PREFIX}.run", label="Optimising (Stop keeps what is reached)")

    for column, (name, run) in zip(st.columns(max(1, len(session.runs))), session.runs):
        result = run.result()
        labels = [run.model.class_label(t) for t in result.targets]
        run_prov = provenance(selection, method="Model inversion", model=name, architecture=run.model.arch,
                              weights=run.model.weights_source, target=labels,
                              params=dataclasses.asdict(run.settings) | {"start": "image" if from_image else "noise"})
        with column:
            st.subheader(as_text(name) + (f" — stopped at step {result.steps_done}/{result.steps_planned}"
                                      if result.stopped else ""))
            show_figure(image_grid_figure(list(result.images), [
                f"{label}: {s0:.2f} → {s1:.2f}" for label, s0, s1 in
                zip(labels, result.score_start, result.score_end)], cols=min(3, len(labels))),
                f"Inversion {name}", run_prov, arrays={"images": np.asarray(result.images)}, **PLOT)
            if len(result.frame_steps) > 1:
                frame = st.select_slider("Progression", range(len(result.frame_steps)),
                                         value=len(result.frame_steps) - 1, key=f"{KEY_PREFIX}.frame.{name}",
                                         persist_state=KEEP,
                                         format_func=lambda i: f"step {result.frame_steps[i]}")
                show_figure(image_grid_figure(list(result.frames[frame]), labels, cols=min(3, len(labels)),
                                              cell_px=140), f"Inversion {name} step {result.frame_steps[frame]}",
                            run_prov, arrays={"frames": np.asarray(result.frames),
                                              "frame_steps": np.asarray(result.frame_steps)}, key="frame", **PLOT)
            if result.steps_done:
                show_figure(history_figure(result.history, labels, HISTORY_TITLES), f"Inversion {name} history",
                            run_prov, arrays={k: np.asarray(v) for k, v in result.history.items()}, **PLOT)
    if not session.runs:
        st.caption("Choose classes and settings, then run. Long runs show their progress; Stop keeps the "
                   "images reached, Resume continues from there.")
