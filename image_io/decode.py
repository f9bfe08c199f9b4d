"""Decode image bytes with Pillow and build ComfyUI's IMAGE: float32 [batch, height, width, 3] in 0..1.

Mixed sizes in one result: every image is fitted (scaled to cover, then centre-cropped) to the
size of the first image, so the batch is always one tensor and no image is distorted.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image, ImageOps

from ..fal_transport.errors import ResultError

log = logging.getLogger("grok_imagine_fal")

MAX_PIXELS = 50_000_000  # 50 MP per image: far above 2k outputs, far below a decompression bomb


class ImageDecodeError(ResultError):
    """Bytes that should be an image are not one (or not one this pack will load)."""


def decode_image(data: bytes, *, index: int = 0, request_id: str | None = None) -> tuple[np.ndarray, str]:
    """(RGB uint8 array [H, W, 3] with EXIF orientation applied, Pillow's name of the file format)."""
    label = f"Result image {index + 1}"
    too_large = (
        f"{label} claims more than {MAX_PIXELS // 1_000_000} MP (the MP limit; a decompression bomb or a "
        "broken file), so it was not decoded."
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(too_large, request_id=request_id)
            image.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(too_large, request_id=request_id) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        kind = "truncated or corrupt" if data[:4] in (b"\xff\xd8\xff\xe0", b"\x89PNG", b"RIFF") else "not an image"
        raise ImageDecodeError(
            f"{label} is {kind} ({len(data)} bytes) and could not be decoded. Load it again later with the "
            "Grok Imagine Result node.",
            request_id=request_id,
        ) from exc
    file_format = (image.format or "").lower()
    image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image), file_format


def fit_to(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to cover width x height and centre-crop, keeping the aspect ratio."""
    fitted = ImageOps.fit(Image.fromarray(array), (width, height), method=Image.Resampling.LANCZOS)
    return np.asarray(fitted)


def to_image_batch(arrays: list[np.ndarray]) -> torch.Tensor:
    """Stack RGB uint8 arrays into one float32 [B, H, W, 3] tensor in 0..1 (first image's size wins).

    Each image is converted in a single pass, the images in parallel: filling a fresh output buffer
    is dominated by first-touch page faults, which then spread over the cores. (A numpy-allocated
    buffer is faster while the OS has huge pages free, but stalls for hundreds of milliseconds when it
    must compact memory to find them; this way is predictable.)
    """
    if not arrays:
        raise ValueError("to_image_batch needs at least one image")
    height, width = arrays[0].shape[:2]
    batch = torch.empty((len(arrays), height, width, 3), dtype=torch.float32)
    view = batch.numpy()

    def convert(i: int) -> None:
        array = arrays[i]
        if array.shape[:2] != (height, width):
            log.warning(
                "image %d is %dx%d, the first is %dx%d: fitted (scaled and centre-cropped) to the first",
                i + 1, array.shape[1], array.shape[0], width, height,
            )
            array = fit_to(array, width, height)
        convert_into(view[i], array)

    if len(arrays) == 1:
        convert(0)
    else:
        list(_converter().map(convert, range(len(arrays))))
    return batch


_SCALE = np.float32(1.0 / 255.0)


def convert_into(out: np.ndarray, array: np.ndarray) -> None:
    """One RGB uint8 image into a float32 slot in 0..1, in a single pass."""
    np.multiply(array, _SCALE, out=out)


_pool: ThreadPoolExecutor | None = None


def _converter() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)),
                                   thread_name_prefix="grok-imagine-convert")
    return _pool
