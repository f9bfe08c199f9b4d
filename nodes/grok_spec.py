"""What fal's Grok Imagine endpoints accept: endpoints, fields, choices, sizes. One table for every node."""

from __future__ import annotations

import math

APP = "xai/grok-imagine-image"
TEXT_TO_IMAGE_ENDPOINT = APP
QUALITY_TEXT_TO_IMAGE_ENDPOINT = f"{APP}/quality/text-to-image"
EDIT_ENDPOINT = f"{APP}/edit"
QUALITY_EDIT_ENDPOINT = f"{APP}/quality/edit"
V2_TEXT_TO_IMAGE_ENDPOINT = f"{APP}/v2.0/text-to-image"
V2_EDIT_ENDPOINT = f"{APP}/v2.0/edit"

TIERS: tuple[str, ...] = ("standard", "quality")
DEFAULT_TIER = "standard"
QUALITIES: tuple[str, ...] = ("medium", "low")  # Grok Imagine 2.0's `quality` field
DEFAULT_QUALITY = "medium"

# (kind, tier) -> endpoint, for the nodes of the first model; 2.0 has one endpoint per kind.
ENDPOINT_BY_TIER: dict[str, dict[str, str]] = {
    "text-to-image": {"standard": TEXT_TO_IMAGE_ENDPOINT, "quality": QUALITY_TEXT_TO_IMAGE_ENDPOINT},
    "edit": {"standard": EDIT_ENDPOINT, "quality": QUALITY_EDIT_ENDPOINT},
}
V2_ENDPOINTS: dict[str, str] = {"text-to-image": V2_TEXT_TO_IMAGE_ENDPOINT, "edit": V2_EDIT_ENDPOINT}
# Every endpoint of the family, in the Result node's order (new ones only at the end). Their requests share
# one queue path (owner/app), so any of them finds a request of any other.
ENDPOINTS: tuple[str, ...] = (TEXT_TO_IMAGE_ENDPOINT, QUALITY_TEXT_TO_IMAGE_ENDPOINT, EDIT_ENDPOINT,
                              QUALITY_EDIT_ENDPOINT, V2_TEXT_TO_IMAGE_ENDPOINT, V2_EDIT_ENDPOINT)
EDIT_ENDPOINTS = frozenset({EDIT_ENDPOINT, QUALITY_EDIT_ENDPOINT, V2_EDIT_ENDPOINT})

# fal's 13 values, in fal's order (fal-js endpoints.ts, XAIImageInput.aspect_ratio).
ASPECT_RATIOS: tuple[str, ...] = (
    "2:1", "20:9", "19.5:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:19.5", "9:20", "1:2",
)
DEFAULT_ASPECT_RATIO = "1:1"
EDIT_ASPECT_RATIOS: tuple[str, ...] = ("auto", *ASPECT_RATIOS)  # auto keeps the first image's shape
DEFAULT_EDIT_ASPECT_RATIO = "auto"
RESOLUTIONS: tuple[str, ...] = ("1k", "2k")
DEFAULT_RESOLUTION = "1k"
OUTPUT_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp")
DEFAULT_OUTPUT_FORMAT = "jpeg"
MAX_IMAGES_PER_REQUEST = 4  # fal's limit for one request
MAX_IMAGES_PER_NODE = 16  # above 4 the node sends ceil(n / 4) requests at once
MAX_REFERENCE_IMAGES = 3
MAX_PROMPT_CHARS = 8000  # fal's schema for every Grok Imagine endpoint (XAIImageInput, XAIImageEditInput, 2.0)

# Output sizes (width, height) at 1k as xAI documents them for Grok Imagine (listed on Runware's page for
# the same xAI model); the portrait ratios are these turned. At 2k each side is assumed doubled (no
# published table found).
IMAGE_SIZES_1K: dict[str, tuple[int, int]] = {
    "2:1": (1408, 704), "20:9": (1280, 576), "19.5:9": (1248, 576), "16:9": (1408, 768), "4:3": (1280, 896),
    "3:2": (1296, 864), "1:1": (1024, 1024),
}
LONG_SIDE = {"1k": 1024, "2k": 2048}


def documented_image_size(aspect_ratio: str, resolution: str) -> tuple[int, int] | None:
    """The (width, height) Grok Imagine is documented to return for these settings; None for "auto"."""
    width, _, height = aspect_ratio.partition(":")
    size = IMAGE_SIZES_1K.get(aspect_ratio)
    if size is None and f"{height}:{width}" in IMAGE_SIZES_1K:
        size = IMAGE_SIZES_1K[f"{height}:{width}"][::-1]
    if size is None or resolution not in RESOLUTIONS:
        return None
    scale = 2 if resolution == "2k" else 1
    return size[0] * scale, size[1] * scale


def size_for_shape(width: int, height: int, resolution: str) -> tuple[int, int]:
    """The size an `auto` edit of a width x height reference is expected to have: the longer side at
    the resolution's length, the other in proportion (rounded to 8)."""
    long_side = LONG_SIDE.get(resolution, 1024)
    if width >= height:
        return long_side, max(8, 8 * round(long_side * height / width / 8))
    return max(8, 8 * round(long_side * width / height / 8)), long_side


def request_sizes(num_images: int) -> list[int]:
    """How many images each of the node's requests asks for: at most four per request."""
    requests = math.ceil(num_images / MAX_IMAGES_PER_REQUEST)
    return [min(MAX_IMAGES_PER_REQUEST, num_images - i * MAX_IMAGES_PER_REQUEST) for i in range(requests)]
