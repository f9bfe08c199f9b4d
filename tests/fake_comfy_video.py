"""A stand-in for ComfyUI's VIDEO types (`comfy_api.latest.InputImpl`), so the pack's video code can be tested
without ComfyUI. It behaves like the host where the pack relies on it:

- `VideoFromFile(path)` keeps its file private, reads it lazily, and answers `get_stream_source`,
  `get_dimensions`, `get_duration` (the container's duration, as 0.3.64 does) and `get_components`
  (every frame decoded as rgb24 / 255, as 0.3.64 does);
- `save_to(path, format, codec)` takes the strings Save Video passes ("auto", "mp4", "h264"): it copies the
  streams of a file whose container and codec already match, and otherwise encodes its frames as H.264;
- the trim of today's ComfyUI (`VideoFromFile(path, start_time=, duration=)`, made by Load Video's edit and by
  `as_trimmed`) is a new object whose duration and `save_to` honour the trim;
- `VideoFromComponents(VideoComponents(images, frame_rate))` holds frames and encodes them on `save_to`; its
  dimensions and duration come from its frames (VideoInput's defaults).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import torch


@dataclass
class VideoComponents:
    images: torch.Tensor
    frame_rate: Fraction
    audio: Any = None
    metadata: Any = None


class VideoInput:
    def get_dimensions(self) -> tuple[int, int]:
        images = self.get_components().images
        return images.shape[2], images.shape[1]

    def get_duration(self) -> float:
        components = self.get_components()
        return float(components.images.shape[0] / components.frame_rate)

    def get_components(self) -> VideoComponents:
        raise NotImplementedError


def _encode_h264(path: str, images: torch.Tensor, frame_rate: Fraction) -> None:
    with av.open(path, mode="w", format="mp4") as output:
        stream = output.add_stream("h264", rate=Fraction(round(frame_rate * 1000), 1000))
        stream.width, stream.height, stream.pix_fmt = images.shape[2], images.shape[1], "yuv420p"
        for image in images:
            pixels = (image * 255).clamp(0, 255).byte().numpy()
            output.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")))
        output.mux(stream.encode(None))


class VideoFromFile(VideoInput):
    def __init__(self, file: str, *, start_time: float = 0, duration: float = 0) -> None:
        self.__file = file
        self.__start_time = start_time
        self.__duration = duration

    def get_stream_source(self) -> str:
        return self.__file

    def get_dimensions(self) -> tuple[int, int]:
        with av.open(self.__file) as container:
            stream = container.streams.video[0]
            return stream.width, stream.height

    def get_duration(self) -> float:
        with av.open(self.__file) as container:
            raw = float(container.duration / av.time_base)
        left = raw - self.__start_time
        return min(self.__duration, left) if self.__duration else left

    def as_trimmed(self, start_time: float = 0, duration: float = 0) -> VideoFromFile:
        return VideoFromFile(self.__file, start_time=start_time + self.__start_time, duration=duration)

    def get_components(self) -> VideoComponents:
        with av.open(self.__file) as container:
            stream = container.streams.video[0]
            end = self.__start_time + self.__duration if self.__duration else float("inf")
            images = [torch.from_numpy(frame.to_ndarray(format="rgb24")) / 255.0
                      for frame in container.decode(stream) if self.__start_time <= frame.time < end]
            return VideoComponents(torch.stack(images), Fraction(stream.average_rate))

    def save_to(self, path: str, format: str = "auto", codec: str = "auto", metadata: dict | None = None) -> None:
        with av.open(self.__file) as container:
            formats = container.format.name.split(",")
            encoding = container.streams.video[0].codec_context.name
            reuse = (format == "auto" or format in formats) and codec in ("auto", encoding) \
                and not (self.__start_time or self.__duration)
            if not reuse:
                components = self.get_components()
                _encode_h264(path, components.images, components.frame_rate)
                return
            with av.open(path, mode="w") as output:
                mapping = {stream: output.add_stream_from_template(template=stream) for stream in container.streams
                           if stream.type in ("video", "audio")}
                for packet in container.demux():
                    if packet.stream in mapping and packet.dts is not None:
                        packet.stream = mapping[packet.stream]
                        output.mux(packet)


class VideoFromComponents(VideoInput):
    def __init__(self, components: VideoComponents) -> None:
        self.__components = components

    def get_components(self) -> VideoComponents:
        return self.__components

    def save_to(self, path: str, format: str = "auto", codec: str = "auto", metadata: dict | None = None) -> None:
        if format not in ("auto", "mp4") or codec not in ("auto", "h264"):
            raise ValueError("Only MP4 format and H264 codec are supported for now")
        _encode_h264(path, self.__components.images, self.__components.frame_rate)


@contextmanager
def fake_comfy_api() -> Iterator[types.SimpleNamespace]:
    """Install `comfy_api.latest` (with `InputImpl`) for the block; yields the InputImpl namespace."""
    saved = {name: sys.modules.get(name) for name in ("comfy_api", "comfy_api.latest")}
    input_impl = types.SimpleNamespace(VideoFromFile=VideoFromFile, VideoFromComponents=VideoFromComponents)
    latest = types.ModuleType("comfy_api.latest")
    latest.InputImpl = input_impl  # type: ignore[attr-defined]
    package = types.ModuleType("comfy_api")
    package.latest = latest  # type: ignore[attr-defined]
    sys.modules.update({"comfy_api": package, "comfy_api.latest": latest})
    try:
        yield input_impl
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
