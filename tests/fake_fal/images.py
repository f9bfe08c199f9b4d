"""The fake fal's image endpoints: what each accepts, the sizes it makes, and the images it serves.

Endpoints (`ENDPOINTS`): ``xai/grok-imagine-image``, ``xai/grok-imagine-image/quality/text-to-image``,
``xai/grok-imagine-image/edit``, ``xai/grok-imagine-image/quality/edit`` and Grok Imagine 2.0's
``xai/grok-imagine-image/v2.0/text-to-image`` and ``xai/grok-imagine-image/v2.0/edit`` (`V2_ENDPOINTS`).
`TEXT_ENDPOINTS` / `EDIT_ENDPOINTS` split them by kind.

A submit body is validated (`validate_arguments`; 422 ``{"detail": [{"loc": ["body", FIELD], "msg",
"type"}]}``): ``prompt`` (required, non-blank; at most 8,000 characters on every endpoint, as fal's schema
says, else type ``string_too_long``), ``num_images`` 1..4, ``aspect_ratio`` (see `ASPECT_RATIOS`; the edit
endpoints also accept ``auto``, their default), ``resolution`` 1k|2k, ``output_format`` jpeg|png|webp,
``sync_mode`` bool, on the edit endpoints ``image_urls`` (1..3 http(s) URLs or data URIs), and on the 2.0
endpoints only ``quality`` low|medium (default medium; kept in `Job.quality`). Any other field, ``quality``
on the older endpoints included, is refused with type ``extra_forbidden`` (stricter than fal on purpose, so
stray fields are caught).

The result of an image job: ``{"images": [{url, content_type, file_name, width, height}], "revised_prompt":
"Revised: <prompt>"}``. Image N is served at ``BASE/files/ID/N.ext`` (no auth; whether one was sent is
recorded): a real Pillow image of `fake_image_size` in the requested format whose pixel (0, 0) has red
channel ``40 * N + 20`` (`index_colour`, `render_image`), so order is checkable. Sync-mode results carry
data URIs instead.

`fake_image_size` is a fixed table: at 1k the sizes xAI documents for Grok Imagine
(as listed by Runware's model page, which serves the same xAI model), at 2k each side doubled (an
assumption: no published 2k table was found)::

    ratio    1k           2k            ratio    1k           2k
    2:1      1408 x 704   2816 x 1408   1:2      704 x 1408   1408 x 2816
    20:9     1280 x 576   2560 x 1152   9:20     576 x 1280   1152 x 2560
    19.5:9   1248 x 576   2496 x 1152   9:19.5   576 x 1248   1152 x 2496
    16:9     1408 x 768   2816 x 1536   9:16     768 x 1408   1536 x 2816
    4:3      1280 x 896   2560 x 1792   3:4      896 x 1280   1792 x 2560
    3:2      1296 x 864   2592 x 1728   2:3      864 x 1296   1728 x 2592
    1:1      1024 x 1024  2048 x 2048   auto     square, but a job uses its first input
                                                 image's shape when it can read it (the longer
                                                 side 1024 or 2048, the other rounded to 8)
"""

from __future__ import annotations

import io
import random
import struct
import threading
import zlib
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "APP",
    "ASPECT_RATIOS",
    "EDIT_ENDPOINTS",
    "ENDPOINTS",
    "TEXT_ENDPOINTS",
    "V2_ENDPOINTS",
    "fake_image_size",
    "index_colour",
    "index_from_colour",
    "render_image",
    "validate_arguments",
]

APP = "xai/grok-imagine-image"
V2_ENDPOINTS = (f"{APP}/v2.0/text-to-image", f"{APP}/v2.0/edit")  # Grok Imagine 2.0
TEXT_ENDPOINTS = (APP, f"{APP}/quality/text-to-image", V2_ENDPOINTS[0])
EDIT_ENDPOINTS = (f"{APP}/edit", f"{APP}/quality/edit", V2_ENDPOINTS[1])
ENDPOINTS = (*TEXT_ENDPOINTS[:2], *EDIT_ENDPOINTS[:2], *V2_ENDPOINTS)  # the older four first, as before

_LANDSCAPE = ("2:1", "20:9", "19.5:9", "16:9", "4:3", "3:2")
ASPECT_RATIOS = (*_LANDSCAPE, "1:1", "2:3", "3:4", "9:16", "9:19.5", "9:20", "1:2")
RESOLUTIONS = ("1k", "2k")
OUTPUT_FORMATS = ("jpeg", "png", "webp")
LONG_SIDE = {"1k": 1024, "2k": 2048}
MAX_NUM_IMAGES = 4
MAX_IMAGE_URLS = 3
QUALITIES = ("low", "medium")  # Grok Imagine 2.0 only
DEFAULT_QUALITY = "medium"
MAX_PROMPT_CHARS = 8000
BOMB_SIDE = 30000


