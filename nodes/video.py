"""Grok Imagine Video on fal: four nodes that make a video with sound (text or image to video, from reference
images, an edit and an extension of a video), and the node that loads a video request again by its id.

The nodes' ids, inputs (names, order) and outputs are a public contract from their first landing: add inputs only
at the end, optional.

A run checks the widgets into a `video_api.VideoRequest` before anything is uploaded or sent, measures the input
video (Edit, Extend: an input fal would refuse is refused here), gives the media URLs (images uploaded as the edit
nodes' references are; a VIDEO a Grok node made goes by fal's URL, with no download and no upload; any other is
written as an MP4 and uploaded, refused over fal's one-upload size first), and goes the one request path (`run`:
the journal, the fal balance, the daily limit, Cancel at fal). The result is collected by `collect_video`, the same
for a run and for the Video Result node: the video streamed into ComfyUI's temp folder (`<temp>/grok_imagine`),
probed, its last frame read, and handed on as ComfyUI's own VIDEO, remembering fal's URL. It plays on the node as
Save Video's preview does.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..fal_transport import config, storage
from ..fal_transport.aio import until_cancelled
from ..fal_transport.credentials import resolve_credentials
from ..fal_transport.errors import InvalidInputError, RequestNotFoundError
from ..fal_transport.lifecycle import FalRequest, cancelled_before_sending
from ..media.video import (
    VideoFetchError,
    VideoInfo,
    as_comfy_video,
    download_video,
    fal_url_of,
    mp4_for_upload,
    read_video,
    video_seconds,
)
from . import host, widgets
from . import video_api as api
from .grok_api import Reference
from .list_batch import BatchMember
from .outputs import SUBFOLDER, video_output
from .progress import NodeProgress, RequestProgress
from .references import check_image, reference_tensors, references_for_fal
from .result_node import clean_request_id
from .run import Session, reuse_fal_files, run_node, send, stopped_by_user

log = logging.getLogger("grok_imagine_fal")

# A video may be tens of MB where an image is a few: its download gets this many times an image's time
# (GROK_IMAGINE_DOWNLOAD_TIMEOUT, so 300 s by default).
VIDEO_DOWNLOAD_FACTOR = 5
REFERENCE_INPUTS: tuple[str, ...] = ("image", "image_2", "image_3", "image_4", "image_5", "image_6", "image_7")


# --------------------------------------------------------------------------------------------
# Collect: the one path from fal's result to ComfyUI's VIDEO
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """A request's video, collected: ComfyUI's VIDEO reading the file at `path`, fal's URL, and the last frame."""

    video: Any
    url: str
    last_frame: torch.Tensor
    path: Path
    request_id: str


def video_folder() -> Path:
    """Where videos go: ComfyUI's temp folder (emptied when ComfyUI starts), else the system's."""
    folder_paths = host.folder_paths()
    base = Path(folder_paths.get_temp_directory()) if folder_paths is not None else Path(tempfile.gettempdir())
    return base / SUBFOLDER


async def collect_video(request: FalRequest, data: dict[str, Any], progress: RequestProgress) -> Clip:
    """The request's video from its result: streamed to a file (progress in bytes), read, wrapped."""
    result = api.read_result(data, request.request_id)
    stem = "grok_video_" + re.sub(r"[^A-Za-z0-9_-]", "_", request.request_id)
    path = await download_video(
        result.url, video_folder(), stem=stem, timeout_s=request.limits.download_timeout * VIDEO_DOWNLOAD_FACTOR,
        request_id=request.request_id,
        on_progress=lambda received, total: progress.downloading_bytes(received, total or result.file_size))
    try:
        info, frame = await asyncio.to_thread(_read_video, path, request.request_id)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    progress.finished_video(info.duration, info.width, info.height)
    return Clip(as_comfy_video(path, result.url), result.url, frame, path, request.request_id)


def _read_video(path: Path, request_id: str) -> tuple[VideoInfo, torch.Tensor]:
    """What the downloaded file holds and its last frame (the file opened once)."""
    try:
        read = read_video(path)
    except ValueError as exc:
        raise VideoFetchError("fal's result video holds no frame.", request_id=request_id) from exc
    if read is None:
        raise VideoFetchError("fal's result is not a video this pack can read (PyAV could not open it).",
                              request_id=request_id)
    return read


