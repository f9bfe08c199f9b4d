"""Edit: Grok Imagine Edit (fal) and Grok Imagine 2.0 Edit (fal): edit or combine images with a prompt.

Inputs, their order and the outputs are a public contract: add new inputs only at the end, optional.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..fal_transport import config
from ..fal_transport.aio import until_cancelled
from ..fal_transport.credentials import resolve_credentials
from ..fal_transport.errors import RequestCancelledError
from . import grok_spec as spec
from . import host, schema
from .batches import BatchMember
from .generate import GrokCall
from .generating import run_generating
from .models import GROK_IMAGINE, GROK_IMAGINE_2, GrokModel
from .references import encode_references, reference_tensors, reference_urls


def _required() -> dict[str, Any]:
    return {
        "image": ("IMAGE", {"tooltip": "The image(s) to edit: the first one to three images of this batch are the "
                                       "references."}),
        "prompt": schema.prompt_input("How to edit or combine the reference images (at most 8,000 characters)."),
        "num_images": schema.num_images_input(),
        "aspect_ratio": schema.aspect_ratio_input(
            spec.EDIT_ASPECT_RATIOS, spec.DEFAULT_EDIT_ASPECT_RATIO,
            "Width:height of the results; auto keeps the shape of the first reference image.",
        ),
        **schema.common_tail_inputs(),
    }


class _EditNode(schema.GrokImagesNode):
    """What both edit nodes share; each names its model."""

    FUNCTION = "edit"
    MODEL: ClassVar[GrokModel]

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": _required(),
            "optional": {
                "image_2": ("IMAGE", {"tooltip": "Another reference image (its batch's first image)."}),
                "image_3": ("IMAGE", {"tooltip": "A third reference image (its batch's first image)."}),
                cls.MODEL.choice_input: cls.MODEL.choice_input_definition(),
                "on_refusal": schema.on_refusal_input(),
                "output_size": schema.output_size_input(),
            },
            "hidden": schema.HIDDEN,
        }

    @classmethod
    def endpoint_and_arguments(cls, inputs: dict[str, Any], optional: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return cls.MODEL.endpoint_and_arguments("edit", inputs, optional)

    async def edit(
        self, image: Any, prompt: str, num_images: int = 1, aspect_ratio: str = spec.DEFAULT_EDIT_ASPECT_RATIO,
        resolution: str = spec.DEFAULT_RESOLUTION, output_format: str = spec.DEFAULT_OUTPUT_FORMAT,
        sync_mode: bool = False, seed: int = 0, image_2: Any = None, image_3: Any = None, on_refusal: str = "fail",
        output_size: str = "fal", unique_id: str | None = None, extra_pnginfo: Any = None, **optional: Any,
    ) -> dict[str, Any]:
        """`optional`: the node's choice input (tier or quality). The seed is never sent."""
        inputs = {"prompt": prompt, "num_images": num_images, "aspect_ratio": aspect_ratio, "resolution": resolution,
                  "output_format": output_format, "sync_mode": sync_mode}

        async def prepare(member: BatchMember) -> GrokCall:
            endpoint, arguments = self.endpoint_and_arguments(inputs, optional)
            refusal = schema.check_choice("on_refusal", on_refusal, schema.ON_REFUSAL)
            fit = schema.check_choice("output_size", output_size, schema.OUTPUT_SIZES) != "fal"
            tensors = reference_tensors(image, image_2, image_3)
            height, width = int(tensors[0].shape[0]), int(tensors[0].shape[1])
            if fit:
                schema.check_output_batch(arguments["num_images"], (width, height),
                                          "the first reference's size, as 'output_size' is 'match first reference'",
                                          "scale the first reference down", "set 'output_size' to 'fal'")
            expected = schema.documented_size(arguments) or spec.size_for_shape(
                width, height, arguments.get("resolution", spec.DEFAULT_RESOLUTION))
            credentials = resolve_credentials(config.key_file())
            host.send_progress_text(unique_id, f"Uploading {len(tensors)} reference image(s) to fal")

            def cancelled() -> RequestCancelledError:
                return RequestCancelledError("Cancelled by the user before the request was sent; nothing was paid.")

            references = await until_cancelled(encode_references(tensors), host.interrupted, cancelled)
            urls = await until_cancelled(reference_urls(credentials, references), host.interrupted, cancelled)
            # The journal knows the references by content, so a rerun finds its request even after a new upload.
            identity = {**arguments, "image_sha256": [r.sha256 for r in references]}
            return GrokCall(endpoint, {**arguments, "image_urls": urls}, identity=identity, expected_size=expected,
                            on_refusal=refusal, fixed_size=(width, height) if fit else None)  # type: ignore[arg-type]

        return await run_generating(unique_id, extra_pnginfo, prepare)


class FalGrokImagineEdit(_EditNode):
    """Edit images (one to three references) from a prompt with Grok Imagine on fal.ai."""

    DESCRIPTION = (
        "Edit or combine images with a text prompt using xAI's Grok Imagine on fal.ai "
        "(xai/grok-imagine-image/edit, or its quality tier). The first one to three images of 'image' (plus "
        "image_2 and image_3 when connected) are the references; they are uploaded to fal's storage. Needs a fal "
        "API key (FAL_KEY or Settings > Grok Imagine (fal)); fal bills each generated image and each reference."
    )
    MODEL = GROK_IMAGINE


class FalGrokImagine2Edit(_EditNode):
    """Edit images (one to three references) from a prompt with Grok Imagine 2.0 on fal.ai."""

    DESCRIPTION = (
        "Edit or combine images with a text prompt using xAI's Grok Imagine 2.0 on fal.ai "
        "(xai/grok-imagine-image/v2.0/edit), at medium or low quality. The first one to three images of 'image' "
        "(plus image_2 and image_3 when connected) are the references; they are uploaded to fal's storage. Needs a "
        "fal API key (FAL_KEY or Settings > Grok Imagine (fal)); fal bills each generated image and each reference."
    )
    MODEL = GROK_IMAGINE_2
