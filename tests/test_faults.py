"""The core under faults and hostile input (issue 15): image bombs, impossible parameters, out of
memory in every method, a damaged or unwritable support-network store, broken checkpoints.

Each test reproduces a failure that once escaped as a raw exception, a runaway allocation or a
silent NaN, and checks that it is now a readable ``XAIError`` (or a notice) instead.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile
from torch import nn
from torch.overrides import _get_current_function_mode_stack

from xai_core import dataset, imageio, rig
from xai_core.embedded import EmbeddedNet
from xai_core.engine import Engine, is_oom, oom_guard
from xai_core.errors import CheckpointError, ImageError, ParameterError, ResourceError
from xai_core.instrument.capture import hook_count
from xai_core.inversion import SETTINGS_PARAMS, InversionRun, InversionSettings
from xai_core.methods import METHODS, explain, explain_batch
from xai_core.methods.integrated_gradients import quadrature
from xai_core.model_handle import LoadedModel
from xai_core.models import build_random, load_model
from xai_core.rig import store, training

REPO = Path(__file__).resolve().parents[1]
FAST: dict[str, dict] = {"smoothgrad": {"samples": 2}, "ig": {"steps": 2}, "rise": {"masks": 50},
                         "occlusion": {"window": 32, "stride": 32}}


# ------------------------------------------------------------------------------ images
def _png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# The child imports imageio without the package's __init__ (which imports torch): its peak RSS is then
# the decoder's, numpy's and PIL's alone. Linux keeps ru_maxrss across fork and exec (the child would
# report pytest's own peak), so the peak is read from VmHWM, which starts afresh in the new program.
_MEASURE = """
import json, sys, types
package = types.ModuleType("xai_core")
package.__path__ = ["xai_core"]
sys.modules["xai_core"] = package
from xai_core.errors import ImageError
from xai_core.imageio import load_image

def peak_kb():
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0])

before = peak_kb()
try:
    load_image(sys.argv[1])
    refusal = None
except ImageError as err:
    refusal = str(err)
print(json.dumps({"refusal": refusal, "before_kb": before, "after_kb": peak_kb(), "torch": "torch" in sys.modules}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak RSS from /proc")
def test_the_aspect_bomb_is_refused_from_its_header_with_bounded_memory(tmp_path):
    """16 × 4,000,000 px: within the pixel limit, tiny as a file, 12 Gpx once resized for a model."""
    bomb = tmp_path / "strip.png"
    bomb.write_bytes(_png(Image.new("1", (16, 4_000_000))))
    assert bomb.stat().st_size < 100_000 and 16 * 4_000_000 <= imageio.MAX_PIXELS
    child = subprocess.run([sys.executable, "-c", _MEASURE, str(bomb)], capture_output=True, text=True,
                           cwd=REPO, timeout=120, check=True)
    report = json.loads(child.stdout.splitlines()[-1])
    assert report["refusal"] and "16×4000000" in report["refusal"]
    assert f"{imageio.MAX_SIDE:,}" in report["refusal"] and f"{imageio.MAX_ASPECT} times" in report["refusal"]
    # Decoding it would cost ≥ 64 MB (one byte per pixel) before any conversion; the header costs nothing.
    grown_mb = (report["after_kb"] - report["before_kb"]) / 1024
    assert grown_mb < 32, f"loading the refused bomb grew the peak RSS by {grown_mb:.0f} MB"
    assert not report["torch"] and report["after_kb"] / 1024 < 600  # the whole child


@pytest.mark.parametrize("size, limit", [((4_000_000, 16), "16 times"), ((16_400, 1100), "16,384"),
                                         ((9000, 8000), "limit of 64,000,000 pixels"), ((12, 400), "at least 16")])
def test_every_side_of_the_admission_rule_names_its_limit(size, limit):
    with pytest.raises(ImageError, match=limit):
        imageio.load_image(_png(Image.new("1", size)))


def test_a_large_jpeg_is_reduced_while_decoding(monkeypatch):
    drafts = []
    original = JpegImageFile.draft
    monkeypatch.setattr(JpegImageFile, "draft", lambda self, mode, size: drafts.append(size) or
                        original(self, mode, size))
    width, height = 9000, 1500
    gradient = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None].repeat(height, 0).repeat(3, 2)
    buffer = io.BytesIO()
    Image.fromarray(gradient).save(buffer, format="JPEG", quality=80)
    img = imageio.load_image(buffer.getvalue())
    assert drafts, "the JPEG was decoded at full size"
    assert max(img.size) <= imageio.DECODED_SIDE and max(img.size) > imageio.DECODED_SIDE // 2
    assert img.width / img.height == pytest.approx(width / height, rel=0.01)


def test_a_large_png_is_reduced_after_decoding():
    img = imageio.load_image(_png(Image.new("RGB", (5000, 400), (10, 200, 30))))
    assert img.size == (2500, 200) and img.getpixel((7, 7)) == (10, 200, 30)


def test_a_file_over_the_byte_limit_is_not_read(monkeypatch, tmp_path):
    monkeypatch.setattr(imageio, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.png"
    path.write_bytes(_png(Image.effect_noise((64, 64), 50)))
    assert path.stat().st_size > 1000
    with pytest.raises(ImageError, match="limit of 1,000 bytes"):
        imageio.load_image(path)


# ------------------------------------------------------------------------------ parameters
NUMERIC = [(m, p, spec) for m, method in METHODS.items() for p, spec in method.params.items()
           if spec.kind in (int, float)]


def test_every_numeric_parameter_has_both_bounds():
    assert NUMERIC and all(spec.low is not None and spec.high is not None for _, _, spec in NUMERIC)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "nan", "inf"])