async def _collect(session: Session, request: FalRequest, member: BatchMember, progress: RequestProgress) -> Clip:
    data = await request.result()
    clip = await until_cancelled(collect_video(request, data, progress), host.interrupted,
                                 stopped_by_user(request))
    member.collected(request)
    return clip


async def make_video(request: api.VideoRequest, member: BatchMember) -> Clip:
    """The video of one run: an earlier request with the same inputs collected free, or a new one sent once the
    fal balance and the daily limit allow its price."""
    session = Session.open()
    progress = member.request_progress()
    fal_request = session.request(request, progress)
    try:
        [clip] = await send(session, member, [fal_request],
                            lambda one, _: _collect(session, one, member, progress))
    except BaseException:
        if progress.stage != "done":
            progress.failed()
        raise
    return clip


async def run_video_node(node_id: str | None, extra_pnginfo: Any,
                         prepare: Callable[[bool], Awaitable[api.VideoRequest]]) -> dict[str, Any]:
    """Run one video node (one list item of it): `prepare(reuse)` checks the inputs, gives the media URLs
    (`reuse_fal_files`) and says what to ask of fal."""

    async def work(member: BatchMember) -> dict[str, Any]:
        async def go(request: api.VideoRequest) -> dict[str, Any]:
            clip = await make_video(request, member)
            return video_output(clip, endpoint=request.endpoint, node_id=node_id, member=member,
                                extra_pnginfo=extra_pnginfo)

        return await reuse_fal_files(member, prepare, lambda request: request, go)

    return await run_node(node_id, work)


# --------------------------------------------------------------------------------------------
# Media: how images and videos reach fal
# --------------------------------------------------------------------------------------------


def measure(video: object, field: str) -> api.InputVideo:
    """The length (its trim applied) and size of the VIDEO connected to `field`."""
    seconds = video_seconds(video, field)
    try:
        width, height = video.get_dimensions()  # type: ignore[attr-defined]
    except Exception as exc:  # any reader's failure
        raise InvalidInputError(
            f"'{field}' could not be read as a video ({type(exc).__name__}: {exc}). Connect a VIDEO output such as "
            "Load Video's.", field=field) from exc
    return api.InputVideo(seconds, int(width), int(height))


async def video_for_fal(node_id: str | None, video: object, field: str, *, reuse: bool = True) -> Reference:
    """A URL fal reads the VIDEO from, and its content's hash: fal's own URL for a video a Grok node made (no
    upload; `reuse` False: uploaded all the same); any other written as an MP4 into the temp folder, uploaded, and
    deleted (refused, before anything is uploaded, over fal's one-upload size)."""
    url = fal_url_of(video)
    if url is not None and reuse:
        host.send_progress_text(node_id, f"Reusing fal's video for '{field}'")
        source = Path(video.get_stream_source())  # type: ignore[attr-defined]
        return Reference(url, await asyncio.to_thread(storage.file_sha256, source), reused=True)
    credentials = resolve_credentials(config.key_file())
    host.send_progress_text(node_id, f"Writing '{field}' as an MP4 for fal")
    written = await asyncio.to_thread(mp4_for_upload, video, video_folder(), field=field,
                                      max_bytes=storage.MAX_UPLOAD_BYTES)
    try:
        if host.interrupted():
            raise cancelled_before_sending()
        digest = await asyncio.to_thread(storage.file_sha256, written.path)
        host.send_progress_text(node_id, f"Uploading '{field}' to fal ({written.size / 1e6:.1f} MB)")
        url = await until_cancelled(
            storage.upload_file(credentials, written.path, content_type="video/mp4", file_name=f"{field}.mp4",
                                sha256=digest),
            host.interrupted, cancelled_before_sending)
    finally:
        written.path.unlink(missing_ok=True)
    return Reference(url, digest)


# --------------------------------------------------------------------------------------------
# The nodes (a public contract: never rename or reorder; add inputs only at the end, optional)
# --------------------------------------------------------------------------------------------

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


class _VideoNode:
    """What every Grok Imagine Video node shares: its category and its outputs."""

    CATEGORY = "fal/Grok Imagine"
    RETURN_TYPES = RETURN_TYPES
    RETURN_NAMES = RETURN_NAMES
    OUTPUT_TOOLTIPS = OUTPUT_TOOLTIPS


