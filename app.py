"""XAI Lab (``streamlit run app.py``): the router. It draws the shared sidebar once per run, then the
chosen page: the home page below, or one of ``pages/*.py`` (every file there, in name order).

Widgets drawn here, in the entrypoint, keep their state whatever the page (streamlit's
"Working with widgets in multipage apps"); the pages' ``sidebar()`` calls return the selection
drawn here.
"""
from pathlib import Path

import streamlit as st

from ui.figures import image_figure, mask_figure, prediction_bar
from ui.sidebar import shared_selection, sidebar

ROOT = Path(__file__).resolve().parent
PLOT = {"width": "stretch", "config": {"displayModeBar": False}}
FIGURE_PX = 330


def home() -> None:
    """The selected image as the network sees it, its prediction, its ground truth and the model card."""
    selection = sidebar()
    model = selection.model
    st.title("XAI Lab")
    st.caption("Explain an image classifier's decision: gradients, CAM, perturbations, paths and inversion, "
               "side by side, on a model with known ground truth or on your own.")

    image_col, truth_col, prediction_col = st.columns([1, 1, 1.2])
    with image_col:
        st.plotly_chart(image_figure(selection.display_image, "Input as fed to the model", FIGURE_PX), **PLOT)
        st.caption(f"{selection.image_label} — {model.input_size}×{model.input_size} after resizing and cropping.")
    if selection.ground_truth is not None:
        with truth_col:
            truth = selection.ground_truth
            st.plotly_chart(mask_figure(selection.display_image, truth["object_mask"], truth["part_mask"],
                                        truth["box"], f"Ground truth: {truth['label_name']}", FIGURE_PX), **PLOT)
            has_part = not (truth["part_mask"] == truth["object_mask"]).all()  # only the hexagon pair has one
            st.caption("Blue: the object; " + ("orange: the part that tells the two hexagon classes apart (they "
                                               "differ only there); " if has_part else "")
                       + "red: the bounding box. The explanation pages score maps against these.")
    with prediction_col:
        st.plotly_chart(prediction_bar(selection.predictions), **PLOT)
        st.markdown(f"**Target class for the explanation pages:** {selection.target_name} ({selection.target})")

    card_col, pages_col = st.columns([1, 1.2])
    with card_col:
        st.subheader("Model card")
        card = model.card()
        st.table({"": list(card.keys()),
                  "value": [f"{v:,}" if isinstance(v, int) else str(v) for v in card.values()]})
    with pages_col:
        st.subheader("Pages")
        st.markdown("""
- **Gradients and CAM** — every gradient, CAM and path method (SmoothGrad over any of them), side by side
  for several targets.
- **RISE** — random masks weighted by the class score; mask count, cell size, mask shape and fill.
- **IG and RIG** — Integrated Gradients and Reinforced IG (two classes, support networks, occlusion of the
  regions every map agrees on, logits before and after).
- **Inversion and Zeiler-Fergus** — class visualisation from noise, deep dream, DeconvNet projections,
  occlusion sensitivity and rotation.
- **Evaluate** — methods × metrics over many images (pointing game, HAGTR/MAGTR/MANGTR, deletion and
  insertion, sanity checks), with confidence intervals and the worst and best images.
- **Compare** — two to four models on one image and one class: maps side by side, their agreement, inversions.
- **Fine-tune** — retrain a copy of the shortcut model so its Grad-CAM lands on the object; curves, scores
  and Grad-CAM before/after.
""")


navigation = st.navigation([st.Page(home, title="Home", icon="🔍", default=True)]
                           + [st.Page(path.relative_to(ROOT).as_posix())
                              for path in sorted((ROOT / "pages").glob("*.py"))])
with shared_selection(sidebar()):
    navigation.run()
