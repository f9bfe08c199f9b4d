"""Grok Imagine Video on fal: its endpoints and what they accept, the four video nodes' inputs and outputs (a public
contract from their first landing), the request each node sends, and what it costs.

The nodes are declared here and not registered yet: each class below holds the node's schema (INPUT_TYPES,
outputs, DESCRIPTION, category); the node that ComfyUI runs subclasses it, adding FUNCTION and the run. A node
checks its inputs into a `VideoRequest` (`video_request`, `reference_video_request`, `edit_video_request`,
`extend_video_request`) before anything is uploaded or sent; `VideoRequest.body(media)` is then the body fal
receives once the media have URLs, and `VideoRequest.price()` what fal bills for it.

Prices, USD as of 2026-12 (`VIDEO_RATES`): fal's pages state the v1.5 image-to-video rates and the edit/extend
rates; the others are xAI's published rates, which fal passes through; the 1080p rate of v1.5 text-to-video is an
assumption. Assumptions on billing where fal states none: an edit is billed for the seconds fal uses (the first
8 s of the input) as input and as output, at 480p when its resolution is `auto` (fal brings the input down to at
most 854x480); an extension is billed at the input's resolution (480p for an input at most 480 pixels on its
shorter side, else 720p).

Wiring still to do (delete this paragraph when done), on the typed request path: subclass each schema with
FUNCTION and its run and register it under `VIDEO_NODES`; check inputs into the `VideoRequest` first (for
Edit/Extend `media.video.video_seconds` and `video.get_dimensions()` before anything else); price it for the
daily limit; media: IMAGE as references are uploaded today, VIDEO by `fal_url_of` or else `mp4_for_upload` (in a
thread) into the temp folder, `storage.upload_file`, then delete the file (the journal knows it by content);
follow, cancel and recover through the shared lifecycle (the queue path is `xai/grok-imagine-video/requests/ID`;
videos run for minutes); collect `video.url` with `download_video` into `<temp>/grok_imagine` (progress in bytes;
a longer budget than an image's), `probe_video` (None: not a video), `last_frame` (in a thread), `as_comfy_video`;
return `{"ui": {"images": [{"filename", "subfolder": "grok_imagine", "type": "temp"}], "animated": (True,)},
"result": (video, url, last_frame)}`, the preview Save Video returns; provenance into EXTRA_PNGINFO as for images
(Save Video writes it into the MP4's metadata); the price badge from `VIDEO_RATES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

from ..fal_transport.errors import InvalidInputError
from . import widgets
from .references import check_image

APP = "xai/grok-imagine-video"
TEXT_TO_VIDEO_ENDPOINT = f"{APP}/text-to-video"
IMAGE_TO_VIDEO_ENDPOINT = f"{APP}/image-to-video"
V15_TEXT_TO_VIDEO_ENDPOINT = f"{APP}/v1.5/text-to-video"
V15_IMAGE_TO_VIDEO_ENDPOINT = f"{APP}/v1.5/image-to-video"
REFERENCE_TO_VIDEO_ENDPOINT = f"{APP}/reference-to-video"
EDIT_VIDEO_ENDPOINT = f"{APP}/edit-video"
EXTEND_VIDEO_ENDPOINT = f"{APP}/extend-video"
# Every video endpoint, in a fixed order (new ones only at the end). They share one queue path (owner/app).
VIDEO_ENDPOINTS: tuple[str, ...] = (
    TEXT_TO_VIDEO_ENDPOINT, IMAGE_TO_VIDEO_ENDPOINT, V15_TEXT_TO_VIDEO_ENDPOINT, V15_IMAGE_TO_VIDEO_ENDPOINT,
    REFERENCE_TO_VIDEO_ENDPOINT, EDIT_VIDEO_ENDPOINT, EXTEND_VIDEO_ENDPOINT,
)

MODELS: tuple[str, ...] = ("grok-imagine-video", "grok-imagine-video-1.5")
DEFAULT_MODEL = "grok-imagine-video"
# model -> (text-to-video endpoint, image-to-video endpoint)
MODEL_ENDPOINTS: dict[str, tuple[str, str]] = {
    "grok-imagine-video": (TEXT_TO_VIDEO_ENDPOINT, IMAGE_TO_VIDEO_ENDPOINT),
    "grok-imagine-video-1.5": (V15_TEXT_TO_VIDEO_ENDPOINT, V15_IMAGE_TO_VIDEO_ENDPOINT),
}

ASPECT_RATIOS: tuple[str, ...] = ("16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16")  # fal's order
DEFAULT_ASPECT_RATIO = "16:9"
VIDEO_ASPECT_RATIOS: tuple[str, ...] = ("auto", *ASPECT_RATIOS)
DEFAULT_VIDEO_ASPECT_RATIO = "auto"
RESOLUTIONS: tuple[str, ...] = ("480p", "720p", "1080p")
DEFAULT_RESOLUTION = "720p"
REFERENCE_RESOLUTIONS: tuple[str, ...] = ("480p", "720p")
DEFAULT_REFERENCE_RESOLUTION = "480p"
EDIT_RESOLUTIONS: tuple[str, ...] = ("auto", "480p", "720p")
DEFAULT_EDIT_RESOLUTION = "auto"
# The resolutions each generating endpoint takes (fal's schemas: only v1.5 text-to-video goes to 1080p).
ENDPOINT_RESOLUTIONS: dict[str, tuple[str, ...]] = {
    TEXT_TO_VIDEO_ENDPOINT: ("480p", "720p"), IMAGE_TO_VIDEO_ENDPOINT: ("480p", "720p"),
    V15_TEXT_TO_VIDEO_ENDPOINT: RESOLUTIONS, V15_IMAGE_TO_VIDEO_ENDPOINT: ("480p", "720p"),
    REFERENCE_TO_VIDEO_ENDPOINT: REFERENCE_RESOLUTIONS,
}

DURATION = (1, 15, 6)  # (min, max, default) seconds
REFERENCE_DURATION = (1, 10, 8)
EXTEND_DURATION = (2, 10, 6)
EXTEND_INPUT_SECONDS = (2.0, 15.0)  # fal takes an MP4 of 2 to 15 s to extend
EDIT_INPUT_SECONDS = 8.0  # fal edits the first 8 s of its input
MAX_PROMPT_CHARS = 4096
MAX_REFERENCES = 7
REFERENCE_INPUTS: tuple[str, ...] = ("image", "image_2", "image_3", "image_4", "image_5", "image_6", "image_7")

# --------------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------------

PRICES_AS_OF = "2026-12"


@dataclass(frozen=True)
class VideoRate:
    """USD per second of output video by resolution, per input image, per second of input video."""

    per_second: Mapping[str, float]
    per_image: float = 0.0
    per_input_second: float = 0.0


GROK_IMAGINE_VIDEO = VideoRate(MappingProxyType({"480p": 0.05, "720p": 0.07}), per_image=0.002)
GROK_IMAGINE_VIDEO_15 = VideoRate(MappingProxyType({"480p": 0.08, "720p": 0.14, "1080p": 0.25}), per_image=0.01)
VIDEO_TO_VIDEO = VideoRate(MappingProxyType({"480p": 0.05, "720p": 0.07}), per_input_second=0.01)
VIDEO_RATES: dict[str, VideoRate] = {
    TEXT_TO_VIDEO_ENDPOINT: GROK_IMAGINE_VIDEO, IMAGE_TO_VIDEO_ENDPOINT: GROK_IMAGINE_VIDEO,
    REFERENCE_TO_VIDEO_ENDPOINT: GROK_IMAGINE_VIDEO,
    V15_TEXT_TO_VIDEO_ENDPOINT: GROK_IMAGINE_VIDEO_15, V15_IMAGE_TO_VIDEO_ENDPOINT: GROK_IMAGINE_VIDEO_15,
    EDIT_VIDEO_ENDPOINT: VIDEO_TO_VIDEO, EXTEND_VIDEO_ENDPOINT: VIDEO_TO_VIDEO,
}


def video_price(endpoint: str, resolution: str, output_seconds: float, *, images: int = 0,
                input_seconds: float = 0.0) -> float:
    """USD for a video of `output_seconds` at `resolution` from `endpoint`, with `images` input images and
    `input_seconds` of input video."""
    rate = VIDEO_RATES[endpoint]
    return round(output_seconds * rate.per_second[resolution] + images * rate.per_image
                 + input_seconds * rate.per_input_second, 6)


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoRequest:
    """One video request, checked, before its media have URLs: the endpoint, the body's other fields, the field
    that carries the media (`image_url`, `reference_image_urls`, `video_url`; None for text-to-video), and what
    the price depends on."""

    endpoint: str
    arguments: Mapping[str, Any]
    media_field: str | None
    images: int  # input images billed
    output_seconds: float
    input_seconds: float  # seconds of input video billed
    billed_resolution: str

    def body(self, media: str | list[str] | None = None) -> dict[str, Any]:
        """The body fal receives, with the media's URL(s) (a list for references, else one URL)."""
        if self.media_field is None:
            if media is not None:
                raise ValueError(f"{self.endpoint} takes no media, got {media!r}")
            return dict(self.arguments)
        if not media or isinstance(media, list) != (self.media_field == "reference_image_urls"):
            raise ValueError(f"{self.endpoint} takes {self.media_field}, got {media!r}")
        return {**self.arguments, self.media_field: media}

    def price(self) -> float:
        return video_price(self.endpoint, self.billed_resolution, self.output_seconds, images=self.images,
                           input_seconds=self.input_seconds)


