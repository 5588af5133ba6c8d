"""Saliency-guided fine-tuning (issue 13): the shipped shortcut model, fine-tuned so that its Grad-CAM
lands on the object rather than on the colour cue; learning curves, start-vs-final scores, confusion
matrices and Grad-CAM before/after, and the fine-tuned checkpoint to download."""
import numpy as np
import streamlit as st

from ui.cache import get_engine, get_model
from ui.finetune_figures import comparison_table, confusion_figure, learning_curves
from ui.finetune_session import FinetuneSession, check_shortcut_model, checkpoint_bytes, shortcut_splits
from ui.inversion_controls import stop_resume_advance
from ui.provenance import provenance
from ui.sidebar import select_checkpoint, sidebar
from ui.text import as_text
from ui.url_state import stop_page
from ui.views import show_figure, show_grid, show_table
from xai_core import shortcut_dataset
from xai_core.errors import XAIError
from xai_core.finetune import LOSS_FORMS, SALIENCY_MAPS, FinetuneConfig

KEY = "ft"
FINETUNED_NAME = "shortcut_finetuned.pt"
TRAIN_SEED, VAL_SEED = 21, 22          # apart from the seeds the shortcut model was trained and tested on
TRAINABLE = {"all": "all", "head": "head (final linear layer)", "last_block": "last block (holding the layer)"}
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
PLOT = {"width": "stretch", "config": {"displayModeBar": False}}
KEEP = "session"

selection = sidebar()
st.title("Fine-tune")
st.caption("The shipped shortcut model classifies by a coloured corner patch that agrees with the label in 95 % "
           "of its training images. Fine-tune a copy with a loss that rewards Grad-CAM on the object "
           "(trained on shortcut images where the cue agrees with the label as often as you choose, validated "
           "on images where the patch is "
           "independent of the label). The sidebar's model changes only if you choose to use the result.")

SHIPPED, SIDEBAR = "the shipped shortcut model", "the sidebar's model"
source = st.radio("Model to fine-tune (a copy)", [SHIPPED, SIDEBAR], horizontal=True, key=f"{KEY}.source",
                  persist_state=KEEP,
                  help="The sidebar's model must classify the embedded shapes at 64×64: the embedded family or a "
                       "checkpoint of it.")
if source == SHIPPED:
    model = get_model("embedded", shortcut_dataset.CHECKPOINT.read_bytes(), None, selection.device,
                      checkpoint_name=shortcut_dataset.CHECKPOINT.name)
else:
    model = selection.model
    try:
        check_shortcut_model(model)
    except XAIError as error:
        st.error(as_text(str(error)))
        stop_page()
c1, c2, c3, c4 = st.columns(4)
form = c1.selectbox("Loss form", LOSS_FORMS, index=LOSS_FORMS.index("weighted_mangtr"), key=f"{KEY}.form",
                    persist_state=KEEP)
saliency = c1.selectbox("Saliency map in the loss", SALIENCY_MAPS, key=f"{KEY}.saliency", persist_state=KEEP)
k1 = c2.slider("k1 (cross-entropy)", 0.0, 5.0, 1.0, 0.1, key=f"{KEY}.k1", persist_state=KEEP)
k2 = c2.slider("k2 (1 − MAGTR)", 0.0, 5.0, 1.0, 0.1, key=f"{KEY}.k2", persist_state=KEEP)
k3 = c2.slider("k3 (MANGTR)", 0.0, 5.0, 1.0, 0.1, key=f"{KEY}.k3", persist_state=KEEP)
lr = c3.select_slider("Learning rate", LEARNING_RATES, 1e-3, format_func="{:.0e}".format, key=f"{KEY}.lr",
                      persist_state=KEEP)
epochs = c3.number_input("Epochs", 1, 100, 5, key=f"{KEY}.epochs", persist_state=KEEP)
trainable = c3.selectbox("Layers that train", list(TRAINABLE), format_func=TRAINABLE.get, key=f"{KEY}.trainable",
                         persist_state=KEEP)
micro_batch = c4.number_input("Micro-batch", 1, 256, 16, key=f"{KEY}.micro_batch", persist_state=KEEP)
accumulate = c4.number_input("Accumulation steps", 1, 64, 1, key=f"{KEY}.accumulate", persist_state=KEEP,
                             help="One optimiser step per this many micro-batches: the update of a batch this "
                                  "many times larger, in the memory of one micro-batch.")
n_train = c4.number_input("Training images", 8, 4096, 256, 8, key=f"{KEY}.n_train", persist_state=KEEP)
n_val = c4.number_input("Validation images", 8, 2048, 128, 8, key=f"{KEY}.n_val", persist_state=KEEP)
d1, d2, d3 = st.columns(3)
agreement = d1.slider("Cue agrees with the label in (training images)", 0.125, 1.0,
                      shortcut_dataset.TRAIN_AGREEMENT, 0.005, key=f"{KEY}.agreement", persist_state=KEEP,
                      help="0.125 = 1/8: the cue says nothing (a control); validation images always have a random cue.")
