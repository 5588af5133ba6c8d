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
MAX_SIDE = 16_384        # a side longer than this is a strip, not a photo
MAX_ASPECT = 16          # wide panoramas pass; a 16×4,000,000 strip (its resize for a model: 12 Gpx) does not
DECODED_SIDE = 4096      # larger images are reduced while (JPEG) or right after decoding
MAX_FILE_BYTES = 256_000_000  # an uncompressed 8000×8000 RGB file (192 MB) fits; reading more is never needed
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")  # JPEG includes phones' MPO files
SAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "samples"  # package data
_SAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png")
_WHITE = (255, 255, 255, 255)


def _read_bytes(source: ImageSource) -> tuple[bytes, str]:
    """The raw file content and a name for messages; at most ``MAX_FILE_BYTES`` are read."""
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), "The uploaded data"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"Image file {path} does not exist.")
        with path.open("rb") as file:
            data, label = file.read(MAX_FILE_BYTES + 1), path.name
    elif hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)
        data = source.read(MAX_FILE_BYTES + 1)
        label = os.path.basename(str(getattr(source, "name", ""))) or "The uploaded file"
    else:
        raise ImageError(f"Cannot read an image from a {type(source).__name__}.")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{label} is larger than the limit of {MAX_FILE_BYTES:,} bytes.")
    return data, label


def _admit(width: int, height: int, label: str, max_pixels: int, min_side: int) -> None:
    """The one admission rule, applied to the header's size before anything is decoded."""
    short, long = min(width, height), max(width, height)
    if width * height > max_pixels:
        raise ImageError(f"{label} is {width}×{height} pixels, more than the limit of {max_pixels:,} pixels.")
    if short < min_side:
        raise ImageError(f"{label} is only {width}×{height} pixels; both sides must be at least "
                         f"{min_side} pixels.")
    if long > MAX_SIDE or long > MAX_ASPECT * short:
        raise ImageError(f"{label} is {width}×{height} pixels; each side may be at most {MAX_SIDE:,} pixels "
                         f"and the longer side at most {MAX_ASPECT} times the shorter.")


def _reduction(width: int, height: int) -> int:
    """The integer factor that brings the longer side down to ``DECODED_SIDE`` (1: keep)."""
    return -(-max(width, height) // DECODED_SIDE)


def _open(data: bytes, label: str, max_pixels: int, min_side: int) -> Image.Image:
    """Open (header only), refuse what the admission rule refuses, then decode the first frame; a
    large JPEG is decoded at a fraction of its size (DCT scaling) instead of in full."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{label} has too many pixels to be decoded safely (the limit is {max_pixels:,} "
                         "pixels).") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image in a supported format "
                         f"({', '.join(FORMATS)}).") from None
    except Exception:  # a plugin choking on a malformed header
        raise ImageError(f"{label} is corrupt: its header cannot be read.") from None
    width, height = img.size
    _admit(width, height, label, max_pixels, min_side)
    factor = _reduction(width, height)
    try:
        img.seek(0)  # first frame of an animation
        if factor > 1 and img.format in ("JPEG", "MPO"):
            img.draft(img.mode, (-(-width // factor), -(-height // factor)))
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

    The size read from the header is admitted (``_admit``: pixel count, each side, aspect ratio)
    before decoding; images with a side over ``DECODED_SIDE`` are reduced by an integer factor.
    The EXIF orientation is applied, transparency is composited on white, 16-bit images are
    scaled to 8 bits, and only the first frame of an animation is kept.
    """
    data, label = _read_bytes(source)
    if not data:
        raise ImageError(f"{label} is empty.")
    img = _open(data, label, max_pixels, min_side)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block should not cost the user the image itself
        pass
    try:
        rgb = _to_rgb(img)
    except Exception:  # an exotic mode PIL cannot convert (e.g. LAB)
        raise ImageError(f"{label} uses an image mode ({img.mode}) that cannot be converted to RGB.") from None
    factor = _reduction(*rgb.size)
    return rgb.reduce(factor) if factor > 1 else rgb


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
