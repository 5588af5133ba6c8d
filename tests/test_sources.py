"""Evaluation sources: ground truth follows the model's resize and centre crop (checked against the
pixels of a hand-drawn image), the embedded split and its export give the same images and masks,
boxes.csv rows become masks and boxes, and images are decoded only batch by batch."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from xai_core import dataset
from xai_core.errors import ParameterError
from xai_core.evaluation import open_source
from xai_core.evaluation import sources as sources_module
from xai_core.model_handle import LoadedModel

GREY, RED = (128, 128, 128), (255, 0, 0)


@pytest.fixture(scope="module")
def cropping_model() -> LoadedModel:
    """A tiny classifier whose preprocessing resizes the shorter side to 50 and centre-crops 40."""
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model = LoadedModel.from_module(module, input_size=40, categories=["a", "b"], mean=(0.5,) * 3, std=(0.5,) * 3)
    model.resize_size = 50
    return model


def _draw(path, size, boxes):
    image = Image.new("RGB", size, GREY)
    for x0, y0, x1, y1 in boxes:
        image.paste(RED, (x0, y0, x1, y1))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _red_box(model, x):
    """The bounding box of the pixels that are mostly red in a preprocessed image."""
    red = model.denormalize(x)[0] > 0.75
    ys, xs = torch.nonzero(red, as_tuple=True)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1), red


@pytest.fixture
def boxed_folder(tmp_path):
    """An ImageFolder with boxes.csv: a landscape and a portrait image with one box each (the scale 1/2
    and the crop offsets make the mapping exact), and one image with two boxes, one partly cropped."""
    _draw(tmp_path / "a" / "wide.png", (300, 100), [(130, 20, 190, 80)])
    _draw(tmp_path / "a" / "tall.png", (100, 300), [(20, 130, 80, 190)])
    _draw(tmp_path / "b" / "two.png", (300, 100), [(130, 20, 190, 80), (0, 0, 120, 40)])
    (tmp_path / "boxes.csv").write_text("path,x0,y0,x1,y1\n"
                                        "a/wide.png,130,20,190,80\n"
                                        "a/tall.png,20,130,80,190\n"
                                        "b/two.png,130,20,190,80\n"
                                        "b/two.png,0,0,120,40\n")
    return tmp_path


def test_boxes_follow_the_models_resize_and_centre_crop(cropping_model, boxed_folder):
    source = open_source(str(boxed_folder), cropping_model)
    assert source.has_ground_truth
    batch = source.load(range(3))
    assert batch.ids == ["a/tall.png", "a/wide.png", "b/two.png"] and batch.labels.tolist() == [0, 0, 1]
    # 300×100 → 150×50, crop 40 at (55, 5): x ↦ x/2 − 55, y ↦ y/2 − 5 (and transposed for the portrait).
    expected = {"a/wide.png": (10, 5, 40, 35), "a/tall.png": (5, 10, 35, 40), "b/two.png": (0, 0, 40, 35)}
    for image_id, x, box, mask in zip(batch.ids, batch.images, batch.boxes.tolist(), batch.masks):
        assert tuple(box) == expected[image_id]
        drawn_box, red = _red_box(cropping_model, x)
        assert drawn_box == expected[image_id]
        assert torch.equal(mask, red)  # the mask is where the drawn boxes landed, pixel for pixel
    two = batch.masks[2]  # the union of (10, 5, 40, 35) and the cropped (0, 0, 5, 15), not its bounding box
    assert two[:15, :5].all() and two[5:35, 10:40].all() and not two[20:, :5].any() and int(two.sum()) == 975


def test_an_image_without_a_box_row_has_an_empty_mask(cropping_model, boxed_folder):
    _draw(boxed_folder / "b" / "unboxed.png", (300, 100), [])
    source = open_source(str(boxed_folder), cropping_model)
    batch = source.load([3])
    assert batch.ids == ["b/unboxed.png"] and batch.boxes.tolist() == [[0, 0, 0, 0]] and not batch.masks.any()


def test_embedded_split_and_its_export_give_the_same_images_and_ground_truth(embedded, tmp_path):
    seed, n = 4, 10
    dataset.export(seed, n, tmp_path)
    embedded_source, folder = open_source(f"embedded:{seed}", embedded), open_source(str(tmp_path), embedded)
    from_export = folder.load(folder.select(n))
    by_index = {int(i.rsplit("/", 1)[1].split(".")[0]): k for k, i in enumerate(from_export.ids)}
    generated = embedded_source.load(sorted(by_index))
    assert generated.ids == [f"embedded:{seed}:{i}" for i in range(n)]
    for i in range(n):
        sample, k = dataset.make_sample(seed, i), by_index[i]
        assert int(generated.labels[i]) == int(from_export.labels[k]) == sample.label
        assert torch.equal(generated.masks[i], torch.from_numpy(sample.object_mask))  # 64 px: no resize, no crop
        assert tuple(generated.boxes[i].tolist()) == sample.box == tuple(from_export.boxes[k].tolist())
        assert torch.equal(from_export.masks[k], generated.masks[i])
        torch.testing.assert_close(from_export.images[k], generated.images[i], rtol=0, atol=1e-6)


def test_the_part_ground_truth_is_the_part_mask(embedded, tmp_path):
    part = open_source("embedded:4", embedded, ground_truth="part").load([6, 7])  # the hexagon pair: a badge
    for row, i in enumerate([6, 7]):
        sample = dataset.make_sample(4, i)
        assert torch.equal(part.masks[row], torch.from_numpy(sample.part_mask))
        assert part.masks[row].sum() < torch.from_numpy(sample.object_mask).sum()


def test_embedded_ground_truth_is_resized_for_a_larger_model(resnet_random):
    batch = open_source("embedded:4", resnet_random).load([0])
    sample = dataset.make_sample(4, 0)
    assert batch.images.shape == (1, 3, 224, 224) and batch.masks.shape == (1, 224, 224)
    scale, offset = resnet_random.resize_size / dataset.IMAGE_SIZE, (256 - 224) // 2  # 64 → 256, crop 224
    assert batch.boxes[0].tolist() == [c * scale - offset for c in sample.box]
    assert int(batch.masks[0].sum()) == pytest.approx(sample.object_mask.sum() * scale ** 2, rel=0.03)


def test_images_are_decoded_only_when_their_batch_is_loaded(cropping_model, boxed_folder, monkeypatch):
    decoded = []
    real = sources_module.load_image
    monkeypatch.setattr(sources_module, "load_image", lambda path: decoded.append(path) or real(path))
    source = open_source(str(boxed_folder), cropping_model)
    assert decoded == []
    source.load([1])
    assert [p.name for p in decoded] == ["wide.png"]


def test_a_subset_of_a_folder_is_spread_over_it(cropping_model, tmp_path):
    for i in range(10):
        _draw(tmp_path / ("a" if i < 5 else "b") / f"{i}.png", (40, 40), [])
    source = open_source(str(tmp_path), cropping_model)
    assert source.select(10) == list(range(10)) and source.select(2) == [0, 5] and source.select(3) == [0, 3, 6]
    assert not source.has_ground_truth and source.load([0]).masks is None
    with pytest.raises(ParameterError, match="holds 10 images"):
        source.select(11)


@pytest.mark.parametrize("rows, message", [
    ("path,x0,y0\na/wide.png,1,2\n", "needs the columns"),
    ("path,x0,y0,x1,y1\na/missing.png,1,2,3,4\n", "not a file"),
    ("path,x0,y0,x1,y1\na/wide.png,1,2,x,4\n", "line 2: x0,y0,x1,y1 must be numbers"),
    ("path,x0,y0,x1,y1\na/wide.png,5,2,3,4\n", "x0 < x1"),
])
def test_a_broken_boxes_csv_gives_one_sentence(cropping_model, boxed_folder, rows, message):
    (boxed_folder / "boxes.csv").write_text(rows)
    with pytest.raises(ParameterError, match=message):
        open_source(str(boxed_folder), cropping_model)


def test_unknown_sources_and_ground_truths_are_refused(cropping_model, boxed_folder):
    for source, message in [("embedded:x", "embedded:SEED"), ("nowhere/at/all", "neither")]:
        with pytest.raises(ParameterError, match=message):
            open_source(source, cropping_model)
    with pytest.raises(ParameterError, match="part masks"):
        open_source(str(boxed_folder), cropping_model, ground_truth="part")
    with pytest.raises(ParameterError, match="Unknown ground truth"):
        open_source(str(boxed_folder), cropping_model, ground_truth="badge")
    with pytest.raises(ParameterError, match="too few"):
        open_source("embedded:1", cropping_model)


def test_boxes_to_mask_counts_the_pixels_whose_centres_are_inside():
    mask = sources_module.boxes_to_mask([(1.4, 0, 3.6, 2)], width=6, height=3)
    assert mask.tolist() == [[False, True, True, True, False, False]] * 2 + [[False] * 6]
    assert np.array_equal(sources_module.boxes_to_mask([(-5, -5, 2, 1)], 4, 2), [[True, True, False, False],
                                                                                 [False] * 4])
