"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das & Saenko, BMVC 2018, §3).

The model is probed with N randomly masked copies of the image; the saliency of class c at
pixel λ is the average class probability over the masks, weighted by how much each mask kept
λ, normalised by the expected mask value p::

    S_c(λ) = 1 / (N · p) · Σ_i f_c(I ⊙ M_i) · M_i(λ)

``f`` is the softmax output, and every target class is read from the same forward passes.

Mask shapes (``shape``; ``s = cell`` is the number of grid cells per image side, every
random draw is kept with probability ``p``, and every shape has E[M(λ)] = p so the N · p
normalisation holds for all of them):

- ``binary`` (the paper's): an s×s grid of Bernoulli(p) bits, upsampled bilinearly to
  (s+1)·⌈H/s⌉ × (s+1)·⌈W/s⌉ and cropped to H×W at a uniformly random shift in
  [0, ⌈H/s⌉) × [0, ⌈W/s⌉), which gives smooth masks whose edges fall anywhere.
- ``stripes``: vertical stripes. The same construction on a 1×s row of bits, so M(y, x)
  depends only on x: s smooth vertical bands, each kept with probability p.
- ``grid``: a lattice of dropped rows and columns. Independent smooth horizontal and
  vertical band profiles r(y), c(x) (each an s-band ``stripes`` profile kept with
  probability √p) multiplied, M = r(y)·c(x): a pixel survives only where its row band and
  its column band both survive, so the removed parts form grid lines.
- ``noise``: per-pixel Gaussian white noise, M = clamp(p + σ·z, 0, 1) with z ~ N(0, 1)
  i.i.d. and σ = min(p, 1−p)/2 (clamping is rare, so E[M] ≈ p); ``cell`` is unused.

Fills (``fill``): the masked image is I ⊙ M + F ⊙ (1 − M), with F a named replacement
(``xai_core.replacements``): black (the paper's I ⊙ M in pixel space), grey = the dataset mean
(the normalised value 0; what the authors' code does by multiplying the normalised tensor),
the image's mean colour, its blur, seeded noise, white, or a constant grey level.

Seeding: masks are drawn per fixed chunk of ``SEED_CHUNK`` masks from a generator seeded by
(seed, chunk index), so mask i is the same whatever the engine's batch size, any prefix of
the masks is a valid smaller-N run, and a run can resume where another stopped. Draws use a
generator on the compute device: a seed repeats exactly on the same kind of device.
Memory is bounded by the batch size (plus one seed chunk of draws), never by N.

Convergence (``tolerance`` τ > 0; 0 runs exactly N masks): the masks run in rounds ending at
n_k = SEED_CHUNK · 2^k (capped at N, the maximum). After each round k ≥ 1 the Pearson correlation
r_k of map(n_k) with map(n_{k−1}) is taken per image and target; an image stops once r ≥ 1 − τ for
all its targets (they share the forward passes) in two rounds in a row. Why the rule estimates
the distance to the limit: if a map is signal plus independent noise of variance σ²/n,
corr(map(n/2), map(n)) = √((1+a)/(1+2a)) with a = σ²/(n·S), which is 1 − a/2 + O(a²), the same to
first order as corr(map(n), map(∞)) = 1/√(1+a). One round is not enough in practice: r_k is itself
noisy (on the embedded model one round said 0.93 where the map was at 0.85 from the N = 1600 one),
and a second passing round halves the noise it was taken at. Masks being
seeded by chunk, a stopped map is exactly a fixed run with N = masks used. In a batch each image
stops on its own (later rounds run only the images still going), so a batch equals its images one
by one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..engine import Engine, Progress
from ..errors import ParameterError
from ..instrument.gradients import pick_scores
from ..replacements import DEFAULT_CONSTANT, REPLACEMENTS, replacement_image
from ..replacements import HELP as REPLACEMENT_HELP
from .base import Method, MethodOutput, Param
from .convergence import TOLERANCE, doubling_rounds, run_until_converged

SHAPES = ("binary", "stripes", "grid", "noise")
SEED_CHUNK = 50
"""Masks per independently seeded chunk; fixed so a seed means the same masks everywhere."""


@dataclass(frozen=True)
class MaskSpec:
    """Everything that determines the masks: mask i depends only on these and on i."""
    shape: str
    cell: int
    p: float
    seed: int
    height: int
    width: int

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ParameterError(f"Mask shape must be one of {', '.join(SHAPES)}; got '{self.shape}'.")
        if not 0 < self.p < 1:
            raise ParameterError(f"The keep probability p must be strictly between 0 and 1; got {self.p}.")
        if self.cell < 1:
            raise ParameterError(f"The grid must have at least one cell per side; got {self.cell}.")
        # More cells than pixels would leave most of the grid outside the crop: the masks would
        # not have the cell size asked for.
        if self.shape != "noise" and self.cell > min(self.height, self.width):
            raise ParameterError(f"The grid cannot have more cells per side ({self.cell}) than the image "
                                 f"has pixels ({min(self.height, self.width)}).")

    def masks(self, start: int, stop: int, device: torch.device | str) -> torch.Tensor:
        """Masks ``[start, stop)`` as a (stop−start)×H×W float32 tensor in [0, 1] on ``device``."""
        device = torch.device(device)
        first, last = start // SEED_CHUNK, (stop - 1) // SEED_CHUNK
        draws = [self._draw(k, device) for k in range(first, last + 1)]
        lo, hi = start - first * SEED_CHUNK, stop - first * SEED_CHUNK
        picked = [torch.cat(parts)[lo:hi] for parts in zip(*draws)]
        with torch.autocast(device.type, enabled=False):  # masks are exact fp32 whatever the caller
            return self._build(*picked)

    # The random draws of one chunk, all at low resolution except the white noise.
    def _draw(self, chunk: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        state = np.random.SeedSequence([self.seed, chunk]).generate_state(1, np.uint64)[0]
        gen = torch.Generator(device).manual_seed(int(state) >> 1)
        n, s = SEED_CHUNK, self.cell
        if self.shape == "noise":
            return (torch.randn(n, self.height, self.width, generator=gen, device=device),)
        shifts = torch.rand(n, 2, generator=gen, device=device)
        if self.shape == "binary":
            return torch.rand(n, s, s, generator=gen, device=device) < self.p, shifts
        if self.shape == "stripes":
            return torch.rand(n, s, generator=gen, device=device) < self.p, shifts
        keep = math.sqrt(self.p)
        rows = torch.rand(n, s, generator=gen, device=device) < keep
        cols = torch.rand(n, s, generator=gen, device=device) < keep
        return rows, cols, shifts

    def _build(self, *draws: torch.Tensor) -> torch.Tensor:
        h, w = self.height, self.width
        if self.shape == "noise":
            sigma = min(self.p, 1 - self.p) / 2
            return (self.p + sigma * draws[0]).clamp_(0, 1)
        if self.shape == "binary":
            bits, shifts = draws
            return _upsample_crop_2d(bits, h, w, shifts)
        if self.shape == "stripes":
            bits, shifts = draws
            return _upsample_crop_1d(bits, w, shifts[:, 1]).unsqueeze(1).expand(-1, h, -1).contiguous()
        rows, cols, shifts = draws
        return _upsample_crop_1d(rows, h, shifts[:, 0]).unsqueeze(2) * _upsample_crop_1d(cols, w, shifts[:, 1]).unsqueeze(1)


def _interpolation_rows(s: int, length: int, shift: torch.Tensor) -> torch.Tensor:
    """B×length×s matrices R with R @ bits = linear upsampling of s values to (s+1)·⌈length/s⌉
    followed by a crop of ``length`` at a random offset in [0, ⌈length/s⌉).

    Upsampling is linear in its input, so upsampling the identity gives its matrix exactly;
    the masks are then small matrix products instead of large upsampled images.
    """
    cell = math.ceil(length / s)
    eye = torch.eye(s, device=shift.device).unsqueeze(0)
    full = F.interpolate(eye, size=(s + 1) * cell, mode="linear", align_corners=False)[0].T  # L×s
    offset = (shift * cell).long().clamp_(max=cell - 1)
    return full[offset[:, None] + torch.arange(length, device=shift.device)]


def _upsample_crop_1d(bits: torch.Tensor, length: int, shift: torch.Tensor) -> torch.Tensor:
    """B×s bits -> B×length smooth profiles."""
    rows = _interpolation_rows(bits.shape[1], length, shift)
    return (rows @ bits.float().unsqueeze(2))[:, :, 0]


def _upsample_crop_2d(bits: torch.Tensor, h: int, w: int, shifts: torch.Tensor) -> torch.Tensor:
    """B×s×s bits -> B×h×w: the paper's bilinear upsampling (separable) and random crop."""
    s = bits.shape[1]
    return _interpolation_rows(s, h, shifts[:, 0]) @ bits.float() @ _interpolation_rows(s, w, shifts[:, 1]).transpose(1, 2)


def sample_masks(*, shape: str, cell: int, p: float, seed: int, n: int, size: tuple[int, int],
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """The first ``n`` masks (n×H×W) a run with these settings uses, e.g. to show a few."""
    return MaskSpec(shape, cell, p, seed, *size).masks(0, n, device)


class _Scorer:
    """Sums f_t(I ⊙ M_i + F ⊙ (1 − M_i)) · M_i for each image I of a batch and each of its targets t.

    The items are (mask, image) pairs, mask-major (item k = mask k // B of image k % B): every
    image shares the same masks, an engine batch holds whole or partial rows of images, and a
    batch of one image is the single-image case exactly.
    """

    def __init__(self, model, xs: torch.Tensor, rows: torch.Tensor, spec: MaskSpec, fill: str, constant: float,
                 seed: int):
        self.model, self.spec, self.rows = model, spec, rows
        self.fill = torch.stack([replacement_image(model, x, fill, value=constant, seed=seed) for x in xs])
        self.delta = xs - self.fill
        self.all_images = torch.arange(len(xs), device=xs.device)

    def zeros(self) -> torch.Tensor:
        """An empty B×T×H×W accumulator."""
        return torch.zeros(len(self.delta), self.rows.shape[1], *self.delta.shape[-2:], device=self.delta.device)

    @torch.no_grad()
    def __call__(self, engine: Engine, start: int, stop: int, into: torch.Tensor,
                 images: torch.Tensor | None = None, first_mask: int = 0) -> None:
        """Add the items ``[start, stop)`` into ``into`` (B×T×H×W), in place: a fresh B-image tensor
        per batch would cost more than the batch for large B. The items pair masks from
        ``first_mask`` on with the ``images`` (indices; default all), mask-major."""
        images = self.all_images if images is None else images
        n_images = len(images)
        item = torch.arange(start, stop, device=self.delta.device)
        first = first_mask + start // n_images
        masks = self.spec.masks(first, first_mask + (stop - 1) // n_images + 1, self.delta.device)
        mask, image = masks[first_mask + item // n_images - first], images[item % n_images]
        inputs = self.fill[image] + self.delta[image] * mask.unsqueeze(1)
        probs = pick_scores(self.model.module(inputs).float().softmax(-1), self.rows[image])       # k×T
        with engine.precision("accumulation"):  # the weighted sum of thousands of masks
            into.index_add_(0, image, probs[:, :, None, None].float() * mask[:, None])


def _prepare(model, xs, rows, masks, cell, p, shape, fill, constant, seed):
    if masks < 1:
        raise ParameterError(f"RISE needs at least one mask; got {masks}.")
    spec = MaskSpec(shape, cell, p, seed, xs.shape[-2], xs.shape[-1])
    key = f"rise:{model.name}:{xs.shape[-2]}x{xs.shape[-1]}"
    item_bytes = 64 * xs[0].numel() * 4  # masked input plus a generous allowance for activations
    return _Scorer(model, xs, rows, spec, fill, constant, seed), key, item_bytes


def saliency_from_sums(sums: torch.Tensor | np.ndarray, n: int, p: float):
    """The RISE map from accumulated Σ f·M over ``n`` masks: divide by N · p."""
    return sums / (n * p)


@dataclass
class RiseStep:
    n_done: int            # masks accumulated so far (counting any resumed prefix)
    sums: torch.Tensor     # T×H×W, Σ_{i < n_done} f_t(masked_i) · M_i, on the device


def rise_progressive(model, x: torch.Tensor, targets: Sequence[int], *, masks: int, cell: int, p: float,
                     shape: str, fill: str, seed: int, engine: Engine, constant: float = DEFAULT_CONSTANT,
                     step: int = SEED_CHUNK,
                     start: int = 0, initial: torch.Tensor | None = None,
                     progress: Progress | None = None) -> Iterator[RiseStep]:
    """Yield the accumulated sums every ``step`` masks, up to ``masks`` in all.

    Each yielded value is exactly what a run with N = ``n_done`` and the same seed gives
    (``saliency_from_sums(step.sums, step.n_done, p)``), so a caller can keep them and
    serve a smaller N without recomputing, or resume: pass ``start`` and the ``initial``
    sums of the first ``start`` masks.
    """
    if (start > 0) != (initial is not None):
        raise ParameterError("Resuming RISE needs both the number of masks done and their sums.")
    rows = torch.as_tensor([list(targets)], device=x.device)
    scorer, key, item_bytes = _prepare(model, x.unsqueeze(0), rows, masks, cell, p, shape, fill, constant, seed)
    total = scorer.zeros()
    if initial is not None:
        total[0] += initial.to(x.device)
    for lo in range(start, masks, step):
        hi = min(masks, lo + step)
        engine.map(lambda a, b: scorer(engine, lo + a, lo + b, total), hi - lo, section="masked_forward", key=key,
                   item_bytes=item_bytes)
        if progress is not None:
            progress(hi / masks, f"RISE: {hi} / {masks} masks")
        yield RiseStep(hi, total[0].clone())


def convergence_curve(cumulative_sums: Sequence[np.ndarray], counts: Sequence[int], p: float) -> np.ndarray:
    """Distance of the map after n masks to the final map, for each n: K×T.

    Inputs: K accumulated sums (each T×H×W) after ``counts[k]`` masks, the last being final.
    The distance is the relative L2 error of the mean-centred maps: the constant offset
    (the mean class probability) converges first and would otherwise hide the pattern.
    """
    def centred(k: int) -> np.ndarray:
        m = np.asarray(cumulative_sums[k], dtype=np.float64) / (counts[k] * p)
        return m - m.mean(axis=(1, 2), keepdims=True)

    final = centred(len(counts) - 1)
    norm = np.maximum(np.sqrt((final ** 2).sum(axis=(1, 2))), 1e-12)
    return np.stack([np.sqrt(((centred(k) - final) ** 2).sum(axis=(1, 2))) / norm for k in range(len(counts))])


def stopping_count(sums_at, masks: int, p: float, tolerance: float) -> int:
    """The masks a ``tolerance`` run with N = ``masks`` uses, read off a run's stored prefixes
    (``sums_at(n)``: the T×H×W sums after n masks, for every round count up to ``masks``)."""
    def current_maps(used):
        n = int(used[0])
        return torch.as_tensor(np.asarray(saliency_from_sums(sums_at(n), n, p)))[None]

    used, _ = run_until_converged(1, doubling_rounds(SEED_CHUNK, masks), tolerance, lambda *_: None, current_maps)
    return int(used[0])


def _rise_batch(model, xs, targets, *, engine, progress=None, masks, cell, p, shape, fill, constant, seed,
                tolerance=0.0):
    """RISE of every image of ``xs`` for its own targets (B×T), all images sharing one mask set."""
    scorer, key, item_bytes = _prepare(model, xs, targets, masks, cell, p, shape, fill, constant, seed)
    sums = scorer.zeros()
    if tolerance <= 0:
        engine.map(lambda a, b: scorer(engine, a, b, sums), masks * len(xs), section="masked_forward", key=key,
                   item_bytes=item_bytes, progress=progress, message="RISE: masked forward passes")
        return MethodOutput(maps=saliency_from_sums(sums, masks, p))
    rounds = doubling_rounds(SEED_CHUNK, masks)

    def run_round(active, lo, hi):
        images = active.to(xs.device)
        engine.map(lambda a, b: scorer(engine, a, b, sums, images, lo), (hi - lo) * len(images),
                   section="masked_forward", key=key, item_bytes=item_bytes)
        if progress is not None:
            progress(hi / masks, f"RISE: {hi} / {masks} masks at most")

    def current_maps(used):
        return saliency_from_sums(sums, used.to(xs.device).view(-1, 1, 1, 1), p)

    used, correlations = run_until_converged(len(xs), rounds, tolerance, run_round, current_maps)
    per_target = used.view(-1, 1).expand(targets.shape).numpy().copy()
    return MethodOutput(maps=current_maps(used), extras={
        "per_target_masks_used": per_target, "round_masks": rounds,
        "per_target_round_correlations": correlations.unsqueeze(1).expand(-1, targets.shape[1], -1).numpy()})


def _rise(model, x, targets, *, engine, progress=None, **params):
    rows = torch.as_tensor([list(targets)], device=x.device)
    out = _rise_batch(model, x.unsqueeze(0), rows, engine=engine, progress=progress, **params)
    return MethodOutput(maps=out.maps[0], extras={k: v[0] if k.startswith("per_target_") else v
                                                  for k, v in out.extras.items()})


RISE = Method(
    "rise", "RISE (random masks)", "perturbation", _rise, batch_fn=_rise_batch,
    params={
        "masks": Param(int, 1000, SEED_CHUNK, 8000, step=SEED_CHUNK, help="number of random masks N"),
        "cell": Param(int, 7, 2, 32, help="grid cells per image side s (the paper uses 7)"),
        "p": Param(float, 0.5, 0.05, 0.95, step=0.05, help="probability that a cell is kept"),
        "shape": Param(str, "binary", choices=SHAPES,
                       help="binary (paper: bilinear-upsampled grid), stripes, grid lines or white noise"),
        "fill": Param(str, "black", choices=REPLACEMENTS, help="what replaces masked pixels: " + REPLACEMENT_HELP),
        "constant": Param(float, DEFAULT_CONSTANT, 0.0, 1.0, step=0.05, help="grey level of the fill 'constant'"),
        "seed": Param(int, 0, 0, 2**31 - 1, widget="number", help="random seed; same seed, same masks"),
        "tolerance": TOLERANCE,
    },
    reference="the RISE authors' code (Petsiuk et al.), property tests",
    description="Black-box: average class probability over randomly masked copies, weighted by "
                "the masks (Petsiuk et al. 2018).",
)
