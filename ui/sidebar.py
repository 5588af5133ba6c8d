"""The shared sidebar: model, image, target class and device, the same on every page.

The router (``app.py``) draws it once per run, before the page, inside ``shared_selection``;
every page calls ``sidebar()`` first and gets that ``Selection`` (a page run on its own, as
the tests do, draws the sidebar itself). Widgets keep their values for the session
(``persist_state``), so a choice hidden by another (the chosen class while the prediction is
explained, the dataset seed while a photo is shown) comes back with it. Uploaded files are
kept as bytes and are dropped only by their "Remove" button.

Classes are chosen by name (``class_choices``), so a model change keeps the chosen class when the
new model has it and otherwise says so and explains the prediction (``keep_known_classes``, which
the pages' class pickers use too). The model picker always names the model in use: a choice that
fails to load puts it back (the error staying under it). ``LINK_CHECKS`` and ``link_keys`` say what
of the sidebar a link (``ui.url_state``) holds.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import streamlit as st
import torch
from PIL import Image

from xai_core import dataset, imageio
from xai_core.errors import XAIError
from xai_core.model_handle import LoadedModel
from xai_core.models import EMBEDDED, list_models
from xai_core.zoo.timm_family import PREFIX as TIMM_PREFIX

from .cache import bytes_hash, cached_predict, get_model, model_key
from .text import as_text
from .url_state import settled, stop_page

DATASET, PHOTO, UPLOAD = "Dataset sample", "Sample photo", "Upload"
IMAGE_SOURCES = (DATASET, PHOTO, UPLOAD)
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"]
CHECKPOINT_TYPES = ["pt", "pth", "bin", "ckpt"]
OUTLINE_KINDS = ("object box", "object mask", "part mask")
PREDICTED, CHOSEN = "Predicted class", "Choose a class"
TIMM_BY_NAME = "timm: by name…"
"""The model picker's entry that shows the timm model name box."""
TIMM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
KEEP = "session"
"""Every sidebar widget's ``persist_state``: its value stays while it is hidden and on every page."""
MAX_INDEX = 99_999
MAX_SEED = 2**31 - 1


@dataclass
class Selection:
    """What the sidebar selected: the model, the image and its input tensor, the target class."""
    model: LoadedModel
    model_key: str                 # hashable id: name, checkpoint hash, class names, device
    image: Image.Image             # RGB, as chosen (before preprocessing)
    image_hash: str
    x: torch.Tensor                # C×H×W on the CPU, ``model.preprocess(image)``
    target: int                    # class index: the prediction unless the user chose one
    device: str
    ground_truth: dict | None      # dataset samples: object_mask, part_mask, box, label (input coords)
    image_label: str               # human-readable description of the image
    predictions: list[dict]        # top-5 ``[{index, name, probability, logit}]`` for ``x``
    outlines: dict = field(default_factory=dict)  # ground truth drawn on every map: name -> mask or box
    edits: str = ""                # the What-if page's edit list (JSON) when the edited image is served

    @property
    def display_image(self) -> np.ndarray:
        """``x`` de-normalised: the H×W×3 uint8 image exactly as the network sees it."""
        return self.model.to_display(self.x)

    @property
    def target_name(self) -> str:
        """The target class's name."""
        return self.model.categories[self.target]


# ------------------------------------------------------------------- persistence
def _kept(name: str, default: Any = None) -> Any:
    return st.session_state.get(f"xai.{name}", default)


def _keep(name: str, value: Any) -> None:
    st.session_state[f"xai.{name}"] = value


