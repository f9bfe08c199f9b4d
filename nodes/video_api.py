"""fal's contract for Grok Imagine Video, in one place, as `grok_api` holds the images': the endpoints and
what they accept (choices, limits), what each costs, the typed request a video node sends (`VideoRequest`),
and how its result reads (`read_result`). The video nodes (`video`) and the price badge use this table.

A sibling of `grok_api` rather than a part of it: the two families share no endpoint (fal serves the videos
as another app, `xai/grok-imagine-video`), no limit, no rate (videos are billed per second) and no result
shape (one `video`, not a list of `images`); what they share is the request path (`run`, `fal_transport`),
which takes either family's request as a `Payload`.

A video request is made in three steps, each checked before anything is uploaded or sent: from the widgets
(`text_or_image_to_video`, `reference_to_video`, `edit_video`, `extend_video`), then for Edit and Extend the
input video's length and size (`measured`: an input fal would refuse is refused here), then its media once
they have URLs (`images`, `video`). The journal knows the media by their content's hash, not their URL.

Prices, USD per second of output as of 2026-12 (`VIDEO_RATES`): fal's pages state the v1.5 image-to-video
rates and the edit/extend rates; the others are xAI's published rates, which fal passes through; the 1080p
rate of v1.5 text-to-video is an assumption. Assumptions on billing where fal states none: an edit is billed
for the seconds fal uses (the first 8 s of the input) as input and as output, at 480p when its resolution is
`auto` (fal brings the input down to at most 854x480); an extension is billed for its own seconds at the
input's resolution (480p for an input at most 480 pixels on its shorter side, else 720p).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from ..fal_transport.errors import InvalidInputError, ResultError
from ..fal_transport.journal import fingerprint
from ..fal_transport.ledger import Spend
from . import widgets
from .grok_api import Reference

APP = "xai/grok-imagine-video"
TEXT_TO_VIDEO_ENDPOINT = f"{APP}/text-to-video"
IMAGE_TO_VIDEO_ENDPOINT = f"{APP}/image-to-video"
V15_TEXT_TO_VIDEO_ENDPOINT = f"{APP}/v1.5/text-to-video"
V15_IMAGE_TO_VIDEO_ENDPOINT = f"{APP}/v1.5/image-to-video"
REFERENCE_TO_VIDEO_ENDPOINT = f"{APP}/reference-to-video"
EDIT_VIDEO_ENDPOINT = f"{APP}/edit-video"
EXTEND_VIDEO_ENDPOINT = f"{APP}/extend-video"
# The endpoints share one queue path (APP): a request of any of them is found through APP (the Video Result node).

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
SMALL_INPUT_SIDE = 480  # an input video at most this on its shorter side is extended (and billed) at 480p
EDIT_AUTO_RESOLUTION = "480p"  # an edit at `auto` comes back at most 854x480, and is billed so

# The field of fal's body that carries each endpoint's media (none for text to video).
MEDIA_FIELD: dict[str, str] = {
    IMAGE_TO_VIDEO_ENDPOINT: "image_url", V15_IMAGE_TO_VIDEO_ENDPOINT: "image_url",
    REFERENCE_TO_VIDEO_ENDPOINT: "reference_image_urls",
    EDIT_VIDEO_ENDPOINT: "video_url", EXTEND_VIDEO_ENDPOINT: "video_url",
}

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
# The request
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputVideo:
    """What Edit and Extend know of their input video before sending it: its length (its trim applied) and size."""

    seconds: float
    width: int
    height: int


@dataclass(frozen=True)
class VideoRequest:
    """What one run of a video node asks of fal, checked and typed: a `Payload` of the request path. The fields
    are fal's (None: not sent, fal's default applies); `images` and `video` are the media once they have URLs,
    known to the journal by their content's hash; `input_video` is what Edit and Extend are priced by."""

    endpoint: str
    prompt: str
    duration: int | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    images: tuple[Reference, ...] = ()  # image_url (one) or reference_image_urls
    video: Reference | None = None  # video_url
    input_video: InputVideo | None = None

    @property
    def sync_mode(self) -> bool:
        return False  # fal's video endpoints have no sync mode: every result is a file at a URL

    @property
    def media_field(self) -> str | None:
        return MEDIA_FIELD.get(self.endpoint)

    def measured(self, source: InputVideo) -> VideoRequest:
        """This Edit or Extend of an input video of `source`'s length and size; an input fal would refuse to
        extend is refused here, naming the fix."""
        if self.endpoint == EXTEND_VIDEO_ENDPOINT:
            low, high = EXTEND_INPUT_SECONDS
            if not low <= source.seconds <= high:
                raise InvalidInputError(
                    f"fal extends videos of {low:g} to {high:g} seconds; 'video' is {source.seconds:.1f} s. "
                    + ("Trim it to at most 15 s (the extension continues from its last frame)."
                       if source.seconds > high else "Connect a longer video."), field="video")
        return replace(self, input_video=source)

    def arguments(self) -> dict[str, Any]:
        """The body's fields but the media (what a frozen workflow pins)."""
        fields = {"prompt": self.prompt, "duration": self.duration, "aspect_ratio": self.aspect_ratio,
                  "resolution": self.resolution}
        return {name: value for name, value in fields.items() if value is not None}

    def body(self) -> dict[str, Any]:
        """The JSON fal receives, with the media's URLs."""
        body = self.arguments()
        field = self.media_field
        if field == "image_url" and len(self.images) == 1 and self.video is None:
            body[field] = self.images[0].url
        elif field == "reference_image_urls" and 1 <= len(self.images) <= MAX_REFERENCES and self.video is None:
            body[field] = [image.url for image in self.images]
        elif field == "video_url" and self.video is not None and not self.images:
            body[field] = self.video.url
        elif field is not None or self.images or self.video is not None:
            raise ValueError(f"{self.endpoint} takes {field or 'no media'}; got {len(self.images)} image(s) and "
                             f"{'a' if self.video else 'no'} video")
        return body

    def fingerprint(self) -> str:
        """The body as the journal knows it: the media by content, not by URL (a rerun finds its request even
        after a new upload)."""
        identity = self.arguments()
        if self.images:
            identity["image_sha256"] = [image.sha256 for image in self.images]
        if self.video is not None:
            identity["video_sha256"] = self.video.sha256
        return fingerprint(self.endpoint, identity)

    def reused_urls(self) -> frozenset[str]:
        """The URLs of the media fal already held (sent with no upload)."""
        media = (*self.images, *((self.video,) if self.video is not None else ()))
        return frozenset(reference.url for reference in media if reference.reused)

    @property
    def output_seconds(self) -> float:
        """The seconds of video fal bills as output: the duration asked for (an extension's own seconds), or
        for an edit the seconds of input it edits."""
        if self.endpoint == EDIT_VIDEO_ENDPOINT:
            return min(self._input().seconds, EDIT_INPUT_SECONDS)
        assert self.duration is not None
        return float(self.duration)

    @property
    def billed_resolution(self) -> str:
        if self.endpoint == EDIT_VIDEO_ENDPOINT:
            return EDIT_AUTO_RESOLUTION if self.resolution in (None, "auto") else self.resolution
        if self.endpoint == EXTEND_VIDEO_ENDPOINT:
            source = self._input()
            return "480p" if min(source.width, source.height) <= SMALL_INPUT_SIDE else "720p"
        return self.resolution or DEFAULT_RESOLUTION

    def price(self) -> float:
        input_seconds = 0.0
        if self.endpoint == EDIT_VIDEO_ENDPOINT:
            input_seconds = self.output_seconds
        elif self.endpoint == EXTEND_VIDEO_ENDPOINT:
            input_seconds = self._input().seconds
        return video_price(self.endpoint, self.billed_resolution, self.output_seconds, images=len(self.images),
                           input_seconds=input_seconds)

    def spend(self) -> Spend:
        """What the request costs once fal accepts it; the ledger counts a video's seconds as its images."""
        return Spend(self.price(), max(1, math.ceil(self.output_seconds)), len(self.images) + (self.video is not None))

    def _input(self) -> InputVideo:
        if self.input_video is None:
            raise ValueError(f"{self.endpoint} is priced by its input video: measure it first")
        return self.input_video


