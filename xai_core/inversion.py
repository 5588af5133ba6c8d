"""Model inversion / class visualisation and deep dream (lab handout, exercise 1).

An image is optimised by gradient ascent on one class score (Simonyan et al. 2014;
Mahendran & Vedaldi 2015): start from noise, or from a real image for a "deep dream" in
which the network amplifies what it already sees there. Several target classes are
optimised together as the rows of one batch; the rows never interact (the loss is the sum
of per-row losses, Adam/SGD are element-wise, the model is in eval mode), so a batch gives
the same images as separate runs with the same seed.

Regularisers: Gaussian blur every k steps (the handout's), L2 decay and total variation
(loss terms), random jitter (the input is rolled by a few pixels before each forward pass),
and optionally Lucid's parameterisation (decorrelated colour + scaled Fourier spectrum +
sigmoid), which favours natural-looking, low-frequency images.

Long runs: ``InversionRun`` keeps its state between steps, so whatever interrupts it (a
``should_stop()`` returning True, or a progress callback that raises) leaves the images
reached so far available through ``result()``. The model is shared between threads: only
``torch.autograd.grad`` with respect to the image is used, never ``.backward()``.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .blur import gaussian_blur
from .engine import Engine, Progress, oom_guard
from .errors import ParameterError
from .methods.base import Param
from .model_handle import LoadedModel

OPTIMIZERS = ("adam", "sgd")
PARAMETERIZATIONS = ("pixel", "fourier")
HISTORY_TERMS = ("score", "probability", "l2", "tv", "objective")

# Lucid's colour decorrelation: square root of the ImageNet colour covariance (its SVD),
# normalised so that its largest column has unit norm.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                            [0.27, 0.00, -0.05],
                            [0.27, -0.09, 0.03]])
_COLOR_SQRT = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()
_FOURIER_DECAY = 1.0
_FOURIER_MAGIC = 4.0  # Lucid's scale of the inverse FFT output before the sigmoid


@dataclass(frozen=True)
class InversionSettings:
    """Everything that defines a run besides the model, the targets and the start image.

    These defaults are the user-facing ones: the command line and page 4 read them from here.
    """
    steps: int = 200
    optimizer: str = "adam"
    lr: float = 0.05
    blur_every: int = 4          # Gaussian blur of the image every k steps (0: never); the handout's regulariser
    blur_sigma: float = 0.5
    l2: float = 0.0              # weight of mean(x²) (x: the normalised image)
    tv: float = 0.0              # weight of the mean squared difference of neighbouring pixels
    jitter: int = 0              # the input is rolled by up to ±jitter pixels before each forward
    parameterization: str = "pixel"
    frame_every: int = 10        # keep a progression frame every m steps (0: first and last only)
    seed: int = 0

    def validate(self) -> None:
        for name, spec in SETTINGS_PARAMS.items():  # finite, within bounds: NaN weights would paint a NaN image
            spec.parse(name, getattr(self, name))
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(f"Optimiser must be one of {', '.join(OPTIMIZERS)}; got '{self.optimizer}'.")
        if self.parameterization not in PARAMETERIZATIONS:
            raise ParameterError(f"Parameterisation must be one of {', '.join(PARAMETERIZATIONS)}; "
                                 f"got '{self.parameterization}'.")
        if self.blur_every and not self.blur_sigma > 0:
            raise ParameterError("The blur σ must be positive.")
        if self.frame_every and self.steps // self.frame_every > MAX_FRAMES:
            raise ParameterError(f"At most {MAX_FRAMES} progression frames are kept: steps / frame interval "
                                 f"is {self.steps // self.frame_every}.")


MAX_FRAMES = 2000
"""Frames kept of one run (each a T×H×W×3 image held until the run is dropped)."""
SETTINGS_PARAMS = {
    "steps": Param(int, 200, 1, 10_000, help="optimisation steps"),
    "lr": Param(float, 0.05, 1e-6, 100.0, help="learning rate"),
    "blur_every": Param(int, 4, 0, 10_000, help="Gaussian blur every k steps (0: never)"),
    "blur_sigma": Param(float, 0.5, 0.0, 20.0, help="σ of the blur, in pixels"),
    "l2": Param(float, 0.0, 0.0, 1e6, help="weight of the L2 decay"),
    "tv": Param(float, 0.0, 0.0, 1e6, help="weight of the total variation"),
    "jitter": Param(int, 0, 0, 256, help="random roll of the input, in pixels"),
    "frame_every": Param(int, 10, 0, 10_000, help="keep a frame every m steps (0: first and last only)"),
    "seed": Param(int, 0, 0, 2**63 - 1, help="seed of the start noise and the jitter"),
}
"""The bounds of ``InversionSettings``' numbers, checked by ``Param.parse`` (the one place numbers are validated)."""


