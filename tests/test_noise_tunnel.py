"""The noise tunnel composes with every gradient method: SmoothGrad of Guided Backprop, of
DeconvNet, of gradient × input and of IG equal Captum's ``NoiseTunnel`` over the same method,
draw for draw; the base's own parameters travel as ``base.NAME``."""
import copy
import warnings

import numpy as np
import pytest
import torch

from xai_core.errors import ParameterError
from xai_core.methods import METHODS, explain

TARGET = 3


def captum_reference(name: str, net):
    from captum.attr import Deconvolution, GuidedBackprop, InputXGradient, IntegratedGradients, Saliency
    return {"saliency": lambda: Saliency(net), "guided_backprop": lambda: GuidedBackprop(net),
            "deconvnet": lambda: Deconvolution(net), "grad_x_input": lambda: InputXGradient(net),
            "ig": lambda: IntegratedGradients(net)}[name]()


@pytest.mark.parametrize("base", ["guided_backprop", "deconvnet", "grad_x_input", "ig"])
def test_smoothgrad_over_a_method_equals_captums_noise_tunnel_over_it(resnet_random, image64, base):
    from captum.attr import NoiseTunnel
    warnings.filterwarnings("ignore", module="captum")
    x, net = image64, copy.deepcopy(resnet_random.module)  # Captum must not touch the shared model
    params = {"base": base, "samples": 3, "noise": 0.1, "seed": 9, "variant": "squared"}
    extra = {}
    if base == "ig":  # Captum's black baseline is a tensor; ours is the named replacement "black"
        params.update({"base.steps": 5, "base.rule": "riemann_middle"})
        extra = {"n_steps": 5, "method": "riemann_middle",
                 "baselines": resnet_random.normalized_constant(0.0).expand_as(x)[None]}
    [ours] = explain(resnet_random, x, "smoothgrad", TARGET, params)
    torch.manual_seed(9)  # Captum draws from the global generator: the same draws as ours
    theirs = NoiseTunnel(captum_reference(base, net)).attribute(
        x[None].clone(), nt_type="smoothgrad_sq", nt_samples=3, stdevs=float(0.1 * (x.max() - x.min())),
        target=TARGET, **extra)[0].detach().numpy()
    np.testing.assert_allclose(ours.attribution, theirs, rtol=1e-3, atol=1e-6 * np.abs(theirs).max())


def test_smoothgrad_with_no_noise_is_its_base(embedded, image64):
    [tunnel] = explain(embedded, image64, "smoothgrad", TARGET,
                       {"base": "ig", "samples": 2, "noise": 0.0, "base.steps": 6})
    [ig] = explain(embedded, image64, "ig", TARGET, {"steps": 6})
    np.testing.assert_allclose(tunnel.attribution, ig.attribution, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(tunnel.map, ig.attribution.sum(0), rtol=1e-4, atol=1e-6)


def test_every_method_with_a_batched_attribution_can_be_the_base():
    tunnel = METHODS["smoothgrad"]
    assert set(tunnel.params["base"].choices) == {m.name for m in METHODS.values() if m.composable}
    assert {"saliency", "guided_backprop", "deconvnet", "grad_x_input", "ig"} <= set(tunnel.params["base"].choices)


def test_base_parameters_are_validated_against_the_base():
    tunnel = METHODS["smoothgrad"]
    assert tunnel.parse_params({"base": "ig", "base.steps": "8"})["base_params"]["steps"] == 8
    with pytest.raises(ParameterError, match="steps"):
        tunnel.parse_params({"base": "saliency", "base.steps": 8})  # saliency has no steps
    with pytest.raises(ParameterError, match="outside"):
        tunnel.parse_params({"base": "ig", "base.steps": 10**7})
    with pytest.raises(ParameterError):
        METHODS["saliency"].parse_params({"base.steps": 8})
