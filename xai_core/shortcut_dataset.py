"""The shortcut dataset: the embedded dataset plus a spurious cue that predicts the class.

Each image is ``dataset.make_sample(seed, index)`` with a small framed colour patch pasted in
one corner. The patch's colour names a class (``CUE_COLOURS[k]`` for class ``k``, the "cue
class"): with probability ``agreement`` it is the image's own label, otherwise one of the other
seven classes, uniformly. A model can then classify the training split by the patch alone,
without looking at the object: the shortcut of Geirhos et al., "Shortcut learning in deep
neural networks" (Nat. Mach. Intell. 2020).

Two splits, one parameter: ``TRAIN_AGREEMENT`` (0.95) for the correlated training split, and
``DECORRELATED`` (1/8) for the test split, where "the label with probability 1/8, else one of
the 7 others uniformly" is exactly the uniform distribution, independent of the label. A model
that uses the cue loses accuracy on the decorrelated split.

Ground truth is the plain dataset's: the object, part and box are those of ``make_sample`` for
the same seed and index, untouched, because the patch is placed in a corner at least
``_MARGIN`` pixels away from the object mask (its anti-aliased edge included). ``cue_mask``
marks the patch, so how much of a map falls on the cue can be measured (e.g. MAGTR on it).
The cue's corner is drawn uniformly among the free corners; one always is (the object fits in
a disc of radius < 32 inside the image, which cannot come within reach of two opposite corners).

Every sample is a pure function of ``(seed, index, agreement)``; the cue has its own random
stream, so the nuisance draws of the plain sample are unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import dataset
from .errors import ParameterError

CHECKPOINT = Path(__file__).resolve().parent / "assets" / "shortcut.pt"
"""The ``embedded`` CNN (width 8) trained with plain cross-entropy on the correlated split, which takes
the shortcut; ``load_model("embedded", checkpoint=CHECKPOINT)``, written by ``scripts/train_shortcut.py``."""
TRAIN_AGREEMENT = 0.95
"""Share of correlated-split images whose cue names their own class."""
DECORRELATED = 1 / len(dataset.CLASSES)
"""The agreement at which the cue is uniform and independent of the label (the test split)."""

CUE_COLOURS = np.array([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0),
                        (1, 0, 1), (0, 1, 1), (1, 1, 1), (0, 0, 0)], np.float32)
"""RGB in [0, 1] of the cue naming class k (row k): far apart, and each framed in black or white."""
CUE_SIZE = 6                    # pixels: a 1-px frame around a 4×4 patch of the cue colour
_INSET = 1                      # pixels between the image border and the patch
_MARGIN = 2                     # pixels kept free between the patch and the object mask
_CUE_STREAM = 0x5C              # appended to (seed, index): the cue's random stream, apart from the sample's
_FAR = dataset.IMAGE_SIZE - _INSET - CUE_SIZE
_CORNERS = ((_INSET, _INSET), (_INSET, _FAR), (_FAR, _INSET), (_FAR, _FAR))  # (row, column) of the top left


@dataclass
class ShortcutSample(dataset.Sample):
    cue_label: int           # the class the cue's colour names
    cue_mask: np.ndarray     # bool H×W: the patch, frame included; disjoint from object_mask

    @property
    def cue_agrees(self) -> bool:
        """Whether the cue names the image's own class."""
        return self.cue_label == self.label


def make_shortcut_sample(seed: int, index: int, agreement: float = TRAIN_AGREEMENT) -> ShortcutSample:
    """Sample ``index`` of the embedded dataset with ``seed``, with a cue that names its class
    with probability ``agreement`` (another class, uniformly, otherwise)."""
    if not 0 <= agreement <= 1:
        raise ParameterError(f"The cue's agreement with the label must lie in [0, 1], got {agreement}.")
    sample = dataset.make_sample(seed, index)
    rng = np.random.default_rng([seed, index, _CUE_STREAM])
    classes = len(dataset.CLASSES)
    agrees = rng.random() < agreement
    cue_label = sample.label if agrees else (sample.label + int(rng.integers(1, classes))) % classes
    free = [corner for corner in _CORNERS if not _near(sample.object_mask, *corner)]
    row, col = free[int(rng.integers(len(free)))]

    colour = CUE_COLOURS[cue_label]
    frame = 0.0 if colour.mean() > 0.5 else 1.0
    patch = np.full((CUE_SIZE, CUE_SIZE, 3), frame, np.float32)
    patch[1:-1, 1:-1] = colour
    image = sample.image.copy()
    image[row:row + CUE_SIZE, col:col + CUE_SIZE] = (patch * 255).round().astype(np.uint8)
    cue_mask = np.zeros(sample.object_mask.shape, bool)
    cue_mask[row:row + CUE_SIZE, col:col + CUE_SIZE] = True
    return ShortcutSample(image, sample.label, sample.object_mask, sample.part_mask, sample.box,
                          cue_label, cue_mask)


def _near(object_mask: np.ndarray, row: int, col: int) -> bool:
    """Whether the object comes within ``_MARGIN`` pixels of a patch at (row, col)."""
    return bool(object_mask[max(0, row - _MARGIN):row + CUE_SIZE + _MARGIN,
                            max(0, col - _MARGIN):col + CUE_SIZE + _MARGIN].any())


def shortcut_samples(seed: int, n: int, agreement: float = TRAIN_AGREEMENT) -> list[ShortcutSample]:
    """Samples ``0..n-1`` of the split with ``seed`` and ``agreement``."""
    return [make_shortcut_sample(seed, i, agreement) for i in range(n)]


def shortcut_tensors(seed: int, n: int, agreement: float = TRAIN_AGREEMENT
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x N×3×H×W normalised float32, labels int64, object_masks bool N×H×W, cue_masks, cue_labels)``."""
    batch = shortcut_samples(seed, n, agreement)
    x = dataset.normalize(np.stack([s.image for s in batch]))
    labels = torch.tensor([s.label for s in batch], dtype=torch.int64)
    objects = torch.from_numpy(np.stack([s.object_mask for s in batch]))
    cues = torch.from_numpy(np.stack([s.cue_mask for s in batch]))
    cue_labels = torch.tensor([s.cue_label for s in batch], dtype=torch.int64)
    return x, labels, objects, cues, cue_labels