# ------------------------------------------------------------------------ links
def _count(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


LINK_CHECKS: dict[str, Callable[[Any], bool]] = {
    "w.model": lambda v: v == TIMM_BY_NAME or v in {row["name"] for row in list_models()},
    "w.timm_name": lambda v: isinstance(v, str) and is_timm_name(v),
    "w.source": lambda v: v in IMAGE_SOURCES,
    "w.seed": _count(0, MAX_SEED),
    "w.index": _count(0, MAX_INDEX),
    "w.photo": lambda v: v in imageio.list_samples(),
    "w.target_mode": lambda v: v in (PREDICTED, CHOSEN),
    "w.outlines": lambda v: isinstance(v, list) and set(v) <= set(OUTLINE_KINDS),
    "w.target": lambda v: isinstance(v, str),  # a class name: checked against the model before it is drawn
}
"""The sidebar's keys that a link (``ui.url_state``) may set, each with what it may hold. Not the
device (another machine's) nor uploads (files do not travel in a link)."""


def link_keys() -> list[str]:
    """The sidebar's keys that describe the view: the seed and index only for a dataset sample, etc."""
    state = st.session_state
    keys = ["w.model", "w.source", "w.target_mode"]
    keys += ["w.timm_name"] if state.get("w.model") == TIMM_BY_NAME else []
    keys += {DATASET: ["w.seed", "w.index", "w.outlines"], PHOTO: ["w.photo"]}.get(state.get("w.source", DATASET), [])
    keys += ["w.target"] if state.get("w.target_mode") == CHOSEN else []
    return keys


# --------------------------------------------------------------------- devices
def _device_widget() -> str:
    has_cuda = torch.cuda.is_available()
    force_cpu = st.sidebar.checkbox("Force CPU", False, key="w.force_cpu", persist_state=KEEP, disabled=not has_cuda,
                                    help="Run on the CPU even though a GPU is available." if has_cuda
                                    else "No CUDA GPU was found: everything runs on the CPU.")
    return "cuda" if has_cuda and not force_cpu else "cpu"


# ---------------------------------------------------------------------- models
def parse_class_names(text: str) -> list[str] | None:
    """One name per line, or comma-separated on one line; ``None`` when empty."""
    parts = text.splitlines() if "\n" in text.strip() else text.split(",")
    names = [p.strip() for p in parts if p.strip()]
    return names or None


def _checkpoint_widgets(model_name: str) -> dict | None:
    """The uploaded checkpoint that applies to ``model_name``, if any."""
    with st.sidebar.expander("Custom checkpoint", expanded=_kept("checkpoint") is not None):
        upload = st.file_uploader("State dict for the selected architecture", type=CHECKPOINT_TYPES,
                                  key="w.checkpoint_upload")
        if upload is not None and upload.file_id != (_kept("checkpoint") or {}).get("file_id"):
            data = upload.getvalue()
            _keep("checkpoint", {"file_id": upload.file_id, "filename": upload.name, "arch": model_name,
                                 "bytes": data, "hash": bytes_hash(data)})
        names_text = st.text_area("Class names (optional)", "", key="w.class_names_text", persist_state=KEEP,
                                  help="One per line or comma-separated; default: names stored in the "
                                       "checkpoint, else the architecture's own when the count matches.")
        checkpoint = _kept("checkpoint")
        if checkpoint is None:
            st.caption("Load your own weights (loaded safely with weights_only=True).")
            return None
        if upload is None and st.button(f"Remove {as_text(checkpoint['filename'])}", key="w.checkpoint_remove"):
            _keep("checkpoint", None)
            return None
        if checkpoint["arch"] != model_name:
            st.caption(f"{as_text(checkpoint['filename'])} is for {checkpoint['arch']}; select {checkpoint['arch']} "
                       "to use it.")
            return None
        st.caption(f"Using {as_text(checkpoint['filename'])} for {model_name}.")
        return {**checkpoint, "class_names": parse_class_names(names_text)}


def select_checkpoint(arch: str, filename: str, data: bytes) -> None:
    """Make ``data``, a state dict for ``arch`` made in this session (a fine-tuned model), the sidebar's
    model on every page, as if it had been uploaded. A widget callback: the model picker can be set only
    before it is drawn."""
    st.session_state["w.model"] = arch
    _keep("checkpoint", {"file_id": None, "filename": filename, "arch": arch, "bytes": data,
                         "hash": bytes_hash(data)})


def _load_selected(name: str, checkpoint: dict | None, device: str) -> tuple[LoadedModel, str]:
    """The chosen model; when it cannot be loaded, the model picker is put back on the last one that
    could (a rerun: a widget is set only before it is drawn), the error staying under it."""
    class_names = checkpoint["class_names"] if checkpoint else None
    wanted = {"name": name, "checkpoint": checkpoint, "device": device,
              "key": model_key(name, checkpoint["hash"] if checkpoint else None, class_names, device)}
    # A failure is retried only when the choice changes, not on every rerun of the same
    # choice (loading torchvision weights probes the network, which costs seconds offline).
    failed = _kept("model_failed")
    error = failed["message"] if failed and failed["key"] == wanted["key"] == _kept("model_wanted") else None
    _keep("model_wanted", wanted["key"])
    if error is None:
        try:
            model = _get(wanted)
        except XAIError as err:
            error = str(err)
            _keep("model_failed", {"key": wanted["key"], "message": error})
        else:
            shown_error = _kept("model_error")
            if shown_error is not None and shown_error["shown"] == wanted["key"]:
                st.sidebar.error(as_text(shown_error["message"]))  # the failed choice's, until another model is chosen
            else:
                _keep("model_error", None)
            return model, wanted["key"]
    fallback = _kept("model_ok") or {"name": EMBEDDED, "checkpoint": None, "device": device,
                                     "key": model_key(EMBEDDED, None, None, device)}
    if fallback["key"] == wanted["key"]:  # nothing to go back to
        st.sidebar.error(as_text(error))
        stop_page()
    if fallback["name"] != name:  # the picker names another model than the one in use: put it back
        _keep("model_error", {"message": error, "shown": fallback["key"]})
        _keep("model_revert", fallback["name"])
        st.rerun()
    st.sidebar.error(as_text(error))  # the same architecture with other weights (a checkpoint that does not load)
    st.sidebar.caption(f"Still showing {as_text(fallback['name'])} with its previous weights.")
    try:
        return _get(fallback), fallback["key"]
    except XAIError as err:
        st.error(as_text(str(err)))
        stop_page()


def _put_back_model_picker() -> None:
    """After a failed load: the picker (and the timm name box) show the model in use again."""
    name = _kept("model_revert")
    if name is None:
        return
    _keep("model_revert", None)
    if name.startswith(TIMM_PREFIX):
        st.session_state["w.model"], st.session_state["w.timm_name"] = TIMM_BY_NAME, name.removeprefix(TIMM_PREFIX)
    else:
        st.session_state["w.model"] = name


def _get(choice: dict) -> LoadedModel:
    checkpoint = choice["checkpoint"]
    model = get_model(choice["name"], checkpoint["bytes"] if checkpoint else None,
                      checkpoint["class_names"] if checkpoint else None, choice["device"],
                      checkpoint_hash=checkpoint["hash"] if checkpoint else None,
                      checkpoint_name=checkpoint["filename"] if checkpoint else "")
    _keep("model_ok", choice)
    return model


def _timm_name() -> str | None:
    """``timm:NAME`` from the text box, or None (with a hint) while it holds no usable name."""
    typed = st.sidebar.text_input("timm model name", "", key="w.timm_name", persist_state=KEEP,
                                  placeholder="e.g. resnet50 or vit_base_patch16_224.augreg_in1k",
                                  help="Any name timm.list_models() knows, optionally with a pretrained tag; "
                                       "weights are read from the local Hugging Face or torch hub cache.")
    short = typed.strip().removeprefix(TIMM_PREFIX)
    if not short:
        st.sidebar.info("Type a timm model name.")
        return None
    if not is_timm_name(short):  # also keeps the name plain text wherever it is shown
        st.sidebar.error("A timm model name has only letters, digits, '_', '.' and '-'.")
        return None
    return TIMM_PREFIX + short


def is_timm_name(text: str) -> bool:
    """Whether ``text`` (with or without ``timm:``) is a usable timm model name, or empty."""
    short = text.strip().removeprefix(TIMM_PREFIX)
    return not short or TIMM_NAME.fullmatch(short) is not None


def _model_widgets(device: str) -> tuple[LoadedModel, str]:
    rows = {row["name"]: row for row in list_models()}
    _put_back_model_picker()
    shown = (_kept("model_ok") or {}).get("name")  # loaded, so never "unavailable" (its weights may be uploaded)
    name = st.sidebar.selectbox("Model", [*rows, TIMM_BY_NAME], index=list(rows).index(EMBEDDED), key="w.model",
                                persist_state=KEEP, format_func=lambda n: f"{n} (weights unavailable)"
                                if n in rows and n != shown and not rows[n]["weights_available"] else n)
    if name == TIMM_BY_NAME:
        typed = _timm_name()
        if typed is None:  # nothing to load yet: keep the model that is shown
            typed = (_kept("model_ok") or {}).get("name", EMBEDDED)
            st.sidebar.caption(f"Still showing {as_text(typed)}.")
        name = typed
    if name in rows:
        st.sidebar.caption(rows[name]["description"])
    return _load_selected(name, _checkpoint_widgets(name), device)


# ---------------------------------------------------------------------- images
def _resize_geometry(model: LoadedModel, width: int, height: int) -> tuple[float, float, int, int]:
    """Scale factors and crop offsets of ``model.preprocess`` (resize shorter side, centre crop)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(model.resize_size * long / short)
    new_w, new_h = (model.resize_size, new_long) if width <= height else (new_long, model.resize_size)
    left = int(round((new_w - model.input_size) / 2.0))
    top = int(round((new_h - model.input_size) / 2.0))
    return new_w / width, new_h / height, left, top


def _mask_to_input(mask: np.ndarray, model: LoadedModel) -> np.ndarray:
    return np.asarray(model.fit(Image.fromarray(mask.astype(np.uint8) * 255), "nearest")) > 127


def ground_truth_for_input(sample: dataset.Sample, model: LoadedModel) -> dict:
    """The sample's masks and box in the coordinates of ``model.preprocess(sample.pil())``."""
    height, width = sample.image.shape[:2]
    sx, sy, left, top = _resize_geometry(model, width, height)
    x0, y0, x1, y1 = sample.box
    size = model.input_size
    box = (int(np.clip(round(x0 * sx) - left, 0, size)), int(np.clip(round(y0 * sy) - top, 0, size)),
           int(np.clip(round(x1 * sx) - left, 0, size)), int(np.clip(round(y1 * sy) - top, 0, size)))
    return {"object_mask": _mask_to_input(sample.object_mask, model),
            "part_mask": _mask_to_input(sample.part_mask, model), "box": box,
            "label": sample.label, "label_name": sample.class_name}


def read_upload(data: bytes, filename: str) -> Image.Image:
    """Decode an uploaded image; ``ImageError`` (one sentence) when it is not usable."""
    named = io.BytesIO(data)
    named.name = filename  # so the error message names the file
    return imageio.load_image(named)


def _dataset_image() -> tuple[Image.Image, dataset.Sample, str]:
    seed = st.sidebar.number_input("Dataset seed", 0, MAX_SEED, 0, step=1, key="w.seed", persist_state=KEEP,
                                   help="Each (seed, index) pair always gives the same image.")
    index = st.sidebar.number_input("Sample index", 0, MAX_INDEX, 0, step=1, key="w.index", persist_state=KEEP)
    sample = dataset.make_sample(int(seed), int(index))
    return sample.pil(), sample, f"Dataset sample seed {seed}, #{index} (true class: {sample.class_name})"


def _outline_widgets(truth: dict) -> dict:
    """The parts of a dataset sample's ground truth the user wants drawn on every map (the part mask of
    a class without a distinct part is its object mask)."""
    chosen = st.sidebar.multiselect("Ground truth on every map", OUTLINE_KINDS, key="w.outlines", persist_state=KEEP,
                                    help="Outline the object's box, its mask or the part that tells the two "
                                         "hexagon classes apart on every map, to see whether a map lands on "
                                         "the evidence.")
    source = {"object box": truth["box"], "object mask": truth["object_mask"], "part mask": truth["part_mask"]}
    return {kind: source[kind] for kind in chosen}


def _photo_image() -> tuple[Image.Image, str]:
    names = imageio.list_samples()
    name = st.sidebar.selectbox("Photo", names, key="w.photo", persist_state=KEEP)
    return imageio.load_sample(name), f"Sample photo: {name}"


def _upload_image() -> tuple[Image.Image, str] | None:
    upload = st.sidebar.file_uploader("Image (JPEG, PNG, WebP, BMP, TIFF, GIF)", type=UPLOAD_TYPES,
                                      key="w.image_upload")
    kept = _kept("upload")
    if upload is not None and upload.file_id != (kept or {}).get("file_id"):
        try:
            image = read_upload(upload.getvalue(), upload.name)
        except XAIError as err:
            st.sidebar.error(as_text(str(err)))  # the previous upload, if any, stays selected
        else:
            kept = {"file_id": upload.file_id, "filename": upload.name, "image": image}
            _keep("upload", kept)
    if kept is None:
        return None
    if upload is None and st.sidebar.button(f"Remove {as_text(kept['filename'])}", key="w.image_remove"):
        _keep("upload", None)
        return None
    return kept["image"], f"Upload: {kept['filename']}"


def _image_widgets() -> tuple[Image.Image, dataset.Sample | None, str]:
    source = st.sidebar.radio("Image", IMAGE_SOURCES, key="w.source", persist_state=KEEP, horizontal=True)
    chosen = _photo_image() if source == PHOTO else _upload_image() if source == UPLOAD else None
    if chosen is not None:
        image, label = chosen
        return image, None, label
    if source == UPLOAD:
        st.sidebar.info("No image uploaded yet: showing the dataset sample below.")
    return _dataset_image()


def _prepared(image: Image.Image, model: LoadedModel, key: str) -> tuple[str, torch.Tensor]:
    """Hash and preprocessed tensor, reused while the same image object and model stay selected
    (an uploaded photo is kept as one object: no re-hashing and resizing of megapixels per rerun)."""
    memo = _kept("prepared")
    if memo is None or memo["image"] is not image or memo["model_key"] != key:
        memo = {"image": image, "model_key": key, "hash": imageio.image_hash(image), "x": model.preprocess(image)}
        _keep("prepared", memo)
    return memo["hash"], memo["x"].clone()  # pages may edit their copy


# --------------------------------------------------------------------- targets
def class_choices(model: LoadedModel) -> dict[str, int]:
    """``{choice: class index}``: each class by its name, which is what a class picker keeps across a
    model change and what a link holds (name and index where two classes share a name: ImageNet's cranes)."""
    counts = Counter(model.categories)
    return {(name if counts[name] == 1 else f"{name} ({i})"): i for i, name in enumerate(model.categories)}


def keep_known_classes(key: str, model: LoadedModel, choices: dict[str, int], container: Any = st) -> None:
    """Before the class picker ``key`` is drawn: its kept classes that ``model`` does not have are
    dropped with a notice (streamlit would drop them silently, or keep an index naming another class).
    A class index set by a program (an explorer's "Explore") becomes its name."""
    kept = st.session_state.get(key)
    if kept is None:
        return
    values = list(kept) if isinstance(kept, (list, tuple)) else [kept]
    by_index = {i: choice for choice, i in choices.items()}
    named = [by_index.get(v, v) if isinstance(v, int) and not isinstance(v, bool) else v for v in values]
    if named == values and all(v in choices for v in named):
        return  # nothing to change: the widget keeps its own state
    missing = [str(v) for v in named if v not in choices]
    if missing:
        settled(key)
        container.info(f"{as_text(model.name)} has no class {as_text(', '.join(missing))}: "
                       + ("the target is its prediction." if not isinstance(kept, (list, tuple))
                          else "left out of the targets."))
    known = [v for v in named if v in choices]
    if isinstance(kept, (list, tuple)):
        st.session_state[key] = known
    elif known:
        st.session_state[key] = known[0]
    else:
        del st.session_state[key]  # the picker starts again on its default: the prediction


def _target_widgets(model: LoadedModel, predicted: int) -> int:
    mode = st.sidebar.radio("Target class", (PREDICTED, CHOSEN), key="w.target_mode", persist_state=KEEP,
                            horizontal=True)
    if mode == PREDICTED:
        st.sidebar.caption(f"Explaining the prediction: {as_text(model.class_label(predicted))}.")
        return predicted
    # The prediction is only the first default: the chosen class stays, by name, while the image
    # or the model changes.
    choices = class_choices(model)
    keep_known_classes("w.target", model, choices, st.sidebar)
    chosen = st.sidebar.selectbox("Class (type to search)", list(choices), index=predicted, key="w.target",
                                  persist_state=KEEP, format_func=lambda c: model.class_label(choices[c]))
    return choices[chosen]


# ----------------------------------------------------------------- edited image
def use_edited_image(selection: Selection, x_edited: torch.Tensor, edits_json: str, count: int) -> None:
    """Serve ``x_edited`` (the What-if page's edits of ``selection``'s image) as the input of every page,
    until the image or the model changes or "Back to the original image" is pressed. A widget callback."""
    x_edited = x_edited.detach().cpu().float().contiguous()
    base, served = selection.image_hash, _kept("edited")
    if selection.edits and served is not None:  # edits of the edited image: the chosen image stays the base
        base, count = served["base_hash"], served["count"] + count
        edits_json = json.dumps(json.loads(served["edits"]) + json.loads(edits_json), separators=(",", ":"))
    _keep("edited", {"base_hash": base, "model_key": selection.model_key, "x": x_edited,
                     "hash": bytes_hash(x_edited.numpy().tobytes()), "edits": edits_json, "count": count})


def _edited_input(model: LoadedModel, key: str, image: Image.Image, image_hash: str, x: torch.Tensor,
                  label: str) -> tuple[Image.Image, str, torch.Tensor, str, str]:
    """The edited image in place of the chosen one while it applies (same image, same model), noted."""
    edited = _kept("edited")
    if edited is None or (edited["base_hash"], edited["model_key"]) != (image_hash, key):
        _keep("edited", None)
        return image, image_hash, x, label, ""
    st.sidebar.info(f"Showing the edited image ({edited['count']} edits).")
    if st.sidebar.button("Back to the original image", key="w.edited_back"):
        _keep("edited", None)
        return image, image_hash, x, label, ""
    return (Image.fromarray(model.to_display(edited["x"])), edited["hash"], edited["x"].clone(),
            f"{label} — edited image ({edited['count']} edits)", edited["edits"])


# ------------------------------------------------------------------------ main
_SHARED: ContextVar[Selection | None] = ContextVar("xai_shared_selection", default=None)


@contextlib.contextmanager
def shared_selection(selection: Selection) -> Iterator[None]:
    """While the router runs a page: ``sidebar()`` returns ``selection`` instead of drawing again."""
    token = _SHARED.set(selection)
    try:
        yield
    finally:
        _SHARED.reset(token)


def _through_the_router() -> None:
    """Have streamlit run the router (``app.py``) rather than this page alone. A process's first run
    treats the ``pages/`` folder as streamlit's first multipage API until ``st.navigation`` has run once:
    a server's first visitor arriving on a page's address (a shared link) would get the page without
    the router (no link read back, the folder's navigation). Forgetting the folder and running again
    goes through ``app.py`` to the same page, the address and its query string unchanged."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def sidebar() -> Selection:
    """Draw the shared sidebar and return what the user selected (under the router: what it drew)."""
    shared = _SHARED.get()
    if shared is not None:
        return shared
    _through_the_router()
    st.set_page_config(page_title="XAI Lab", page_icon="🔍", layout="wide")
    st.sidebar.header("XAI Lab")
    device = _device_widget()
    model, key = _model_widgets(device)
    image, sample, image_label = _image_widgets()
    image_hash, x = _prepared(image, model, key)
    image, image_hash, x, image_label, edits = _edited_input(model, key, image, image_hash, x, image_label)
    predictions = cached_predict(model, key, image_hash, x.numpy(), 5)
    target = _target_widgets(model, predictions[0]["index"])
    ground_truth = ground_truth_for_input(sample, model) if sample is not None else None
    outlines = _outline_widgets(ground_truth) if ground_truth is not None else {}
    return Selection(model=model, model_key=key, image=image, image_hash=image_hash, x=x, target=int(target),
                     device=str(model.device), ground_truth=ground_truth, image_label=image_label,
                     predictions=predictions, outlines=outlines, edits=edits)
