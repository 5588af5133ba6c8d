"""Any timm (PyTorch Image Models) classifier by name: ``timm:NAME``.

NAME is anything ``timm.create_model`` accepts, an architecture (``timm:convnext_tiny``) or an
architecture with a pretrained tag (``timm:resnet50.a1_in1k``). timm is imported on first use
(it takes seconds), so the registry and a machine without timm pay nothing until a timm name
is asked for. What timm's pretrained configuration knows is used as is: class count and class
names (timm's own ImageNet label files), preprocessing (``resolve_data_config``), where the
weights are published.

**Names listed.** ``names`` is the models whose weights are in the local Hugging Face cache:
they load offline, where listing all of timm's ~1,400 architectures would fill the model picker
with entries that cannot; any other name is reached by typing it.

**Weights** come only from the local cache, never from the network (a download that stalls on
an offline machine is worse than a message): the Hugging Face hub cache timm itself fills
(``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), then, for weights
timm also publishes at a URL, torch's hub cache (``$TORCH_HOME/hub/checkpoints``). A missing file
is a ``WeightsUnavailableError`` saying what to download and where to put it. Files are read
with safetensors or ``weights_only=True``, then given to timm as a state dict, so that timm's
own key conversions (``checkpoint_filter_fn``) apply.

**Default layer**, read from the model: a ViT-like model (``blocks`` and ``num_prefix_tokens``:
ViT, DeiT, EVA...) the first norm of its last block, whose patch tokens feed the last attention
that mixes them into the class token (pytorch-grad-cam's ViT example); a model with channels-last
transformer stages (Swin, ``output_fmt`` NHWC) the second norm of the last block of its last stage
(pytorch-grad-cam's Swin example); any other model its last feature stage as timm records it
(``feature_info``: ResNet's ``layer4``, ConvNeXt's ``stages.3``). ``instrument.layout`` reads the
token grid and the prefix tokens of those layers from the model.

**Geometry.** ``preprocessing`` and ``default_layer`` accept the built module, because
``create_model`` arguments such as ``img_size`` change them: ``create`` builds a model with
such arguments and reads both from it.
"""
from __future__ import annotations

import difflib
import functools
import math
import os
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import ParameterError, WeightsUnavailableError
from ..model_handle import LoadedModel
from .family import Preprocessing, Pretrained
from .outputs import returning_logits
from .weights import hub_path

PREFIX = "timm:"
_HF_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's hub loader tries, in its order
_STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")  # not .npz: those need timm's custom loader
_INTERPOLATIONS = {"nearest", "bilinear", "bicubic", "box", "hamming", "lanczos"}


# ------------------------------------------------------------------ timm and its configs
def _timm() -> ModuleType:
    try:
        import timm
    except ImportError:
        raise ParameterError("timm is not installed: `pip install timm` to use timm:NAME models.") from None
    return timm


def timm_name(name: str) -> str:
    """NAME of ``timm:NAME``; ``ParameterError`` unless timm knows that architecture."""
    short = name[len(PREFIX):] if name.startswith(PREFIX) else name
    timm = _timm()
    if not timm.is_model(short):
        close = difflib.get_close_matches(short.partition(".")[0], timm.list_models(), n=3, cutoff=0.7)
        hint = f"; did you mean {', '.join(close)}?" if close else "; timm.list_models() lists its architectures."
        raise ParameterError(f"timm has no model named '{short}'{hint}")
    return short


@functools.lru_cache(maxsize=256)
def _config(name: str) -> dict[str, Any]:
    """timm's pretrained configuration of ``timm:NAME`` (its default tag when NAME has none)."""
    from timm.models import get_pretrained_cfg

    short = timm_name(name)
    try:
        cfg = get_pretrained_cfg(short)
    except RuntimeError as err:  # "Invalid pretrained tag (x) for resnet18."
        raise ParameterError(f"timm cannot build '{short}': {err}") from None
    return cfg.to_dict() if cfg is not None else {}


@functools.lru_cache(maxsize=8)
def _imagenet_names(subset: str) -> tuple[str, ...]:
    """Short class names of an ImageNet subset, from the label files shipped in timm.

    The first synonym of each description ("tench" of "tench, Tinca tinca", as torchvision names
    its classes); the two synonyms shared by two classes each (crane, maillot) get their WordNet id.
    """
    from timm.data import ImageNetInfo

    info = ImageNetInfo(subset)
    short = [info.index_to_description(i).split(",")[0].strip() for i in range(info.num_classes())]
    shared = {n for n, count in Counter(short).items() if count > 1}
    return tuple(f"{n} ({info.index_to_label_name(i)})" if n in shared else n for i, n in enumerate(short))


