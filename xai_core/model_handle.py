"""``LoadedModel``: a classifier together with everything needed to explain it.

Every method takes a ``LoadedModel`` and a preprocessed input tensor. The handle is shared
between threads (browser sessions) through the UI's resource cache, so nothing here
mutates the module after construction: methods must not call ``.backward()`` on it (that
writes ``.grad`` into shared parameters; use ``torch.autograd.grad``), must not toggle
``requires_grad`` on its parameters, and must remove any hook they add (see ``hooks.py``).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .engine import oom_guard
from .errors import ParameterError
from .instrument.capture import get_layer, layers_with_feature_maps
from .instrument.layout import TOKENS, Layout

_PIL_FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                "bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX,
                "hamming": Image.Resampling.HAMMING, "lanczos": Image.Resampling.LANCZOS}
"""torchvision's InterpolationMode values → PIL's filters (what torchvision's PIL resize uses)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(eq=False)
class LoadedModel:
    name: str                      # registry name ("resnet18", "embedded", ...)
    arch: str                      # architecture name (same as name unless a checkpoint is used)
    module: nn.Module              # in eval mode, on ``device``
    categories: list[str]          # class names, index = output unit
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int                # side of the square tensor fed to the network
    resize_size: int               # shorter side before the centre crop (= input_size: no crop)
    weights_source: str            # human-readable: torchvision enum, checkpoint path, ...
    default_layer: str             # dotted module path used by the CAM family by default
    device: torch.device
    interpolation: str = "bilinear"  # resize filter of the weights' own preprocessing
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _feature_map_layers: dict[str, Layout] | None = field(default=None, init=False, repr=False)  # conv_layers memo

    @classmethod
    def from_module(cls, module: nn.Module, *, input_size: int, categories: Sequence[str] | None = None,
                    num_classes: int | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD, name: str = "custom", default_layer: str | None = None,
                    device: torch.device | str = "cpu") -> "LoadedModel":
        """Wrap any image classifier ``module`` (N×3×S×S → N×classes logits) to explain it.

        Class names default to "class 0", "class 1", ...; ``mean``/``std`` to ImageNet's; the CAM
        layer to the last module that outputs a feature map, global pooling excepted, or on a
        class-token transformer to the first norm of its last block (none for a model without one).
        """
        if categories is None:
            if num_classes is None:
                raise ParameterError("Give the class names or their number.")
            categories = [f"class {i}" for i in range(num_classes)]
        model = cls(name=name, arch=type(module).__name__, module=module.eval().to(device), categories=list(categories),
                    mean=tuple(mean), std=tuple(std), input_size=input_size, resize_size=input_size,
                    weights_source="user module", default_layer=default_layer or "", device=torch.device(device))
        if default_layer is None:
            model.default_layer = model._last_useful_layer()
        return model

    def to_channels_last(self) -> "LoadedModel":
        """Store a convolutional network's weights channels-last (NHWC), in place; returns self.

        Call it where the model is built, before it is shared (it changes the module). A conv
        whose weight is channels-last produces channels-last outputs from any input, so inputs
        need no conversion and every later layer follows; tensor cores and cuDNN's NHWC kernels
        favour it on CUDA. Values are unchanged (``tests/test_gpu_path.py``); models without a
        2-D convolution (transformers) are left as they are.
        """
        if any(isinstance(m, nn.Conv2d) for m in self.module.modules()):
            self.module.to(memory_format=torch.channels_last)
        return self

    # ------------------------------------------------------------------ facts
    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def card(self) -> dict:
        """The model card shown on the home page and by the CLI."""
        return {
            "name": self.name, "architecture": self.arch, "parameters": self.num_params,
            "input_size": f"3×{self.input_size}×{self.input_size}", "classes": self.num_classes,
            "weights": self.weights_source, "device": str(self.device),
        }

    def conv_layers(self) -> list[str]:
        """Dotted names of modules whose output reads as a feature map (CAM-family candidates):
        N×K×h×w, a Swin stage's N×h×w×K, or a transformer's tokens on their grid
        (``instrument.layout``), among convolutional and normalisation layers and blocks.

        The module type alone does not tell: the ReLUs and ``Sequential`` heads of VGG/AlexNet's
        dense classifier output N×features. One probe forward pass decides, memoised (every
        thread would compute the same list, so a race only repeats the probe).
        """
        if self._feature_map_layers is None:
            candidates = [name for name, m in self.module.named_modules()
                          if name and isinstance(m, (nn.Conv2d, nn.Sequential, nn.ReLU, nn.BatchNorm2d, nn.LayerNorm,
                                                     nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d))
                          or _is_block(m)]
            probe = torch.zeros(1, len(self.mean), self.input_size, self.input_size, device=self.device)
            with_maps = layers_with_feature_maps(self.module, candidates, probe)
            self._feature_map_layers = {name: with_maps[name] for name in candidates if name in with_maps}
        return list(self._feature_map_layers)

    def _last_useful_layer(self) -> str:
        """The last feature map whose positions reach the logits ("" when there is none).

        Global pooling outputs a 1×1 "feature map": no use for a CAM. On a transformer (modules are
        listed in definition order, so a block's own norms come after it) the last block's output
        when the head pools every token; when it reads a class token, the patch tokens reach it for
        the last time in the last block's attention, so the first norm of that block.
        """
        layers = [n for n in self.conv_layers()
                  if not isinstance(self.get_layer(n), (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
        if not layers:
            return ""
        assert self._feature_map_layers is not None
        last = self._feature_map_layers[layers[-1]]
        blocks = [n for n in layers if _is_block(self.get_layer(n))]
        if last.kind != TOKENS or not blocks:
            return layers[-1]
        norms = [n for n in layers if n.startswith(blocks[-1] + ".") and isinstance(self.get_layer(n), nn.LayerNorm)]
        return norms[0] if last.prefix_tokens > 0 and norms else blocks[-1]

    def get_layer(self, name: str) -> nn.Module:
        return get_layer(self.module, name)

    # ------------------------------------------------------------- targets
    def resolve_target(self, target: int | str) -> int:
        """A class index, or a class name (exact, case-insensitive, or a unique substring)."""
        if isinstance(target, (int, np.integer)) or (isinstance(target, str) and target.strip().lstrip("-").isdigit()):
            index = int(target)
            if not 0 <= index < self.num_classes:
                raise ParameterError(f"Class index {index} is out of range 0..{self.num_classes - 1}.")
            return index
        wanted = str(target).strip().lower()
        names = [c.lower() for c in self.categories]
        if wanted in names:
            return names.index(wanted)
        hits = [i for i, c in enumerate(names) if wanted in c]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise ParameterError(f"No class of {self.name} is named '{target}'.")
        shown = ", ".join(self.categories[i] for i in hits[:5])
        raise ParameterError(f"'{target}' matches several classes ({shown}...); be more specific.")

    def class_label(self, index: int) -> str:
        """How a class is shown everywhere: its name, then its index."""
        return f"{self.categories[index]} ({index})"

    def resolve_targets(self, targets: Sequence[int | str]) -> list[int]:
        return [self.resolve_target(t) for t in targets]

    # --------------------------------------------------------- pre/post-processing
    def fit(self, image: Image.Image, interpolation: str | None = None) -> Image.Image:
        """The image resized (shorter side to ``resize_size``) and centre-cropped to ``input_size``, with
        the weights' filter or ``interpolation``: torchvision's ``resize`` and ``center_crop`` written
        with PIL, so that loading an image does not import torchvision (seconds of the app's cold
        start); ``tests/test_models.py`` checks it against torchvision."""
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        size = (self.resize_size, int(self.resize_size * long / short))
        image = image.resize(size if width <= height else size[::-1], _PIL_FILTERS[interpolation or self.interpolation])
        width, height = image.size
        crop = self.input_size
        if width < crop or height < crop:  # torchvision pads a smaller image with zeros, centred
            padded = Image.new(image.mode, (max(width, crop), max(height, crop)))
            padded.paste(image, ((padded.width - width) // 2, (padded.height - height) // 2))
            image, (width, height) = padded, padded.size
        top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))
        return image.crop((left, top, left + crop, top + crop))

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """RGB PIL image -> normalised float tensor C×H×W on the CPU (``fit``, then /255 and the
        weights' mean and std)."""
        pixels = np.asarray(self.fit(image.convert("RGB")), dtype=np.float32) / 255.0
        x = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of the normalisation, clipped to [0, 1]; works on C×H×W or N×C×H×W."""
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(shape)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(shape)
        return (x * std + mean).clamp(0, 1)

    def to_display(self, x: torch.Tensor) -> np.ndarray:
        """Normalised C×H×W tensor -> uint8 H×W×3 array for display."""
        img = self.denormalize(x.detach().float().cpu())
        return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)

    def normalized_constant(self, value: float | Sequence[float]) -> torch.Tensor:
        """The normalised tensor value (shape 3×1×1) of a constant colour given in [0, 1]."""
        v = torch.as_tensor(value, dtype=torch.float32).expand(3)
        return ((v - torch.tensor(self.mean)) / torch.tensor(self.std)).view(3, 1, 1).to(self.device)

    # --------------------------------------------------------------- inference
    @torch.no_grad()
    def predict(self, x: torch.Tensor, topk: int = 5) -> list[dict]:
        """Top-k classes for one C×H×W input: ``[{index, name, probability, logit}]``."""
        with oom_guard(self.device, "the prediction"):
            logits = self.module(x.unsqueeze(0).to(self.device)).float()[0]
        probs = logits.softmax(-1)
        k = min(topk, self.num_classes)
        top = probs.topk(k)
        return [{"index": int(i), "name": self.categories[int(i)], "probability": float(p),
                 "logit": float(logits[int(i)])} for p, i in zip(top.values, top.indices)]


_BLOCKS = {"BasicBlock", "Bottleneck", "MBConv", "CNBlock", "FusedMBConv", "InvertedResidual",
           "Conv2dNormActivation", "ConvNeXtBlock", "ConvNeXtStage",                    # convolutional
           "Block", "EncoderBlock", "SwinTransformerBlock", "SwinTransformerBlockV2", "SwinTransformerStage"}
"""Block classes of torchvision, timm and the embedded models: good CAM layers, not leaves."""


def _is_block(m: nn.Module) -> bool:
    """A residual, inverted-residual, ConvNeXt or transformer block (by class name: no import of timm)."""
    return type(m).__name__ in _BLOCKS