@dataclass
class InversionResult:
    """What a run reached; rows follow ``targets``. Arrays are on the host."""
    targets: list[int]
    images: np.ndarray                  # T×H×W×3 uint8, de-normalised final images
    score_start: np.ndarray             # T, class score (logit) of the start image
    score_end: np.ndarray               # T, class score of the final image (no jitter)
    probability_end: np.ndarray         # T, softmax probability of the target at the end
    history: dict[str, np.ndarray]      # term -> S×T, one row per step done (HISTORY_TERMS)
    frame_steps: list[int]              # step at which each frame was taken
    frames: np.ndarray                  # F×T×H×W×3 uint8
    steps_done: int
    steps_planned: int
    stopped: bool = False               # True when the run ended before ``steps_planned``
    settings: InversionSettings = field(default_factory=InversionSettings)


# ------------------------------------------------------------------ image parameterisations
class _PixelImage:
    """The normalised image itself is the parameter."""

    def __init__(self, start: torch.Tensor, low: torch.Tensor, high: torch.Tensor):
        self.param = start.clone().requires_grad_(True)
        self._low, self._high = low, high

    def image(self) -> torch.Tensor:
        return self.param

    @torch.no_grad()
    def blur(self, sigma: float) -> None:
        self.param.copy_(gaussian_blur(self.param, sigma))

    @torch.no_grad()
    def project(self) -> None:
        """Keep the image displayable: clamp to the normalised image of [0, 1]."""
        self.param.copy_(torch.maximum(torch.minimum(self.param, self._high), self._low))


