"""The torch-only Gaussian blur equals torchvision's, whose kernel it copies."""
import pytest
import torch
from torchvision.transforms import functional as TF

from xai_core.blur import gaussian_blur


@pytest.mark.parametrize("sigma, side", [(0.5, 9), (1.7, 16), (4.0, 12), (10.0, 7)])
def test_gaussian_blur_equals_torchvision_including_the_kernel_clipped_to_the_image(sigma, side):
    x = torch.rand(2, 3, side, side + 3, generator=torch.Generator().manual_seed(0))
    radius = max(1, -(-3 * sigma // 1))
    size = int(min(2 * radius + 1, (side - 1) // 2 * 2 + 1))
    expected = TF.gaussian_blur(x, [size, size], [sigma, sigma])
    torch.testing.assert_close(gaussian_blur(x, sigma), expected, rtol=0, atol=1e-6)


def test_a_blurred_constant_image_stays_constant_and_an_impulse_spreads_symmetrically():
    constant = torch.full((1, 1, 11, 11), 0.3)
    torch.testing.assert_close(gaussian_blur(constant, 1.0), constant)
    impulse = torch.zeros(1, 1, 11, 11)
    impulse[..., 5, 5] = 1.0
    blurred = gaussian_blur(impulse, 1.0)[0, 0]
    torch.testing.assert_close(blurred, blurred.flip(0))
    torch.testing.assert_close(blurred, blurred.T)
    assert blurred.argmax() == 5 * 11 + 5 and blurred.sum().item() == pytest.approx(1.0)
