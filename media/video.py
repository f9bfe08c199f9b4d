"""Videos: a result streamed from fal to a file, read there (size, length, last frame) and handed to ComfyUI as
its own VIDEO; and any VIDEO turned into an MP4 file that fal can read.

- A result video goes straight to disk, chunk by chunk, under a byte cap and one deadline for all attempts
  and the whole body (like the images of `download`: http(s) only, no `Authorization` header, only from public
  addresses with every redirect hop checked, retries on 408/429/5xx and broken connections). It is never held
  whole in memory.
- `as_comfy_video` wraps the file in ComfyUI's `VideoFromFile` (`comfy_api.latest.InputImpl`, the same in
  0.3.6x and today's ComfyUI) and remembers fal's URL on it: a VIDEO that came from a Grok node goes back to
  fal by that URL (`fal_url_of`), with no upload. ComfyUI hands VIDEO objects from node to node by reference,
  and every node that trims, crops or joins a video makes a new object, so the URL is only ever found on the
  video fal made.
- `mp4_for_upload` writes any other VIDEO (Load Video's file, trimmed or not, frames from Create Video, ...)
  as an MP4 through the VIDEO's own `save_to`, which copies an MP4's streams as they are and encodes only
  what needs it.

PyAV (`av`) and `comfy_api` are imported only when used: ComfyUI ships both; nothing else of the pack needs them.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import torch

from ..fal_transport.errors import InvalidInputError, ResultError
from ..fal_transport.http import (
    LoopClient,
)
from ..fal_transport.storage import MAX_UPLOAD_BYTES
from .download import download_error, final_response, retried_download

log = logging.getLogger("grok_imagine_fal")

MAX_VIDEO_BYTES = 512 * 1024 * 1024  # a result video larger than this is refused (15 s of 1080p is ~40 MB)
CHUNK_BYTES = 256 * 1024  # the download is written, and its progress reported, in chunks of about this size
SEEK_BACK_S = 1.0  # the last frame is decoded from the key frame before the last second
FAL_CODECS = frozenset({"h264", "hevc", "av1"})  # what fal's video endpoints read in an MP4
ALLOWED_SCHEMES = frozenset({"https", "http"})

Progress = Callable[[int, "int | None"], None]  # (bytes received, bytes expected or None)


class VideoFetchError(ResultError):
    """A result video could not be downloaded or read."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, read from its headers (no frame is decoded)."""

    width: int
    height: int
    fps: float
    duration: float  # seconds, of the video stream
    frames: int
    codec: str  # the video codec, e.g. "h264"
    container: str  # e.g. "mov,mp4,m4a,3gp,3g2,mj2"


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


async def _download_once(loop_client: LoopClient, url: str, part: Path, max_bytes: int,
                         on_progress: Progress | None, request_id: str | None, local: bool) -> bool | httpx.Response:
    """True once the whole body is in `part`; else the error response to decide on."""
    async with final_response(loop_client, url, request_id, local=local, what="a video",
                              error=VideoFetchError) as response:
        if response.status_code != 200:
            return response
        await _write_body(response, part, max_bytes, on_progress, request_id)
        return True


async def _write_body(response: httpx.Response, part: Path, max_bytes: int, on_progress: Progress | None,
                      request_id: str | None) -> None:
    declared = response.headers.get("content-length")
    total = int(declared) if declared and declared.isdigit() else None
    if total is not None and total > max_bytes:
        raise VideoFetchError(
            f"The result video is {total / 2**20:.0f} MiB, over the {max_bytes // 2**20} MiB limit; refusing to "
            "download it.", request_id=request_id)
    received = 0
    with part.open("wb") as handle:
        if on_progress is not None:
            on_progress(0, total)
        async for chunk in response.aiter_bytes(CHUNK_BYTES):
            received += len(chunk)
            if received > max_bytes:
                raise VideoFetchError(
                    f"The result video is larger than {max_bytes // 2**20} MiB; download stopped.",
                    request_id=request_id)
            handle.write(chunk)
            if on_progress is not None:
                on_progress(received, total)


async def download_video(url: str, folder: Path, *, stem: str, timeout_s: float, request_id: str | None = None,
                         max_bytes: int = MAX_VIDEO_BYTES, on_progress: Progress | None = None) -> Path:
    """Stream the video at `url` into a new file `folder/<stem>_<random>.mp4` and return its path, within
    `timeout_s` for all attempts and the whole body. `on_progress(received, expected)` follows each chunk
    (from 0 again when an attempt starts over). Like images, videos are fetched only from public addresses unless
    fal's queue base URL is itself local. Nothing is left behind when it fails or is cancelled."""
    split = urlsplit(url)
    if split.scheme.lower() not in ALLOWED_SCHEMES:
        raise VideoFetchError(
            f"fal returned a video URL with scheme {split.scheme or '(none)'!r}; only https and http video URLs "
            "are downloaded.", request_id=request_id)
    host = split.netloc
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    target = folder / f"{stem}_{token}.mp4"
    part = folder / f"{stem}_{token}.mp4.part"
    try:
        tries = await retried_download(
            lambda loop_client, local: _download_once(loop_client, url, part, max_bytes, on_progress, request_id,
                                                      local),
            timeout_s=timeout_s, what="the result video")
        if tries.outcome is True:
            os.replace(part, target)
            return target
        raise download_error(tries, VideoFetchError, what="the result video", host=host, timeout_s=timeout_s,
                             request_id=request_id) from tries.failure
    finally:
        part.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Reading a video file
# --------------------------------------------------------------------------------------------


def _info(container: Any) -> VideoInfo:
    import av

    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = float(container.duration or 0) / av.time_base
    frames = stream.frames or round(duration * fps)
    return VideoInfo(stream.width, stream.height, fps, duration, frames, stream.codec_context.name,
                     container.format.name)


