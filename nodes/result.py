"""Grok Imagine Result (fal): load an earlier request's images by its request id, without paying again."""

from __future__ import annotations

import re
from typing import Any

from ..fal_transport.errors import InvalidInputError
from . import grok_spec as spec
from . import schema
from .generation import recover
from .text_to_image import node_output

REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{7,127}$")


def clean_request_id(request_id: str) -> str:
    cleaned = (request_id or "").strip()
    if not REQUEST_ID.match(cleaned):
        raise InvalidInputError(
            "'request_id' must be a fal request id such as 0b5c3f2e-1a2b-4c3d-9e8f-123456789abc (shown on the "
            "Grok node, in ComfyUI's console and in every error message).",
            field="request_id",
        )
    return cleaned


class FalGrokImagineResult(schema.GrokImagesNode):
    """Load the images of an earlier Grok Imagine request from fal by its request id."""

    DESCRIPTION = (
        "Load the images, revised prompt and URLs of an earlier Grok Imagine request from fal by its request "
        "id, without a new generation (nothing is billed). Use it after a crash, a restart or a failure further "
        "down the graph. fal keeps a result for about an hour after it completes; sync-mode requests are never "
        "kept."
    )
    FUNCTION = "load"
    OUTPUT_TOOLTIPS = (
        "The request's images as one batch.",
        "The prompt fal actually used for that request.",
        "The fal URLs of the images, one per line.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "request_id": ("STRING", {
                    "default": "",
                    "multiline": False,
                    "tooltip": "The fal request id to load, as shown on the Grok node, in the console and in "
                               "error messages.",
                }),
                "endpoint": (list(spec.ENDPOINTS), {
                    "default": spec.TEXT_TO_IMAGE_ENDPOINT,
                    "tooltip": "The endpoint the request was sent to.",
                }),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    async def load(self, request_id: str, endpoint: str = spec.TEXT_TO_IMAGE_ENDPOINT,
                   unique_id: str | None = None) -> dict[str, Any]:
        if endpoint not in spec.ENDPOINTS:
            raise InvalidInputError(f"'endpoint' must be one of {', '.join(spec.ENDPOINTS)}.", field="endpoint")
        generation = await recover(endpoint, clean_request_id(request_id), node_id=unique_id)
        return node_output(generation)