def check_video_prompt(prompt: object) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInputError("The prompt is empty. Type what the video should show into 'prompt'.", field="prompt")
    return widgets.check_prompt(prompt, MAX_PROMPT_CHARS)


def check_duration(duration: object, limits: tuple[int, int, int], name: str = "duration") -> int:
    low, high, _ = limits
    if not isinstance(duration, int) or isinstance(duration, bool) or not low <= duration <= high:
        raise InvalidInputError(f"'{name}' must be a whole number of seconds from {low} to {high}; got {duration!r}.",
                                field=name)
    return duration


def video_request(prompt: object, duration: object, aspect_ratio: object, resolution: object, model: object, *,
                  with_image: bool) -> VideoRequest:
    """Grok Imagine Video: text to video, or image to video when an image is connected (`with_image`)."""
    text = check_video_prompt(prompt)
    seconds = check_duration(duration, DURATION)
    ratio = widgets.check_choice("aspect_ratio", aspect_ratio, VIDEO_ASPECT_RATIOS)
    chosen = widgets.check_choice("model", model, MODELS)
    size = widgets.check_choice("resolution", resolution, RESOLUTIONS)
    endpoint = MODEL_ENDPOINTS[chosen][1 if with_image else 0]
    if size not in ENDPOINT_RESOLUTIONS[endpoint]:
        if with_image:
            fix = "pick 720p, or disconnect 'image' and set model to grok-imagine-video-1.5 for 1080p from text"
        else:
            fix = "set model to grok-imagine-video-1.5 (1080p from text), or pick 720p"
        raise InvalidInputError(
            f"{chosen} {'animates images' if with_image else 'makes videos'} at 480p or 720p, not {size}. To fix it, "
            f"{fix}.", field="resolution")
    arguments: dict[str, Any] = {"prompt": text, "duration": seconds, "resolution": size}
    if endpoint == V15_IMAGE_TO_VIDEO_ENDPOINT:
        if ratio != "auto":
            raise InvalidInputError(
                f"grok-imagine-video-1.5 animates an image in the image's own shape; it takes no aspect ratio (got "
                f"{ratio}). Set aspect_ratio to auto, or crop the image to {ratio} first.", field="aspect_ratio")
    elif ratio != "auto" or with_image:  # text to video: auto is fal's default (16:9), so it is not sent
        arguments["aspect_ratio"] = ratio
    return VideoRequest(endpoint, MappingProxyType(arguments), "image_url" if with_image else None,
                        1 if with_image else 0, seconds, 0.0, size)


