"""The price table served to the frontend (`/grok_imagine/pricing`) for the price badge on each node, built
from the rates of the model table (`grok_api`), which also prices every request for the ledger and the
daily limit.
"""

from __future__ import annotations

from . import grok_api as api
from .grok_api import GROK_IMAGINE, GROK_IMAGINE_2, GrokModel, Kind, rate

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
            "max_images_per_request": api.MAX_IMAGES_PER_REQUEST,
            "reference_inputs": list(REFERENCE_INPUTS) if kind == "edit" else [],
            "max_references": api.MAX_REFERENCE_IMAGES,
            "choices": choices,
        }
    return {"currency": "USD", "as_of": api.PRICES_AS_OF, "nodes": nodes}
