"""Edit: Grok Imagine Edit (fal) and Grok Imagine 2.0 Edit (fal): edit or combine images with a prompt.

Inputs, their order and the outputs are a public contract: add new inputs only at the end, optional.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from . import grok_api as api
from . import widgets
from .grok_api import GROK_IMAGINE, GROK_IMAGINE_2, GrokModel, ImageRequest
from .references import reference_tensors, references_for_fal
from .run import ImageRun, run_image_node


def _required() -> dict[str, Any]:
    return {
        "image": ("IMAGE", {"tooltip": "The image(s) to edit: the first one to three images of this batch are the "
                                       "references."}),
        "prompt": widgets.prompt_input("How to edit or combine the reference images (at most 8,000 characters)."),
        "num_images": widgets.num_images_input(),
        "aspect_ratio": widgets.aspect_ratio_input(
            api.EDIT_ASPECT_RATIOS, api.DEFAULT_EDIT_ASPECT_RATIO,
            "Width:height of the results; auto keeps the shape of the first reference image.",
        ),
        **widgets.common_tail_inputs(),
    }


class _EditNode(widgets.GrokImagesNode):
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
                cls.MODEL.choice_input: widgets.choice_input(cls.MODEL),
                "on_refusal": widgets.on_refusal_input(),
                "output_size": widgets.output_size_input(),
            },
            "hidden": widgets.HIDDEN,
        }

    @classmethod
    def image_request(cls, inputs: dict[str, Any], optional: dict[str, Any]) -> ImageRequest:
        """The request these widget values ask for (references come later, once uploaded)."""
        return widgets.image_request(cls.MODEL, "edit", inputs, optional)

    async def edit(
        self, image: Any, prompt: str, num_images: int = 1, aspect_ratio: str = api.DEFAULT_EDIT_ASPECT_RATIO,
        resolution: str = api.DEFAULT_RESOLUTION, output_format: str = api.DEFAULT_OUTPUT_FORMAT,
        sync_mode: bool = False, seed: int = 0, image_2: Any = None, image_3: Any = None, on_refusal: str = "fail",
        output_size: str = "fal", unique_id: str | None = None, extra_pnginfo: Any = None, **optional: Any,
    ) -> dict[str, Any]:
        """`optional`: the node's choice input (tier or quality)."""
        del seed  # never sent: Grok takes no seed (changing it only makes ComfyUI run the node again)
        inputs = {"prompt": prompt, "num_images": num_images, "aspect_ratio": aspect_ratio, "resolution": resolution,
                  "output_format": output_format, "sync_mode": sync_mode}

        async def prepare(reuse: bool) -> ImageRun:
            request = self.image_request(inputs, optional)
            refusal = widgets.check_choice("on_refusal", on_refusal, widgets.ON_REFUSAL)
            fit = widgets.check_choice("output_size", output_size, widgets.OUTPUT_SIZES) != "fal"
            tensors = reference_tensors({"image": image, "image_2": image_2, "image_3": image_3},
                                        ("image", "image_2", "image_3"), api.MAX_REFERENCE_IMAGES)
            height, width = int(tensors[0].shape[0]), int(tensors[0].shape[1])
            if fit:
                widgets.check_output_batch(request.num_images, (width, height),
                                           "the first reference's size, as 'output_size' is 'match first reference'",
                                           "scale the first reference down", "set 'output_size' to 'fal'")
            expected = widgets.documented_size(request) or api.size_for_shape(width, height, request.resolution)
            references = await references_for_fal(unique_id, tensors, reuse=reuse)
            return ImageRun(replace(request, references=references), expected_size=expected,
                            on_refusal=refusal, fixed_size=(width, height) if fit else None)  # type: ignore[arg-type]

        return await run_image_node(unique_id, extra_pnginfo, prepare)


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
