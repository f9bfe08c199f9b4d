"""Grok Imagine Image (fal): text to image with xAI's Grok Imagine on fal.ai.

The inputs, their order and the outputs are a public contract (saved workflows store widget
values by position and links by slot): add new inputs only at the end, optional.
"""

from __future__ import annotations

from typing import Any

from ..fal_transport.errors import InvalidInputError
from . import grok_spec as spec
from .generation import Generation, generate
from .previews import save_previews

SEED_MAX = 0xFFFFFFFFFFFFFFFF


def build_arguments(
    prompt: str, num_images: int, aspect_ratio: str, resolution: str, output_format: str, sync_mode: bool
) -> dict[str, Any]:
    """The request body: exactly fal's fields. `resolution` only when not the default, so the body
    stays valid for an endpoint that does not know the field."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInputError("The prompt is empty. Type what the image should show into 'prompt'.", field="prompt")
    if not 1 <= int(num_images) <= spec.MAX_IMAGES_PER_REQUEST:
        raise InvalidInputError(
            f"'num_images' must be 1..{spec.MAX_IMAGES_PER_REQUEST}, got {num_images}.", field="num_images"
        )
    for name, value, allowed in (
        ("aspect_ratio", aspect_ratio, spec.ASPECT_RATIOS),
        ("resolution", resolution, spec.RESOLUTIONS),
        ("output_format", output_format, spec.OUTPUT_FORMATS),
    ):
        if value not in allowed:
            raise InvalidInputError(f"'{name}' must be one of {', '.join(allowed)}; got {value!r}.", field=name)
    arguments: dict[str, Any] = {
        "prompt": prompt,
        "num_images": int(num_images),
        "aspect_ratio": aspect_ratio,
        "output_format": output_format,
        "sync_mode": bool(sync_mode),
    }
    if resolution != spec.DEFAULT_RESOLUTION:
        arguments["resolution"] = resolution
    return arguments


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


class FalGrokImagineImage:
    """Text to image with Grok Imagine on fal.ai."""

    DESCRIPTION = (
        "Generate images from a text prompt with xAI's Grok Imagine on fal.ai (xai/grok-imagine-image). "
        "Needs a fal API key in the FAL_KEY environment variable. fal bills each generated image "
        "($0.02 per image at the time of writing)."
    )
    CATEGORY = "fal/Grok Imagine"
    FUNCTION = "generate"
    RETURN_TYPES = ("IMAGE", "STRING", "STRING")
    RETURN_NAMES = ("images", "revised_prompt", "image_urls")
    OUTPUT_TOOLTIPS = (
        "All generated images as one batch.",
        "The prompt fal actually used (Grok rewrites prompts before generating).",
        "The fal URLs of the images, one per line; empty in sync mode.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "prompt": ("STRING", {
                    "multiline": True,
                    "default": "",
                    "tooltip": "What the image should show. Grok may rewrite it; see the revised_prompt output.",
                }),
                "num_images": ("INT", {
                    "default": 1, "min": 1, "max": spec.MAX_IMAGES_PER_REQUEST,
                    "tooltip": "How many images to generate; each one is billed.",
                }),
                "aspect_ratio": (list(spec.ASPECT_RATIOS), {
                    "default": spec.DEFAULT_ASPECT_RATIO,
                    "tooltip": "Width:height of the images.",
                }),
                "resolution": (list(spec.RESOLUTIONS), {
                    "default": spec.DEFAULT_RESOLUTION,
                    "tooltip": "1k for standard resolution, 2k for high resolution.",
                }),
                "output_format": (list(spec.OUTPUT_FORMATS), {
                    "default": spec.DEFAULT_OUTPUT_FORMAT,
                    "tooltip": "File format fal encodes the images in (jpeg is smallest, png is lossless).",
                }),
                "sync_mode": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "On: fal returns the images inline and keeps nothing in its request history "
                               "(no URLs, nothing to recover later).",
                }),
                "seed": ("INT", {
                    "default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True,
                    "tooltip": "Not sent to fal (Grok takes no seed). Changing it makes ComfyUI run the node "
                               "again instead of reusing the last result.",
                }),
            },
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
        unique_id: str | None = None,
    ) -> dict[str, Any]:
        arguments = build_arguments(prompt, num_images, aspect_ratio, resolution, output_format, sync_mode)
        generation = await generate(spec.TEXT_TO_IMAGE_ENDPOINT, arguments, node_id=unique_id)
        return node_output(generation)
