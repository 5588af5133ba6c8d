"""The one place where images enter the program: decoding, validation, hashing, samples.

Every image (upload, CLI path, bundled sample) goes through ``load_image``, which returns
an 8-bit RGB PIL image whatever the file held, or raises ``ImageError`` with one sentence
the user can act on.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ParameterError

ImageSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO]

MAX_PIXELS = 64_000_000  # 8000×8000: well above phone photos, far below a decompression bomb
MIN_SIDE = 16            # smaller images carry too little for an explanation to mean anything
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")  # JPEG includes phones' MPO files
SAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "samples"  # package data
_SAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png")
_WHITE = (255, 255, 255, 255)


def _read_bytes(source: ImageSource) -> tuple[bytes, str]:
    """The raw file content and a name for messages."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "The uploaded data"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"Image file {path} does not exist.")
        return path.read_bytes(), path.name
    if hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)
        return source.read(), os.path.basename(str(getattr(source, "name", ""))) or "The uploaded file"
    raise ImageError(f"Cannot read an image from a {type(source).__name__}.")


def _open(data: bytes, label: str, max_pixels: int) -> Image.Image:
    """Open (header only), refuse oversized images, then decode the first frame."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{label} has too many pixels to be decoded safely.") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image in a supported format "
                         f"({', '.join(FORMATS)}).") from None
    except Exception:  # a plugin choking on a malformed header
        raise ImageError(f"{label} is corrupt: its header cannot be read.") from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(f"{label} is {width}×{height} pixels, more than the limit of "
                         f"{max_pixels:,} pixels.")
    try:
        img.seek(0)  # first frame of an animation
        img.load()
    except Exception:  # truncated data raises OSError; other decoders raise SyntaxError/ValueError
        raise ImageError(f"{label} is truncated or corrupt and cannot be decoded.") from None
    return img


def _high_depth_to_8bit(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float grey images, scaled (not clipped) to 0..255."""
    values = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and values.min() >= 0 and values.max() > 255
                                       and values.max() <= 65535):
        scaled = values / 257.0  # 65535 -> 255
    elif img.mode == "F" and values.min() >= 0 and values.max() <= 1:
        scaled = values * 255.0
    elif values.min() >= 0 and values.max() <= 255:
        scaled = values
    else:  # unknown range: stretch what is there
        low, high = values.min(), values.max()
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.round(scaled).astype(np.uint8), "L")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _high_depth_to_8bit(img)
    if img.mode in ("P", "PA") or "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        background = Image.new("RGBA", img.size, _WHITE)
        background.alpha_composite(img.convert("RGBA"))
        img = background
    return img.convert("RGB")


def load_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> Image.Image:
    """Decode ``source`` (path, bytes or binary file) into an upright 8-bit RGB image.

    The EXIF orientation is applied, transparency is composited on white, 16-bit images are
    scaled to 8 bits, and only the first frame of an animation is kept.
    """
    data, label = _read_bytes(source)
    if not data:
        raise ImageError(f"{label} is empty.")
    img = _open(data, label, max_pixels)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block should not cost the user the image itself
        pass
    try:
        rgb = _to_rgb(img)
    except Exception:  # an exotic mode PIL cannot convert (e.g. LAB)
        raise ImageError(f"{label} uses an image mode ({img.mode}) that cannot be converted to RGB.") from None
    if min(rgb.size) < min_side:
        raise ImageError(f"{label} is only {rgb.width}×{rgb.height} pixels; both sides must be at "
                         f"least {min_side} pixels.")
    return rgb


def image_hash(img: Image.Image) -> str:
    """A stable key for caches: depends on the pixels, the size and the mode only."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{img.mode}:{img.width}x{img.height}:".encode())
    digest.update(img.tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------- samples
def list_samples() -> list[str]:
    """Names of the bundled sample photos (see xai_core/assets/samples/ATTRIBUTION.md)."""
    return sorted(p.stem for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in _SAMPLE_SUFFIXES)


def load_sample(name: str) -> Image.Image:
    stem = Path(name).stem
    matches = [p for p in SAMPLES_DIR.iterdir() if p.stem == stem and p.suffix.lower() in _SAMPLE_SUFFIXES]
    if not matches:
        raise ParameterError(f"No sample photo is named '{name}'; choose one of {', '.join(list_samples())}.")
    return load_image(matches[0])
