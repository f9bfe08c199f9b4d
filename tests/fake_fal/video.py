"""The video half of the fake fal: xAI's Grok Imagine Video endpoints, their validation and real MP4 results.

The fake's handler routes these endpoints here; everything video-specific lives in this module. A video job
follows the same queue, account concurrency, faults (refusals, errors, cancel, ``never_complete``...) and
status protocol as an image job (`fake_fal.jobs`; its logs say "Generating video"), and its file
(``BASE/files/ID/0.mp4``) is served like an image, so the ``image_*`` faults and ``cdn_latency`` apply to it.

Endpoints (`VIDEO_ENDPOINTS`, all under the app ``xai/grok-imagine-video``) and what each accepts; any other
field is refused with type ``extra_forbidden`` (stricter than fal on purpose, so stray fields are caught):

==========================  ===============================================================================
``text-to-video``           ``prompt``; ``duration`` 1..15 (6); ``resolution`` 480p|720p (720p);
                            ``aspect_ratio`` one of `VIDEO_ASPECT_RATIOS` (16:9)
``image-to-video``          as text-to-video, + ``image_url`` (required); ``aspect_ratio`` also ``auto``,
                            its default (the image's shape when the fake can read the image, else 16:9)
``v1.5/text-to-video``      as text-to-video; ``resolution`` also 1080p
``v1.5/image-to-video``     ``prompt``, ``duration`` 1..15 (6), ``resolution`` 480p|720p (720p),
                            ``image_url``; no ``aspect_ratio`` (fal's schema has none; the image's shape)
``reference-to-video``      ``prompt`` (refers to @Image1...), ``reference_image_urls`` (1..7 URLs, required);
                            ``duration`` 1..10 (8); ``resolution`` 480p|720p (480p); ``aspect_ratio`` (16:9)
``edit-video``              ``prompt``, ``video_url`` (required), ``resolution`` auto|480p|720p (auto)
``extend-video``            ``prompt``, ``video_url`` (required), ``duration`` 2..10 (6); the input must be
                            2..15 s long when the fake can read it (else type ``value_error``)
==========================  ===============================================================================

``prompt`` is required, non-blank and at most 4,096 characters everywhere; ``duration`` must be an integer
(not a bool); URLs must be http(s) URLs or data URIs. Errors have the image endpoints' 422 shape
(``{"detail": [{"loc": ["body", FIELD], "msg", "type"}]}``).

Results are ``{"video": {url, content_type: "video/mp4", file_name, file_size, width, height, fps, duration,
num_frames}}``; the URL serves a real MP4 (`render_mp4`): H.264 (yuv420p) with an AAC track (48 kHz stereo,
silent), 24 fps, ``duration * 24`` frames. Every frame is flat `BODY_RGB` except the last, which is flat
`LAST_RGB`, so a reader of the last frame can be checked. Files are written with PyAV in well under a second
(flat frames encode fast) and cached by (width, height, duration).

Sizes (`video_size`), an assumption (fal publishes none): the shorter side is the resolution's number (480,
720, 1080), the longer one follows the aspect ratio, rounded to an even number::

    ratio   480p        720p         1080p          ratio   480p       720p        1080p
    16:9    854 x 480   1280 x 720   1920 x 1080    9:16    480 x 854  720 x 1280  1080 x 1920
    4:3     640 x 480   960 x 720    1440 x 1080    3:4     480 x 640  720 x 960   1080 x 1440
    3:2     720 x 480   1080 x 720   1620 x 1080    2:3     480 x 720  720 x 1080  1080 x 1620
    1:1     480 x 480   720 x 720    1080 x 1080

An input whose shape the fake reads (an upload to the fake, a data URI, or a video the fake served) picks the
nearest of the seven ratios. ``edit-video`` answers in the input video's shape at 480p (``auto``) or the asked
resolution, as long as the input but at most 8 s (fal uses the first 8 s); ``extend-video`` answers the input's
length plus ``duration``, in the input's shape at 480p when the input is at most 480 pixels on its shorter side,
else 720p; an unreadable input counts as 6 s of 16:9 at 720p.
"""

from __future__ import annotations

import base64
import io
import math
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

