"""A node's output batch, prepared while fal generates, filled while the images arrive.

The one interface the nodes use for their IMAGE output (`OutputBatch`): it downloads and decodes a
request's images concurrently, each straight into its slot (`BatchBuilder`), and allocates the
batch ahead of time when it can tell the size before the images arrive. Hints, best first: the
size the same settings gave earlier in this process (remembered under `key`), the size the caller
expects (xAI's documented size for the settings), the size fal's result states. Only a hint: the
images always decide the batch's size, unless the caller fixed it.

Downloads and decodes that are cancelled are awaited to their end: no thread works on after the
node has returned.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import torch

from ..fal_transport.aio import run_to_end
from ..fal_transport.process_state import current
from .batch import BatchBuilder, FetchedImage
from .decode import decode_image
from .download import fetch_image_bytes

log = logging.getLogger("grok_imagine_fal")

PREPARE_MAX_PIXELS = 8_000_000  # above any Grok output (2k is about 4 MP): a larger stated size waits for the image
SIZES_KEPT = 64  # settings whose image size is remembered


async def in_thread(function: Any, *args: Any) -> Any:
    """`function(*args)` on a worker thread, awaited to its end even if this task is cancelled."""
    future = asyncio.get_running_loop().run_in_executor(None, functools.partial(function, *args))
    return await run_to_end(future)


class OutputBatch:
    def __init__(self, count: int, *, key: str | None, expected: tuple[int, int] | None = None,
                 fixed: tuple[int, int] | None = None) -> None:
        self.key = key
        self.builder = BatchBuilder(count, fixed)
        self._expected = expected
        self._preparing: list[asyncio.Future[Any]] = []
        self._started = False

    def prepare_ahead(self) -> None:
        """Start preparing the batch from the best hint, once: call it when fal starts running the request,
        so that a list of hundreds of queued prompts does not prepare hundreds of batches at its start."""
        if self._started:
            return
        self._started = True
        remembered = current().output_sizes.get(self.key) if self.key is not None else None
        if self.builder.fixed is not None:
            self._prepare(self.builder.fixed, "the size asked for")
        elif remembered is not None:
            self._prepare(remembered, "the size these settings gave before")
        else:
            self._prepare(self._expected, "the size xAI documents for these settings")

    def _prepare(self, size: tuple[int, int] | None, why: str) -> None:
        if size is None or size[0] * size[1] > PREPARE_MAX_PIXELS:
            return
        log.debug("[Grok Imagine] preparing the output batch: %d x %dx%d (%s)", self.builder.count, *size, why)
        self._preparing.append(asyncio.ensure_future(in_thread(self.builder.prepare, *size)))

    def stated_size(self, size: tuple[int, int] | None) -> None:
        """fal's result states the images' size (when it does, before they are downloaded)."""
        if size is None:
            self.prepare_ahead()
            return
        self._started = True
        self._prepare(size, "fal's result states the size")

    async def fetch(self, urls: list[str], *, first_slot: int, timeout_s: float,
                    request_id: str | None) -> list[FetchedImage]:
        """All images of `urls`, in order; image i goes into slot `first_slot + i` as soon as it is decoded."""
        tasks = [asyncio.ensure_future(self._fetch_one(url, i, first_slot + i, timeout_s, request_id))
                 for i, url in enumerate(urls)]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch_one(self, url: str, index: int, slot: int, timeout_s: float,
                         request_id: str | None) -> FetchedImage:
        data = await fetch_image_bytes(url, timeout_s=timeout_s, request_id=request_id)
        return await in_thread(self._decode_and_place, data, index, slot, request_id)

    def _decode_and_place(self, data: bytes, index: int, slot: int, request_id: str | None) -> FetchedImage:
        decoded = decode_image(data, index=index, request_id=request_id)
        self.builder.put(slot, decoded.image, request_id)
        return FetchedImage(data, decoded.file_format, decoded.width, decoded.height, slot)

    def placeholders(self, first_slot: int, count: int, size: tuple[int, int]) -> list[FetchedImage]:
        """`count` neutral images of `size` for a request fal refused."""
        width, height = self.builder.fixed or size
        slots = range(first_slot, first_slot + count)
        for slot in slots:
            self.builder.put_placeholder(slot, width, height)
        return [FetchedImage(b"", "", width, height, slot, placeholder=True) for slot in slots]

    async def finish(self, files: list[FetchedImage]) -> torch.Tensor:
        """The batch of `files` in order; remembers its size for the next run with the same settings."""
        await self.close()
        images = await in_thread(self.builder.finish, files)
        if self.key is not None and any(not f.placeholder for f in files):
            sizes = current().output_sizes
            sizes[self.key] = (int(images.shape[2]), int(images.shape[1]))
            sizes.move_to_end(self.key)
            while len(sizes) > SIZES_KEPT:
                sizes.popitem(last=False)
        return images

    async def close(self) -> None:
        """Wait for the batch preparations under way (call it on every path out)."""
        preparing, self._preparing = self._preparing, []
        if preparing:
            await asyncio.gather(*preparing, return_exceptions=True)
