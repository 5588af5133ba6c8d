"""The shared batching engine: order, OOM back-off, memory of the batch size that worked."""
import pytest
import torch

from xai_core.engine import Engine
from xai_core.errors import ResourceError


def test_map_covers_every_item_once_in_order():
    engine = Engine("cpu", batch_size=7)
    chunks = engine.map(lambda a, b: torch.arange(a, b), 30, section="gradients")
    assert torch.equal(torch.cat(chunks), torch.arange(30))
    assert max(len(c) for c in chunks) == 7


def test_out_of_memory_halves_the_batch_and_retries_the_same_slice():
    engine = Engine("cpu", batch_size=64)
    sizes = []

    def fn(a, b):
        sizes.append(b - a)
        if b - a > 10:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.arange(a, b)

    result = engine.map_cat(fn, 50, section="gradients", key="probe")
    assert torch.equal(result, torch.arange(50))
    assert sizes[:4] == [50, 25, 12, 6]  # 50 (capped at n), then halved until it fits
    assert all(s <= 10 for s in sizes[3:])


def test_learned_batch_size_is_reused_for_the_same_key():
    engine = Engine("cpu")
    calls = []

    def fn(a, b):
        calls.append(b - a)
        if b - a > 5:
            raise torch.cuda.OutOfMemoryError("out of memory")
        return torch.zeros(b - a)

    engine.map(fn, 20, section="gradients", key="k")
    calls.clear()
    engine.map(fn, 20, section="gradients", key="k")
    assert calls and max(calls) <= 5  # no probing the second time


def test_oom_with_a_batch_of_one_is_a_clear_resource_error():
    engine = Engine("cpu", batch_size=4)

    def fn(a, b):
        raise RuntimeError("out of memory")

    with pytest.raises(ResourceError, match="even for one item"):
        engine.map(fn, 3, section="gradients")


def test_other_errors_are_not_swallowed():
    engine = Engine("cpu")
    with pytest.raises(ValueError):
        engine.map(lambda a, b: (_ for _ in ()).throw(ValueError("bug")), 3, section="gradients")


def test_map_sum_and_progress():
    engine = Engine("cpu", batch_size=3)
    seen = []
    total = engine.map_sum(lambda a, b: torch.arange(a, b).sum(), 10, section="gradients",
                           progress=lambda f, m: seen.append(f), message="x")
    assert int(total) == sum(range(10))
    assert seen[-1] == 1.0 and seen == sorted(seen)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="autocast applies on CUDA only")
def test_fp32_section_inside_map_really_runs_in_fp32():
    engine = Engine("cuda")
    a = torch.randn(8, 8, device="cuda")

    def fn(start, stop):
        half = (a @ a).dtype
        with engine.precision("accumulation"):
            full = (a @ a).dtype
        return torch.tensor([half != torch.float32, full == torch.float32])

    assert bool(engine.map_cat(fn, 1, section="gradients").all())
