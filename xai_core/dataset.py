"""The embedded dataset: procedural images of shapes, generated on the fly from a seed.

Every sample is a pure function of ``(seed, index)``: nothing is stored, the app works
offline, and any split can be regenerated exactly. Each image holds one class object on
a textured background (flat noise, gradient, stripes or blotches) plus a few distractor
strokes that are not class objects and never touch the object, so "is the explanation on
the object?" (pointing game, box energy) has a fair right answer.

Nuisance variation: position, area (≈12–30 % of the image), rotation, aspect ratio,
object and background colours, background texture, distractors and pixel noise.

``PART_PAIR`` are two classes with the same hexagonal body and a small circular badge at
the same place; they differ ONLY by the marker inside the badge (a dot or a cross). For
them ``part_mask`` is the badge, and two samples drawn with the same nuisance (same seed
and index, ``label`` forced) differ only inside it: occluding the part must destroy the
evidence, and a faithful attribution must sit on it. For the other classes there is no
distinct part, so ``part_mask`` is the whole object.

Labels cycle with the index (``index % len(CLASSES)``), so any ``n`` gives a balanced split.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .errors import ParameterError

CLASSES = ["circle", "square", "triangle", "star", "ring", "plus", "hexagon_dot", "hexagon_cross"]
IMAGE_SIZE = 64
PART_PAIR = (6, 7)
# Per-channel statistics of the generator's output (measured on 4,000 samples, rounded).
MEAN = (0.502, 0.503, 0.497)
STD = (0.231, 0.232, 0.232)

_AREA_RANGE = (0.12, 0.30)       # object area as a fraction of the image
_ASPECT_RANGE = (0.8, 1.25)      # width/height stretch (not applied to the PART_PAIR body)
_MIN_CONTRAST = 0.45             # RGB distance between object and background colours
_BADGE_OFFSET = 0.4              # badge centre along the body's rotated x axis, in body radii
_BADGE_MIN_RADIUS = 5.0          # pixels: below this the dot/cross marker becomes illegible

_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5  # pixel centres


@dataclass
class Sample:
    image: np.ndarray        # uint8 H×W×3
    label: int
    object_mask: np.ndarray  # bool H×W: the whole object, part included
    part_mask: np.ndarray    # bool H×W: the discriminative part (whole object if none)
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) of object_mask; x1, y1 exclusive

    @property
    def class_name(self) -> str:
        return CLASSES[self.label]

    def pil(self) -> Image.Image:
        return Image.fromarray(self.image)


# ------------------------------------------------------------------ shapes
def _regular_polygon(n: int, radius: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _regular_polygon(2 * points)
    outer[1::2] *= inner
    return outer


def _polygon_area(verts: np.ndarray) -> float:
    x, y = verts[:, 0], verts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _polygon_sdf(u: np.ndarray, v: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Signed distance to a closed polygon (negative inside), evaluated on arrays."""
    dist2 = np.full(u.shape, np.inf, np.float32)
    sign = np.ones(u.shape, np.float32)
    for i in range(len(verts)):
        (ax, ay), (bx, by) = verts[i], verts[i - 1]
        ex, ey, wx, wy = bx - ax, by - ay, u - ax, v - ay
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1)
        dist2 = np.minimum(dist2, (wx - ex * t) ** 2 + (wy - ey * t) ** 2)
        above, below, left = v >= ay, v < by, ex * wy > ey * wx
        crossing = (above & below & left) | (~above & ~below & ~left)
        sign[crossing] *= -1
    return sign * np.sqrt(dist2)


def _box_sdf(u: np.ndarray, v: np.ndarray, half_w: float, half_h: float) -> np.ndarray:
    qx, qy = np.abs(u) - half_w, np.abs(v) - half_h
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0)


_TRIANGLE, _STAR, _HEXAGON = _regular_polygon(3), _star(), _regular_polygon(6, phase=0.0)
_SQUARE_HALF, _RING_INNER = 0.7, 0.5
_PLUS_LONG, _PLUS_SHORT = 0.95, 0.3