def reference_video_request(prompt: object, duration: object, aspect_ratio: object, resolution: object, *,
                            references: int) -> VideoRequest:
    """Grok Imagine Reference Video, with `references` reference images (`@Image1`... in the prompt)."""
    if not 1 <= references <= MAX_REFERENCES:
        raise InvalidInputError(
            f"Reference Video takes 1 to {MAX_REFERENCES} reference images; {references} are connected. Use fewer "
            "images (the first ones of 'image', then one from each further input).", field="image")
    arguments = {
        "prompt": check_video_prompt(prompt),
        "duration": check_duration(duration, REFERENCE_DURATION),
        "aspect_ratio": widgets.check_choice("aspect_ratio", aspect_ratio, ASPECT_RATIOS),
        "resolution": widgets.check_choice("resolution", resolution, REFERENCE_RESOLUTIONS),
    }
    return VideoRequest(REFERENCE_TO_VIDEO_ENDPOINT, MappingProxyType(arguments), "reference_image_urls",
                        references, arguments["duration"], 0.0, arguments["resolution"])


def edit_video_request(prompt: object, resolution: object, *, input_seconds: float) -> VideoRequest:
    """Grok Imagine Video Edit of a video `input_seconds` long (fal edits its first 8 s)."""
    arguments = {"prompt": check_video_prompt(prompt),
                 "resolution": widgets.check_choice("resolution", resolution, EDIT_RESOLUTIONS)}
    seconds = min(input_seconds, EDIT_INPUT_SECONDS)
    billed = "480p" if arguments["resolution"] == "auto" else arguments["resolution"]
    return VideoRequest(EDIT_VIDEO_ENDPOINT, MappingProxyType(arguments), "video_url", 0, seconds, seconds, billed)