@pytest.mark.parametrize("method, name, spec", NUMERIC, ids=[f"{m}.{p}" for m, p, _ in NUMERIC])
def test_non_finite_values_are_refused_for_every_parameter(embedded, image64, method, name, spec, bad):
    with pytest.raises(ParameterError, match=f"'{name}'"):
        explain(embedded, image64, method, 0, {name: bad})


@pytest.mark.parametrize("method, name, spec", NUMERIC, ids=[f"{m}.{p}" for m, p, _ in NUMERIC])
def test_oversized_values_are_refused_with_the_limit(embedded, image64, method, name, spec):
    too_big = spec.kind(spec.high * 10 + 1)
    with pytest.raises(ParameterError, match=f"'{name}'") as refusal:
        explain(embedded, image64, method, 0, {name: too_big})
    assert str(spec.high) in str(refusal.value)


TEXT = [(m, p, spec) for m, method in METHODS.items() for p, spec in method.params.items() if spec.kind is str]


@pytest.mark.parametrize("method, name, spec", TEXT, ids=[f"{m}.{p}" for m, p, _ in TEXT])
def test_text_parameters_refuse_what_they_do_not_know(embedded, image64, method, name, spec):
    """A choice outside the list, or a layer the model does not have."""
    with pytest.raises(ParameterError, match=f"'{name}'|no layer named"):
        explain(embedded, image64, method, 0, {name: "<b>nope</b>"})


def test_a_composed_methods_base_parameters_are_checked_too(embedded, image64):
    with pytest.raises(ParameterError, match="'steps'.*1024"):
        explain(embedded, image64, "smoothgrad", 0, {"base": "ig", "base.steps": 10**7})
    with pytest.raises(ParameterError, match="'constant'"):
        explain(embedded, image64, "smoothgrad", 0, {"base": "ig", "base.constant": math.nan})


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_left"])
@pytest.mark.parametrize("steps", [0, 1, 10**7])
def test_ig_steps_are_bounded_for_every_caller(rule, steps):
    """RIG calls the quadrature directly: 10^7 Gauss–Legendre nodes were a 728 TiB allocation."""
    with pytest.raises(ParameterError, match="'steps' = .* outside \\[2, 1024\\]"):
        quadrature(rule, steps)


@pytest.mark.parametrize("text", ["0, nan", "2, inf", "0, -1", "1e9", ", ".join(str(a) for a in range(17))])
def test_alpha_values_are_finite_bounded_and_few(text):
    with pytest.raises(ParameterError, match="α"):
        rig.parse_alphas(text)


@pytest.mark.parametrize("setting", [{"alphas": (0, math.nan)}, {"alphas": (0, math.inf)}, {"lr": math.nan},
                                     {"lr": math.inf}, {"epochs": 0}, {"batch_size": 10**7}])
