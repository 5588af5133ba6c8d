"""The front door: the home page (what each group of pages answers, opened on an example), and the
notice the router shows on every page when a shapes model is asked about a photo."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from xai_core import rig
from xai_core.errors import XAIError
from xai_core.metrics import GroundTruth, compute
from xai_core.models import TORCHVISION, list_models

from .cache import cached_explain
from .figures import image_figure, mask_figure, overlay_figure, prediction_bar
from .provenance import provenance
from .sidebar import Selection
from .text import as_text
from .views import show_figure, show_table

PLOT = {"width": "stretch", "config": {"displayModeBar": False}}
FIGURE_PX = 300
EXAMPLE_METHOD = "gradcam"
GROUPS = {
    "Explain": "Where in this image does the model look for this class, and what has it learnt of the class? "
               "Gradients, CAM, RISE, Integrated Gradients and RIG, inversion and Zeiler-Fergus each answer it "
               "their own way, side by side for several classes.",
    "Compare": "Do two to four models look at the same place for the same class? Their maps, predictions and "
               "class visualisations are side by side, with how much the maps agree.",
    "Evaluate": "Which method localises the object best, and which is faithful to the model? Methods are scored "
                "with metrics over many images, with confidence intervals and the worst and best images.",
    "Train": "Can a model that relies on a shortcut be taught to look at the object? Fine-tune a copy with a "
             "saliency loss and compare its curves, scores and Grad-CAM before and after.",
    "Report": "What do I bring to the meeting? Every figure and table added from the pages, in order and with "
              "its provenance, exported as one HTML file that opens offline, a PDF or PNGs.",
}


def home(selection: Selection) -> None:
    """The selected image explained by Grad-CAM beside its ground truth, then what each group answers."""
    model = selection.model
    st.title("XAI Lab")
    st.caption("Explain an image classifier's decision: gradients, CAM, perturbations, paths and inversion, "
               "side by side, on a model with known ground truth or on your own.")
    target = as_text(selection.target_name)
    prov = provenance(selection)
    image_col, map_col, truth_col = st.columns(3)
    with image_col:
        show_figure(image_figure(selection.display_image, "Input as fed to the model", FIGURE_PX), "Input image", prov,
                    arrays={"image": selection.display_image}, **PLOT)
        st.caption(f"{as_text(selection.image_label)} — {model.input_size}×{model.input_size} after resizing "
                   "and cropping.")
    heatmap = _example_map(selection)
    if heatmap is not None:
        with map_col:
            show_figure(overlay_figure(selection.display_image, heatmap, title=f"Grad-CAM: {selection.target_name}",
                                       outlines=selection.outlines),
                        "Grad-CAM example", provenance(selection, method=EXAMPLE_METHOD), arrays={"map": heatmap},
                        **PLOT)
            st.caption(_pointing_sentence(heatmap, selection.ground_truth))
    if selection.ground_truth is not None:
        with truth_col:
            truth = selection.ground_truth
            show_figure(mask_figure(selection.display_image, truth["object_mask"], truth["part_mask"],
                                    truth["box"], f"Ground truth: {truth['label_name']}", FIGURE_PX), "Ground truth",
                        prov, arrays={"object_mask": truth["object_mask"], "part_mask": truth["part_mask"],
                                      "box": np.asarray(truth["box"])}, **PLOT)
            has_part = not (truth["part_mask"] == truth["object_mask"]).all()  # only the hexagon pair has one
            st.caption("Blue: the object; " + ("orange: the part that tells the two hexagon classes apart (they "
                                               "differ only there); " if has_part else "")
                       + "red: the bounding box. The explanation pages score maps against these.")

    groups_col, prediction_col = st.columns([1.4, 1])
    with groups_col:
        st.subheader("What each group of pages answers")
        for group, answer in GROUPS.items():
            st.markdown(f"**{group}** — {answer}")
    with prediction_col:
        show_figure(prediction_bar(selection.predictions), "Top predictions", prov, **PLOT)
        st.markdown(f"**Target class for the explanation pages:** {target} ({selection.target})")
    with st.expander("Model card"):
        card = model.card()
        frame = pd.DataFrame({"": list(card.keys()),
                              "value": [f"{v:,}" if isinstance(v, int) else str(v) for v in card.values()]})
        # st.table reads its cells as markdown: shown escaped (the weights name the uploaded file), exported as is
        show_table(frame.style.format(as_text), "Model card", prov, table=True)


def _example_map(selection: Selection) -> np.ndarray | None:
    """Grad-CAM of the target (cached: the first example costs one backward pass)."""
    try:
        [(heatmap, _)] = cached_explain(selection.model, selection.model_key, selection.image_hash,
                                        selection.x.numpy(), EXAMPLE_METHOD, (selection.target,))
    except XAIError as err:
        st.warning(f"Grad-CAM: {as_text(str(err))}")
        return None
    return heatmap


def _pointing_sentence(heatmap: np.ndarray, truth: dict | None) -> str:
    if truth is None:
        return "Warm colours: the regions whose features raise the class score most."
    hit = compute("pointing_game", torch.tensor(heatmap, dtype=torch.float32)[None],
                  GroundTruth(masks=torch.from_numpy(truth["object_mask"])[None]), params={"region": "mask"}).scores[0]
    if hit != hit:  # NaN: a constant map points nowhere
        return "Pointing game: undefined (the map is constant)."
    return ("Pointing game: **hit** — the map's maximum lies on the object." if hit
            else "Pointing game: **miss** — the map's maximum lies off the object.")


def photo_notice(selection: Selection) -> None:
    """When a shapes model (64 px, the embedded dataset's classes) is asked about a photo or an upload:
    say so plainly, and which torchvision files give a model with ImageNet's classes."""
    if selection.ground_truth is not None or not rig.uses_embedded_dataset(selection.model):
        return
    from torchvision.models import get_model_weights

    classes = ", ".join(selection.model.categories)
    st.info(f"{as_text(selection.model.name)} is a {selection.model.input_size} px classifier of drawn shapes: "
            f"its only classes are {as_text(classes)}. On a photo its maps explain a shape it believes it sees. "
            "For a photo, pick a torchvision model (ImageNet's 1,000 classes) in the sidebar; each needs its "
            "weights file in $TORCH_HOME/hub/checkpoints (by default ~/.cache/torch/hub/checkpoints).")
    rows = {row["name"]: row for row in list_models()}
    with st.expander("The torchvision models and the file each needs"):
        st.markdown("\n".join(
            f"- **{name}**: `{rows[name]['weights_file']}` from {get_model_weights(name).DEFAULT.url}"
            + (" — already there" if rows[name]["weights_available"] else "") for name in TORCHVISION))
        st.caption(f"Folder on this machine: {as_text(rows[next(iter(TORCHVISION))]['weights_dir'])}.")
