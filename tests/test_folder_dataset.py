"""The labelled-folder reader: dataset-export's layout and a plain ImageFolder give the same images,
labels name the model's classes, and RIG's validation split keeps every fifth image of a class."""
import pytest
import torch
from PIL import Image

from xai_core import dataset, rig
from xai_core.errors import ParameterError
from xai_core.folder_dataset import evaluate_folder, load_labelled, read_labelled_folder

SEED = 9


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    dataset.export(SEED, 16, out)
    return out


def test_an_export_reads_as_the_samples_it_was_written_from(embedded_random, exported):
    loaded = load_labelled(embedded_random, exported)
    assert len(loaded.paths) == 16 and loaded.paths == sorted(loaded.paths)
    for image, label, path in zip(loaded.images, loaded.labels, loaded.paths):
        sample = dataset.make_sample(SEED, int(path.stem))
        assert int(label) == sample.label and path.parent.name == sample.class_name
        expected = dataset.normalize(sample.image[None], embedded_random.mean, embedded_random.std)[0]
        torch.testing.assert_close(image, expected, rtol=0, atol=1e-6)


def test_the_exports_images_folder_is_the_same_dataset_as_an_imagefolder(embedded_random, exported):
    as_export = load_labelled(embedded_random, exported, classes=dataset.PART_PAIR)
    as_imagefolder = load_labelled(embedded_random, exported / "images", classes=dataset.PART_PAIR)
    assert set(as_export.labels.tolist()) == set(dataset.PART_PAIR) and len(as_export.labels) == 4
    torch.testing.assert_close(as_export.images, as_imagefolder.images, rtol=0, atol=0)
    assert torch.equal(as_export.labels, as_imagefolder.labels)


def _image_folder(root, counts: dict[str, int]):
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(dataset.make_sample(1, i).image).save(root / name / f"{i:02d}.png")
    return root


def test_folder_labels_are_class_names_or_indices_and_unknown_ones_are_refused(embedded_random, tmp_path):
    root = _image_folder(tmp_path / "ok", {"Circle": 1, "3": 2})  # a name in another case, an index
    assert sorted(load_labelled(embedded_random, root).labels.tolist()) == [0, 3, 3]
    result = evaluate_folder(embedded_random, root)
    assert result["n"] == 3 and set(result["per_class"]) == {"circle", "star"}
    bad = _image_folder(tmp_path / "bad", {"circle": 1, "zebra": 1})
    with pytest.raises(ParameterError, match="zebra"):
        load_labelled(embedded_random, bad)
    assert load_labelled(embedded_random, bad, classes=[0]).labels.tolist() == [0]  # other labels skipped


def test_broken_folders_give_one_sentence(tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        read_labelled_folder(tmp_path / "missing")
    with pytest.raises(ParameterError, match="no labelled images"):
        read_labelled_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("path,class\na.png,0\n")
    with pytest.raises(ParameterError, match="image and label"):
        read_labelled_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("image,label\nimages/a.png,0\n")
    with pytest.raises(ParameterError, match="images/a.png"):
        read_labelled_folder(tmp_path)


@pytest.mark.parametrize("count, held_out", [(2, [1]), (5, [4]), (11, [4, 9])])
def test_rig_holds_out_every_fifth_image_of_each_class(embedded_random, tmp_path, count, held_out):
    names = [dataset.CLASSES[c] for c in dataset.PART_PAIR]
    root = _image_folder(tmp_path, {name: count for name in names})
    train, val = rig.folder_data(embedded_random, root, dataset.PART_PAIR)
    everything = load_labelled(embedded_random, root, dataset.PART_PAIR)
    for c in dataset.PART_PAIR:
        members = everything.images[everything.labels == c]
        expected = [i for i in range(count) if i not in held_out]
        torch.testing.assert_close(train.images[train.labels == c], members[expected], rtol=0, atol=0)
        torch.testing.assert_close(val.images[val.labels == c], members[held_out], rtol=0, atol=0)
    with pytest.raises(ParameterError, match="at least two images"):
        rig.folder_data(embedded_random, _image_folder(tmp_path / "one", {n: 1 for n in names}), dataset.PART_PAIR)