# Shape name -> (signed distance in local units, area of the unit shape). Every unit shape
# fits in the unit disc, so its pixel radius is at most the scale times the stretch.
_SHAPES = {
    "circle": (lambda u, v: np.hypot(u, v) - 1, np.pi),
    "square": (lambda u, v: _box_sdf(u, v, _SQUARE_HALF, _SQUARE_HALF), (2 * _SQUARE_HALF) ** 2),
    "triangle": (lambda u, v: _polygon_sdf(u, v, _TRIANGLE), _polygon_area(_TRIANGLE)),
    "star": (lambda u, v: _polygon_sdf(u, v, _STAR), _polygon_area(_STAR)),
    "ring": (lambda u, v: np.abs(np.hypot(u, v) - (1 + _RING_INNER) / 2) - (1 - _RING_INNER) / 2,
             np.pi * (1 - _RING_INNER ** 2)),
    "plus": (lambda u, v: np.minimum(_box_sdf(u, v, _PLUS_LONG, _PLUS_SHORT), _box_sdf(u, v, _PLUS_SHORT, _PLUS_LONG)),
             2 * (2 * _PLUS_LONG) * (2 * _PLUS_SHORT) - (2 * _PLUS_SHORT) ** 2),
    "hexagon": (lambda u, v: _polygon_sdf(u, v, _HEXAGON), _polygon_area(_HEXAGON)),
}
_BODY = {name: name for name in CLASSES[:6]} | {CLASSES[PART_PAIR[0]]: "hexagon", CLASSES[PART_PAIR[1]]: "hexagon"}


