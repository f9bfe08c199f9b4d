"""Grok Imagine Image (fal): text to image with xAI's Grok Imagine on fal.ai.

The inputs, their order and the outputs are a public contract (saved workflows store widget
values by position and links by slot): add new inputs only at the end, optional.
"""

from __future__ import annotations

from typing import Any

from . import grok_spec as spec
from . import schema
from .generation import Generation, generate_images
from .previews import save_previews


def build_arguments(
    prompt: str, num_images: int, aspect_ratio: str, resolution: str, output_format: str, sync_mode: bool
) -> dict[str, Any]:
    """The request body: exactly fal's fields (num_images is the node's total; it is split per request)."""
    return schema.common_arguments(prompt, num_images, aspect_ratio, spec.ASPECT_RATIOS, resolution,
                                   output_format, sync_mode)


def node_output(generation: Generation) -> dict[str, Any]:
    """Outputs in contract order, plus what ComfyUI shows on the node: previews and the revised prompt."""
    return {
        "ui": {
            "images": save_previews(generation.files, generation.request_id),
            "text": [generation.revised_prompt],
            "request_id": [generation.request_id],
        },
        "result": (generation.images, generation.revised_prompt, "\n".join(generation.image_urls)),
    }


class FalGrokImagineImage(schema.GrokImagesNode):
    """Text to image with Grok Imagine on fal.ai."""

    DESCRIPTION = (
        "Generate images from a text prompt with xAI's Grok Imagine on fal.ai (xai/grok-imagine-image, or its "
        "quality tier). Needs a fal API key (FAL_KEY or Settings > Grok Imagine (fal)). fal bills each generated "
        "image ($0.02 per image on the standard tier at the time of writing)."
    )
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "prompt": schema.prompt_input(
                    "What the image should show. Grok may rewrite it; see the revised_prompt output."
                ),
                "num_images": schema.num_images_input(),
                "aspect_ratio": schema.aspect_ratio_input(
                    spec.ASPECT_RATIOS, spec.DEFAULT_ASPECT_RATIO, "Width:height of the images."
                ),
                **schema.common_tail_inputs(),
            },
            "optional": {"tier": schema.tier_input()},
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    async def generate(
        self,
        prompt: str,
        num_images: int = 1,
        aspect_ratio: str = spec.DEFAULT_ASPECT_RATIO,
        resolution: str = spec.DEFAULT_RESOLUTION,
        output_format: str = spec.DEFAULT_OUTPUT_FORMAT,
        sync_mode: bool = False,
        seed: int = 0,
        tier: str = spec.DEFAULT_TIER,
        unique_id: str | None = None,
    ) -> dict[str, Any]:
        arguments = build_arguments(prompt, num_images, aspect_ratio, resolution, output_format, sync_mode)
        endpoint = spec.endpoint_for("text-to-image", schema.check_choice("tier", tier, spec.TIERS))
        generation = await generate_images(endpoint, arguments, node_id=unique_id)
        return node_output(generation)
