"""RISE on models whose answer is known: region scorers, constants, recorders, the embedded CNN."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from xai_core import dataset
from xai_core.engine import Engine
from xai_core.errors import ParameterError
from xai_core.methods import explain
from xai_core.methods.rise import (SHAPES, convergence_curve, rise_progressive, sample_masks,
                                   saliency_from_sums)
from xai_core.model_handle import LoadedModel
from xai_core.models import load_model

SIDE = 32
REGION = (slice(4, 12), slice(18, 28))  # rows, columns of the region the scorer looks at


def handle(module: nn.Module, classes: int = 2, side: int = SIDE) -> LoadedModel:
    return LoadedModel.from_module(module, input_size=side, num_classes=classes, mean=(0.5,) * 3, std=(0.25,) * 3)


class RegionScorer(nn.Module):
    """Logits (k·(mean of the region − 1/2), 0): class 0 wants the region kept, class 1 removed."""

    def forward(self, x):
        kept = x[:, :, REGION[0], REGION[1]].mean(dim=(1, 2, 3))
        return torch.stack([12 * (kept - 0.5), torch.zeros_like(kept)], dim=1)


class Constant(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits.expand(len(x), -1)


class Recorder(nn.Module):
    """Remembers every input it sees; scores nothing in particular."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return x.mean(dim=(2, 3))[:, :2]


def rise_maps(model, targets, engine=None, **params):
    return np.stack([e.map for e in explain(model, torch.ones(3, SIDE, SIDE), "rise", targets, params,
                                            engine=engine)])


@pytest.mark.parametrize("shape", ["binary", "grid"])
def test_a_model_that_scores_one_region_gets_a_map_concentrated_there(shape):
    # Input 1 everywhere and grey fill 0: the region's mean is the mask's mean there.
    keep, remove = rise_maps(handle(RegionScorer()), [0, 1], masks=1500, cell=4, shape=shape, fill="grey")
    inside = np.zeros((SIDE, SIDE), bool)
    inside[REGION] = True
    top = np.argsort(keep.ravel())[::-1][:inside.sum()]
    assert inside.ravel()[top].mean() > 0.7
    assert keep[inside].mean() > keep[~inside].mean() + 0.05
    assert remove[inside].mean() < remove[~inside].mean() - 0.05  # the opposite class: opposite map
    # Softmax over two classes sums to 1, so the two maps add up to ΣM/(N·p) exactly.
    masks = sample_masks(shape=shape, cell=4, p=0.5, seed=0, n=1500, size=(SIDE, SIDE))
    np.testing.assert_allclose(keep + remove, (masks.sum(0) / (1500 * 0.5)).numpy(), rtol=1e-4, atol=1e-5)


def test_vertical_stripes_localise_the_region_columns_only():
    [keep] = rise_maps(handle(RegionScorer()), [0], masks=1000, cell=8, shape="stripes", fill="grey")
    assert np.allclose(keep, keep[:1])  # constant along each column
    columns = keep[0]
    assert columns[REGION[1]].mean() > np.delete(columns, np.r_[REGION[1]]).mean() + 0.05


@pytest.mark.parametrize("shape", SHAPES)
def test_a_constant_model_gives_a_flat_map_at_its_probability(shape):
    logits = torch.tensor([1.0, -0.5, 0.3])
    probs = logits.softmax(0).numpy()
    maps = rise_maps(handle(Constant(logits), classes=3), [0, 1, 2], masks=1000, cell=5, p=0.3,
                     shape=shape, seed=4)
    # Exactly c · ΣM/(N·p) for the run's own masks (the N·p normalisation) ...
    masks = sample_masks(shape=shape, cell=5, p=0.3, seed=4, n=1000, size=(SIDE, SIDE))
    expected = probs[:, None, None] * (masks.sum(0) / (1000 * 0.3)).numpy()
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6)
    # ... which is c on average (every shape has E[M] = p) and flat up to sampling noise.
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), probs, rtol=0.04)
    assert np.abs(maps / probs[:, None, None] - 1).max() < 0.35


def test_masked_image_is_image_times_mask_plus_fill_times_complement():
    x = torch.randn(3, 16, 16)
    model = handle(Recorder(), side=16)
    masks = sample_masks(shape="binary", cell=3, p=0.5, seed=2, n=60, size=(16, 16)).unsqueeze(1)
    kept, dropped = (masks == 1).expand(-1, 3, -1, -1), (masks == 0).expand(-1, 3, -1, -1)
    assert kept.any() and dropped.any()
    fills = {}
    for fill in ["black", "grey", "blur"]:
        model.module.seen.clear()
        explain(model, x, "rise", 0, {"masks": 60, "cell": 3, "fill": fill, "seed": 2},
                engine=Engine("cpu", batch_size=25))
        inputs = torch.cat(model.module.seen)
        assert torch.allclose(inputs[kept], x.expand_as(inputs)[kept], atol=1e-6)
        # Recover F from I⊙M + F⊙(1−M) wherever the mask is not 1: one image for every mask.
        partial = (masks < 1).expand_as(inputs)
        recovered = torch.where(partial, (inputs - x * masks) / (1 - masks).clamp_min(1e-6), torch.nan)
        fills[fill] = recovered.nanmean(0)
        spread = torch.where(partial, recovered - fills[fill], 0.0)
        assert spread.abs().max() < 1e-3
    assert torch.allclose(model.denormalize(fills["black"]), torch.tensor(0.0), atol=1e-4)
    assert torch.allclose(fills["grey"], torch.tensor(0.0), atol=1e-4)  # normalised 0 = the dataset mean
    # The blurred copy keeps the image's large-scale structure but not its pixel noise.
    blur = fills["blur"]
    assert 0.01 < blur.std() < 0.5 * x.std()
    assert torch.corrcoef(torch.stack([blur.flatten(), x.flatten()]))[0, 1] > 0.2


