"""Text to image: Grok Imagine Image (fal) and Grok Imagine 2.0 Image (fal).

The inputs, their order and the outputs are a public contract (saved workflows store widget
values by position and links by slot): add new inputs only at the end, optional.
"""

from __future__ import annotations

from typing import Any, ClassVar

from . import grok_api as api
from . import widgets
from .grok_api import GROK_IMAGINE, GROK_IMAGINE_2, GrokModel, ImageRequest
from .run import ImageRun, run_image_node


class _TextToImageNode(widgets.GrokImagesNode):
    """What both text-to-image nodes share; each names its model."""

    FUNCTION = "generate"
    MODEL: ClassVar[GrokModel]
    PROMPT_TOOLTIP: ClassVar[str]

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "prompt": widgets.prompt_input(cls.PROMPT_TOOLTIP),
                "num_images": widgets.num_images_input(),
                "aspect_ratio": widgets.aspect_ratio_input(api.ASPECT_RATIOS, api.DEFAULT_ASPECT_RATIO,
                                                          "Width:height of the images."),
                **widgets.common_tail_inputs(),
            },
            "optional": {cls.MODEL.choice_input: widgets.choice_input(cls.MODEL),
                         "on_refusal": widgets.on_refusal_input()},
            "hidden": widgets.HIDDEN,
        }

    @classmethod
    def image_request(cls, inputs: dict[str, Any], optional: dict[str, Any]) -> ImageRequest:
        """The request these widget values ask for (references come later, once uploaded)."""
        return widgets.image_request(cls.MODEL, "text-to-image", inputs, optional)

    async def generate(
        self, prompt: str, num_images: int = 1, aspect_ratio: str = api.DEFAULT_ASPECT_RATIO,
        resolution: str = api.DEFAULT_RESOLUTION, output_format: str = api.DEFAULT_OUTPUT_FORMAT,
        sync_mode: bool = False, seed: int = 0, on_refusal: str = "fail", unique_id: str | None = None,
        extra_pnginfo: Any = None, **optional: Any,
    ) -> dict[str, Any]:
        """`optional`: the model's choice input (tier or quality)."""
        del seed  # never sent: Grok takes no seed (changing it only makes ComfyUI run the node again)
        inputs = {"prompt": prompt, "num_images": num_images, "aspect_ratio": aspect_ratio, "resolution": resolution,
                  "output_format": output_format, "sync_mode": sync_mode}

        async def prepare(reuse: bool) -> ImageRun:  # text to image has no input files to reuse
            request = self.image_request(inputs, optional)
            size = widgets.documented_size(request)
            refusal = widgets.check_choice("on_refusal", on_refusal, widgets.ON_REFUSAL)
            return ImageRun(request, expected_size=size or (1024, 1024), on_refusal=refusal)  # type: ignore[arg-type]

        return await run_image_node(unique_id, extra_pnginfo, prepare)


class FalGrokImagineImage(_TextToImageNode):
    """Text to image with Grok Imagine on fal.ai."""

    DESCRIPTION = (
        "Generate images from a text prompt with xAI's Grok Imagine on fal.ai (xai/grok-imagine-image, or its "
        "quality tier). Needs a fal API key (FAL_KEY or Settings > Grok Imagine (fal)). fal bills each generated "
        "image; the price of the next run is shown on the node."
    )
    MODEL = GROK_IMAGINE
    PROMPT_TOOLTIP = ("What the image should show (at most 8,000 characters). Grok may rewrite it; see the "
                      "revised_prompt output.")


class FalGrokImagine2Image(_TextToImageNode):
    """Text to image with Grok Imagine 2.0 on fal.ai."""

    DESCRIPTION = (
        "Generate images from a text prompt with xAI's Grok Imagine 2.0 on fal.ai "
        "(xai/grok-imagine-image/v2.0/text-to-image), at medium or low quality. Needs a fal API key (FAL_KEY or "
        "Settings > Grok Imagine (fal)). fal bills each generated image; the price of the next run is shown on the "
        "node."
    )
    MODEL = GROK_IMAGINE_2
    PROMPT_TOOLTIP = ("What the image should show (at most 8,000 characters). Grok may rewrite it; see the "
                      "revised_prompt output.")
