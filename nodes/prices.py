"""The price table served to the frontend (`/grok_imagine/pricing`) for the price badge on each node, built
from the rates of the model tables (`grok_api` for images, `video_api` for videos), which also price every
request for the ledger and the daily limit.

An image node's entry has no `kind`; a video node's names its kind (`video`, `reference_video`, `edit_video`,
`extend_video`), which tells the badge (`web/grok_prices.js`) how the node's price follows from its widgets, its
connected inputs and, for Edit and Extend, the input video (known when a Grok video node makes it, else only at
run time).
"""

from __future__ import annotations

from typing import Any

from . import grok_api as api
from . import video_api
from .grok_api import GROK_IMAGINE, GROK_IMAGINE_2, GrokModel, Kind, rate

# Which model and kind each billed node is (the frontend reads the table built from this).
NODE_PRICING: dict[str, tuple[Kind, GrokModel]] = {
    "FalGrokImagineImage": ("text-to-image", GROK_IMAGINE),
    "FalGrokImagineEdit": ("edit", GROK_IMAGINE),
    "FalGrokImagine2Image": ("text-to-image", GROK_IMAGINE_2),
    "FalGrokImagine2Edit": ("edit", GROK_IMAGINE_2),
}
REFERENCE_INPUTS = ("image", "image_2", "image_3")
VIDEO_REFERENCE_INPUTS = ("image", "image_2", "image_3", "image_4", "image_5", "image_6", "image_7")


def pricing_table() -> dict[str, object]:
    """The price table as served to the web extension: per node, per choice (tier or quality), the USD
    per image at each resolution and per reference image."""
    nodes = {}
    for node_id, (kind, model) in NODE_PRICING.items():
        choices = {}
        for choice, endpoint in model.endpoints[kind].items():
            r = rate(endpoint, choice if model.choice_in_body else None)
            choices[choice] = {"endpoint": endpoint, "per_image": {"1k": r.per_image_1k, "2k": r.per_image_2k},
                               "per_reference": r.per_reference if kind == "edit" else 0.0}
        nodes[node_id] = {
            "count_input": "num_images",
            "resolution_input": "resolution",
            "choice_input": model.choice_input,
            "default_choice": model.default_choice,
            "max_images_per_request": api.MAX_IMAGES_PER_REQUEST,
            "reference_inputs": list(REFERENCE_INPUTS) if kind == "edit" else [],
            "max_references": api.MAX_REFERENCE_IMAGES,
            "choices": choices,
        }
    return {"currency": "USD", "as_of": api.PRICES_AS_OF, "nodes": {**nodes, **video_pricing()}}


def _video_rate(endpoint: str) -> dict[str, Any]:
    """An endpoint's rates: USD per second of output at each resolution it bills, per input image, per second of
    input video."""
    rate_ = video_api.VIDEO_RATES[endpoint]
    resolutions = video_api.ENDPOINT_RESOLUTIONS.get(endpoint, tuple(rate_.per_second))
    return {"endpoint": endpoint, "per_second": {r: rate_.per_second[r] for r in resolutions},
            "per_image": rate_.per_image, "per_input_second": rate_.per_input_second}


def video_pricing() -> dict[str, dict[str, Any]]:
    """The video nodes' entries (see the module's docstring)."""
    return {
        "FalGrokImagineVideo": {
            "kind": "video", "count_input": "duration", "resolution_input": "resolution", "choice_input": "model",
            "default_choice": video_api.DEFAULT_MODEL, "image_input": "image",
            "choices": {model: {"text": _video_rate(text), "image": _video_rate(image)}
                        for model, (text, image) in video_api.MODEL_ENDPOINTS.items()},
        },
        "FalGrokImagineReferenceVideo": {
            "kind": "reference_video", "count_input": "duration", "resolution_input": "resolution",
            "reference_inputs": list(VIDEO_REFERENCE_INPUTS), "max_references": video_api.MAX_REFERENCES,
            "rate": _video_rate(video_api.REFERENCE_TO_VIDEO_ENDPOINT),
        },
        "FalGrokImagineVideoEdit": {
            "kind": "edit_video", "resolution_input": "resolution", "video_input": "video",
            "max_input_seconds": video_api.EDIT_INPUT_SECONDS, "auto_resolution": video_api.EDIT_AUTO_RESOLUTION,
            "rate": _video_rate(video_api.EDIT_VIDEO_ENDPOINT),
        },
        "FalGrokImagineVideoExtend": {
            "kind": "extend_video", "count_input": "duration", "video_input": "video",
            "input_seconds": list(video_api.EXTEND_INPUT_SECONDS), "small_input_side": video_api.SMALL_INPUT_SIDE,
            "rate": _video_rate(video_api.EXTEND_VIDEO_ENDPOINT),
        },
    }