def test_same_seed_same_map_whatever_the_batch_size_and_another_seed_differs():
    torch.manual_seed(0)
    model = handle(nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, 4)), classes=4)
    params = {"masks": 230, "cell": 6, "seed": 11}
    a = rise_maps(model, [0, 3], Engine("cpu", batch_size=7), **params)
    b = rise_maps(model, [0, 3], Engine("cpu", batch_size=64), **params)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    c = rise_maps(model, [0, 3], Engine("cpu", batch_size=64), **params | {"seed": 12})
    assert np.abs(a - c).max() > 1e-3


def test_progressive_steps_are_smaller_runs_and_resuming_continues_exactly():
    torch.manual_seed(0)
    model = handle(nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, 3)), classes=3)
    x = torch.randn(3, SIDE, SIDE)
    params = dict(cell=5, p=0.4, shape="binary", fill="blur", seed=3)
    engine = Engine("cpu", batch_size=16)
    steps = list(rise_progressive(model, x, [2, 0], masks=300, engine=engine, step=100, **params))
    assert [s.n_done for s in steps] == [100, 200, 300]
    [e100] = explain(model, x, "rise", 2, params | {"masks": 100}, engine=engine)
    np.testing.assert_allclose(saliency_from_sums(steps[0].sums[0], 100, 0.4).numpy(), e100.map, rtol=1e-5)
    resumed = list(rise_progressive(model, x, [2, 0], masks=300, engine=engine, step=100, start=100,
                                    initial=steps[0].sums, **params))
    np.testing.assert_allclose(resumed[-1].sums.numpy(), steps[-1].sums.numpy(), rtol=1e-5)
    curve = convergence_curve(np.stack([s.sums.numpy() for s in steps]), [100, 200, 300], 0.4)
    assert curve.shape == (3, 2) and np.all(curve[-1] == 0) and np.all(curve[0] > 0)


def test_impossible_parameters_are_readable_errors():
    model = handle(Constant([0.0, 0.0]))
    with pytest.raises(ParameterError, match="shape"):
        explain(model, torch.ones(3, SIDE, SIDE), "rise", 0, {"shape": "hexagons"})
    with pytest.raises(ParameterError, match="outside"):
        explain(model, torch.ones(3, SIDE, SIDE), "rise", 0, {"masks": 20000})
    with pytest.raises(ParameterError, match="more cells per side"):
        explain(handle(Constant([0.0, 0.0]), side=16), torch.ones(3, 16, 16), "rise", 0, {"masks": 50, "cell": 32})


_MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys, torch
    from torch import nn
    from xai_core.engine import Engine
    from xai_core.methods import explain
    from xai_core.model_handle import LoadedModel
    torch.set_num_threads(1)  # memory is the point here; one thread keeps it quick on a busy machine
    module = nn.Sequential(nn.AvgPool2d(16), nn.Flatten(), nn.Linear(3 * 14 * 14, 5)).eval()
    model = LoadedModel.from_module(module, input_size=224, categories=list("abcde"), mean=(0.5,) * 3,
                                    std=(0.25,) * 3)
    x, engine, peaks = torch.randn(3, 224, 224), Engine("cpu", batch_size=32), []
    for n in (500, 8000):
        explain(model, x, "rise", [0, 1], {"masks": n, "cell": 7}, engine=engine)
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps(peaks))
""")


def test_peak_memory_does_not_grow_with_the_number_of_masks():
    # A fresh process, so the high-water mark of its resident memory belongs to RISE alone.
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE], capture_output=True, text=True,
                         check=True, timeout=300)
    after_500, after_8000 = json.loads(out.stdout.strip().splitlines()[-1])
    all_masks_at_once = 8000 * 224 * 224 * 4  # 1.6 GB for the masks alone, 4.8 GB for the images
    assert after_8000 - after_500 < all_masks_at_once / 20


def test_the_embedded_models_rise_map_points_inside_the_object():
    # A fresh set: seed 777 is used neither for training nor for the model's held-out check.
    # Objects cover 12-30 % of the image, so a map pointing at random would hit about 1 in 5.
    model = load_model("embedded", device="cpu")
    x, labels, objects, _ = dataset.tensors(777, 16)
    engine = Engine("cpu")
    hits, denser = [], []
    for image, label, obj in zip(x, labels, objects):
        [result] = explain(model, image, "rise", int(label), {"masks": 300, "cell": 7, "seed": 1}, engine=engine)
        obj = obj.numpy()
        hits.append(bool(obj.ravel()[np.argmax(result.map)]))
        denser.append(result.map[obj].mean() > result.map.mean())
    assert np.mean(hits) >= 0.6, hits
    assert np.mean(denser) >= 0.75, denser