def extend_video_request(prompt: object, duration: object, *, input_seconds: float,
                         input_size: tuple[int, int]) -> VideoRequest:
    """Grok Imagine Video Extend of a video `input_seconds` long and `input_size` (width, height) pixels."""
    low, high = EXTEND_INPUT_SECONDS
    if not low <= input_seconds <= high:
        raise InvalidInputError(
            f"fal extends videos of {low:g} to {high:g} seconds; 'video' is {input_seconds:.1f} s. "
            + ("Trim it to at most 15 s (the extension continues from its last frame)." if input_seconds > high
               else "Connect a longer video."), field="video")
    arguments = {"prompt": check_video_prompt(prompt), "duration": check_duration(duration, EXTEND_DURATION)}
    billed = "480p" if min(input_size) <= 480 else "720p"
    return VideoRequest(EXTEND_VIDEO_ENDPOINT, MappingProxyType(arguments), "video_url", 0, arguments["duration"],
                        input_seconds, billed)


def reference_images(inputs: Mapping[str, object]) -> list[torch.Tensor]:
    """The reference images of Reference Video, in `@Image` order: the first one to seven images of 'image', then
    the first image of each further input connected (image_2 ... image_7), at most seven in all."""
    images = list(check_image("image", inputs.get("image"))[:MAX_REFERENCES])
    from_image = len(images)
    for name in REFERENCE_INPUTS[1:]:
        extra = inputs.get(name)
        if extra is not None:
            images.append(check_image(name, extra)[0])
    if len(images) > MAX_REFERENCES:
        raise InvalidInputError(
            f"Reference Video takes at most {MAX_REFERENCES} reference images; 'image' gives {from_image} and the "
            f"further inputs {len(images) - from_image} more. Use a smaller batch on 'image' or disconnect some of "
            "image_2 ... image_7.", field="image")
    return images