def test_rig_training_refuses_impossible_settings_before_training(rig_model, rig_data, tmp_path, setting):
    kwargs = {"alphas": (0, 2), **setting}
    with pytest.raises(ParameterError):
        rig.train_support_networks(rig_model, rig_data, kwargs.pop("alphas"), cache_dir=tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())  # nothing trained, nothing stored


def test_a_diverged_training_is_refused_not_stored(rig_model, rig_data, tmp_path, monkeypatch):
    fit = training._fit_sequential

    def diverging(*args, **kwargs):
        nets, curves = fit(*args, **kwargs)
        return nets, [curve[:-1] + [math.nan] for curve in curves]

    monkeypatch.setattr(training, "_fit_sequential", diverging)
    with pytest.raises(ParameterError, match="diverged .*α = 2"):
        rig.train_support_networks(rig_model, rig_data, (0, 2), epochs=1, batch_size=8, cache_dir=tmp_path,
                                   mode="sequential")
    assert not any(tmp_path.iterdir())


def test_rig_explain_steps_are_bounded(rig_model, rig_data):
    supports = rig.SupportNetworks(rig_data.classes, [0.0], {}, {}, "k", Path("unused"), False, "sequential")
    for steps in (0, 10**7):
        with pytest.raises(ParameterError, match="'steps'"):
            rig.rig_explain(rig_model, rig_data.images[0], supports, steps=steps)


@pytest.mark.parametrize("bad", [math.nan, math.inf, "oversized"])
@pytest.mark.parametrize("name", sorted(SETTINGS_PARAMS))
def test_inversion_settings_are_finite_and_bounded(name, bad):
    spec = SETTINGS_PARAMS[name]
    if bad == "oversized":
        bad = spec.kind(spec.high * 10 + 1)
    elif spec.kind is int:
        bad = float(bad)  # an int setting given a non-finite float
    with pytest.raises(ParameterError, match=f"'{name}'"):
        InversionSettings(**{name: bad}).validate()


def test_inversion_frames_kept_are_bounded():
    with pytest.raises(ParameterError, match="frames"):
        InversionSettings(steps=10_000, frame_every=1).validate()
    InversionSettings(steps=2000, frame_every=1).validate()  # the page's widest settings


# ------------------------------------------------------------------------------ out of memory
def _cuda_oom() -> BaseException:
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 15.7 GiB total)")


def _cpu_oom() -> BaseException:
    """A real CPU allocation failure: PyTorch's DefaultCPUAllocator refusing 2^60 bytes."""
    try:
        torch.empty(2**60, dtype=torch.uint8)
    except RuntimeError as err:
        return err
    raise AssertionError("2^60 bytes were allocated")


FLAVOURS = {"cuda": _cuda_oom, "cpu": _cpu_oom}


class _OutOfMemory(nn.Module):
    """The embedded network running out of memory after its convolutional features (its CAM layer
    has already been reached, with hooks set, when it fails)."""

    def __init__(self, net: nn.Module, fault):
        super().__init__()
        self.net, self.fault = net, fault

    def forward(self, x):
        self.net.features(x)
        raise self.fault()


def _failing(embedded: LoadedModel, fault) -> LoadedModel:
    return LoadedModel(name="oom", arch="oom", module=_OutOfMemory(embedded.module, fault),
                       categories=embedded.categories, mean=embedded.mean, std=embedded.std, input_size=64,
                       resize_size=64, weights_source="test", default_layer="net." + embedded.default_layer,
                       device=torch.device("cpu"))


def _clean(model: LoadedModel) -> bool:
    return (hook_count(model.module) == 0 and not _get_current_function_mode_stack()
            and all(p.grad is None for p in model.module.parameters()))


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_oom_flavours_are_recognised(flavour):
    assert is_oom(FLAVOURS[flavour]())
    assert is_oom(RuntimeError("not enough memory: you tried to allocate 8 GB")) and is_oom(MemoryError())
    assert not is_oom(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) and not is_oom(ValueError("x"))


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_turns_oom_into_a_resource_error(embedded, image64, name, flavour):
    model = _failing(embedded, FLAVOURS[flavour])
    with pytest.raises(ResourceError, match="Not enough memory on cpu") as refusal:
        explain(model, image64, name, [3, 1], FAST.get(name, {}))
    assert len(str(refusal.value).splitlines()) == 1 and "Tried to allocate" not in str(refusal.value)
    assert _clean(model)


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_a_prediction_out_of_memory_is_a_resource_error(embedded, image64, flavour):
    with pytest.raises(ResourceError, match="the prediction"):
        _failing(embedded, FLAVOURS[flavour]).predict(image64)


