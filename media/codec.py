"""Decode image bytes with Pillow and write them into ComfyUI's IMAGE: float32 [batch, height, width, 3].

Pixels go from Pillow's decoded image straight into their float32 slot of the batch, a strip of
rows at a time (`write_into`), so no full-size intermediate copy of an image is ever made: no uint8
array, no `tobytes()` of the whole image. Each strip's temporaries are small and reused by the
allocator, so decoding does not pay for fresh memory pages (which, for a 2k image, cost more than
the decode itself).

Mixed sizes in one result: every image is fitted (scaled to cover, then centre-cropped) to the
size of the first image, so the batch is always one tensor and no image is distorted.

16-bit grey (what Pillow makes of a 16-bit grey PNG: mode I;16, or I on older Pillow) is read as
value / 65535 into all three channels, as ComfyUI's own image loader reads it; Pillow's conversion to
RGB would clip it to 8 bits (anything above 255 becoming white).

Encoding goes the other way, for input images sent to fal (`encode_png`): a PNG with low compression,
which costs far less than the upload it feeds.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from ..fal_transport.errors import ResultError

log = logging.getLogger("grok_imagine_fal")

MAX_PIXELS = 50_000_000  # 50 MP per image: far above 2k outputs, far below a decompression bomb
# Only the formats fal returns (GIF is harmless): no other Pillow plugin ever sees fal's bytes (EPS, for
# one, would run Ghostscript where it is installed).
FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
STRIP_BYTES = 512 * 1024  # RGB bytes converted per step of `write_into`: cache-sized, reused by malloc
GREY_16 = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # Pillow's modes for 16-bit grey

_MAX = np.float32(255.0)


class ImageDecodeError(ResultError):
    """Bytes that should be an image are not one (or not one this pack will load)."""


@dataclass(frozen=True)
class DecodedImage:
    """One decoded result image: RGB (16-bit grey: mode F, 0..1), EXIF orientation applied, pixels loaded."""

    image: Image.Image
    file_format: str  # Pillow's name of the file format, lower case: "jpeg", "png", "webp", ...

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def decode_image(data: bytes, *, index: int = 0, request_id: str | None = None) -> DecodedImage:
    """Decode one result image; refuses bombs (more than `MAX_PIXELS`) and anything that is not an image."""
    label = f"Result image {index + 1}"
    too_large = (
        f"{label} claims more than {MAX_PIXELS // 1_000_000} MP (the MP limit; a decompression bomb or a "
        "broken file), so it was not decoded."
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(too_large, request_id=request_id)
            image.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(too_large, request_id=request_id) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        known = data[:4] in (b"\xff\xd8\xff\xe0", b"\x89PNG", b"RIFF")
        kind = "truncated or corrupt" if known else "not an image fal makes (JPEG, PNG or WebP)"
        raise ImageDecodeError(
            f"{label} is {kind} ({len(data)} bytes) and could not be decoded. Load it again later "
            "by its request id.",
            request_id=request_id,
        ) from exc
    file_format = (image.format or "").lower()
    image = _upright(image)
    if image.mode in GREY_16:
        image = _grey_as_float(image)
    elif image.mode != "RGB":
        image = image.convert("RGB")
    return DecodedImage(image, file_format)


def _grey_as_float(image: Image.Image) -> Image.Image:
    """16-bit grey as a mode F image of value / 65535 (out of range values of mode I clipped)."""
    values = np.array(image, dtype=np.float32)
    np.clip(values, 0, 65535, out=values)
    np.divide(values, np.float32(65535), out=values)
    return Image.fromarray(values)


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; in place (no copy of an upright image) on Pillow >= 9.4."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except TypeError:  # Pillow < 9.4 has no in_place
        return ImageOps.exif_transpose(image)
    return image


def fit_to(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover width x height and centre-crop, keeping the aspect ratio."""
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS)


def write_into(out: np.ndarray, image: Image.Image, *, index: int = 0, rows: Any = None) -> None:
    """Write an RGB image into a float32 [H, W, 3] slot as values in 0..1, a strip of rows at a time (a mode F
    image, already 0..1, into all three channels); `rows` (for an RGB image of the slot's size: anything with
    `update(bytes)`) is fed its uint8 rows on the way.

    An image of another size than the slot is fitted to it first (with a warning in the log)."""
    height, width = out.shape[:2]
    if image.size != (width, height):
        log.warning(
            "image %d is %dx%d, the first is %dx%d: fitted (scaled and centre-cropped) to the first",
            index + 1, image.width, image.height, width, height,
        )
        image = fit_to(image, width, height)
    step = max(1, STRIP_BYTES // (width * 3))
    for top in range(0, height, step):
        bottom = min(height, top + step)
        strip = image.crop((0, top, width, bottom)).tobytes()
        if rows is not None:
            rows.update(strip)
        target = out[top:bottom]
        if image.mode == "F":
            np.copyto(target, np.frombuffer(strip, np.float32).reshape(bottom - top, width, 1))
            continue
        # Cast, then divide in place: two vectorised passes over cache-resident data, about twice as fast
        # as one casting divide. Divided, not multiplied by 1/255, so every value is bit-identical to
        # ComfyUI's own image loaders (`array.astype(np.float32) / 255.0`).
        np.copyto(target, np.frombuffer(strip, np.uint8).reshape(bottom - top, width, 3), casting="unsafe")
        np.divide(target, _MAX, out=target)


def encode_png(image: torch.Tensor) -> bytes:
    """One image [H, W, C] float in 0..1 (C = 1, 3 or 4) as a PNG file, quickly (low compression)."""
    array = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if array.shape[-1] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