# --------------------------------------------------------------------------------------------
# The nodes' schemas (a public contract: never rename or reorder; add inputs only at the end, optional)
# --------------------------------------------------------------------------------------------

CATEGORY = "fal/Grok Imagine"
RETURN_TYPES = ("VIDEO", "STRING", "IMAGE")
RETURN_NAMES = ("video", "video_url", "last_frame")
OUTPUT_TOOLTIPS = (
    "The video, as ComfyUI's VIDEO: for Save Video, Get Video Components and every other VIDEO input. Into another "
    "Grok video node it goes by fal's URL, with no upload.",
    "fal's URL of the video (fal keeps it for a limited time).",
    "The video's last frame as one image, to chain into image nodes or into another image to video.",
)


def _int_input(limits: tuple[int, int, int], tooltip: str) -> tuple[str, dict[str, Any]]:
    low, high, default = limits
    return ("INT", {"default": default, "min": low, "max": high, "step": 1, "tooltip": tooltip})


def _seed_input() -> tuple[str, dict[str, Any]]:
    return widgets.common_tail_inputs()["seed"]


class VideoNodeSchema:
    """What every Grok Imagine Video node shares: its category and its outputs."""

    CATEGORY = CATEGORY
    RETURN_TYPES = RETURN_TYPES
    RETURN_NAMES = RETURN_NAMES
    OUTPUT_TOOLTIPS = OUTPUT_TOOLTIPS


class GrokImagineVideoSchema(VideoNodeSchema):
    DESCRIPTION = (
        "Make a video with sound from a text prompt, or bring an image to life, with xAI's Grok Imagine Video on "
        "fal.ai (xai/grok-imagine-video/..., or its v1.5 model). Connect 'image' for image to video. Needs a fal API "
        "key (FAL_KEY or Settings > Grok Imagine (fal)); fal bills each second of video (and the input image). "
        "Videos take minutes at fal."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "prompt": widgets.prompt_input(
                    "What the video should show and how it moves, sound included (at most 4,096 characters). With an "
                    "image connected: how the image comes to life."),
                "duration": _int_input(DURATION, "Length of the video in seconds (1 to 15); fal bills each second."),
                "aspect_ratio": (list(VIDEO_ASPECT_RATIOS), {
                    "default": DEFAULT_VIDEO_ASPECT_RATIO,
                    "tooltip": "Width:height of the video. auto: the image's shape when 'image' is connected, else "
                               "fal's default (16:9). grok-imagine-video-1.5 animates an image only in its own shape.",
                }),
                "resolution": (list(RESOLUTIONS), {
                    "default": DEFAULT_RESOLUTION,
                    "tooltip": "480p, 720p, or 1080p (grok-imagine-video-1.5 from text only). Each second costs more "
                               "at a higher resolution.",
                }),
                "model": (list(MODELS), {
                    "default": DEFAULT_MODEL,
                    "tooltip": "grok-imagine-video: xAI's first video model. grok-imagine-video-1.5: the newer one, "
                               "with 1080p from text, billed at its own price (shown on the node).",
                }),
                "seed": _seed_input(),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "Connect an image to animate it (image to video): the first image of "
                                               "the batch starts the video. Unconnected: text to video."}),
            },
            "hidden": widgets.HIDDEN,
        }