VIDEO_APP = "xai/grok-imagine-video"
TEXT_TO_VIDEO = f"{VIDEO_APP}/text-to-video"
IMAGE_TO_VIDEO = f"{VIDEO_APP}/image-to-video"
V15_TEXT_TO_VIDEO = f"{VIDEO_APP}/v1.5/text-to-video"
V15_IMAGE_TO_VIDEO = f"{VIDEO_APP}/v1.5/image-to-video"
REFERENCE_TO_VIDEO = f"{VIDEO_APP}/reference-to-video"
EDIT_VIDEO = f"{VIDEO_APP}/edit-video"
EXTEND_VIDEO = f"{VIDEO_APP}/extend-video"
VIDEO_ENDPOINTS = (TEXT_TO_VIDEO, IMAGE_TO_VIDEO, V15_TEXT_TO_VIDEO, V15_IMAGE_TO_VIDEO, REFERENCE_TO_VIDEO,
                   EDIT_VIDEO, EXTEND_VIDEO)

VIDEO_ASPECT_RATIOS = ("16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16")
SHORT_SIDE = {"480p": 480, "720p": 720, "1080p": 1080}
FPS = 24
MAX_PROMPT_CHARS = 4096
MAX_REFERENCES = 7
EDIT_MAX_SECONDS = 8.0
EXTEND_INPUT_SECONDS = (2.0, 15.0)
DEFAULT_INPUT_SECONDS = 6.0
BODY_RGB = (200, 60, 30)
LAST_RGB = (40, 200, 120)
AUDIO_RATE = 48000


@dataclass(frozen=True)
class Schema:
    """What one endpoint accepts: (default, choices) per choice field, the duration range and default, the
    required URL field (and whether it is a list)."""

    choices: dict[str, tuple[str | None, tuple[str, ...]]]
    duration: tuple[int, int, int] | None  # (min, max, default)
    url_field: str | None = None
    url_list: bool = False


_T2V = {"resolution": ("720p", ("480p", "720p")), "aspect_ratio": ("16:9", VIDEO_ASPECT_RATIOS)}
SCHEMAS: dict[str, Schema] = {
    TEXT_TO_VIDEO: Schema(_T2V, (1, 15, 6)),
    IMAGE_TO_VIDEO: Schema({**_T2V, "aspect_ratio": ("auto", ("auto", *VIDEO_ASPECT_RATIOS))}, (1, 15, 6),
                           "image_url"),
    V15_TEXT_TO_VIDEO: Schema({**_T2V, "resolution": ("720p", ("480p", "720p", "1080p"))}, (1, 15, 6)),
    V15_IMAGE_TO_VIDEO: Schema({"resolution": ("720p", ("480p", "720p"))}, (1, 15, 6), "image_url"),
    REFERENCE_TO_VIDEO: Schema({**_T2V, "resolution": ("480p", ("480p", "720p"))}, (1, 10, 8),
                               "reference_image_urls", url_list=True),
    EDIT_VIDEO: Schema({"resolution": ("auto", ("auto", "480p", "720p"))}, None, "video_url"),
    EXTEND_VIDEO: Schema({}, (2, 10, 6), "video_url"),
}


# --------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------


def video_size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """(width, height) of a result at this ratio and resolution (see the table in the docstring)."""
    if aspect_ratio not in VIDEO_ASPECT_RATIOS:
        raise ValueError(f"unknown aspect ratio {aspect_ratio!r}")
    short = SHORT_SIDE[resolution]
    width, height = map(int, aspect_ratio.split(":"))
    long_side = 2 * round(short * max(width, height) / min(width, height) / 2)
    return (long_side, short) if width >= height else (short, long_side)


def nearest_ratio(width: int, height: int) -> str:
    """The one of `VIDEO_ASPECT_RATIOS` closest in shape to width x height."""
    target = math.log(width / height)
    return min(VIDEO_ASPECT_RATIOS,
               key=lambda r: abs(math.log(int(r.split(":")[0]) / int(r.split(":")[1])) - target))


# --------------------------------------------------------------------------------------------
# MP4 files
# --------------------------------------------------------------------------------------------

_mp4_cache: dict[tuple[int, int, int, int], bytes] = {}
_mp4_lock = threading.Lock()


def _flat_frame(width: int, height: int, rgb: tuple[int, int, int]) -> av.VideoFrame:
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = rgb
    return av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")


def write_mp4(target: Any, width: int, height: int, duration: float, *, fps: int = FPS, gop: int = 2 * FPS,
              audio: bool = True) -> None:
    """An H.264 MP4 (yuv420p, `gop` frames between key frames) of `duration` seconds at `fps`, with a silent
    AAC track unless `audio` is False, into `target` (a path or a binary file object). Every frame is flat
    `BODY_RGB` except the last, flat `LAST_RGB`."""
    frames = max(1, round(duration * fps))
    with av.open(target, "w", format="mp4") as container:
        video = container.add_stream("h264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = gop
        if video.codec_context.name == "libx264":
            video.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "18"}
        sound = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo") if audio else None
        body, last = _flat_frame(width, height, BODY_RGB), _flat_frame(width, height, LAST_RGB)
        for index in range(frames):
            frame = last if index == frames - 1 else body
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            samples = round(frames / fps * AUDIO_RATE)
            chunk = 1024
            silence = np.zeros((2, chunk), np.float32)
            for start in range(0, samples, chunk):
                size = min(chunk, samples - start)
                frame = av.AudioFrame.from_ndarray(silence[:, :size].copy(), format="fltp", layout="stereo")
                frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))


