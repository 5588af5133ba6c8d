"""The precision policy: on the CPU every section is float32; on CUDA the mixed sections run in
bf16/fp16 and still give maps that correlate with float32 at r ≥ 0.99, for every method."""
import numpy as np
import pytest
import torch

from xai_core import precision
from xai_core.engine import Engine
from xai_core.methods import METHODS, explain
from xai_core.models import build_random

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="reduced precision applies on CUDA only")


def test_every_section_is_float32_on_the_cpu():
    a = torch.randn(4, 4)
    for name in precision.SECTIONS:
        with precision.section(torch.device("cpu"), name):
            assert (a @ a).dtype == torch.float32


def test_an_unknown_section_is_refused():
    with pytest.raises(ValueError, match="Unknown precision section"):
        precision.section(torch.device("cpu"), "everything")


@cuda
def test_fp32_sections_switch_autocast_off_inside_mixed_ones():
    a = torch.randn(8, 8, device="cuda")
    with precision.section(torch.device("cuda"), "gradients"):
        assert (a @ a).dtype == precision.half_dtype()
        with precision.section(torch.device("cuda"), "path_integral"):
            assert (a @ a).dtype == torch.float32


@cuda
@pytest.mark.parametrize("name", list(METHODS))
def test_mixed_precision_maps_correlate_with_float32(name):
    model = build_random("resnet18", num_classes=10, device="cuda")
    x = torch.randn(3, 96, 96, generator=torch.Generator().manual_seed(0))
    params = {"smoothgrad": {"samples": 8}, "rise": {"masks": 500}, "ig": {"steps": 16}}.get(name, {})
    [mixed] = explain(model, x, name, 3, params, engine=Engine("cuda"))
    [full] = explain(model, x, name, 3, params, engine=Engine("cuda", autocast=False))
    r = np.corrcoef(mixed.map.ravel(), full.map.ravel())[0, 1]
    assert r >= 0.99, f"{name}: r = {r:.4f}"