def _local(cx: float, cy: float, angle: float, sx: float, sy: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel grid -> object coordinates (rotated by ``angle``, scaled by ``sx``/``sy``)."""
    dx, dy = _XX - cx, _YY - cy
    c, s = np.cos(angle), np.sin(angle)
    return (c * dx + s * dy) / sx, (-s * dx + c * dy) / sy


def _coverage(sdf_px: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (0.5 on the boundary)."""
    return np.clip(0.5 - sdf_px, 0, 1)[..., None]


# -------------------------------------------------------------- background
def _background(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    base = rng.uniform(0.15, 0.85, 3).astype(np.float32)
    kind = rng.integers(4)
    if kind == 0:    # flat with coarse noise
        texture = rng.normal(0, 0.05, (IMAGE_SIZE, IMAGE_SIZE, 1))
    elif kind == 1:  # linear gradient
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * _XX + np.sin(angle) * _YY) / IMAGE_SIZE
        texture = rng.uniform(0.15, 0.3) * (ramp - ramp.mean())[..., None]
    elif kind == 2:  # stripes
        angle, period = rng.uniform(0, np.pi), rng.uniform(5, 14)
        phase = (np.cos(angle) * _XX + np.sin(angle) * _YY) * 2 * np.pi / period
        texture = rng.uniform(0.06, 0.12) * np.sin(phase + rng.uniform(0, 2 * np.pi))[..., None]
    else:            # smooth coloured blotches
        coarse = torch.from_numpy(rng.normal(0, 0.1, (1, 3, 6, 6)).astype(np.float32))
        texture = torch.nn.functional.interpolate(coarse, size=IMAGE_SIZE, mode="bicubic",
                                                  align_corners=False)[0].permute(1, 2, 0).numpy()
    return np.clip(base + texture, 0, 1).astype(np.float32), base


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    for _ in range(100):
        colour = rng.uniform(0, 1, 3).astype(np.float32)
        if np.linalg.norm(colour - background) >= _MIN_CONTRAST:
            return colour
    return (background < 0.5).astype(np.float32)  # complementary extreme: always contrasts


# ----------------------------------------------------------------- sample
def make_sample(seed: int, index: int, label: int | None = None) -> Sample:
    """Sample ``index`` of the dataset with ``seed``; ``label`` forces the class while
    keeping every nuisance draw (background, pose, colours, distractors, noise) unchanged."""
    rng = np.random.default_rng([seed, index])
    label = index % len(CLASSES) if label is None else int(label)
    if not 0 <= label < len(CLASSES):
        raise ParameterError(f"Class index {label} is out of range 0..{len(CLASSES) - 1}.")
    image, bg_colour = _background(rng)

    # Pose: scale from the target area, then a centre that keeps the object inside.
    area = rng.uniform(*_AREA_RANGE) * IMAGE_SIZE ** 2
    aspect, angle = rng.uniform(*_ASPECT_RANGE), rng.uniform(0, 2 * np.pi)
    body = _BODY[CLASSES[label]]
    if body == "hexagon":
        aspect = 1.0  # keeps the badge at a fixed distance from the body's edges
    sdf, unit_area = _SHAPES[body]
    stretch = max(np.sqrt(aspect), 1 / np.sqrt(aspect))
    scale = min(np.sqrt(area / unit_area), (IMAGE_SIZE / 2 - 1) / stretch)  # thin shapes: cap to fit
    sx, sy = scale * np.sqrt(aspect), scale / np.sqrt(aspect)
    radius = scale * stretch
    cx, cy = rng.uniform(radius, IMAGE_SIZE - radius, 2)
    body_sdf = sdf(*_local(cx, cy, angle, sx, sy)) * min(sx, sy)

    colour = _contrasting_colour(rng, bg_colour)
    image = image * (1 - _coverage(body_sdf)) + colour * _coverage(body_sdf)
    object_mask = body_sdf < 0
    part_mask = object_mask
    if body == "hexagon":
        image, part_mask = _draw_badge(image, label, colour, cx, cy, angle, scale)
        object_mask = object_mask | part_mask

    image = _draw_distractors(rng, image, body_sdf)
    image = image + rng.normal(0, rng.uniform(0, 0.03), image.shape)
    image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    ys, xs = np.nonzero(object_mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return Sample(image, label, object_mask, part_mask.copy(), box)


def _draw_badge(image: np.ndarray, label: int, body_colour: np.ndarray, cx: float, cy: float,
                angle: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The PART_PAIR part: a badge of contrasting grey holding a dot or a cross in the body
    colour. The marker stays strictly inside the badge, so the pair differs only there."""
    r = max(0.3 * scale, _BADGE_MIN_RADIUS)
    bx = cx + _BADGE_OFFSET * scale * np.cos(angle)
    by = cy + _BADGE_OFFSET * scale * np.sin(angle)
    badge_sdf = np.hypot(_XX - bx, _YY - by) - r
    shade = 0.08 if body_colour.mean() > 0.5 else 0.92
    image = image * (1 - _coverage(badge_sdf)) + shade * _coverage(badge_sdf)
    u, v = _local(bx, by, angle + np.pi / 4, 1.0, 1.0)
    if label == PART_PAIR[0]:
        marker_sdf = np.hypot(u, v) - 0.45 * r
    else:
        half_w = max(0.85, 0.16 * r)
        marker_sdf = np.minimum(_box_sdf(u, v, 0.75 * r, half_w), _box_sdf(u, v, half_w, 0.75 * r))
    image = image * (1 - _coverage(marker_sdf)) + body_colour * _coverage(marker_sdf)
    return image, badge_sdf < 0


def _draw_distractors(rng: np.random.Generator, image: np.ndarray, object_sdf: np.ndarray) -> np.ndarray:
    """0–3 strokes or chevrons (never class objects), kept ≥ 2 px away from the object."""
    keep_out = object_sdf < 2.5
    for _ in range(rng.integers(0, 4)):
        colour = rng.uniform(0, 1, 3).astype(np.float32)
        for _attempt in range(10):
            x, y = rng.uniform(0, IMAGE_SIZE, 2)
            angle, length, width = rng.uniform(0, np.pi), rng.uniform(4, 8), rng.uniform(0.6, 1.1)
            hinged = rng.random() < 0.5
            if object_sdf[int(y), int(x)] < 2 * length + 4:  # cheap early rejection: may touch
                continue
            u, v = _local(x, y, angle, 1.0, 1.0)
            stroke_sdf = _box_sdf(u, v, length, width)
            if hinged:  # chevron: a second stroke hinged at one end
                u2, v2 = _local(x - length * np.cos(angle), y - length * np.sin(angle),
                                angle + rng.uniform(0.6, 1.5), 1.0, 1.0)
                stroke_sdf = np.minimum(stroke_sdf, _box_sdf(u2 - length, v2, length, width))
            if not (keep_out & (stroke_sdf < 0.5)).any():
                image = image * (1 - _coverage(stroke_sdf)) + colour * _coverage(stroke_sdf)
                break
    return image


# ---------------------------------------------------------------- batches
def _labels_for(n: int, classes: Sequence[int] | None) -> list[int | None]:
    if classes is None:
        return [None] * n
    classes = [int(c) for c in classes]
    if not classes or any(not 0 <= c < len(CLASSES) for c in classes):
        raise ParameterError(f"Classes must be a non-empty list of indices in 0..{len(CLASSES) - 1}.")
    return [classes[i % len(classes)] for i in range(n)]


def samples(seed: int, n: int, classes: Sequence[int] | None = None) -> list[Sample]:
    """Samples ``0..n-1``; with ``classes``, sample ``i`` is forced to ``classes[i % len(classes)]``."""
    return [make_sample(seed, i, label) for i, label in enumerate(_labels_for(n, classes))]


def normalize(images: np.ndarray, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """uint8 N×H×W×3 -> float32 N×3×H×W normalised tensor."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def tensors(seed: int, n: int, classes: Sequence[int] | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x N×3×H×W normalised float32, labels int64, object_masks bool N×H×W, part_masks)``."""
    batch = samples(seed, n, classes)
    x = normalize(np.stack([s.image for s in batch]))
    labels = torch.tensor([s.label for s in batch], dtype=torch.int64)
    objects = torch.from_numpy(np.stack([s.object_mask for s in batch]))
    parts = torch.from_numpy(np.stack([s.part_mask for s in batch]))
    return x, labels, objects, parts


class ProceduralDataset(torch.utils.data.Dataset):
    """``(x 3×H×W normalised, label)`` pairs of the dataset with ``seed``, generated on access."""

    def __init__(self, seed: int, length: int, classes: Sequence[int] | None = None):
        self.seed, self.length = seed, length
        self.labels = _labels_for(length, classes)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        sample = make_sample(self.seed, index, self.labels[index])
        return normalize(sample.image[None])[0], sample.label


# ------------------------------------------------------------ export/eval
def export(seed: int, n: int, out_dir: str | Path) -> Path:
    """Write ``n`` samples and return the path of ``labels.csv``.

    Layout: ``images/<class>/<i>.png`` (a torchvision ``ImageFolder`` root: masks must not
    live under it, or they would become a class), ``masks/<i>_object.png`` and
    ``masks/<i>_part.png`` (0/255), and ``labels.csv`` with paths relative to ``out_dir``.
    """
    out = Path(out_dir)
    for name in CLASSES:
        (out / "images" / name).mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        s = make_sample(seed, i)
        image = f"images/{s.class_name}/{i}.png"
        obj, part = f"masks/{i}_object.png", f"masks/{i}_part.png"
        s.pil().save(out / image)
        Image.fromarray(s.object_mask.astype(np.uint8) * 255).save(out / obj)
        Image.fromarray(s.part_mask.astype(np.uint8) * 255).save(out / part)
        rows.append({"image": image, "label": s.label, "object_mask": obj, "part_mask": part,
                     "x0": s.box[0], "y0": s.box[1], "x1": s.box[2], "y1": s.box[3]})
    csv_path = out / "labels.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["image"])
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def evaluate(model, seed: int, n: int, engine=None) -> dict:
    """Accuracy of a ``LoadedModel`` on ``n`` fresh samples; its classes must be ``CLASSES``
    (in any order): outputs are matched to dataset labels by name."""
    import torch.nn.functional as F

    from .engine import Engine

    if sorted(model.categories) != sorted(CLASSES):
        raise ParameterError(f"Model {model.name} was not trained on the embedded dataset "
                             f"(its classes are not {', '.join(CLASSES)}).")
    if n < 1:
        raise ParameterError("The number of evaluation samples must be at least 1.")
    engine = engine or Engine(model.device)
    batch = samples(seed, n)
    images = np.stack([s.image for s in batch])
    labels = np.array([s.label for s in batch])
    to_dataset = torch.tensor([CLASSES.index(c) for c in model.categories], device=model.device)

    def predict(start: int, stop: int) -> torch.Tensor:
        x = normalize(images[start:stop], model.mean, model.std).to(model.device)
        if model.input_size != IMAGE_SIZE:
            x = F.interpolate(x, size=model.input_size, mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            return to_dataset[model.module(x).argmax(1)]

    predicted = engine.map_cat(predict, n, section="logits", key=f"evaluate:{model.name}").cpu().numpy()
    correct = predicted == labels
    per_class = {name: float(correct[labels == k].mean()) for k, name in enumerate(CLASSES) if (labels == k).any()}
    return {"accuracy": float(correct.mean()), "per_class": per_class, "n": int(n)}