def render_mp4(width: int, height: int, duration: float) -> bytes:
    """The bytes of `write_mp4` at the default fps, with audio. Cached."""
    key = (width, height, round(duration * FPS), FPS)
    with _mp4_lock:
        cached = _mp4_cache.get(key)
        if cached is None:
            buffer = io.BytesIO()
            write_mp4(buffer, width, height, duration)
            cached = _mp4_cache[key] = buffer.getvalue()
    return cached


def probe_mp4(data: bytes) -> tuple[int, int, float] | None:
    """(width, height, seconds) of a video file, or None when it is not one the fake can read."""
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = float(container.duration or 0) / av.time_base
            return stream.width, stream.height, seconds
    except (av.FFmpegError, IndexError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Validation (pydantic-shaped errors)
# --------------------------------------------------------------------------------------------


def _literal_message(choices: tuple[str, ...]) -> str:
    quoted = [f"'{c}'" for c in choices]
    return f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"


def _url_ok(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://", "data:"))


def validate_video_arguments(endpoint: str, body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(normalised arguments, 422 error details) for a submit body to a video endpoint."""
    errors: list[dict[str, Any]] = []

    def error(loc: list[Any], msg: str, type_: str) -> None:
        errors.append({"loc": ["body", *loc], "msg": msg, "type": type_})

    if not isinstance(body, dict):
        error([], "Input should be a valid dictionary or object", "model_attributes_type")
        return {}, errors
    schema = SCHEMAS[endpoint]
    args: dict[str, Any] = {}
    allowed = {"prompt", *schema.choices}

    prompt = body.get("prompt")
    if "prompt" not in body:
        error(["prompt"], "Field required", "missing")
    elif not isinstance(prompt, str):
        error(["prompt"], "Input should be a valid string", "string_type")
    elif not prompt.strip():
        error(["prompt"], "String should have at least 1 character", "string_too_short")
    elif len(prompt) > MAX_PROMPT_CHARS:
        error(["prompt"], f"String should have at most {MAX_PROMPT_CHARS} characters", "string_too_long")
    args["prompt"] = prompt

    for name, (default, choices) in schema.choices.items():
        value = body.get(name, default)
        if value not in choices:
            error([name], _literal_message(choices), "literal_error")
        args[name] = value

    if schema.duration is not None:
        allowed.add("duration")
        low, high, default = schema.duration
        duration = body.get("duration", default)
        if not isinstance(duration, int) or isinstance(duration, bool):
            error(["duration"], "Input should be a valid integer", "int_type")
        elif duration < low:
            error(["duration"], f"Input should be greater than or equal to {low}", "greater_than_equal")
        elif duration > high:
            error(["duration"], f"Input should be less than or equal to {high}", "less_than_equal")
        args["duration"] = duration

    if schema.url_field is not None:
        name = schema.url_field
        allowed.add(name)
        value = body.get(name)
        if name not in body:
            error([name], "Field required", "missing")
        elif schema.url_list:
            if not isinstance(value, list):
                error([name], "Input should be a valid list", "list_type")
            elif not value:
                error([name], "List should have at least 1 item after validation, not 0", "too_short")
            elif len(value) > MAX_REFERENCES:
                error([name], f"List should have at most {MAX_REFERENCES} items after validation, not {len(value)}",
                      "too_long")
            else:
                for index, url in enumerate(value):
                    if not _url_ok(url):
                        error([name, index], "Value error, must be an http(s) URL or a data URI", "value_error")
        elif not _url_ok(value):
            error([name], "Value error, must be an http(s) URL or a data URI", "value_error")
        args[name] = value

    for name in body:
        if name not in allowed:
            error([name], "Extra inputs are not permitted", "extra_forbidden")
    return args, errors


def check_input_video(endpoint: str, shape: tuple[int, int, float] | None) -> list[dict[str, Any]]:
    """422 details for an input video the fake could read (`shape`: width, height, seconds) that fal refuses."""
    if endpoint != EXTEND_VIDEO or shape is None:
        return []
    low, high = EXTEND_INPUT_SECONDS
    if low <= shape[2] <= high:
        return []
    return [{"loc": ["body", "video_url"], "type": "value_error",
             "msg": f"Value error, the video must be {low:g} to {high:g} seconds long, not {shape[2]:.2f}"}]


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoSpec:
    """The video a job returns."""

    width: int
    height: int
    duration: float  # seconds, a whole number of frames at FPS

    @property
    def num_frames(self) -> int:
        return max(1, round(self.duration * FPS))

    def data(self) -> bytes:
        return render_mp4(self.width, self.height, self.duration)

    def result(self, url: str, file_name: str) -> dict[str, Any]:
        return {"video": {"url": url, "content_type": "video/mp4", "file_name": file_name,
                          "file_size": len(self.data()), "width": self.width, "height": self.height, "fps": FPS,
                          "duration": self.num_frames / FPS, "num_frames": self.num_frames}}


def planned_video(endpoint: str, args: dict[str, Any], input_shape: tuple[int, int, float] | None) -> VideoSpec:
    """The video a job on `endpoint` with these (valid) arguments returns; `input_shape` is (width, height,
    seconds) of its first input image or video when the fake could read it (seconds 0 for an image)."""
    resolution = args.get("resolution", "720p")
    ratio = args.get("aspect_ratio", "auto")
    if ratio == "auto":
        ratio = nearest_ratio(input_shape[0], input_shape[1]) if input_shape else "16:9"
    if endpoint in (EDIT_VIDEO, EXTEND_VIDEO):
        seconds = input_shape[2] if input_shape else DEFAULT_INPUT_SECONDS
        if endpoint == EDIT_VIDEO:
            resolution = "480p" if resolution == "auto" else resolution
            seconds = min(seconds, EDIT_MAX_SECONDS)
        else:
            small = input_shape is not None and min(input_shape[:2]) <= SHORT_SIDE["480p"]
            resolution, seconds = "480p" if small else "720p", seconds + args["duration"]
    else:
        seconds = args["duration"]
    width, height = video_size(ratio, resolution)
    return VideoSpec(width, height, max(1, round(seconds * FPS)) / FPS)


# USD per second of output by resolution, per input image, per second of input video (xAI's and fal's rates, 2026-12)
VIDEO_BILLING: dict[str, tuple[dict[str, float], float, float]] = {
    **{endpoint: ({"480p": 0.05, "720p": 0.07}, 0.002, 0.0)
       for endpoint in (TEXT_TO_VIDEO, IMAGE_TO_VIDEO, REFERENCE_TO_VIDEO)},
    **{endpoint: ({"480p": 0.08, "720p": 0.14, "1080p": 0.25}, 0.01, 0.0)
       for endpoint in (V15_TEXT_TO_VIDEO, V15_IMAGE_TO_VIDEO)},
    **{endpoint: ({"480p": 0.05, "720p": 0.07}, 0.0, 0.01) for endpoint in (EDIT_VIDEO, EXTEND_VIDEO)},
}


def billed_video_price(endpoint: str, args: dict[str, Any], input_shape: tuple[int, int, float] | None) -> float:
    """What the fake bills for an accepted video submit: each second of output at its resolution, each input image,
    each second of input video. An edit bills the seconds it uses (at most 8) as input and output, at 480p for
    `auto`; an extension bills its own seconds at the input's resolution (480p for an input at most 480 pixels on
    its shorter side). An unreadable input counts as `DEFAULT_INPUT_SECONDS` of 720p."""
    per_second, per_image, per_input_second = VIDEO_BILLING[endpoint]
    images = len(args.get("reference_image_urls") or ([args["image_url"]] if args.get("image_url") else []))
    seconds_in = input_shape[2] if input_shape else DEFAULT_INPUT_SECONDS
    if endpoint == EDIT_VIDEO:
        resolution = "480p" if args["resolution"] == "auto" else args["resolution"]
        output = seconds_in = min(seconds_in, EDIT_MAX_SECONDS)
    elif endpoint == EXTEND_VIDEO:
        small = input_shape is not None and min(input_shape[:2]) <= SHORT_SIDE["480p"]
        resolution, output = "480p" if small else "720p", args["duration"]
    else:
        resolution, output, seconds_in = args["resolution"], args["duration"], 0.0
    return round(output * per_second[resolution] + images * per_image + seconds_in * per_input_second, 6)


def data_uri_bytes(url: str) -> bytes | None:
    """The payload of a base64 data URI, None for anything else."""
    if not url.startswith("data:"):
        return None
    try:
        return base64.b64decode(url.partition(",")[2])
    except ValueError:
        return None