train_seed = d2.number_input("Training images seed", 0, 10**6, TRAIN_SEED, key=f"{KEY}.train_seed",
                             persist_state=KEEP)
val_seed = d3.number_input("Validation images seed", 0, 10**6, VAL_SEED, key=f"{KEY}.val_seed", persist_state=KEEP)
st.caption(f"Saliency layer: `{model.default_layer}`. Loss forms: " + "; ".join([
    "ce: CE", "ce_x_1m_hagtr: CE·(1 − HAGTR)", "ce_x_1m_magtr: CE·(1 − MAGTR)", "ce_div_magtr: CE / MAGTR",
    "weighted: k1·CE + k2·(1 − MAGTR)", "weighted_mangtr: k1·CE + k2·(1 − MAGTR) + k3·MANGTR"]) + ".")

curves = st.empty()  # redrawn after every epoch while a run trains, then once more below


def draw_curves(run, moment: str) -> None:
    """The learning curves so far, in place, while training; each draw of one script run has its own key."""
    curves.plotly_chart(learning_curves(run.records, run.before.record), key=f"{KEY}.curves.{moment}", **PLOT)


session = FinetuneSession(st.session_state, on_epoch=lambda run: draw_curves(run, f"epoch{len(run.records)}"))
if st.button("Start fine-tuning", type="primary", key=f"{KEY}.start"):
    config = FinetuneConfig(layer=model.default_layer, form=form, k1=k1, k2=k2, k3=k3, saliency=saliency, lr=lr,
                            micro_batch=int(micro_batch), accumulate=int(accumulate), trainable=trainable)
    try:
        train, val = shortcut_splits(int(n_train), int(n_val), int(train_seed), int(val_seed), agreement)
        session.start(model, config, int(epochs), train, val, get_engine(selection.device))
    except XAIError as error:
        st.error(as_text(str(error)))
stop_resume_advance(session, key=KEY, label="Fine-tuning")

run = session.run
if run is None:
    st.info("Choose the loss and the schedule, then start: one epoch takes a few seconds on a CPU.")
    stop_page()

st.caption(f"{run.epochs_done} of {run.epochs} epochs" + ("" if run.finished else " (stopped: Resume goes on)"))
prov = provenance(selection, method=f"Fine-tuning ({form})", model=f"{model.name} ({source})",
                  weights=model.weights_source, image=f"shortcut dataset: {n_train} training images (seed {train_seed}), "
                                                      f"{n_val} validation images (seed {val_seed})",
                  image_hash="(many images)", target="each image's true class", params={
                      "saliency": saliency, "k1": k1, "k2": k2, "k3": k3, "learning rate": lr, "epochs": epochs,
                      "layers that train": trainable, "micro-batch": micro_batch, "accumulation steps": accumulate,
                      "cue agreement": agreement, "layer": model.default_layer})
show_figure(learning_curves(run.records, run.before.record), "Fine-tune learning curves", prov, container=curves,
            **PLOT)
if run.after is None:
    stop_page()

st.subheader("Start vs final")
show_table(comparison_table(run.before, run.after), "Fine-tune start vs final", prov, width="content")
names = model.categories
before_col, after_col = st.columns(2)
show_figure(confusion_figure(run.before.confusion, names, "Confusion before"), "Fine-tune confusion before", prov,
            container=before_col, arrays={"confusion": run.before.confusion, "classes": np.array(names)}, **PLOT)
show_figure(confusion_figure(run.after.confusion, names, "Confusion after"), "Fine-tune confusion after", prov,
            container=after_col, arrays={"confusion": run.after.confusion, "classes": np.array(names)}, **PLOT)

st.subheader("Grad-CAM before and after")
st.caption("The validation images whose Grad-CAM (true class) put least of its mass on the object before "
           "fine-tuning; each map on its own colour range.")
x, labels = run.val[0][run.gallery], run.val[1][run.gallery]
show_grid([model.to_display(image) for image in x],
          [[b, a] for b, a in zip(run.before.gallery_maps, run.after.gallery_maps)],
          [names[int(label)] for label in labels], ["before", "after"], "Fine-tune Grad-CAM before and after", prov,
          shared_scale=False, cell_px=180, arrays={"labels": np.asarray(labels)}, **PLOT)
finetuned = checkpoint_bytes(run.module)
use, download = st.columns(2)
use.button("Use it on every page", key=f"{KEY}.use", on_click=select_checkpoint,
           args=(model.arch, FINETUNED_NAME, finetuned),
           help="The sidebar's model becomes this fine-tuned copy (as a custom checkpoint), for every page.")
download.download_button("Download the fine-tuned checkpoint", finetuned, FINETUNED_NAME,
                         "application/octet-stream", key=f"{KEY}.download",
                         help="A state dict for the `embedded` architecture: upload it in the sidebar as a checkpoint.")
