"""Grok Imagine Edit (fal): edit or combine images with a prompt, with xAI's Grok Imagine on fal.ai.

Inputs, their order and the outputs are a public contract: add new inputs only at the end, optional.
"""

from __future__ import annotations

from typing import Any

from ..fal_transport import config
from ..fal_transport.credentials import resolve_credentials
from ..fal_transport.errors import RequestCancelledError
from . import grok_spec as spec
from . import host, schema
from .generation import generate_images, until_interrupted
from .references import encode_references, reference_tensors, reference_urls
from .text_to_image import node_output


def build_arguments(
    prompt: str, num_images: int, aspect_ratio: str, resolution: str, output_format: str, sync_mode: bool
) -> dict[str, Any]:
    """The request body without `image_urls` (added once the references are uploaded)."""
    return schema.common_arguments(prompt, num_images, aspect_ratio, spec.EDIT_ASPECT_RATIOS, resolution,
                                   output_format, sync_mode)


class FalGrokImagineEdit(schema.GrokImagesNode):
    """Edit images (one to three references) from a prompt with Grok Imagine on fal.ai."""

    DESCRIPTION = (
        "Edit or combine images with a text prompt using xAI's Grok Imagine on fal.ai "
        "(xai/grok-imagine-image/edit, or its quality tier). The first one to three images of 'image' (plus "
        "image_2 and image_3 when connected) are the references; they are uploaded to fal's storage. Needs a fal "
        "API key (FAL_KEY or Settings > Grok Imagine (fal)); fal bills each generated image."
    )
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE", {
                    "tooltip": "The image(s) to edit: the first one to three images of this batch are the "
                               "references.",
                }),
                "prompt": schema.prompt_input("How to edit or combine the reference images."),
                "num_images": schema.num_images_input(),
                "aspect_ratio": schema.aspect_ratio_input(
                    spec.EDIT_ASPECT_RATIOS, spec.DEFAULT_EDIT_ASPECT_RATIO,
                    "Width:height of the results; auto keeps the shape of the first reference image.",
                ),
                **schema.common_tail_inputs(),
            },
            "optional": {
                "image_2": ("IMAGE", {"tooltip": "Another reference image (its batch's first image)."}),
                "image_3": ("IMAGE", {"tooltip": "A third reference image (its batch's first image)."}),
                "tier": schema.tier_input(),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    async def edit(
        self,
        image: Any,
        prompt: str,
        num_images: int = 1,
        aspect_ratio: str = spec.DEFAULT_EDIT_ASPECT_RATIO,
        resolution: str = spec.DEFAULT_RESOLUTION,
        output_format: str = spec.DEFAULT_OUTPUT_FORMAT,
        sync_mode: bool = False,
        seed: int = 0,
        image_2: Any = None,
        image_3: Any = None,
        tier: str = spec.DEFAULT_TIER,
        unique_id: str | None = None,
    ) -> dict[str, Any]:
        arguments = build_arguments(prompt, num_images, aspect_ratio, resolution, output_format, sync_mode)
        endpoint = spec.endpoint_for("edit", schema.check_choice("tier", tier, spec.TIERS))
        tensors = reference_tensors(image, image_2, image_3)
        credentials = resolve_credentials(config.key_file())
        host.send_progress_text(unique_id, f"Uploading {len(tensors)} reference image(s) to fal")
        try:
            references = await until_interrupted(encode_references(tensors), "")
            urls = await until_interrupted(reference_urls(credentials, references), "")
        except RequestCancelledError as exc:
            raise host.interruption(exc) from exc
        # The journal knows the references by content, so a rerun finds its request even after a new upload.
        identity = {**arguments, "image_sha256": [r.sha256 for r in references]}
        generation = await generate_images(endpoint, {**arguments, "image_urls": urls}, node_id=unique_id,
                                           identity=identity)
        return node_output(generation)