class FalGrokImagineVideo(_VideoNode):
    """Text to video, or image to video with `image` connected."""

    DESCRIPTION = (
        "Make a video with sound from a text prompt, or bring an image to life, with xAI's Grok Imagine Video on "
        "fal.ai (xai/grok-imagine-video/..., or its v1.5 model). Connect 'image' for image to video. Needs a fal API "
        "key (FAL_KEY or Settings > Grok Imagine (fal)); fal bills each second of video (and the input image). "
        "Videos take minutes at fal."
    )
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "prompt": widgets.prompt_input(
                    "What the video should show and how it moves, sound included (at most 4,096 characters). With an "
                    "image connected: how the image comes to life."),
                "duration": _int_input(api.DURATION,
                                       "Length of the video in seconds (1 to 15); fal bills each second."),
                "aspect_ratio": (list(api.VIDEO_ASPECT_RATIOS), {
                    "default": api.DEFAULT_VIDEO_ASPECT_RATIO,
                    "tooltip": "Width:height of the video. auto: the image's shape when 'image' is connected, else "
                               "fal's default (16:9). grok-imagine-video-1.5 animates an image only in its own shape.",
                }),
                "resolution": (list(api.RESOLUTIONS), {
                    "default": api.DEFAULT_RESOLUTION,
                    "tooltip": "480p, 720p, or 1080p (grok-imagine-video-1.5 from text only). Each second costs more "
                               "at a higher resolution.",
                }),
                "model": (list(api.MODELS), {
                    "default": api.DEFAULT_MODEL,
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

    @classmethod
    def video_request(cls, inputs: Mapping[str, Any], connected: frozenset[str] = frozenset()) -> api.VideoRequest:
        """The request these widget values ask for (`connected`: the linked inputs; the image comes later)."""
        return api.text_or_image_to_video(inputs["prompt"], inputs["duration"], inputs["aspect_ratio"],
                                          inputs["resolution"], inputs["model"], with_image="image" in connected)

    async def generate(self, prompt: str, duration: int = api.DURATION[2],
                       aspect_ratio: str = api.DEFAULT_VIDEO_ASPECT_RATIO, resolution: str = api.DEFAULT_RESOLUTION,
                       model: str = api.DEFAULT_MODEL, seed: int = 0, image: Any = None, unique_id: str | None = None,
                       extra_pnginfo: Any = None) -> dict[str, Any]:
        """The seed is never sent."""
        inputs = {"prompt": prompt, "duration": duration, "aspect_ratio": aspect_ratio, "resolution": resolution,
                  "model": model}

        async def prepare(reuse: bool) -> api.VideoRequest:
            request = self.video_request(inputs, frozenset({"image"}) if image is not None else frozenset())
            if image is None:
                return request
            first = check_image("image", image)[0]
            return replace(request, images=await references_for_fal(unique_id, [first], reuse=reuse))

        return await run_video_node(unique_id, extra_pnginfo, prepare)


class FalGrokImagineReferenceVideo(_VideoNode):
    """A video keeping the people, objects or style of one to seven reference images."""

    DESCRIPTION = (
        "Make a video with sound that keeps the people, objects or style of one to seven reference images, with "
        "xAI's Grok Imagine on fal.ai (xai/grok-imagine-video/reference-to-video). Refer to them in the prompt as "
        "@Image1, @Image2... in input order. The images are uploaded to fal's storage. Needs a fal API key (FAL_KEY "
        "or Settings > Grok Imagine (fal)); fal bills each second of video and each reference."
    )
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        further = {
            name: ("IMAGE", {"tooltip": f"A further reference of another size (its batch's first image): the next "
                                        f"@Image after those before it. At most {api.MAX_REFERENCES} references in "
                                        "all."})
            for name in REFERENCE_INPUTS[1:]
        }
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The reference images: the first one to seven images of this batch are "
                                               "@Image1, @Image2... in the prompt."}),
                "prompt": widgets.prompt_input(
                    "What the video should show, naming the references as @Image1, @Image2... (at most 4,096 "
                    "characters)."),
                "duration": _int_input(api.REFERENCE_DURATION,
                                       "Length of the video in seconds (1 to 10); fal bills each second."),
                "aspect_ratio": (list(api.ASPECT_RATIOS), {"default": api.DEFAULT_ASPECT_RATIO,
                                                           "tooltip": "Width:height of the video."}),
                "resolution": (list(api.REFERENCE_RESOLUTIONS), {
                    "default": api.DEFAULT_REFERENCE_RESOLUTION,
                    "tooltip": "480p or 720p. Each second costs more at 720p.",
                }),
                "seed": _seed_input(),
            },
            "optional": further,
            "hidden": widgets.HIDDEN,
        }

    @classmethod
    def video_request(cls, inputs: Mapping[str, Any], connected: frozenset[str] = frozenset()) -> api.VideoRequest:
        """The request these widget values ask for (the references come later, once uploaded)."""
        return api.reference_to_video(inputs["prompt"], inputs["duration"], inputs["aspect_ratio"],
                                      inputs["resolution"])

    async def generate(self, image: Any, prompt: str, duration: int = api.REFERENCE_DURATION[2],
                       aspect_ratio: str = api.DEFAULT_ASPECT_RATIO,
                       resolution: str = api.DEFAULT_REFERENCE_RESOLUTION, seed: int = 0,
                       unique_id: str | None = None, extra_pnginfo: Any = None, **further: Any) -> dict[str, Any]:
        """`further`: image_2 ... image_7, those connected. The seed is never sent."""
        inputs = {"prompt": prompt, "duration": duration, "aspect_ratio": aspect_ratio, "resolution": resolution}

        async def prepare(reuse: bool) -> api.VideoRequest:
            request = self.video_request(inputs)
            images = reference_tensors({"image": image, **further}, REFERENCE_INPUTS, api.MAX_REFERENCES)
            api.check_reference_count(len(images))
            return replace(request, images=await references_for_fal(unique_id, images, reuse=reuse))

        return await run_video_node(unique_id, extra_pnginfo, prepare)