def probe_video(path: Path | str) -> VideoInfo | None:
    """What the video file at `path` holds, or None when it is not a video PyAV can read."""
    import av

    try:
        with av.open(str(path)) as container:
            return _info(container)
    except (av.FFmpegError, IndexError, ValueError, OSError):
        return None


def _last_frame(container: Any, path: Path | str) -> torch.Tensor:
    import av

    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    last = None
    start = stream.start_time or 0
    if stream.duration and stream.time_base:
        target = start + stream.duration - int(SEEK_BACK_S / stream.time_base)
        if target > start:
            try:
                container.seek(target, stream=stream)
                for frame in container.decode(stream):
                    last = frame
            except av.FFmpegError:
                last = None
    if last is None:
        container.seek(0)
        for frame in container.decode(stream):
            last = frame
    if last is None:
        raise ValueError(f"{path} holds no video frame")
    pixels = last.to_ndarray(format="rgb24")
    return torch.from_numpy(pixels).to(torch.float32).div_(255.0).unsqueeze(0)


def read_video(path: Path | str) -> tuple[VideoInfo, torch.Tensor] | None:
    """What the video file at `path` holds and its last frame as a one-image IMAGE batch [1, H, W, 3] (float32,
    0..1), the file opened once; None when it is not a video PyAV can read, ValueError when it has no frame. The
    last frame is decoded from the key frame before the video's last second (the whole video only when it cannot
    seek)."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError):
        return None
    with container:
        try:
            info = _info(container)
        except (av.FFmpegError, IndexError, ValueError):
            return None
        return info, _last_frame(container, path)


# --------------------------------------------------------------------------------------------
# ComfyUI's VIDEO
# --------------------------------------------------------------------------------------------

_URL_ATTRIBUTE = "grok_imagine_fal_url"


@functools.cache
def _fal_video_class(base: type) -> type:
    """ComfyUI's VideoFromFile, remembering the fal URL of the video it reads (one subclass per base class)."""

    class FalVideo(base):  # type: ignore[misc, valid-type]
        """A video fal made, read from its file; `grok_imagine_fal_url` is fal's URL for the same file."""

        def __init__(self, file: str, fal_url: str) -> None:
            super().__init__(file)
            setattr(self, _URL_ATTRIBUTE, fal_url)

    FalVideo.__qualname__ = FalVideo.__name__ = "GrokImagineFalVideo"
    return FalVideo


def as_comfy_video(path: Path | str, fal_url: str) -> Any:
    """ComfyUI's VIDEO for the file at `path` (read lazily, when a node asks), remembering `fal_url`."""
    from comfy_api.latest import InputImpl

    return _fal_video_class(InputImpl.VideoFromFile)(str(path), fal_url)


def fal_url_of(video: object) -> str | None:
    """fal's URL for `video` when it is a video a Grok node returned (unchanged: every trim, crop or join makes a
    new VIDEO), else None."""
    url = getattr(video, _URL_ATTRIBUTE, None)
    return url if isinstance(url, str) and url else None


def video_seconds(video: object, field: str) -> float:
    """How long the VIDEO connected to the input `field` is, in seconds (its trim applied)."""
    try:
        seconds = float(video.get_duration())  # type: ignore[attr-defined]
    except Exception as exc:  # any reader's failure: ComfyUI raises ValueError, PyAV its own
        raise InvalidInputError(
            f"'{field}' could not be read as a video ({type(exc).__name__}: {exc}). Connect a VIDEO output such as "
            "Load Video's.", field=field) from exc
    if not seconds > 0:
        raise InvalidInputError(f"'{field}' holds no frames (a video of {seconds:g} s).", field=field)
    return seconds


@dataclass(frozen=True)
class UploadableVideo:
    """An MP4 file written for an upload (delete it once uploaded)."""

    path: Path
    size: int
    info: VideoInfo


def mp4_for_upload(video: object, folder: Path, *, field: str, max_bytes: int = MAX_UPLOAD_BYTES) -> UploadableVideo:
    """The VIDEO connected to the input `field`, written as an MP4 fal can read (H.264, H.265 or AV1) into a new
    file in `folder`, through the VIDEO's own `save_to` (its trim and crop applied; an MP4 of a codec fal reads
    is copied, not encoded). Refused, naming the input, when it is larger than `max_bytes`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"grok_video_input_{uuid.uuid4().hex[:8]}.mp4"
    try:
        video.save_to(str(path), format="mp4", codec="auto")  # type: ignore[attr-defined]
        info = probe_video(path)
        if info is not None and info.codec not in FAL_CODECS:
            log.info("[Grok Imagine] '%s' is %s; encoding it as H.264 for fal", field, info.codec)
            video.save_to(str(path), format="mp4", codec="h264")  # type: ignore[attr-defined]
            info = probe_video(path)
        if info is None:
            raise InvalidInputError(
                f"'{field}' could not be written as an MP4 video. Connect a VIDEO output such as Load Video's.",
                field=field)
        size = path.stat().st_size
        if size > max_bytes:
            raise InvalidInputError(
                f"'{field}' is {size / 2**20:.1f} MiB as an MP4; fal's storage takes at most {max_bytes // 2**20} MiB "
                "in one upload. Trim the video or lower its resolution, then queue again.", field=field)
        return UploadableVideo(path, size, info)
    except InvalidInputError:
        path.unlink(missing_ok=True)
        raise
    except Exception as exc:  # the VIDEO's own writer may raise anything
        path.unlink(missing_ok=True)
        raise InvalidInputError(
            f"'{field}' could not be written as an MP4 video ({type(exc).__name__}: {exc}). Connect a VIDEO output "
            "such as Load Video's.", field=field) from exc
