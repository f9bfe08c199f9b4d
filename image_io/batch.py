"""Fetch and decode all images of a result concurrently into one IMAGE batch."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import numpy as np
import torch

from .decode import convert_into, decode_image, to_image_batch
from .download import fetch_image_bytes


@dataclass(frozen=True)
class FetchedImage:
    """One result image: the bytes fal sent, and what they decode to."""

    data: bytes
    array: np.ndarray
    file_format: str  # Pillow's format name, lower case: "jpeg", "png", "webp", ...


@dataclass(frozen=True)
class LoadedImages:
    images: torch.Tensor  # [B, H, W, 3] float32 in 0..1
    files: list[FetchedImage]


class BatchBuilder:
    """Builds the output batch while images are still arriving: each image is converted into its slot
    on the thread that decoded it, so the conversion overlaps the other downloads and decodes.

    `finish` returns that batch when every image landed in its expected slot with the first image's
    size, and otherwise builds it anew from the arrays (fewer images than expected, mixed sizes).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._batch: torch.Tensor | None = None
        self._placed: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def put(self, slot: int, array: np.ndarray) -> None:
        with self._lock:
            if self._batch is None:
                self._batch = torch.empty((self.count, *array.shape[:2], 3), dtype=torch.float32)
            batch = self._batch
        if slot < self.count and array.shape[:2] == tuple(batch.shape[1:3]):
            convert_into(batch.numpy()[slot], array)
            with self._lock:
                self._placed[slot] = array

    def finish(self, arrays: list[np.ndarray]) -> torch.Tensor:
        if self._batch is not None and len(arrays) == self.count and all(
            self._placed.get(slot) is array for slot, array in enumerate(arrays)
        ):
            return self._batch
        return to_image_batch(arrays)


def _decode_and_place(
    data: bytes, index: int, request_id: str | None, builder: BatchBuilder | None, slot: int
) -> tuple[np.ndarray, str]:
    array, file_format = decode_image(data, index=index, request_id=request_id)
    if builder is not None:
        builder.put(slot, array)
    return array, file_format


async def _fetch_one(
    url: str, index: int, timeout_s: float, request_id: str | None, builder: BatchBuilder | None, slot: int
) -> FetchedImage:
    data = await fetch_image_bytes(url, timeout_s=timeout_s, request_id=request_id)
    array, file_format = await asyncio.to_thread(_decode_and_place, data, index, request_id, builder, slot)
    return FetchedImage(data, array, file_format)


async def fetch_images(
    urls: list[str],
    *,
    timeout_s: float,
    request_id: str | None = None,
    builder: BatchBuilder | None = None,
    first_slot: int = 0,
) -> list[FetchedImage]:
    """All images of `urls`, in order; downloads and decodes run concurrently. With a `builder`, image i
    is also converted into its slot `first_slot + i` of the output batch as soon as it is decoded."""
    tasks = [
        asyncio.ensure_future(_fetch_one(url, i, timeout_s, request_id, builder, first_slot + i))
        for i, url in enumerate(urls)
    ]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


async def load_images(urls: list[str], *, timeout_s: float, request_id: str | None = None) -> LoadedImages:
    """One IMAGE tensor of all `urls` (in order), plus the fetched files."""
    builder = BatchBuilder(len(urls))
    files = await fetch_images(urls, timeout_s=timeout_s, request_id=request_id, builder=builder)
    images = await asyncio.to_thread(builder.finish, [f.array for f in files])
    return LoadedImages(images, files)