def _round8(value: float) -> int:
    return max(8, 8 * int(value / 8 + 0.5))


def size_for_shape(width: float, height: float, resolution: str) -> tuple[int, int]:
    """(width, height) of an image of shape `width:height` at `resolution` (the table's rule)."""
    long_side = LONG_SIDE[resolution]
    if width >= height:
        return long_side, _round8(long_side * height / width)
    return _round8(long_side * width / height), long_side


SIZES_1K = {
    "2:1": (1408, 704), "20:9": (1280, 576), "19.5:9": (1248, 576), "16:9": (1408, 768), "4:3": (1280, 896),
    "3:2": (1296, 864), "1:1": (1024, 1024),
}


def fake_image_size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """(width, height) the fake generates; see the table in the module docstring.

    "auto" gives a square here; a job with "auto" uses its first input image's shape when the
    fake can read it (a data URI or a file uploaded to the fake).
    """
    if resolution not in LONG_SIDE:
        raise ValueError(f"unknown resolution {resolution!r}")
    if aspect_ratio == "auto":
        return LONG_SIDE[resolution], LONG_SIDE[resolution]
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"unknown aspect ratio {aspect_ratio!r}")
    width, _, height = aspect_ratio.partition(":")
    landscape = SIZES_1K.get(aspect_ratio) or SIZES_1K[f"{height}:{width}"][::-1]
    scale = 2 if resolution == "2k" else 1
    return landscape[0] * scale, landscape[1] * scale


def index_colour(index: int) -> tuple[int, int, int]:
    """RGB of the top half of image `index` (so of pixel (0, 0)): red encodes the index."""
    return (40 * index + 20) % 256, 96, (200 - 40 * index) % 256


def index_from_colour(red: int) -> int:
    """The image index whose pixel (0, 0) has this red value (tolerant of JPEG noise)."""
    return round((red - 20) / 40)


_image_cache: dict[tuple[int, int, str, int, bool], bytes] = {}
_image_cache_lock = threading.Lock()
_bomb_cache: list[bytes] = []


def _photo_like(width: int, height: int, index: int) -> Image.Image:
    """Smooth colour fields plus grain: a photograph's detail (about 300 KB as a 1k JPEG, like Grok's), far
    slower to decode and to encode than the flat images."""
    rng = np.random.default_rng(index)
    fields = Image.fromarray(rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8))
    grain = Image.fromarray(rng.integers(0, 40, (height, width, 3), dtype=np.uint8))
    return Image.blend(fields.resize((width, height), Image.Resampling.BICUBIC), grain, 0.15)


def render_image(width: int, height: int, output_format: str, index: int, photo_like: bool = False) -> bytes:
    """Encoded image N: top half solid `index_colour(N)`, bottom half a green ramp (`photo_like`: a textured
    picture instead). Cached."""
    key = (width, height, output_format, index, photo_like)
    with _image_cache_lock:
        cached = _image_cache.get(key)
        if cached is None:
            red, green, blue = index_colour(index)
            image = Image.new("RGB", (width, height), (red, green, blue))
            top = height // 2
            if photo_like:
                image = _photo_like(width, height, index)
            elif height - top > 0:
                band_size = (width, height - top)
                ramp = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize(band_size)
                band = Image.merge(
                    "RGB", (Image.new("L", band_size, red), ramp, Image.new("L", band_size, blue))
                )
                image.paste(band, (0, top))
            buffer = io.BytesIO()
            if output_format == "jpeg":
                image.save(buffer, "JPEG", quality=90)
            elif output_format == "png":
                image.save(buffer, "PNG", compress_level=1)
            elif output_format == "webp":
                image.save(buffer, "WEBP", quality=85)
            else:
                raise ValueError(f"unknown output format {output_format!r}")
            cached = _image_cache[key] = buffer.getvalue()
    return cached


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit greyscale PNG of side x side pixels (about 110 KB for 30000). Cached."""
    with _image_cache_lock:
        if not _bomb_cache or side != BOMB_SIDE:
            row = b"\x00" + bytes((side + 7) // 8)  # filter byte + one row of black pixels
            compressor = zlib.compressobj(6)
            block = row * 256
            parts = [compressor.compress(block) for _ in range(side // 256)]
            parts += [compressor.compress(row * (side % 256)), compressor.flush()]
            ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
            png = (
                b"\x89PNG\r\n\x1a\n"
                + _png_chunk(b"IHDR", ihdr)
                + _png_chunk(b"IDAT", b"".join(parts))
                + _png_chunk(b"IEND", b"")
            )
            if side != BOMB_SIDE:
                return png
            _bomb_cache.append(png)
        return _bomb_cache[0]



def corrupt_bytes(index: int) -> bytes:
    """What the ``image_corrupt`` fault serves as image `index`: no image at all."""
    return b"NOT AN IMAGE\n" + random.Random(index).randbytes(2048)


def image_shape(data: bytes) -> tuple[int, int] | None:
    """(width, height) of an image, or None when Pillow cannot read it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # any unreadable input: the caller falls back to square
        return None