def _video_input(what: str) -> tuple[str, dict[str, Any]]:
    return ("VIDEO", {"tooltip": f"The video to {what}: from a Grok video node, Load Video, or any VIDEO output."})


class _VideoToVideoNode(_VideoNode):
    """Edit and Extend: a request on an input video, measured and sent by URL (or uploaded) before it goes."""

    async def _run(self, video: Any, inputs: dict[str, Any], unique_id: str | None,
                   extra_pnginfo: Any) -> dict[str, Any]:
        async def prepare(reuse: bool) -> api.VideoRequest:
            request = self.video_request(inputs, frozenset({"video"}))  # type: ignore[attr-defined]
            request = request.measured(await asyncio.to_thread(measure, video, "video"))
            return replace(request, video=await video_for_fal(unique_id, video, "video", reuse=reuse))

        return await run_video_node(unique_id, extra_pnginfo, prepare)


class FalGrokImagineVideoEdit(_VideoToVideoNode):
    """Change a video with a prompt."""

    DESCRIPTION = (
        "Change a video with a text prompt (its style, objects, setting), with xAI's Grok Imagine on fal.ai "
        "(xai/grok-imagine-video/edit-video). fal edits the first 8 seconds, at most 854x480. A video from another "
        "Grok node goes to fal by its URL; any other is uploaded as an MP4 (at most 100 MiB). Needs a fal API key "
        "(FAL_KEY or Settings > Grok Imagine (fal)); fal bills each second of the input and of the result."
    )
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "video": _video_input("edit (its first 8 seconds)"),
                "prompt": widgets.prompt_input("How to change the video (at most 4,096 characters)."),
                "resolution": (list(api.EDIT_RESOLUTIONS), {
                    "default": api.DEFAULT_EDIT_RESOLUTION,
                    "tooltip": "auto: as fal reads the input (at most 854x480). 480p or 720p: that resolution, each "
                               "second costing more at 720p.",
                }),
                "seed": _seed_input(),
            },
            "hidden": widgets.HIDDEN,
        }

    @classmethod
    def video_request(cls, inputs: Mapping[str, Any], connected: frozenset[str] = frozenset()) -> api.VideoRequest:
        """The request these widget values ask for (the input video comes later)."""
        return api.edit_video(inputs["prompt"], inputs["resolution"])

    async def edit(self, video: Any, prompt: str, resolution: str = api.DEFAULT_EDIT_RESOLUTION, seed: int = 0,
                   unique_id: str | None = None, extra_pnginfo: Any = None) -> dict[str, Any]:
        """The seed is never sent."""
        return await self._run(video, {"prompt": prompt, "resolution": resolution}, unique_id, extra_pnginfo)