@pytest.mark.parametrize("name", ["saliency", "gradcam", "scorecam", "ig"])
def test_batched_explanations_turn_oom_into_a_resource_error(embedded, name):
    model = _failing(embedded, _cpu_oom)
    xs = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ResourceError):
        explain_batch(model, xs, name, [[1], [2]], FAST.get(name, {}), engine=Engine("cpu", batch_size=2))
    assert _clean(model)


def test_a_batched_pass_backs_off_before_it_gives_up():
    sizes = []

    def fn(start, stop):
        sizes.append(stop - start)
        if stop - start > 3:
            raise _cpu_oom()
        return torch.arange(start, stop)

    assert torch.equal(Engine("cpu", batch_size=16).map_cat(fn, 10, section="gradients"), torch.arange(10))
    assert sizes[:3] == [10, 5, 2]


def test_the_guard_passes_other_errors_and_translates_oom():
    with pytest.raises(ValueError):
        with oom_guard("cpu", "a test"):
            raise ValueError("not memory")
    with pytest.raises(ResourceError, match="for a test"):
        with oom_guard("cpu", "a test"):
            raise MemoryError()


def test_rig_training_out_of_memory_is_a_resource_error(rig_model, rig_data, tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise _cpu_oom()

    monkeypatch.setattr(training, "_fit_sequential", out_of_memory)
    with pytest.raises(ResourceError, match="support networks"):
        rig.train_support_networks(rig_model, rig_data, (0, 2), epochs=1, cache_dir=tmp_path, mode="sequential")


def test_an_inversion_step_out_of_memory_is_a_resource_error(embedded):
    calls = []

    class FailsWhenAsked(nn.Module):
        def forward(self, x):
            if calls:
                raise calls[0]()
            return embedded.module(x)

    model = LoadedModel.from_module(FailsWhenAsked(), input_size=64, categories=embedded.categories,
                                    mean=embedded.mean, std=embedded.std, name="oom")
    run = InversionRun(model, [0], InversionSettings(steps=3))
    calls.append(_cuda_oom)
    with pytest.raises(ResourceError, match="inversion step"):
        run.step()
    with pytest.raises(ResourceError):  # the start image's score, too
        InversionRun(model, [0], InversionSettings(steps=3))


# ------------------------------------------------------------------------------ the RIG store
@pytest.fixture(scope="module")
def rig_model() -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(name="tiny", arch="embedded", module=EmbeddedNet(len(dataset.CLASSES), width=4).eval(),
                       categories=list(dataset.CLASSES), mean=dataset.MEAN, std=dataset.STD,
                       input_size=dataset.IMAGE_SIZE, resize_size=dataset.IMAGE_SIZE, weights_source="random",
                       default_layer="features.block4", device=torch.device("cpu"))


@pytest.fixture(scope="module")
def rig_data(rig_model) -> rig.TrainingData:
    return rig.embedded_data(rig_model, dataset.PART_PAIR, seed=0, n=8)


SETTINGS = dict(alphas=(0, 2, 4), epochs=1, batch_size=8, mode="sequential")


def _train(model, data, cache: Path) -> rig.SupportNetworks:
    settings = dict(SETTINGS)
    return rig.train_support_networks(model, data, settings.pop("alphas"), cache_dir=cache, **settings)


@pytest.fixture(scope="module")
def stored(rig_model, rig_data, tmp_path_factory) -> rig.SupportNetworks:
    return _train(rig_model, rig_data, tmp_path_factory.mktemp("rig"))


@pytest.fixture
def entry(stored, tmp_path) -> Path:
    """A private copy of a good stored set, to damage."""
    copy = tmp_path / "cache" / stored.key
    shutil.copytree(stored.directory, copy)
    return copy


def _meta(entry: Path) -> dict:
    return json.loads((entry / "meta.json").read_text())


def _wrong_shape(entry: Path, record_digest: bool) -> None:
    path = entry / "alpha_2.pt"
    state = torch.load(path, weights_only=True)
    name = next(k for k, v in state.items() if v.ndim == 4)
    state[name] = state[name].flatten(1)
    torch.save(state, path)
    if record_digest:  # a consistent entry of another architecture: only the shape check can tell
        meta = _meta(entry)
        meta["files"]["alpha_2.pt"] = store._file_digest(path)
        (entry / "meta.json").write_text(json.dumps(meta))


def _without(key: str):
    def damage(entry: Path) -> None:
        meta = _meta(entry)
        del meta[key]
        (entry / "meta.json").write_text(json.dumps(meta))
    return damage


DAMAGES = {
    "truncated weights": lambda e: (e / "alpha_2.pt").write_bytes((e / "alpha_2.pt").read_bytes()[:1000]),
    "empty weights": lambda e: (e / "alpha_4.pt").write_bytes(b""),
    "random weights": lambda e: (e / "alpha_2.pt").write_bytes(os.urandom(5000)),
    "wrong-shape weights": lambda e: _wrong_shape(e, record_digest=False),
    "wrong-shape weights, digest recorded": lambda e: _wrong_shape(e, record_digest=True),
    "weights file deleted": lambda e: (e / "alpha_4.pt").unlink(),
    "garbage meta": lambda e: (e / "meta.json").write_bytes(b"{\x00\xff not json"),
    "empty meta": lambda e: (e / "meta.json").write_text(""),
    "meta is a list": lambda e: (e / "meta.json").write_text("[1, 2]"),
    "meta without curves": _without("curves"),
    "meta without digests": _without("files"),
    "meta deleted": lambda e: (e / "meta.json").unlink(),
    "entry is a file": lambda e: (shutil.rmtree(e), e.write_bytes(b"x")),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_entry_is_deleted_and_trained_again_with_a_notice(rig_model, rig_data, stored, entry, damage):
    DAMAGES[damage](entry)
    with pytest.warns(training.StoreWarning, match="damaged"):
        again = _train(rig_model, rig_data, entry.parent)
    assert not again.loaded_from_disk and again.key == stored.key
    assert len(again.notices) == 1 and "damaged" in again.notices[0] and "trained again" in again.notices[0]
    for alpha in (2.0, 4.0):  # the same seeded training: the same networks
        for p, q in zip(again.networks[alpha].state_dict().values(), stored.networks[alpha].state_dict().values()):
            torch.testing.assert_close(p, q)
    repaired = _train(rig_model, rig_data, entry.parent)
    assert repaired.loaded_from_disk and not repaired.notices


def _read_only(monkeypatch, cache: Path) -> Path:
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(store.tempfile, "mkdtemp", refuse)  # root ignores chmod: refuse where the write starts
    return cache


def _through_a_file(monkeypatch, cache: Path) -> Path:
    cache.mkdir(parents=True)
    (cache / "a file").write_text("not a folder")
    return cache / "a file" / "rig"


def _disk_full(monkeypatch, cache: Path) -> Path:
    def half_written(obj, path):
        Path(path).write_bytes(b"PK\x03\x04 partial")
        raise RuntimeError("[enforce fail at inline_container.cc:858] PytorchStreamWriter failed writing file "
                           "data/0: file write failed")
    monkeypatch.setattr(store.torch, "save", half_written)
    return cache


def _no_space_for_meta(monkeypatch, cache: Path) -> Path:
    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_text", no_space)
    return cache


@pytest.mark.parametrize("unwritable", [_read_only, _through_a_file, _disk_full, _no_space_for_meta],
                         ids=["read-only", "through a file", "disk full (weights)", "ENOSPC (meta)"])
def test_an_unwritable_store_degrades_to_not_stored(rig_model, rig_data, stored, tmp_path, monkeypatch, unwritable):
    cache = unwritable(monkeypatch, tmp_path / "cache")
    with pytest.warns(training.StoreWarning, match="not stored"):
        supports = _train(rig_model, rig_data, cache)
    assert not supports.loaded_from_disk and "not stored" in supports.notices[0]
    for alpha in (2.0, 4.0):  # the networks work all the same
        for p, q in zip(supports.networks[alpha].state_dict().values(), stored.networks[alpha].state_dict().values()):
            torch.testing.assert_close(p, q)
    assert not supports.directory.exists()
    if cache.is_dir():  # no staging folder is left behind
        assert not [p for p in cache.iterdir() if p.name.startswith(store.STAGING_PREFIX)]


def test_staging_folders_of_dead_writers_are_removed_on_next_use(rig_model, rig_data, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    dead = cache / f"{store.STAGING_PREFIX}{int(finished.stdout)}-killed"
    live = cache / f"{store.STAGING_PREFIX}{os.getpid()}-writing"
    abandoned = cache / f"{store.STAGING_PREFIX}{os.getpid()}-abandoned"
    for folder in (dead, live, abandoned):
        folder.mkdir()
        (folder / "alpha_2.pt").write_bytes(b"half")
    old = time.time() - store.STALE_STAGING_SECONDS - 60
    os.utime(abandoned, (old, old))
    _train(rig_model, rig_data, cache)
    assert not dead.exists() and not abandoned.exists() and live.exists()


def test_a_set_is_written_through_a_staging_folder_and_replaced_into_place(rig_model, rig_data, tmp_path,
                                                                             monkeypatch):
    renames = []
    real = os.replace
    monkeypatch.setattr(store.os, "replace", lambda a, b: renames.append((Path(a), Path(b))) or real(a, b))
    supports = _train(rig_model, rig_data, tmp_path)
    [(source, target)] = renames
    assert source.name.startswith(f"{store.STAGING_PREFIX}{os.getpid()}-") and target == supports.directory
    assert sorted(p.name for p in target.iterdir()) == ["alpha_2.pt", "alpha_4.pt", "meta.json"]


# ------------------------------------------------------------------------------ checkpoints
def _checkpoint(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def embedded_state() -> dict:
    return dict(build_random("embedded", seed=0).module.state_dict())


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_a_wrong_dtype_checkpoint_is_a_clear_error(embedded_state, dtype):
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in embedded_state.items()}
    with pytest.raises(CheckpointError, match="wrong dtypes .*features.block1.0.weight"):
        load_model("embedded", checkpoint=_checkpoint(state), device="cpu")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_checkpoint_with_non_finite_weights_is_refused_naming_the_tensor(embedded_state, bad):
    state = {k: v.clone() for k, v in embedded_state.items()}
    state["fc.weight"][3, 5] = bad
    state["fc.bias"][0] = bad
    with pytest.raises(CheckpointError, match="NaN or infinite weights \\(first in fc.weight\\)"):
        load_model("embedded", checkpoint=_checkpoint(state), device="cpu")


def test_a_half_precision_checkpoint_still_loads(embedded_state):
    state = {k: v.half() if v.is_floating_point() else v for k, v in embedded_state.items()}
    model = load_model("embedded", checkpoint=_checkpoint(state), device="cpu")
    assert all(p.dtype == torch.float32 for p in model.module.parameters())
    assert np.isfinite(model.predict(torch.zeros(3, 64, 64), 1)[0]["probability"])



# ------------------------------------------------------------------------------ OOM in the single passes
# of the global views, the comparison, the evaluation runner and fine-tuning (engine.oom_guard)
def test_deconvnet_projections_out_of_memory_is_a_resource_error(embedded, image64):
    from xai_core.zeiler_fergus import deconv_projections, transform_sensitivity

    for flavour in FLAVOURS.values():
        model = _failing(embedded, flavour)
        with pytest.raises(ResourceError, match="projecting feature maps of net.features"):
            deconv_projections(model, image64, model.default_layer, top=4)
        with pytest.raises(ResourceError, match="Not enough memory on cpu"):
            transform_sensitivity(model, image64, "rotation", [0.0, 10.0])
        assert _clean(model)


def test_the_transformed_images_out_of_memory_is_a_resource_error(embedded, image64, monkeypatch):
    from xai_core import zeiler_fergus

    real = zeiler_fergus.transform_batch
    monkeypatch.setattr(zeiler_fergus, "transform_batch",
                        lambda x, kind, values: real(x, kind, values) if len(values) < 3 else _raise(_cpu_oom))
    values = [0.0, 5.0, 10.0]
    with pytest.raises(ResourceError, match="the 3 transformed images"):
        zeiler_fergus.transform_sensitivity(embedded, image64, "rotation", values,
                                            engine=Engine("cpu", batch_size=2))


def _raise(fault):
    raise fault()


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_a_comparison_cell_out_of_memory_is_that_cells_reason(embedded, image64, flavour):
    from xai_core.compare import compare_models, match_classes

    match = match_classes([embedded.categories, embedded.categories])[3]
    failing = _failing(embedded, FLAVOURS[flavour])
    methods = {"saliency": {}, "gradcam": {}}
    comparison = compare_models([embedded, failing], [image64, image64], match, methods)
    assert all(m is not None for m in comparison.maps[0])  # the model that fits is compared all the same
    assert sorted(comparison.refusals) == [(1, 0), (1, 1)]
    assert all(reason.startswith("Not enough memory on cpu") for reason in comparison.refusals.values())
    # A map source that is not ``explain`` (the app passes its cache) is guarded the same way.
    raw = compare_models([embedded], [image64], match_classes([embedded.categories])[3], {"saliency": {}},
                         maps=lambda *cell: _raise(FLAVOURS[flavour]))
    assert raw.refusals == {(0, 0): "Not enough memory on cpu for saliency on model 1; try a smaller image, "
                                    "fewer items, or another device."}


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_an_evaluation_batch_out_of_memory_is_a_resource_error(embedded, flavour, monkeypatch):
    from xai_core import metrics
    from xai_core.evaluation import run_evaluation

    args = ("embedded:1", {"saliency": {}}, {"deletion": {"steps": 4}})
    with pytest.raises(ResourceError, match="Not enough memory on cpu"):  # the model's forward
        run_evaluation(_failing(embedded, FLAVOURS[flavour]), *args, n=2, batch_size=2)
    monkeypatch.setattr(metrics, "compute", lambda *a, **k: _raise(FLAVOURS[flavour]))  # a metric's own pass
    with pytest.raises(ResourceError, match="for a batch of 2 images"):
        run_evaluation(embedded, *args, n=2, batch_size=2)


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_a_fine_tuning_step_or_its_scoring_out_of_memory_is_a_resource_error(embedded, flavour):
    from xai_core.evaluation.sources import open_source
    from xai_core.finetune import FinetuneConfig, finetune
    from xai_core.finetune.training import evaluate_split, trainable_copy

    model = _failing(embedded, FLAVOURS[flavour])
    source = open_source("embedded:1", model)
    batch = source.load(source.select(4))
    split = (batch.images, batch.labels, batch.masks)
    config = FinetuneConfig(layer=model.default_layer, micro_batch=2)
    with pytest.raises(ResourceError, match="fine-tuning step on micro-batches of 2 images"):
        finetune(model, split, config, epochs=1)
    module = trainable_copy(model, config, torch.device("cpu"))
    with pytest.raises(ResourceError, match="scoring micro-batches of 2 images"):
        evaluate_split(module, split, config, Engine("cpu"))
    assert _clean(model)


def test_the_embedded_rig_split_is_bounded(embedded):
    model = embedded
    for n in (1, 20_001, 10**8):
        with pytest.raises(ParameterError, match=r"'n' = .* is outside \[2, 20000\]"):
            rig.training_sets(model, dataset.PART_PAIR, seed=0, n=n)
        with pytest.raises(ParameterError, match="outside"):
            rig.embedded_data(model, dataset.PART_PAIR, 0, n)
    train, val = rig.training_sets(model, dataset.PART_PAIR, seed=0, n=2)
    assert len(train.labels) == 2 and len(val.labels) == 64


@pytest.mark.parametrize("setting", ["lr", "k1", "k2", "k3", "momentum", "weight_decay", "temperature"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_fine_tuning_refuses_non_finite_settings_by_name(setting, value):
    from xai_core.finetune.training import FinetuneConfig

    with pytest.raises(ParameterError, match=setting):
        FinetuneConfig(layer="features", **{setting: value}).validate()


def test_rig_on_several_architectures_refuses_tau_before_any_training(monkeypatch):
    from xai_core.rig import architectures

    def no_training(*args, **kwargs):
        raise AssertionError("trained before τ was checked")

    monkeypatch.setattr(architectures, "training_sets", no_training)
    for tau in (0.0, 1.5, float("nan")):
        with pytest.raises(ParameterError, match="τ"):
            architectures.rig_architectures([], (0, 1), None, tau=tau)
