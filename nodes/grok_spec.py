"""What fal's Grok Imagine endpoints accept, and what they cost. One table, served to the JS too."""

from __future__ import annotations

import math

TEXT_TO_IMAGE_ENDPOINT = "xai/grok-imagine-image"
QUALITY_TEXT_TO_IMAGE_ENDPOINT = "xai/grok-imagine-image/quality/text-to-image"
EDIT_ENDPOINT = "xai/grok-imagine-image/edit"
QUALITY_EDIT_ENDPOINT = "xai/grok-imagine-image/quality/edit"

TIERS: tuple[str, ...] = ("standard", "quality")
DEFAULT_TIER = "standard"
ENDPOINT_BY_TIER: dict[str, dict[str, str]] = {
    "text-to-image": {"standard": TEXT_TO_IMAGE_ENDPOINT, "quality": QUALITY_TEXT_TO_IMAGE_ENDPOINT},
    "edit": {"standard": EDIT_ENDPOINT, "quality": QUALITY_EDIT_ENDPOINT},
}
# Every endpoint of the family; their requests share one queue path (owner/app), so any of them
# finds a request of any other.
ENDPOINTS: tuple[str, ...] = (TEXT_TO_IMAGE_ENDPOINT, QUALITY_TEXT_TO_IMAGE_ENDPOINT, EDIT_ENDPOINT,
                              QUALITY_EDIT_ENDPOINT)

# fal's 13 values, in fal's order (fal-js endpoints.ts, XAIImageInput.aspect_ratio).
ASPECT_RATIOS: tuple[str, ...] = (
    "2:1", "20:9", "19.5:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:19.5", "9:20", "1:2",
)
DEFAULT_ASPECT_RATIO = "1:1"
EDIT_ASPECT_RATIOS: tuple[str, ...] = ("auto", *ASPECT_RATIOS)  # XAIImageEditInput: auto keeps the first image's
DEFAULT_EDIT_ASPECT_RATIO = "auto"
RESOLUTIONS: tuple[str, ...] = ("1k", "2k")
DEFAULT_RESOLUTION = "1k"
OUTPUT_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp")
DEFAULT_OUTPUT_FORMAT = "jpeg"
MAX_IMAGES_PER_REQUEST = 4  # fal's limit for one request
MAX_IMAGES_PER_NODE = 16  # above 4 the node sends ceil(n / 4) requests at once
MAX_REFERENCE_IMAGES = 3

# Output sizes (width, height) at 1k as xAI documents them for Grok Imagine (listed on Runware's page for
# the same xAI model); the portrait ratios are these turned. At 2k each side is assumed doubled (no
# published table found). Only a hint for preparing the output batch early: the images decide.
IMAGE_SIZES_1K: dict[str, tuple[int, int]] = {
    "2:1": (1408, 704), "20:9": (1280, 576), "19.5:9": (1248, 576), "16:9": (1408, 768), "4:3": (1280, 896),
    "3:2": (1296, 864), "1:1": (1024, 1024),
}


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


# US dollars per generated image, as fal publishes them. None: no price published that we know of;
# the node then says "price unknown" rather than guess.
PRICE_PER_IMAGE_USD: dict[str, float | None] = {
    TEXT_TO_IMAGE_ENDPOINT: 0.02,
    QUALITY_TEXT_TO_IMAGE_ENDPOINT: None,
    EDIT_ENDPOINT: None,
    QUALITY_EDIT_ENDPOINT: None,
}

# Which node bills what: the JS reads this (via /grok_imagine/pricing) to show the price on the node.
NODE_KINDS: dict[str, str] = {"FalGrokImagineImage": "text-to-image", "FalGrokImagineEdit": "edit"}


def endpoint_for(kind: str, tier: str) -> str:
    return ENDPOINT_BY_TIER[kind][tier]


def request_sizes(num_images: int) -> list[int]:
    """How many images each of the node's requests asks for: at most four per request."""
    requests = math.ceil(num_images / MAX_IMAGES_PER_REQUEST)
    return [min(MAX_IMAGES_PER_REQUEST, num_images - i * MAX_IMAGES_PER_REQUEST) for i in range(requests)]


def pricing_table() -> dict[str, object]:
    """The price table as served to the web extension."""
    nodes = {
        node_id: {
            "count_input": "num_images",
            "tier_input": "tier",
            "max_images_per_request": MAX_IMAGES_PER_REQUEST,
            "tiers": {
                tier: {"endpoint": endpoint, "price_per_image": PRICE_PER_IMAGE_USD[endpoint]}
                for tier, endpoint in ENDPOINT_BY_TIER[kind].items()
            },
        }
        for node_id, kind in NODE_KINDS.items()
    }
    return {"currency": "USD", "nodes": nodes}
