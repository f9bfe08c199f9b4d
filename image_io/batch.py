"""The IMAGE batch of a node, written slot by slot on the threads that decode its images."""

from __future__ import annotations

import mmap
import threading
from dataclasses import dataclass

import torch
from PIL import Image

from ..fal_transport.errors import ResultError
from .decode import decode_image, write_into

_FLOATS_PER_PAGE = mmap.PAGESIZE // 4
# A node's whole output: Grok's largest image is about 4 MP, so 16 of them are about 64 MP (0.8 GB of
# float32). Anything past this is refused before a byte is allocated.
MAX_BATCH_PIXELS = 100_000_000
PLACEHOLDER_VALUE = 0.5  # a neutral grey


@dataclass(frozen=True)
class FetchedImage:
    """One result image: the bytes fal sent (kept for the previews), its size, and its slot in the batch.
    A placeholder (`data` empty) stands for an image fal refused to make."""

    data: bytes
    file_format: str  # Pillow's format name, lower case: "jpeg", "png", "webp", ...; "" for a placeholder
    width: int
    height: int
    slot: int
    placeholder: bool = False


def check_batch_size(count: int, width: int, height: int, request_id: str | None = None) -> None:
    if count * width * height > MAX_BATCH_PIXELS:
        raise ResultError(
            f"The images would make a batch of {count} x {width}x{height} = {count * width * height / 1e6:.0f} MP "
            f"(about {count * width * height * 12 / 2**30:.1f} GiB), over the node's limit of "
            f"{MAX_BATCH_PIXELS // 1_000_000} MP. Grok Imagine makes images of about 4 MP: fal returned something "
            "else. Ask for fewer images, or load them one request at a time with the Grok Imagine Result node.",
            request_id=request_id,
        )


class BatchBuilder:
    """The batch, built while its images arrive: each image is written into its slot on the thread that
    decoded it, so conversion overlaps the other downloads and decodes.

    `prepare` allocates the batch ahead of time when the image size is known before the images are:
    a fresh float32 batch costs a page fault per 4 KiB on its first write, as much as decoding the
    images, and `prepare` pays that while fal generates. A prepared batch of the wrong size is
    released and replaced when the first image arrives, unless the size is `fixed` (every image is
    then fitted to it: scaled to cover, centre-cropped).

    `finish` returns the batch when every image landed in the slot of its position with one size,
    and otherwise builds one anew (fewer images than expected, mixed sizes).
    """

    def __init__(self, count: int, fixed: tuple[int, int] | None = None) -> None:
        self.count = count
        self.fixed = fixed
        self._batch: torch.Tensor | None = None
        self._placed: set[int] = set()
        self._lock = threading.Lock()

    def _allocate(self, width: int, height: int, request_id: str | None = None) -> torch.Tensor:
        check_batch_size(self.count, width, height, request_id)
        return torch.empty((self.count, height, width, 3), dtype=torch.float32)

    def prepare(self, width: int, height: int) -> None:
        """Allocate the batch for `count` images of width x height and touch each of its memory pages.
        Does nothing once the batch exists or when the size is implausible; `put` waits for it."""
        width, height = self.fixed or (width, height)
        if self.count * width * height > MAX_BATCH_PIXELS:
            return
        with self._lock:
            if self._batch is not None:
                return
            batch = self._allocate(width, height)
            batch.view(-1)[::_FLOATS_PER_PAGE].zero_()  # one write per page: the OS maps them all now
            self._batch = batch

    def _slot_view(self, slot: int, width: int, height: int, request_id: str | None = None) -> torch.Tensor | None:
        """The batch slot for an image of width x height, or None if it does not fit there."""
        with self._lock:
            size = self.fixed or (width, height)
            if self._batch is None or (not self._placed and tuple(self._batch.shape[1:3]) != size[::-1]):
                self._batch = None  # a prepared batch of another size: release it before allocating
                self._batch = self._allocate(*size, request_id)
            batch = self._batch
            if slot >= self.count or slot in self._placed or tuple(batch.shape[1:3]) != size[::-1]:
                return None
            self._placed.add(slot)
            return batch[slot]

    def put(self, slot: int, image: Image.Image, request_id: str | None = None) -> bool:
        """Write a decoded RGB image into `slot`; False if it does not fit the batch (another size than
        the images placed before it, or a slot beyond `count`)."""
        target = self._slot_view(slot, *image.size, request_id)
        if target is None:
            return False
        try:
            write_into(target.numpy(), image, index=slot)
        except BaseException:
            with self._lock:
                self._placed.discard(slot)
            raise
        return True

    def put_placeholder(self, slot: int, width: int, height: int) -> None:
        target = self._slot_view(slot, width, height)
        if target is not None:
            target.fill_(PLACEHOLDER_VALUE)

    def finish(self, files: list[FetchedImage]) -> torch.Tensor:
        """One float32 [len(files), H, W, 3] batch of `files` in order, at the first file's size (or the
        fixed size)."""
        if not files:
            raise ValueError("a batch needs at least one image")
        batch = self._batch
        if batch is not None and len(files) == self.count and all(
            f.slot == index and index in self._placed for index, f in enumerate(files)
        ):
            return batch
        width, height = self.fixed or (files[0].width, files[0].height)
        check_batch_size(len(files), width, height)
        out = torch.empty((len(files), height, width, 3), dtype=torch.float32)
        view = out.numpy()
        reusable = batch is not None and tuple(batch.shape[1:3]) == (height, width)
        for index, fetched in enumerate(files):
            if reusable and fetched.slot in self._placed:
                view[index] = batch.numpy()[fetched.slot]  # type: ignore[union-attr]
            elif fetched.placeholder:
                view[index] = PLACEHOLDER_VALUE
            else:  # not placed (another size): decode again, fitted to the first image
                write_into(view[index], decode_image(fetched.data, index=index).image, index=index)
        self._batch = None
        return out
