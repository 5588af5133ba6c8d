"""Model inversion and deep dream (lab handout, exercise 1); Zeiler & Fergus's occlusion sensitivity,
DeconvNet projections and rotation / scale / shift sensitivity."""
import streamlit as st

from ui.cache import (cached_deconv_projections, cached_occlusion, cached_transform_sensitivity, get_engine,
                      get_model)
from ui.colormaps import DIVERGING
from ui.figures import (categorical_map_figure, history_figure, image_figure, image_grid_figure, line_figure,
                        overlay_figure, position_map_figure)
from ui.inversion_controls import stop_resume_advance
from ui.inversion_session import InversionSession
from ui.params import param_widget
from ui.sidebar import sidebar
from xai_core.errors import XAIError
from xai_core.inversion import OPTIMIZERS, PARAMETERIZATIONS, InversionSettings
from xai_core.methods.occlusion import OCCLUSION
from xai_core.models import list_models
from xai_core.zeiler_fergus import DECONV_TOP, PROJECTION_MODES, TRANSFORM_TOP, TRANSFORMS, transform_values

PLOT = {"width": "stretch", "config": {"displayModeBar": False}}
GRID = PLOT | {"width": "content"}  # a grid of small images keeps its own width instead of spreading out

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
    window = c1.slider("Occluder size (px)", 1, size, max(1, size // 4), key="occ.window")
    stride = c2.slider("Stride (px)", 1, window, max(1, window // 4), key="occ.stride")
    fill = param_widget("fill", OCCLUSION.params["fill"], model, key="occ.fill", container=c3)
    layer = c4.selectbox("Layer for (c)", layers, index=default_layer, key="occ.layer")
    try:
        occ = cached_occlusion(model, selection.model_key, selection.image_hash, selection.x.numpy(),
                               selection.target, window, stride, fill, layer)
    except XAIError as err:
        st.error(str(err))
        occ = None
    if occ is not None:
        a, b, c = st.columns(3)
        a.plotly_chart(position_map_figure(image, occ.probability, occ.ys, occ.xs, occ.window,
                                           title=f"(a) p({selection.target_name})", value_label="probability"), **PLOT)
        b.plotly_chart(categorical_map_figure(image, occ.top_class, occ.top_class_names, occ.ys, occ.xs,
                                              occ.window, title="(b) most probable class"), **PLOT)
        c.plotly_chart(position_map_figure(image, occ.feature_activation, occ.ys, occ.xs, occ.window,
                                           colormap="inferno", value_label="activation",
                                           title=f"(c) {layer}, map {occ.feature_channel}"), **PLOT)
        left, right = st.columns([1, 2])
        left.plotly_chart(overlay_figure(image, occ.drop_map, DIVERGING, title="Probability drop per pixel"), **PLOT)
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
    deconv_layer = c1.selectbox("Layer", layers, index=default_layer, key="zf.layer")
    mode = c2.radio("Signal sent back", PROJECTION_MODES, horizontal=True, key="zf.mode",
                    format_func=lambda m: {"map": "whole feature map", "max": "its strongest activation only"}[m])
    try:
        proj = cached_deconv_projections(model, selection.model_key, selection.image_hash, selection.x.numpy(),
                                         deconv_layer, DECONV_TOP, mode)
    except XAIError as err:
        st.error(str(err))
        proj = None
    if proj is not None:
        st.plotly_chart(image_grid_figure(proj.display(), [f"map {c} (max {a:.2f})" for c, a in
                                                           zip(proj.channels, proj.activations)]), **GRID)
        st.caption("Each projection is scaled to its own largest |value| around mid-grey. A fine checkerboard is "
                   "expected: the DeconvNet ignores the forward ReLU masks, so the grid of the strided "
                   "(transposed) convolutions shows through, more than in a plain gradient of the same map."
                   + ("" if proj.relu_calls else " This network has no ReLU: these are plain gradients."))

# ------------------------------------------------------------------ transformations
with tab_transform:
    c1, c2 = st.columns(2)
    kind = c1.radio("Transformation", list(TRANSFORMS), horizontal=True, key="rot.kind",
                    format_func=lambda k: TRANSFORMS[k])
    count = c2.slider("Values", 5, 73, 37, key="rot.count")
    values = transform_values(kind, count, model.input_size)
    try:
        sens = cached_transform_sensitivity(model, selection.model_key, selection.image_hash, selection.x.numpy(),
                                            kind, tuple(float(v) for v in values), TRANSFORM_TOP)
    except XAIError as err:
        st.error(str(err))
        sens = None
    if sens is not None:
        curve, picture = st.columns([2, 1])
        curve.plotly_chart(line_figure(sens.values, {f"{n} ({c})": sens.probabilities[:, i] for i, (c, n) in
                                                     enumerate(zip(sens.classes, sens.class_names))},
                                       x_title=TRANSFORMS[kind], y_title="probability"), **PLOT)
        curve.caption(f"Probabilities of the intact image's top {TRANSFORM_TOP} classes; uncovered pixels show the "
                      "dataset mean.")
        shown = picture.select_slider("Transformed input", range(len(sens.values)), value=len(sens.values) // 2,
                                      format_func=lambda i: f"{sens.values[i]:.3g}", key="rot.shown")
        picture.plotly_chart(image_figure(sens.images[shown], title="predicted: "
                                          f"{model.categories[int(sens.predicted[shown])]}"), **PLOT)

# ------------------------------------------------------------------------ inversion
HISTORY_TITLES = {"score": "class score (logit)", "probability": "probability", "l2": "L2: mean(x²)",
                  "tv": "total variation", "objective": "objective = score − λ·L2 − μ·TV"}
NO_SECOND_MODEL = "(none)"
defaults = InversionSettings()

with tab_inversion:
    st.markdown("Gradient ascent on the pixels to maximise class scores (one batch row per class). From noise it "
                "shows what the network has learnt of a class; from the sidebar image it is a *deep dream*: the "
                "network amplifies what it already sees there.")
    with st.form("inversion"):
        targets = st.multiselect("Target classes", range(model.num_classes), default=[selection.target],
                                 format_func=model.class_label, max_selections=6)
        c1, c2, c3, c4 = st.columns(4)
        from_image = c1.radio("Start", ["noise", "sidebar image (deep dream)"]) != "noise"
        optimizer = c2.selectbox("Optimiser", OPTIMIZERS, index=OPTIMIZERS.index(defaults.optimizer))
        lr = c3.number_input("Learning rate", 1e-4, 100.0, defaults.lr, format="%.4f")
        seed = c4.number_input("Seed", 0, 2**31 - 1, defaults.seed)
        steps = st.slider("Steps", 10, 2000, defaults.steps, step=10)
        c1, c2, c3, c4, c5 = st.columns(5)
        blur_every = c1.slider("Blur every k steps (0: off)", 0, 50, defaults.blur_every)
        blur_sigma = c2.slider("Blur σ", 0.1, 3.0, defaults.blur_sigma, 0.1)
        l2 = c3.number_input("L2 decay weight", 0.0, 10.0, defaults.l2, format="%.4f")
        tv = c4.number_input("Total variation weight", 0.0, 100.0, defaults.tv, format="%.4f")
        jitter = c5.slider("Jitter (px)", 0, 32, defaults.jitter)
        c1, c2, c3 = st.columns(3)
        parameterization = c1.radio("Parameterisation", PARAMETERIZATIONS, horizontal=True,
                                    index=PARAMETERIZATIONS.index(defaults.parameterization),
                                    help="fourier: Lucid's decorrelated colour + scaled Fourier spectrum")
        frame_every = c2.slider("Keep a frame every m steps", 1, 100, defaults.frame_every)
        others = [row["name"] for row in list_models() if row["name"] != model.name and row["weights_available"]]
        other_name = c3.selectbox("Same classes on a second architecture", [NO_SECOND_MODEL, *others])
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
            st.error(str(err))
    stop_resume_advance(session, key="inv", label="Optimising (Stop keeps what is reached)")

    for column, (name, run) in zip(st.columns(max(1, len(session.runs))), session.runs):
        result = run.result()
        labels = [run.model.class_label(t) for t in result.targets]
        with column:
            st.subheader(f"{name}" + (f" — stopped at step {result.steps_done}/{result.steps_planned}"
                                      if result.stopped else ""))
            st.plotly_chart(image_grid_figure(list(result.images), [
                f"{label}: {s0:.2f} → {s1:.2f}" for label, s0, s1 in
                zip(labels, result.score_start, result.score_end)], cols=min(3, len(labels))), **PLOT)
            if len(result.frame_steps) > 1:
                frame = st.select_slider("Progression", range(len(result.frame_steps)),
                                         value=len(result.frame_steps) - 1, key=f"inv.frame.{name}",
                                         format_func=lambda i: f"step {result.frame_steps[i]}")
                st.plotly_chart(image_grid_figure(list(result.frames[frame]), labels, cols=min(3, len(labels)),
                                                  cell_px=140), **PLOT)
            if result.steps_done:
                st.plotly_chart(history_figure(result.history, labels, HISTORY_TITLES), **PLOT)
    if not session.runs:
        st.caption("Choose classes and settings, then run. Long runs show their progress; Stop keeps the "
                   "images reached, Resume continues from there.")