# ------------------------------------------------------------------------ weights
def _hf_hub_cache() -> Path:
    """huggingface_hub's cache folder, read from the environment on each call (as torch.hub.get_dir is)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _repo_folder(repo_id: str) -> Path:
    return _hf_hub_cache() / f"models--{repo_id.replace('/', '--')}"


def _cached_hf_file(repo_id: str, filenames: tuple[str, ...]) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=_hf_hub_cache())
        if isinstance(found, str):  # otherwise None, or a marker that the file is known not to exist
            return Path(found)
    return None


def _url_file(cfg: Mapping[str, Any]) -> Path | None:
    """Where torch's hub cache keeps the weights timm publishes at a URL, when they are a state dict."""
    url = cfg.get("url") or ""
    if not url or cfg.get("custom_load") or not url.endswith(_STATE_DICT_SUFFIXES):
        return None
    return hub_path(url)


def _read_state(path: Path, name: str) -> Mapping[str, Any]:
    """The weights file as timm's own download would give it (timm's filter converts its keys)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsUnavailableError(f"The weights file {path} for {name} is corrupt ({type(err).__name__}); "
                                      "delete it and download it again.") from None


def _advice(name: str, cfg: Mapping[str, Any]) -> str:
    hf_id, url_file = cfg.get("hf_hub_id"), _url_file(cfg)
    ways = []
    if hf_id:
        ways.append(f"run `hf download {hf_id}` on a machine with network access and copy its cache folder "
                    f"{_repo_folder(hf_id).name} into {_hf_hub_cache()}")
    if url_file is not None:
        ways.append(f"download {url_file.name} from {cfg['url']} and put it in {url_file.parent}")
    if not ways:
        return f"timm publishes no pretrained weights for {name}; load a checkpoint instead."
    return f"Weights for {name} are not in the local cache (nothing is downloaded): {', or '.join(ways)}."


# ----------------------------------------------------------------- read from the model
def _head_names(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    classifier = cfg.get("classifier") or ()
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def model_input_size(module: nn.Module, cfg: Mapping[str, Any]) -> int:
    """The side of the square input: the size a patch embedding was built for, else the config's."""
    size = getattr(getattr(module, "patch_embed", None), "img_size", None)  # (h, w) in timm, None when dynamic
    height, width = (size, size) if isinstance(size, int) else size or (cfg.get("input_size") or (3, 224, 224))[1:]
    if height != width:
        raise ParameterError(f"{type(module).__name__} takes {height}×{width} inputs; "
                             "only square inputs are supported.")
    return int(height)


def layer_of(module: nn.Module) -> str:
    """The default CAM layer of a timm model (see the module docstring), "" when it records no feature stage."""
    blocks = getattr(module, "blocks", None)
    if hasattr(module, "num_prefix_tokens") and isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks):
        last = f"blocks.{len(blocks) - 1}"
        return f"{last}.norm1" if hasattr(blocks[-1], "norm1") else last
    stages = getattr(module, "feature_info", None)
    if not stages:
        return ""
    stage = stages[-1]["module"]
    stage_blocks = getattr(module.get_submodule(stage), "blocks", None)
    channels_last = getattr(module, "output_fmt", None) == "NHWC"
    if channels_last and stage_blocks is not None and hasattr(stage_blocks[-1], "norm2"):
        return f"{stage}.blocks.{len(stage_blocks) - 1}.norm2"
    return stage


def _preprocessing(cfg: Mapping[str, Any], input_size: int) -> Preprocessing:
    from timm.data import resolve_data_config

    data = resolve_data_config(pretrained_cfg=dict(cfg))
    interpolation = data["interpolation"] if data["interpolation"] in _INTERPOLATIONS else "bilinear"
    # timm's eval transform: resize the shorter side to floor(size / crop_pct), centre-crop size.
    return Preprocessing(mean=tuple(data["mean"]), std=tuple(data["std"]), input_size=input_size,
                         resize_size=math.floor(input_size / data["crop_pct"]), interpolation=interpolation)


def _create(name: str, num_classes: int | None, arch: Mapping[str, Any]) -> nn.Module:
    classes = num_classes or _config(name).get("num_classes") or 1000
    return _timm().create_model(timm_name(name), pretrained=False, num_classes=classes, **arch)


@functools.lru_cache(maxsize=32)
def _meta_module(name: str) -> nn.Module:
    """The architecture as its config builds it, on the meta device: its structure, no weights."""
    with torch.device("meta"):
        return _create(name, None, {})