class GrokImagineReferenceVideoSchema(VideoNodeSchema):
    DESCRIPTION = (
        "Make a video with sound that keeps the people, objects or style of one to seven reference images, with "
        "xAI's Grok Imagine on fal.ai (xai/grok-imagine-video/reference-to-video). Refer to them in the prompt as "
        "@Image1, @Image2... in input order. The images are uploaded to fal's storage. Needs a fal API key (FAL_KEY "
        "or Settings > Grok Imagine (fal)); fal bills each second of video and each reference."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        further = {
            name: ("IMAGE", {"tooltip": f"A further reference of another size (its batch's first image): the next "
                                        f"@Image after those before it. At most {MAX_REFERENCES} references in all."})
            for name in REFERENCE_INPUTS[1:]
        }
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The reference images: the first one to seven images of this batch are "
                                               "@Image1, @Image2... in the prompt."}),
                "prompt": widgets.prompt_input(
                    "What the video should show, naming the references as @Image1, @Image2... (at most 4,096 "
                    "characters)."),
                "duration": _int_input(REFERENCE_DURATION,
                                       "Length of the video in seconds (1 to 10); fal bills each second."),
                "aspect_ratio": (list(ASPECT_RATIOS), {"default": DEFAULT_ASPECT_RATIO,
                                                       "tooltip": "Width:height of the video."}),
                "resolution": (list(REFERENCE_RESOLUTIONS), {
                    "default": DEFAULT_REFERENCE_RESOLUTION,
                    "tooltip": "480p or 720p. Each second costs more at 720p.",
                }),
                "seed": _seed_input(),
            },
            "optional": further,
            "hidden": widgets.HIDDEN,
        }


class GrokImagineVideoEditSchema(VideoNodeSchema):
    DESCRIPTION = (
        "Change a video with a text prompt (its style, objects, setting), with xAI's Grok Imagine on fal.ai "
        "(xai/grok-imagine-video/edit-video). fal edits the first 8 seconds, at most 854x480. A video from another "
        "Grok node goes to fal by its URL; any other is uploaded as an MP4 (at most 100 MiB). Needs a fal API key "
        "(FAL_KEY or Settings > Grok Imagine (fal)); fal bills each second of the input and of the result."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "video": ("VIDEO", {"tooltip": "The video to edit (its first 8 seconds): from a Grok video node, Load "
                                               "Video, or any VIDEO output."}),
                "prompt": widgets.prompt_input("How to change the video (at most 4,096 characters)."),
                "resolution": (list(EDIT_RESOLUTIONS), {
                    "default": DEFAULT_EDIT_RESOLUTION,
                    "tooltip": "auto: as fal reads the input (at most 854x480). 480p or 720p: that resolution, each "
                               "second costing more at 720p.",
                }),
                "seed": _seed_input(),
            },
            "hidden": widgets.HIDDEN,
        }


class GrokImagineVideoExtendSchema(VideoNodeSchema):
    DESCRIPTION = (
        "Continue a video from its last frame with a text prompt, with xAI's Grok Imagine on fal.ai "
        "(xai/grok-imagine-video/extend-video). The input must be 2 to 15 seconds long. A video from another Grok node "
        "goes to fal by its URL; any other is uploaded as an MP4 (at most 100 MiB). Needs a fal API key (FAL_KEY or "
        "Settings > Grok Imagine (fal)); fal bills each second of the extension and of the input."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "video": ("VIDEO", {"tooltip": "The video to continue, 2 to 15 seconds long: from a Grok video node, "
                                               "Load Video, or any VIDEO output."}),
                "prompt": widgets.prompt_input("What happens next in the video (at most 4,096 characters)."),
                "duration": _int_input(EXTEND_DURATION,
                                       "Length of the extension in seconds (2 to 10); fal bills each second."),
                "seed": _seed_input(),
            },
            "hidden": widgets.HIDDEN,
        }


# node id -> (display name, schema class)
VIDEO_NODES: dict[str, tuple[str, type[VideoNodeSchema]]] = {
    "FalGrokImagineVideo": ("Grok Imagine Video (fal)", GrokImagineVideoSchema),
    "FalGrokImagineReferenceVideo": ("Grok Imagine Reference Video (fal)", GrokImagineReferenceVideoSchema),
    "FalGrokImagineVideoEdit": ("Grok Imagine Video Edit (fal)", GrokImagineVideoEditSchema),
    "FalGrokImagineVideoExtend": ("Grok Imagine Video Extend (fal)", GrokImagineVideoExtendSchema),
}

