"""Gradient and CAM explanations side by side: one row per target class, one column per method."""
import io

import numpy as np
import streamlit as st

from ui.cache import cached_explain, progress_bar
from ui.colormaps import COLORMAPS
from ui.export import grid_png
from ui.figures import heatmap_grid
from ui.sidebar import sidebar
from xai_core.errors import XAIError
from xai_core.methods import METHODS
from xai_core.methods.scorecam import WEIGHTINGS
from xai_core.methods.smoothgrad import VARIANTS

PAGE_METHODS = ["saliency", "gradient", "grad_x_input", "smoothgrad", "guided_backprop", "deconvnet", "cam",
                "gradcam", "gradcampp", "guided_gradcam", "scorecam", "faster_scorecam"]
DEFAULT_METHODS = ["saliency", "smoothgrad", "guided_backprop", "gradcam"]

selection = sidebar()
model = selection.model
st.title("Gradients and CAM")

methods = st.multiselect("Methods (columns)", PAGE_METHODS, default=DEFAULT_METHODS,
                         format_func=lambda m: METHODS[m].label)
targets = st.multiselect("Target classes (rows) — type to search any class by name", range(model.num_classes),
                         default=[selection.target], format_func=model.class_label,
                         max_selections=6)

c1, c2, c3 = st.columns(3)
opacity = c1.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05)
colormap = c2.selectbox("Colormap", COLORMAPS)
SCALINGS = {"per map": False, "shared per method": "column"}
shared_scale = SCALINGS[c3.radio(
    "Colour scaling", list(SCALINGS), horizontal=True,
    help="per map: each map spans the whole colormap. shared per method: one colour range down each method's "
         "column, so one method's maps compare across the target classes; methods are never put on one scale, "
         "as their values have different units (Grad-CAM++ reaches tens where a gradient stays below 1).")]

# Each method receives only its own parameters, so changing one re-computes only that column.
chosen = {}
with st.expander("Method parameters", expanded=False):
    c1, c2, c3, c4 = st.columns(4)
    chosen["samples"] = c1.slider("SmoothGrad samples", 1, 200, 25)
    chosen["noise"] = c2.slider("SmoothGrad noise σ (fraction of the input range)", 0.0, 0.5, 0.15, 0.01)
    chosen["variant"] = c3.selectbox("SmoothGrad variant", VARIANTS,
                                     help="mean: SmoothGrad; squared: SmoothGrad²; vargrad: variance")
    chosen["seed"] = int(c4.number_input("Noise seed", 0, 2**31 - 1, 0))
    c1, c2, c3 = st.columns(3)
    layers = model.conv_layers()
    chosen["layer"] = c1.selectbox("CAM layer", layers, index=layers.index(model.default_layer)
                                   if model.default_layer in layers else len(layers) - 1,
                                   help=f"default for {model.arch}: {model.default_layer}")
    chosen["max_n"] = c2.slider("Faster Score-CAM max_N channels", 1, 512, 32,
                                help="the channels of largest activation variance are scored")
    chosen["weighting"] = c3.selectbox("Score-CAM weights", WEIGHTINGS,
                                       help="softmax over channels (paper) or the raw increase over the baseline")

if not methods or not targets:
    st.info("Choose at least one method and one target class.")
    st.stop()

maps = [[None] * len(methods) for _ in targets]
for col, name in enumerate(methods):
    spec = METHODS[name]
    params = tuple(sorted((k, chosen[k]) for k in spec.params if k in chosen))
    bar = progress_bar(spec.label)
    try:
        results = cached_explain(model, selection.model_key, selection.image_hash, selection.x.numpy(), name,
                                 tuple(targets), params, _progress=bar)
    except XAIError as err:
        st.warning(f"{spec.label}: {err}")
        continue
    finally:
        bar.done()
    for row, (heatmap, _attribution) in enumerate(results):
        maps[row][col] = heatmap

row_labels = [model.categories[t] for t in targets]
col_labels = [METHODS[m].label for m in methods]
st.plotly_chart(heatmap_grid(selection.display_image, maps, row_labels, col_labels, colormap, opacity,
                             shared_scale), width="stretch", config={"displayModeBar": False})

stack = np.full((len(targets), len(methods), *selection.x.shape[-2:]), np.nan, dtype=np.float32)
for row in range(len(targets)):
    for col in range(len(methods)):
        if maps[row][col] is not None:
            stack[row, col] = maps[row][col]
npy = io.BytesIO()
np.save(npy, stack)
c1, c2 = st.columns(2)
c1.download_button("Download the grid (PNG)", grid_png(selection.display_image, maps, row_labels, col_labels,
                                                       colormap, opacity, shared_scale),
                   file_name="gradients_and_cam.png", mime="image/png")
c2.download_button("Download the maps (.npy: targets × methods × H × W, NaN where a method failed)",
                   npy.getvalue(), file_name="gradients_and_cam.npy", mime="application/octet-stream")

with st.expander("About these methods"):
    for name in methods:
        st.markdown(f"**{METHODS[name].label}** — {METHODS[name].description}")
    st.caption(f"Rows: {', '.join(row_labels)}. CAM-family layer: {chosen['layer']}. Maps are not normalised; "
               "the colour range is per map or shared down each method's column (written under its title).")
