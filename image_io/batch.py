"""Fetch and decode all images of a result concurrently into one IMAGE batch."""

from __future__ import annotations

import asyncio
import mmap
import threading
from dataclasses import dataclass

import torch
from PIL import Image

from .decode import decode_image, write_into
from .download import fetch_image_bytes

_FLOATS_PER_PAGE = mmap.PAGESIZE // 4


@dataclass(frozen=True)
class FetchedImage:
    """One result image: the bytes fal sent (kept for the previews), its size, and its slot in the batch."""

    data: bytes
    file_format: str  # Pillow's format name, lower case: "jpeg", "png", "webp", ...
    width: int
    height: int
    slot: int


class BatchBuilder:
    """The node's output batch, built while its images arrive: each image is written into its slot on
    the thread that decoded it, so conversion overlaps the other downloads and decodes, and the decoded
    image is released at once.

    `prepare` allocates the batch ahead of time, when the image size is known before the images are
    (xAI's documented size, an earlier run with the same settings, or fal's result): a fresh float32
    batch costs a page fault per 4 KiB on its first write, as much as decoding the images, and
    `prepare` pays that while fal generates or the images download. A prepared batch of the wrong
    size is released and replaced when the first image arrives.

    `finish` returns the batch when every image landed in the slot of its position with one size, and
    otherwise builds one anew (fewer images than expected, mixed sizes), copying the placed images
    and decoding the others again.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._batch: torch.Tensor | None = None
        self._placed: set[int] = set()
        self._lock = threading.Lock()

    def prepare(self, width: int, height: int) -> None:
        """Allocate the batch for `count` images of width x height and touch each of its memory pages.
        Does nothing once the batch exists; `put` waits for a `prepare` under way."""
        with self._lock:
            if self._batch is not None:
                return
            batch = torch.empty((self.count, height, width, 3), dtype=torch.float32)
            batch.view(-1)[::_FLOATS_PER_PAGE].zero_()  # one write per page: the OS maps them all now
            self._batch = batch

    def put(self, slot: int, image: Image.Image) -> bool:
        """Write a decoded RGB image into `slot`; False if it does not fit the batch
        (another size than the images placed before it, or a slot beyond `count`)."""
        width, height = image.size
        with self._lock:
            if self._batch is None or (not self._placed and tuple(self._batch.shape[1:3]) != (height, width)):
                self._batch = None  # a prepared batch of another size: release it before allocating
                self._batch = torch.empty((self.count, height, width, 3), dtype=torch.float32)
            batch = self._batch
            if slot >= self.count or slot in self._placed or tuple(batch.shape[1:3]) != (height, width):
                return False
            self._placed.add(slot)
        try:
            write_into(batch.numpy()[slot], image, index=slot)
        except BaseException:
            with self._lock:
                self._placed.discard(slot)
            raise
        return True

    def finish(self, files: list[FetchedImage]) -> torch.Tensor:
        """One float32 [len(files), H, W, 3] batch of `files` in order, at the first file's size."""
        if not files:
            raise ValueError("a batch needs at least one image")
        batch = self._batch
        if batch is not None and len(files) == self.count and all(
            f.slot == index and index in self._placed for index, f in enumerate(files)
        ):
            return batch
        first = files[0]
        out = torch.empty((len(files), first.height, first.width, 3), dtype=torch.float32)
        view = out.numpy()
        reusable = batch is not None and tuple(batch.shape[1:3]) == (first.height, first.width)
        for index, fetched in enumerate(files):
            if reusable and fetched.slot in self._placed:
                view[index] = batch.numpy()[fetched.slot]  # type: ignore[union-attr]
            else:  # not placed (another size): decode again, fitted to the first image
                write_into(view[index], decode_image(fetched.data, index=index).image, index=index)
        self._batch = None
        return out


def _decode_and_place(data: bytes, index: int, request_id: str | None, builder: BatchBuilder,
                      slot: int) -> FetchedImage:
    decoded = decode_image(data, index=index, request_id=request_id)
    builder.put(slot, decoded.image)
    return FetchedImage(data, decoded.file_format, decoded.width, decoded.height, slot)


async def _fetch_one(url: str, index: int, timeout_s: float, request_id: str | None, builder: BatchBuilder,
                     slot: int) -> FetchedImage:
    data = await fetch_image_bytes(url, timeout_s=timeout_s, request_id=request_id)
    return await asyncio.to_thread(_decode_and_place, data, index, request_id, builder, slot)


async def fetch_images(
    urls: list[str],
    *,
    timeout_s: float,
    builder: BatchBuilder,
    request_id: str | None = None,
    first_slot: int = 0,
) -> list[FetchedImage]:
    """All images of `urls`, in order; downloads and decodes run concurrently, and image i is written
    into slot `first_slot + i` of the `builder`'s batch as soon as it is decoded."""
    tasks = [
        asyncio.ensure_future(_fetch_one(url, i, timeout_s, request_id, builder, first_slot + i))
        for i, url in enumerate(urls)
    ]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


@dataclass(frozen=True)
class LoadedImages:
    images: torch.Tensor  # [B, H, W, 3] float32 in 0..1
    files: list[FetchedImage]


async def load_images(urls: list[str], *, timeout_s: float, request_id: str | None = None) -> LoadedImages:
    """One IMAGE tensor of all `urls` (in order), plus the fetched files."""
    builder = BatchBuilder(len(urls))
    files = await fetch_images(urls, timeout_s=timeout_s, request_id=request_id, builder=builder)
    images = await asyncio.to_thread(builder.finish, files)
    return LoadedImages(images, files)