class FalGrokImagineVideoExtend(_VideoToVideoNode):
    """Continue a video from its last frame with a prompt."""

    DESCRIPTION = (
        "Continue a video from its last frame with a text prompt, with xAI's Grok Imagine on fal.ai "
        "(xai/grok-imagine-video/extend-video). The input must be 2 to 15 seconds long. A video from another Grok node "
        "goes to fal by its URL; any other is uploaded as an MP4 (at most 100 MiB). Needs a fal API key (FAL_KEY or "
        "Settings > Grok Imagine (fal)); fal bills each second of the extension and of the input."
    )
    FUNCTION = "extend"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "video": _video_input("continue, 2 to 15 seconds long"),
                "prompt": widgets.prompt_input("What happens next in the video (at most 4,096 characters)."),
                "duration": _int_input(api.EXTEND_DURATION,
                                       "Length of the extension in seconds (2 to 10); fal bills each second."),
                "seed": _seed_input(),
            },
            "hidden": widgets.HIDDEN,
        }

    @classmethod
    def video_request(cls, inputs: Mapping[str, Any], connected: frozenset[str] = frozenset()) -> api.VideoRequest:
        """The request these widget values ask for (the input video comes later)."""
        return api.extend_video(inputs["prompt"], inputs["duration"])

    async def extend(self, video: Any, prompt: str, duration: int = api.EXTEND_DURATION[2], seed: int = 0,
                     unique_id: str | None = None, extra_pnginfo: Any = None) -> dict[str, Any]:
        """The seed is never sent."""
        return await self._run(video, {"prompt": prompt, "duration": duration}, unique_id, extra_pnginfo)


# --------------------------------------------------------------------------------------------
# Loading a video request again by its id
# --------------------------------------------------------------------------------------------


async def recover_video(request_id: str, node_progress: NodeProgress) -> Clip:
    """An earlier video request's video, loaded from fal by its id without a new generation (nothing is billed)."""
    session = Session.open()
    progress = node_progress.request()
    request = session.earlier(api.APP, request_id, progress)
    try:
        data = await request.result()
    except RequestNotFoundError as exc:  # fal keeps images under another app: their ids are not found here
        raise RequestNotFoundError(f"{exc.reason} The id of an image request is loaded by the Grok Imagine Result "
                                   "node.", request_id=exc.request_id) from exc
    clip = await until_cancelled(collect_video(request, data, progress), host.interrupted, stopped_by_user(request))
    request.settle(used=True)
    return clip


class FalGrokImagineVideoResult(_VideoNode):
    """Load the video of an earlier Grok Imagine Video request from fal by its request id."""

    DESCRIPTION = (
        "Load the video of an earlier Grok Imagine Video request (any of the four video nodes) from fal by its "
        "request id, without a new generation (nothing is billed). Use it after a crash, a restart or a failure "
        "further down the graph; the id is also in the MP4s Save Video writes. fal keeps a result for a limited time "
        "after it completes."
    )
    FUNCTION = "load"
    OUTPUT_TOOLTIPS = (
        "The request's video, as ComfyUI's VIDEO (into another Grok video node it goes by fal's URL).",
        "fal's URL of the video.",
        "The video's last frame as one image.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "request_id": ("STRING", {
                    "default": "", "multiline": False,
                    "tooltip": "The fal request id of a video request, as shown on the video node, in the console, in "
                               "error messages and in the metadata of the MP4s Save Video writes.",
                }),
            },
            "hidden": widgets.HIDDEN,
        }

    async def load(self, request_id: str, unique_id: str | None = None, extra_pnginfo: Any = None) -> dict[str, Any]:
        async def work(member: BatchMember) -> dict[str, Any]:
            clip = await recover_video(clean_request_id(request_id), member.progress)
            return video_output(clip, endpoint=api.APP, node_id=unique_id, member=member, extra_pnginfo=extra_pnginfo)

        return await run_node(unique_id, work)