class _FourierImage:
    """Lucid's parameterisation: spectrum → inverse FFT → decorrelated colour → sigmoid.

    The spectrum is scaled by 1/frequency so that each frequency gets a comparable learning
    rate; the Gaussian blur becomes a multiplication of the spectrum by its transfer function.
    """

    def __init__(self, start_rgb01: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
        _, _, h, w = start_rgb01.shape
        fy = torch.fft.fftfreq(h, device=start_rgb01.device).view(-1, 1)
        fx = torch.fft.rfftfreq(w, device=start_rgb01.device).view(1, -1)
        self._freq2 = fy ** 2 + fx ** 2
        self._scale = 1.0 / self._freq2.sqrt().clamp(min=1.0 / max(h, w)) ** _FOURIER_DECAY
        self._size = (h, w)
        self._color = _COLOR_SQRT.to(start_rgb01.device)
        self._mean, self._std = mean, std
        # Invert the chain for the start image (noise or a photo for a deep dream).
        logit = torch.logit(start_rgb01.clamp(0.01, 0.99))
        decorrelated = torch.einsum("ij,njhw->nihw", torch.linalg.inv(self._color), logit)
        spectrum = torch.fft.rfft2(decorrelated * _FOURIER_MAGIC, norm="ortho") / self._scale
        self.param = torch.view_as_real(spectrum).contiguous().requires_grad_(True)

    def image(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.param) * self._scale
        decorrelated = torch.fft.irfft2(spectrum, s=self._size, norm="ortho") / _FOURIER_MAGIC
        rgb = torch.sigmoid(torch.einsum("ij,njhw->nihw", self._color, decorrelated))
        return (rgb - self._mean) / self._std

    @torch.no_grad()
    def blur(self, sigma: float) -> None:
        transfer = torch.exp(-2 * math.pi ** 2 * sigma ** 2 * self._freq2)
        self.param.mul_(transfer.unsqueeze(-1))

    def project(self) -> None:
        """The sigmoid already keeps the image in range."""


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per-row mean squared difference of vertically and horizontally adjacent pixels."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).pow(2).flatten(1).mean(1)
    dx = (x[..., :, 1:] - x[..., :, :-1]).pow(2).flatten(1).mean(1)
    return dy + dx


# --------------------------------------------------------------------------------- the run
class InversionRun:
    """A stoppable class-visualisation run: ``step()`` one update, ``result()`` any time.

    ``start``: a normalised C×H×W image for a deep dream, or None for noise (the same
    noise for every row, drawn from ``settings.seed``).
    """

    def __init__(self, model: LoadedModel, targets: list[int], settings: InversionSettings | None = None,
                 *, start: torch.Tensor | None = None, engine: Engine | None = None):
        self.settings = settings = settings or InversionSettings()
        settings.validate()
        if not targets:
            raise ParameterError("At least one target class is needed.")
        self.model = model
        self.targets = model.resolve_targets(list(targets))
        self.engine = engine or Engine(model.device)
        device = model.device
        self._mean = torch.tensor(model.mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(model.std, device=device).view(1, 3, 1, 1)
        self._target_index = torch.as_tensor(self.targets, device=device)
        self._jitter_rng = random.Random(settings.seed)

        n, size = len(self.targets), model.input_size
        if start is None:
            gen = torch.Generator().manual_seed(settings.seed)
            rgb01 = (0.5 + 0.2 * torch.randn(1, 3, size, size, generator=gen)).clamp(0, 1)
        else:
            if start.dim() != 3 or start.shape[0] != 3:
                raise ParameterError(f"The start image must be a tensor 3×H×W, got {tuple(start.shape)}.")
            rgb01 = model.denormalize(start.detach().float().cpu()).unsqueeze(0)
        rgb01 = rgb01.to(device).expand(n, -1, -1, -1).contiguous()
        if settings.parameterization == "pixel":
            self._image = _PixelImage((rgb01 - self._mean) / self._std,
                                      -self._mean / self._std, (1 - self._mean) / self._std)
        else:
            self._image = _FourierImage(rgb01, self._mean, self._std)
        lr = settings.lr
        self._optimizer = (torch.optim.Adam([self._image.param], lr=lr) if settings.optimizer == "adam"
                           else torch.optim.SGD([self._image.param], lr=lr))

        self.steps_done = 0
        self._history: dict[str, list[np.ndarray]] = {k: [] for k in HISTORY_TERMS}
        self._frame_steps: list[int] = []
        self._frames: list[np.ndarray] = []
        self.score_start = self._evaluate()[0]
        self._keep_frame()

    # ------------------------------------------------------------------ pieces
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with oom_guard(self.model.device, "an inversion step"), self.engine.precision("optimisation"):
            return self.model.module(x).float()

    @torch.no_grad()
    def _evaluate(self) -> tuple[np.ndarray, np.ndarray]:
        """Target score and probability of the current image, without jitter."""
        logits = self._logits(self._image.image())
        rows = torch.arange(len(self.targets), device=logits.device)
        score = logits[rows, self._target_index]
        prob = logits.softmax(-1)[rows, self._target_index]
        return score.cpu().numpy(), prob.cpu().numpy()

    def _display(self) -> np.ndarray:
        with torch.no_grad():
            rgb = self.model.denormalize(self._image.image().detach().float())
        return (rgb.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)

    def _keep_frame(self) -> None:
        self._frame_steps.append(self.steps_done)
        self._frames.append(self._display())

    def _jittered(self, x: torch.Tensor) -> torch.Tensor:
        j = self.settings.jitter
        if not j:
            return x
        dy, dx = self._jitter_rng.randint(-j, j), self._jitter_rng.randint(-j, j)
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))

    # -------------------------------------------------------------------- API
    @property
    def finished(self) -> bool:
        return self.steps_done >= self.settings.steps

    def step(self) -> None:
        """One gradient-ascent update of every row, then the step's regularisers."""
        with oom_guard(self.model.device, "an inversion step"):
            self._update()

    def _update(self) -> None:
        s = self.settings
        x = self._image.image()
        logits = self._logits(self._jittered(x))
        rows = torch.arange(len(self.targets), device=logits.device)
        score = logits[rows, self._target_index]
        l2 = x.float().pow(2).flatten(1).mean(1)
        tv = total_variation(x.float())
        objective = score - s.l2 * l2 - s.tv * tv
        (grad,) = torch.autograd.grad(-objective.sum(), self._image.param)
        self._image.param.grad = grad
        self._optimizer.step()
        self._image.param.grad = None
        self.steps_done += 1
        if s.blur_every and self.steps_done % s.blur_every == 0:
            self._image.blur(s.blur_sigma)
        self._image.project()

        with torch.no_grad():  # one host copy per step for all the curves (rows follow HISTORY_TERMS)
            values = torch.stack([score, logits.softmax(-1)[rows, self._target_index], l2, tv, objective])
        for key, value in zip(HISTORY_TERMS, values.float().cpu().numpy()):
            self._history[key].append(value)
        if (s.frame_every and self.steps_done % s.frame_every == 0) or self.finished:
            self._keep_frame()

    def run(self, progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> InversionResult:
        """Step until done or stopped; ``progress`` may raise, the state reached is kept."""
        return run_together([self], progress, should_stop)[0]

    def last_scores(self) -> np.ndarray:
        return self._history["score"][-1] if self.steps_done else self.score_start

    def result(self) -> InversionResult:
        """The images and curves reached so far (a stopped run's result is still complete)."""
        score_end, prob_end = self._evaluate()
        frame_steps, frames = list(self._frame_steps), list(self._frames)
        if frame_steps[-1] != self.steps_done:  # stopped between two frames: show where it got
            frame_steps.append(self.steps_done)
            frames.append(self._display())
        n = len(self.targets)
        history = {k: np.stack(v) if v else np.zeros((0, n), np.float32) for k, v in self._history.items()}
        return InversionResult(targets=list(self.targets), images=frames[-1], score_start=self.score_start,
                               score_end=score_end, probability_end=prob_end, history=history,
                               frame_steps=frame_steps, frames=np.stack(frames), steps_done=self.steps_done,
                               steps_planned=self.settings.steps, stopped=not self.finished,
                               settings=self.settings)


def run_together(runs: list[InversionRun], progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None) -> list[InversionResult]:
    """Advance several runs (e.g. one class on two architectures) in lock-step until all are
    done or ``should_stop()`` is true. ``progress`` is called after every step and may raise:
    each run keeps the steps it completed, so their ``result()`` is still available."""
    total = sum(r.settings.steps for r in runs)
    while not all(r.finished for r in runs):
        for run in runs:
            if run.finished:
                continue
            if should_stop is not None and should_stop():
                return [r.result() for r in runs]
            run.step()
            if progress is not None:
                done = sum(r.steps_done for r in runs)
                progress(done / total, f"{run.model.name}: step {run.steps_done}/{run.settings.steps} · score "
                         + ", ".join(f"{v:.2f}" for v in run.last_scores()))
    return [r.result() for r in runs]


def invert(model: LoadedModel, targets: list[int | str] | int | str, settings: InversionSettings | None = None,
           *, start: torch.Tensor | None = None, engine: Engine | None = None,
           progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> InversionResult:
    """Optimise one image per target class (from noise, or from ``start`` for a deep dream)."""
    if isinstance(targets, (int, str, np.integer)):
        targets = [targets]
    run = InversionRun(model, list(targets), settings, start=start, engine=engine)
    return run.run(progress=progress, should_stop=should_stop)
