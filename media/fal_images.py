"""Images fal already holds, known by their pixels, so that an image a Grok node made goes into the next Grok
node by fal's own URL: no PNG encode, no upload, and fal reads its original file.

Every image a node decodes from fal's file at fal's size is remembered under the SHA-256 of its 8-bit pixels
(with its shape), and so is every image this process uploads. An input image is fal's when its pixels,
quantised to 8 bits as an upload's PNG would be, hash the same: then an upload would carry exactly the pixels of
fal's file, so fal's file can go instead. A crop, an upscale, a colour fix or an edit in place (through torch or
through numpy) gives other pixels and so another hash, and such an image is uploaded like any other. The proof
costs one pass over the pixels: about 7 ms a megapixel for an input (a twentieth of a PNG encode), and for fal's
images 2 ms a megapixel on a thread of its own, fed the 8-bit rows the decode writes into the IMAGE, so that a
node that makes images does not wait for it.

The last `KEPT` images are remembered, in this process only. fal may forget a file first: a request that fal
refuses for it is sent once more with the image uploaded (`nodes.run`), and what fal refused is forgotten here.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import torch

from ..fal_transport.process_state import current

KEPT = 2048  # images remembered at most (the least recently used are forgotten first)


def _header(height: int, width: int, channels: int) -> bytes:
    return f"uint8 {height}x{width}x{channels}:".encode()


class _Held:
    """pixel digest -> fal URL, least recently used first; and the thread that hashes fal's images."""

    def __init__(self) -> None:
        self.urls: OrderedDict[str, str] = OrderedDict()
        self.lock = threading.Lock()
        self.hashing = ThreadPoolExecutor(1, thread_name_prefix="grok-imagine-fal pixels")

    def remember(self, digest: str, url: str) -> None:
        with self.lock:
            self.urls[digest] = url
            self.urls.move_to_end(digest)
            while len(self.urls) > KEPT:
                self.urls.popitem(last=False)


def _held() -> _Held:
    return current().of(__name__, _Held)


class FalImageRows:
    """fal's image at `url` as a node decodes it: `update` with its uint8 RGB rows, top to bottom, as they are
    written into the IMAGE (`media.codec.write_into`), then `done`. The rows are hashed on the process's hashing
    thread, in order, while the decode goes on, and the image is remembered once they all are (by the process
    state it was decoded in): a node that makes images waits for none of it."""

    def __init__(self, url: str, width: int, height: int) -> None:
        self._url = url
        self._digest = hashlib.sha256(_header(height, width, 3))
        self._held = _held()

    def update(self, rows: bytes) -> None:
        self._held.hashing.submit(self._digest.update, rows)

    def done(self) -> None:
        self._held.hashing.submit(lambda: self._held.remember(self._digest.hexdigest(), self._url))


def settled() -> None:
    """Wait until every image decoded so far is remembered (blocks: call it on a worker thread)."""
    _held().hashing.submit(lambda: None).result()


def pixel_digest(image: torch.Tensor, rows: int = 64) -> str:
    """The SHA-256 (hex) of one IMAGE [H, W, C] as 8-bit pixels, quantised as an upload's PNG is
    (`media.codec.encode_png`): equal for two images exactly when they would upload as the same picture, a strip
    of rows at a time (no full-size copy)."""
    pixels = image.detach().cpu()
    height, width, channels = pixels.shape
    digest = hashlib.sha256(_header(height, width, channels))
    strip = torch.empty((min(rows, height), width, channels), dtype=pixels.dtype)
    for top in range(0, height, rows):
        part = strip[: min(rows, height - top)]
        torch.clamp(pixels[top:top + rows], 0, 1, out=part)
        digest.update(memoryview(part.mul_(255).round_().to(torch.uint8).numpy()).cast("B"))
    return digest.hexdigest()


def remember(digest: str, url: str) -> None:
    """fal holds the image whose pixels hash to `digest` at `url` (a file it made, or an upload)."""
    _held().remember(digest, url)


def url_of(digest: str) -> str | None:
    """fal's URL for the image whose pixels hash to `digest`, if fal holds it."""
    held = _held()
    with held.lock:
        url = held.urls.get(digest)
        if url is not None:
            held.urls.move_to_end(digest)
        return url


def forget(url: str) -> None:
    """fal refused `url` (expired, deleted): no image goes by it again."""
    held = _held()
    with held.lock:
        for digest in [d for d, u in held.urls.items() if u == url]:
            del held.urls[digest]
