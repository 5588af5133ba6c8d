"""Image decoding: every format, mode and failure a user upload can bring."""
import io

import numpy as np
import pytest
from PIL import Image

from xai_core.errors import ImageError, ParameterError
from xai_core.imageio import image_hash, list_samples, load_image, load_sample

SIZE = (48, 32)  # width, height; not square so that rotations are visible


def _gradient_rgb() -> Image.Image:
    x = np.linspace(0, 255, SIZE[0], dtype=np.uint8)
    y = np.linspace(0, 255, SIZE[1], dtype=np.uint8)
    arr = np.stack([np.broadcast_to(x, SIZE[::-1]), np.broadcast_to(y[:, None], SIZE[::-1]),
                    np.full(SIZE[::-1], 128, np.uint8)], axis=-1)
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt, lossless", [("PNG", True), ("BMP", True), ("TIFF", True),
                                           ("WEBP", False), ("JPEG", False)])
def test_formats_decode_to_the_same_rgb_pixels(fmt, lossless):
    original = _gradient_rgb()
    kwargs = {"lossless": True} if fmt == "WEBP" else {"quality": 95} if fmt == "JPEG" else {}
    img = load_image(_encode(original, fmt, **kwargs))
    assert img.mode == "RGB" and img.size == SIZE
    error = np.abs(np.asarray(img, np.int16) - np.asarray(original, np.int16))
    assert error.max() == 0 if (lossless or fmt == "WEBP") else error.mean() < 3


def test_path_bytes_and_file_object_give_the_same_image(tmp_path):
    data = _encode(_gradient_rgb(), "PNG")
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    stream = io.BytesIO(data)
    stream.read()  # a file object already read to its end (as after a previous upload read)
    hashes = {image_hash(load_image(s)) for s in (path, str(path), data, stream)}
    assert len(hashes) == 1


def test_exif_orientation_is_applied():
    original = _gradient_rgb()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation "rotate 90° clockwise to display"
    img = load_image(_encode(original, "JPEG", quality=95, exif=exif.tobytes()))
    assert img.size == (SIZE[1], SIZE[0])
    expected = original.transpose(Image.Transpose.ROTATE_270)  # 90° clockwise
    assert np.abs(np.asarray(img, np.int16) - np.asarray(expected, np.int16)).mean() < 3


def test_rgba_is_composited_on_white():
    arr = np.zeros((*SIZE[::-1], 4), np.uint8)
    arr[..., 0] = 255           # red ...
    arr[:, : SIZE[0] // 2, 3] = 255  # ... opaque on the left, transparent on the right
    img = np.asarray(load_image(_encode(Image.fromarray(arr, "RGBA"), "PNG")))
    assert (img[:, : SIZE[0] // 2] == [255, 0, 0]).all()
    assert (img[:, SIZE[0] // 2:] == [255, 255, 255]).all()


def test_la_half_transparent_black_becomes_grey():
    la = Image.merge("LA", [Image.new("L", SIZE, 0), Image.new("L", SIZE, 128)])
    img = np.asarray(load_image(_encode(la, "PNG")))
    assert np.abs(img.astype(int) - 127).max() <= 1


def test_palette_with_transparency_uses_the_palette_colours():
    p = Image.new("P", SIZE, 0)
    p.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    p.paste(1, (0, 0, SIZE[0] // 2, SIZE[1]))
    img = np.asarray(load_image(_encode(p, "PNG", transparency=0)))
    assert (img[:, : SIZE[0] // 2] == [0, 255, 0]).all()   # palette index 1: green
    assert (img[:, SIZE[0] // 2:] == [255, 255, 255]).all()  # index 0 is transparent


def test_cmyk_is_converted():
    cmyk = Image.new("CMYK", SIZE, (0, 255, 255, 0))  # no cyan/black, full magenta+yellow: red
    img = np.asarray(load_image(_encode(cmyk, "TIFF")))
    assert (img == [255, 0, 0]).all()


def test_16_bit_grey_is_scaled_not_clipped():
    values = np.zeros(SIZE[::-1], np.uint16)
    values[:, :16] = 65535
    values[:, 16:32] = 32896  # 128 * 257
    img = np.asarray(load_image(_encode(Image.fromarray(values), "PNG")))
    assert (img[:, :16] == 255).all() and (img[:, 16:32] == 128).all() and (img[:, 32:] == 0).all()
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()


@pytest.mark.parametrize("mode, value", [("L", 200), ("1", 1)])
def test_grey_and_bilevel_become_rgb(mode, value):
    img = load_image(_encode(Image.new(mode, SIZE, value), "PNG"))
    assert img.mode == "RGB" and set(np.unique(np.asarray(img))) == {200 if mode == "L" else 255}


def test_gif_keeps_the_first_frame():
    frames = [Image.new("RGB", SIZE, c) for c in ((255, 0, 0), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    img = np.asarray(load_image(data))
    assert (img == [255, 0, 0]).all()


def test_too_many_pixels_is_refused_before_decoding():
    # A 1-bit PNG of 20000×20000 is a few kB of zlib data but 400 Mpx once decoded.
    bomb = _encode(Image.new("1", (20000, 20000)), "PNG", optimize=True)
    assert len(bomb) < 200_000
    with pytest.raises(ImageError, match="pixels"):
        load_image(bomb)
    with pytest.raises(ImageError, match="limit of 1,000 pixels"):
        load_image(_encode(_gradient_rgb(), "PNG"), max_pixels=1000)


def test_tiny_image_is_refused():
    with pytest.raises(ImageError, match="8×40 pixels"):
        load_image(_encode(Image.new("RGB", (8, 40)), "PNG"))
    assert load_image(_encode(Image.new("RGB", (8, 40)), "PNG"), min_side=8).size == (8, 40)


@pytest.mark.parametrize("data", [b"", b"%PDF-1.4 not an image at all", b"\x00" * 1000])
def test_non_images_are_refused(data):
    with pytest.raises(ImageError):
        load_image(data)


def test_truncated_jpeg_is_refused():
    data = _encode(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG", quality=95)
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")


def test_image_hash_depends_on_pixels_and_size():
    img = _gradient_rgb()
    changed = img.copy()
    changed.putpixel((0, 0), (1, 2, 3))
    # Same bytes, other shape: the size must be part of the key.
    reshaped = Image.frombytes("RGB", (SIZE[1], SIZE[0]), img.tobytes())
    hashes = [image_hash(i) for i in (img, changed, reshaped)]
    assert len(set(hashes)) == 3
    assert image_hash(img.copy()) == hashes[0]


def test_samples_load_as_rgb_images():
    names = list_samples()
    assert "cat" in names and len(names) >= 3
    for name in names:
        img = load_sample(name)
        assert img.mode == "RGB" and max(img.size) <= 512 and min(img.size) >= 224
    with pytest.raises(ParameterError, match="cat"):
        load_sample("no such photo")