# --------------------------------------------------------------------------------------------
# From the widgets
# --------------------------------------------------------------------------------------------


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


def text_or_image_to_video(prompt: object, duration: object, aspect_ratio: object, resolution: object, model: object,
                           *, with_image: bool) -> VideoRequest:
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
    sent_ratio: str | None = ratio
    if endpoint == V15_IMAGE_TO_VIDEO_ENDPOINT:
        if ratio != "auto":
            raise InvalidInputError(
                f"grok-imagine-video-1.5 animates an image in the image's own shape; it takes no aspect ratio (got "
                f"{ratio}). Set aspect_ratio to auto, or crop the image to {ratio} first.", field="aspect_ratio")
        sent_ratio = None
    elif ratio == "auto" and not with_image:  # text to video: auto is fal's default (16:9), so it is not sent
        sent_ratio = None
    return VideoRequest(endpoint, text, seconds, sent_ratio, size)


def reference_to_video(prompt: object, duration: object, aspect_ratio: object, resolution: object) -> VideoRequest:
    """Grok Imagine Reference Video (its references, `@Image1`... in the prompt, come once uploaded)."""
    return VideoRequest(REFERENCE_TO_VIDEO_ENDPOINT, check_video_prompt(prompt),
                        check_duration(duration, REFERENCE_DURATION),
                        widgets.check_choice("aspect_ratio", aspect_ratio, ASPECT_RATIOS),
                        widgets.check_choice("resolution", resolution, REFERENCE_RESOLUTIONS))


def edit_video(prompt: object, resolution: object) -> VideoRequest:
    """Grok Imagine Video Edit (fal edits the first 8 s of its input)."""
    return VideoRequest(EDIT_VIDEO_ENDPOINT, check_video_prompt(prompt),
                        resolution=widgets.check_choice("resolution", resolution, EDIT_RESOLUTIONS))


def extend_video(prompt: object, duration: object) -> VideoRequest:
    """Grok Imagine Video Extend: `duration` seconds more of its input."""
    return VideoRequest(EXTEND_VIDEO_ENDPOINT, check_video_prompt(prompt), check_duration(duration, EXTEND_DURATION))


def check_reference_count(references: int) -> None:
    if not 1 <= references <= MAX_REFERENCES:
        raise InvalidInputError(
            f"Reference Video takes 1 to {MAX_REFERENCES} reference images; {references} are connected. Use fewer "
            "images (the first ones of 'image', then one from each further input).", field="image")


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoResult:
    """What fal's result says of its video: where it is, and its size in bytes when fal states it."""

    url: str
    file_size: int | None


def read_result(result: dict[str, Any], request_id: str) -> VideoResult:
    """The part of fal's result JSON the nodes use, `video: {url, ...}`; a result without a video URL is an
    error."""
    video = result.get("video")
    url = video.get("url") if isinstance(video, dict) else None
    if not isinstance(url, str) or not url:
        raise ResultError("fal's result holds no video. The request may have been filtered; try another prompt.",
                          request_id=request_id)
    assert isinstance(video, dict)
    size = video.get("file_size")
    return VideoResult(url, size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None)