# ------------------------------------------------------------------------ the family
class TimmFamily:
    """Every architecture timm knows, as ``timm:NAME``; ``names`` lists those with cached weights."""

    prefix = PREFIX

    @property
    def names(self) -> tuple[str, ...]:
        """``timm:NAME`` of every timm model whose weights are in the Hugging Face cache (no timm import)."""
        cache = _hf_hub_cache()
        if not cache.is_dir():
            return ()
        found = [folder.name[len("models--timm--"):] for folder in sorted(cache.glob("models--timm--*"))
                 if any((folder / "snapshots").glob(f"*/{f}") for f in _HF_FILES)]
        return tuple(PREFIX + n for n in found)

    def build(self, name: str, num_classes: int | None = None, **arch: Any) -> nn.Module:
        """``timm.create_model(NAME, pretrained=False, ...)``; ``arch`` are its keyword arguments.

        Under the meta device, an architecture with buffers that a state dict does not hold (Swin's
        relative position index) is built on the CPU: loading a checkpoint could not fill them."""
        module = _create(name, num_classes, arch)
        if any(b.is_meta for b in module.buffers()) and any(m._non_persistent_buffers_set for m in module.modules()):
            with torch.device("cpu"):
                module = _create(name, num_classes, arch)
        return module

    def architecture(self, name: str, state: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """The number of classes, from the classifier timm's config names (empty when absent)."""
        for head in _head_names(_config(name)):
            weight = state.get(f"{head}.weight")
            if weight is not None and weight.ndim in (2, 4):  # linear, or a 1×1 convolution head
                return {"num_classes": weight.shape[0]}
        return {}

    def categories(self, name: str) -> list[str]:
        """ImageNet class names from timm's label files when the config's class count is an ImageNet subset's."""
        from timm.data import infer_imagenet_subset

        cfg = _config(name)
        subset = infer_imagenet_subset(cfg)
        if subset is not None:
            return list(_imagenet_names(subset))
        return [f"class {i}" for i in range(cfg.get("num_classes") or 1000)]

    def preprocessing(self, name: str, module: nn.Module | None = None) -> Preprocessing:
        """timm's data config (mean, std, interpolation, crop_pct) at the input size of ``module``
        (default: the architecture as its config builds it)."""
        cfg = _config(name)
        return _preprocessing(cfg, model_input_size(module if module is not None else _meta_module(name), cfg))

    def default_layer(self, name: str, module: nn.Module | None = None) -> str:
        """The default CAM layer read from ``module`` (default: the architecture as its config builds it)."""
        return layer_of(module if module is not None else _meta_module(name))

    def weights_path(self, name: str) -> Path:
        """The cached weights file; when there is none, where it would go (torch's hub cache for
        weights published at a URL, else the model's folder in the Hugging Face cache)."""
        cfg = _config(name)
        hf_id, url_file = cfg.get("hf_hub_id"), _url_file(cfg)
        hf_files = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else _HF_FILES
        cached = _cached_hf_file(hf_id, hf_files) if hf_id else None
        if cached is not None:
            return cached
        if url_file is not None:
            return url_file
        return _repo_folder(hf_id) if hf_id else _hf_hub_cache() / f"{timm_name(name)} (no published weights)"

    def load_pretrained(self, name: str, allow_download: bool) -> Pretrained:
        """The weights from the local cache; ``allow_download`` is ignored: timm weights are never downloaded here."""
        cfg = _config(name)
        path = self.weights_path(name)
        if not path.is_file():
            raise WeightsUnavailableError(_advice(name, cfg))
        state = _read_state(path, name)
        try:  # timm converts the keys and loads strictly; an empty source keeps it off the hub
            module = _timm().create_model(timm_name(name), pretrained=True,
                                          pretrained_cfg_overlay={"state_dict": state, "source": ""})
        except (RuntimeError, KeyError, ValueError) as err:
            raise WeightsUnavailableError(f"The weights file {path} does not fit {name}: "
                                          f"{str(err).splitlines()[0]}") from None
        module.pretrained_cfg.pop("state_dict", None)  # the config would keep a second copy of every weight
        tag = cfg.get("tag")
        return Pretrained(module, self.categories(name), f"timm {cfg.get('architecture')}" + (f".{tag}" if tag else ""))

    def description(self, name: str) -> str:
        """Architecture, weights tag, input size and licence, from timm's config."""
        cfg = _config(name)
        size = (cfg.get("input_size") or (3, 224, 224))[-1]
        parts = [f"weights {cfg['tag']}" if cfg.get("tag") else "", f"{size} px input",
                 f"licence {cfg['license']}" if cfg.get("license") else ""]
        return f"timm {cfg.get('architecture') or timm_name(name)} (" + ", ".join(p for p in parts if p) + ")"


FAMILY = TimmFamily()


def create(name: str, num_classes: int | None = None, *, device: torch.device | str = "cpu", seed: int = 0,
           **create_kwargs: Any) -> LoadedModel:
    """A timm model with random weights built with ``create_model`` keyword arguments (``img_size``,
    ``window_size``, ``depth``...), its input size and default layer read from the built module.

    ``xai_core.models.build_random`` builds the architecture as timm's config does; this is the
    way to a smaller one (tests run a ViT at 64 px). The global RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = FAMILY.build(name, num_classes, **create_kwargs).eval()
    prep = FAMILY.preprocessing(name, module)
    known = FAMILY.categories(name)
    classes = module.num_classes
    categories = known if len(known) == classes else [f"class {i}" for i in range(classes)]
    probe = torch.zeros(1, 3, prep.input_size, prep.input_size)
    return LoadedModel(
        name=PREFIX + timm_name(name), arch=PREFIX + timm_name(name), module=returning_logits(module, probe).to(device),
        categories=categories, mean=prep.mean, std=prep.std, input_size=prep.input_size,
        resize_size=prep.resize_size, interpolation=prep.interpolation, weights_source="random",
        default_layer=FAMILY.default_layer(name, module), device=torch.device(device))