def _literal_message(choices: tuple[str, ...]) -> str:
    quoted = [f"'{c}'" for c in choices]
    return f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"


def validate_arguments(endpoint: str, body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(normalised arguments, 422 error details) for a submit body."""
    errors: list[dict[str, Any]] = []

    def error(loc: list[Any], msg: str, type_: str) -> None:
        errors.append({"loc": ["body", *loc], "msg": msg, "type": type_})

    if not isinstance(body, dict):
        error([], "Input should be a valid dictionary or object", "model_attributes_type")
        return {}, errors
    edit = endpoint in EDIT_ENDPOINTS
    v2 = endpoint in V2_ENDPOINTS
    args: dict[str, Any] = {}

    prompt = body.get("prompt")
    if "prompt" not in body:
        error(["prompt"], "Field required", "missing")
    elif not isinstance(prompt, str):
        error(["prompt"], "Input should be a valid string", "string_type")
    elif not prompt.strip():
        error(["prompt"], "String should have at least 1 character", "string_too_short")
    elif len(prompt) > MAX_PROMPT_CHARS:
        error(["prompt"], f"String should have at most {MAX_PROMPT_CHARS} characters", "string_too_long")
    args["prompt"] = prompt

    num_images = body.get("num_images", 1)
    if not isinstance(num_images, int) or isinstance(num_images, bool):
        error(["num_images"], "Input should be a valid integer", "int_type")
    elif num_images < 1:
        error(["num_images"], "Input should be greater than or equal to 1", "greater_than_equal")
    elif num_images > MAX_NUM_IMAGES:
        error(["num_images"], f"Input should be less than or equal to {MAX_NUM_IMAGES}", "less_than_equal")
    args["num_images"] = num_images

    ratios = ("auto", *ASPECT_RATIOS) if edit else ASPECT_RATIOS
    for name, choices, default in (
        ("aspect_ratio", ratios, "auto" if edit else "1:1"),
        ("resolution", RESOLUTIONS, "1k"),
        ("output_format", OUTPUT_FORMATS, "jpeg"),
    ):
        value = body.get(name, default)
        if value not in choices:
            error([name], _literal_message(choices), "literal_error")
        args[name] = value

    sync_mode = body.get("sync_mode", False)
    if not isinstance(sync_mode, bool):
        error(["sync_mode"], "Input should be a valid boolean", "bool_type")
    args["sync_mode"] = sync_mode

    allowed = {"prompt", "num_images", "aspect_ratio", "resolution", "output_format", "sync_mode"}
    if v2:
        allowed.add("quality")
        quality = body.get("quality", DEFAULT_QUALITY)
        if quality not in QUALITIES:
            error(["quality"], _literal_message(QUALITIES), "literal_error")
        args["quality"] = quality
    if edit:
        allowed.add("image_urls")
        urls = body.get("image_urls")
        if "image_urls" not in body:
            error(["image_urls"], "Field required", "missing")
        elif not isinstance(urls, list):
            error(["image_urls"], "Input should be a valid list", "list_type")
        elif not urls:
            error(["image_urls"], "List should have at least 1 item after validation, not 0", "too_short")
        elif len(urls) > MAX_IMAGE_URLS:
            error(
                ["image_urls"],
                f"List should have at most {MAX_IMAGE_URLS} items after validation, not {len(urls)}",
                "too_long",
            )
        else:
            for i, url in enumerate(urls):
                if not isinstance(url, str):
                    error(["image_urls", i], "Input should be a valid string", "string_type")
                elif not url.startswith(("http://", "https://", "data:")):
                    error(
                        ["image_urls", i], "Value error, must be an http(s) URL or a data URI", "value_error"
                    )
        args["image_urls"] = urls if isinstance(urls, list) else []

    for name in body:
        if name not in allowed:
            error([name], "Extra inputs are not permitted", "extra_forbidden")
    return args, errors
