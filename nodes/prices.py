"""What a run costs: the one price table, used by the ledger and the daily limit, and served to the
frontend (`/grok_imagine/pricing`) for the price badge on each node.

US dollars, as of 2026-12: xAI's rates, which fal passes through. fal publishes $0.02 per image
for `xai/grok-imagine-image`; the other rates are xAI's, the ones ComfyUI's own Grok nodes use.
The reference rate is per reference image sent, per request (each request of a batch beyond four
images sends the references again).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import grok_spec as spec
from .models import GROK_IMAGINE, GROK_IMAGINE_2, GrokModel, Kind

PRICES_AS_OF = "2026-12"


@dataclass(frozen=True)
class Rate:
    per_image_1k: float
    per_image_2k: float
    per_reference: float

    def per_image(self, resolution: str) -> float:
        return self.per_image_2k if resolution == "2k" else self.per_image_1k


STANDARD = Rate(0.02, 0.02, 0.002)
QUALITY = Rate(0.05, 0.07, 0.01)
V2_LOW = Rate(0.04, 0.06, 0.01)
V2_MEDIUM = Rate(0.06, 0.08, 0.01)

# endpoint -> rate, or endpoint -> {quality: rate} where the endpoint takes `quality`
RATES: dict[str, Rate | dict[str, Rate]] = {
    spec.TEXT_TO_IMAGE_ENDPOINT: STANDARD,
    spec.EDIT_ENDPOINT: STANDARD,
    spec.QUALITY_TEXT_TO_IMAGE_ENDPOINT: QUALITY,
    spec.QUALITY_EDIT_ENDPOINT: QUALITY,
    spec.V2_TEXT_TO_IMAGE_ENDPOINT: {"low": V2_LOW, "medium": V2_MEDIUM},
    spec.V2_EDIT_ENDPOINT: {"low": V2_LOW, "medium": V2_MEDIUM},
}


def rate(endpoint: str, quality: str | None = None) -> Rate:
    found = RATES[endpoint]
    return found[quality or spec.DEFAULT_QUALITY] if isinstance(found, dict) else found


def request_price(endpoint: str, arguments: dict[str, object]) -> float:
    """The price of one request with this body (its `num_images`, `resolution`, `quality`, `image_urls`)."""
    r = rate(endpoint, str(arguments.get("quality") or spec.DEFAULT_QUALITY))
    images = int(arguments.get("num_images") or 1)  # type: ignore[call-overload]
    references = len(arguments.get("image_urls") or ())  # type: ignore[arg-type]
    return round(images * r.per_image(str(arguments.get("resolution") or spec.DEFAULT_RESOLUTION))
                 + references * r.per_reference, 6)


# Which model and kind each billed node is (the frontend reads the table built from this).
NODE_PRICING: dict[str, tuple[Kind, GrokModel]] = {
    "FalGrokImagineImage": ("text-to-image", GROK_IMAGINE),
    "FalGrokImagineEdit": ("edit", GROK_IMAGINE),
    "FalGrokImagine2Image": ("text-to-image", GROK_IMAGINE_2),
    "FalGrokImagine2Edit": ("edit", GROK_IMAGINE_2),
}
REFERENCE_INPUTS = ("image", "image_2", "image_3")


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
            "max_images_per_request": spec.MAX_IMAGES_PER_REQUEST,
            "reference_inputs": list(REFERENCE_INPUTS) if kind == "edit" else [],
            "max_references": spec.MAX_REFERENCE_IMAGES,
            "choices": choices,
        }
    return {"currency": "USD", "as_of": PRICES_AS_OF, "nodes": nodes}
