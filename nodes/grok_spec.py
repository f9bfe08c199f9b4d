"""What fal's Grok Imagine endpoints accept, and what they cost. One table, served to the JS too."""

from __future__ import annotations

TEXT_TO_IMAGE_ENDPOINT = "xai/grok-imagine-image"
# Every endpoint of the family; their requests share one queue path (owner/app), so any of them
# finds a request of any other.
ENDPOINTS: tuple[str, ...] = (TEXT_TO_IMAGE_ENDPOINT,)

# fal's 13 values, in fal's order (fal-js endpoints.ts, XAIImageInput.aspect_ratio).
ASPECT_RATIOS: tuple[str, ...] = (
    "2:1", "20:9", "19.5:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:19.5", "9:20", "1:2",
)
DEFAULT_ASPECT_RATIO = "1:1"
RESOLUTIONS: tuple[str, ...] = ("1k", "2k")
DEFAULT_RESOLUTION = "1k"
OUTPUT_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp")
DEFAULT_OUTPUT_FORMAT = "jpeg"
MAX_IMAGES_PER_REQUEST = 4

# US dollars per generated image, as fal lists them. None: fal publishes no price we know of.
PRICE_PER_IMAGE_USD: dict[str, float | None] = {
    TEXT_TO_IMAGE_ENDPOINT: 0.02,
}

# Which node bills what: the JS reads this (via /grok_imagine/pricing) to show the price on the node.
NODE_PRICING: dict[str, dict[str, object]] = {
    "FalGrokImagineImage": {
        "count_input": "num_images",
        "endpoint": TEXT_TO_IMAGE_ENDPOINT,
    },
}


def pricing_table() -> dict[str, object]:
    """The price table as served to the web extension."""
    nodes = {
        node_id: {**entry, "price_per_image": PRICE_PER_IMAGE_USD.get(str(entry["endpoint"]))}
        for node_id, entry in NODE_PRICING.items()
    }
    return {"currency": "USD", "nodes": nodes}
