"""The procedural dataset: determinism, masks that match the drawing, the part pair, export."""
import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from xai_core import dataset
from xai_core.errors import ParameterError

SEED = 123


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    m = torch.from_numpy(mask).float()[None, None]
    return F.max_pool2d(m, 2 * radius + 1, stride=1, padding=radius)[0, 0].bool().numpy()


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    return ~_dilate(~mask, radius)


@pytest.fixture(scope="module")
def batch() -> list[dataset.Sample]:
    return dataset.samples(SEED, 160)


def test_same_seed_and_index_give_identical_samples():
    a, b = dataset.make_sample(5, 17), dataset.make_sample(5, 17)
    assert np.array_equal(a.image, b.image) and a.label == b.label and a.box == b.box
    assert np.array_equal(a.object_mask, b.object_mask) and np.array_equal(a.part_mask, b.part_mask)


def test_other_seed_or_index_gives_other_images():
    base = dataset.make_sample(5, 17).image
    assert not np.array_equal(base, dataset.make_sample(6, 17).image)
    assert not np.array_equal(base, dataset.make_sample(5, 25).image)  # same class (25 % 8 == 17 % 8)


def test_sample_types_and_balanced_labels(batch):
    s = batch[0]
    size = dataset.IMAGE_SIZE
    assert s.image.shape == (size, size, 3) and s.image.dtype == np.uint8
    assert s.object_mask.shape == (size, size) and s.object_mask.dtype == bool
    assert s.pil().size == (size, size) and s.pil().mode == "RGB"
    counts = np.bincount([s.label for s in batch], minlength=len(dataset.CLASSES))
    assert counts.min() == counts.max() == len(batch) // len(dataset.CLASSES)


def test_box_is_the_object_masks_bounding_box(batch):
    for s in batch:
        ys, xs = np.nonzero(s.object_mask)
        assert s.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_object_area_is_a_reasonable_fraction(batch):
    fractions = np.array([s.object_mask.mean() for s in batch])
    assert fractions.min() > 0.08 and fractions.max() < 0.36


def test_object_mask_covers_exactly_the_drawn_object(batch):
    """Inside the (eroded) mask: one flat colour. Just outside: background that does not look
    like the object. A mask too small, too large or misplaced fails one of the two."""
    for s in batch:
        if s.label in dataset.PART_PAIR:
            continue  # the badge is another colour; checked below with the part mask
        image = s.image.astype(np.float32)
        interior = image[_erode(s.object_mask, 1)]
        colour = np.median(interior, axis=0)
        assert interior.std(axis=0).max() < 15, s.class_name
        ring = image[_dilate(s.object_mask, 2) & ~_dilate(s.object_mask, 1)]
        looks_like_object = np.linalg.norm(ring - colour, axis=1) < 25
        assert looks_like_object.mean() < 0.1, s.class_name
        inside = np.linalg.norm(image[s.object_mask] - colour, axis=1) < 60
        assert inside.mean() > 0.9, s.class_name


def test_part_mask_is_inside_the_object(batch):
    for s in batch:
        assert not (s.part_mask & ~s.object_mask).any()
        if s.label in dataset.PART_PAIR:
            assert 50 < s.part_mask.sum() < 0.3 * s.object_mask.sum()
        else:
            assert np.array_equal(s.part_mask, s.object_mask)


def test_part_pair_differs_only_inside_the_part():
    first, second = dataset.PART_PAIR
    for index in range(40):
        a, b = dataset.make_sample(SEED, index, first), dataset.make_sample(SEED, index, second)
        assert np.array_equal(a.part_mask, b.part_mask) and np.array_equal(a.object_mask, b.object_mask)
        differs = (a.image != b.image).any(axis=2)
        assert differs.sum() >= 5
        assert not (differs & ~a.part_mask).any()


def test_distractors_stay_away_from_the_object():
    """Pixels near (not on) the object are background: their colour matches the wider ring."""
    for s in dataset.samples(SEED + 1, 80, classes=[0, 1, 5]):
        image = s.image.astype(np.float32)
        near = image[_dilate(s.object_mask, 2) & ~_dilate(s.object_mask, 1)]
        # distractor strokes are thin and coloured at random: a pixel far from the ring's
        # median colour next to the object would be one of them (or object spill).
        assert (np.linalg.norm(near - np.median(near, axis=0), axis=1) > 120).mean() < 0.05


def test_tensors_match_samples_and_normalisation():
    x, labels, objects, parts = dataset.tensors(SEED, 200)
    size = dataset.IMAGE_SIZE
    assert x.shape == (200, 3, size, size) and x.dtype == torch.float32
    assert labels.dtype == torch.int64 and objects.dtype == torch.bool and parts.shape == (200, size, size)
    s = dataset.make_sample(SEED, 7)
    expected = (torch.from_numpy(s.image).permute(2, 0, 1) / 255 - torch.tensor(dataset.MEAN)[:, None, None]) \
        / torch.tensor(dataset.STD)[:, None, None]
    assert torch.allclose(x[7], expected, atol=1e-5) and labels[7] == s.label
    assert torch.equal(objects[7], torch.from_numpy(s.object_mask))

def test_mean_and_std_are_the_generators_statistics():
    x = dataset.tensors(SEED + 2, 400)[0]
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.2  # standard error ≈ 0.045
    assert ((x.std(dim=(0, 2, 3)) - 1).abs() < 0.1).all()


def test_classes_argument_restricts_and_alternates():
    _, labels, _, _ = dataset.tensors(SEED, 6, classes=list(dataset.PART_PAIR))
    assert labels.tolist() == list(dataset.PART_PAIR) * 3
    with pytest.raises(ParameterError):
        dataset.tensors(SEED, 4, classes=[len(dataset.CLASSES)])


def test_torch_dataset_matches_tensors():
    ds = dataset.ProceduralDataset(SEED, 20)
    x, labels, _, _ = dataset.tensors(SEED, 20)
    item, label = ds[13]
    assert len(ds) == 20 and torch.allclose(item, x[13]) and label == labels[13]
    with pytest.raises(IndexError):
        ds[20]


def test_export_writes_imagefolder_masks_and_labels(tmp_path):
    from torchvision.datasets import ImageFolder

    n = 16
    csv_path = dataset.export(SEED, n, tmp_path)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image", "label", "object_mask", "part_mask", "x0", "y0", "x1", "y1"]
    assert len(rows) == n
    for i, row in enumerate(rows):
        s = dataset.make_sample(SEED, i)
        assert row["image"] == f"images/{s.class_name}/{i}.png" and int(row["label"]) == s.label
        assert np.array_equal(np.asarray(Image.open(tmp_path / row["image"])), s.image)
        assert np.array_equal(np.asarray(Image.open(tmp_path / row["object_mask"])) > 0, s.object_mask)
        assert np.array_equal(np.asarray(Image.open(tmp_path / row["part_mask"])) > 0, s.part_mask)
        assert tuple(int(row[k]) for k in ("x0", "y0", "x1", "y1")) == s.box
    folder = ImageFolder(tmp_path / "images")
    assert folder.classes == sorted(dataset.CLASSES) and len(folder) == n
    path, target = folder.samples[0]
    assert folder.classes[target] == path.split("/")[-2]
