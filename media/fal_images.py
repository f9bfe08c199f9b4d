"""Images fal already holds, known by their pixels, so that an image a Grok node made goes into the next Grok
node by fal's own URL: no PNG encode, no upload, and fal reads its original file.

Every image a node decodes from fal's file at fal's size is remembered under the SHA-256 of its float32 pixels
(with its shape), and so is every image this process uploads. An input image is fal's when its own pixels hash
the same: a crop, an upscale, a colour fix or an edit in place (through torch or through numpy) gives other
pixels and so another hash, and such an image is uploaded like any other. The proof costs one pass over the
pixels (about 8 ms a megapixel, a tenth of a PNG encode); the decode threads pay it for fal's images while the
other images download.

The last `KEPT` images are remembered, in this process only. fal may forget a file first: a request that fal
refuses for it is sent once more with the image uploaded (`nodes.run`), and what fal refused is forgotten here.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import torch

from ..fal_transport.process_state import current

KEPT = 2048  # images remembered at most (the least recently used are forgotten first)


def pixel_digest(image: torch.Tensor) -> str:
    """The SHA-256 (hex) of one image's pixels as they are now, with its shape and dtype: equal for two tensors
    exactly when they hold the same picture, whatever their storage."""
    pixels = image.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{pixels.dtype}:{tuple(pixels.shape)}:".encode())
    digest.update(memoryview(pixels.view(torch.uint8).numpy()).cast("B") if pixels.numel() else b"")
    return digest.hexdigest()


class _Held:
    """pixel digest -> fal URL, least recently used first."""

    def __init__(self) -> None:
        self.urls: OrderedDict[str, str] = OrderedDict()
        self.lock = threading.Lock()


def _held() -> _Held:
    return current().of(__name__, _Held)


def remember(digest: str, url: str) -> None:
    """fal holds the image whose pixels hash to `digest` at `url` (a file it made, or an upload)."""
    held = _held()
    with held.lock:
        held.urls[digest] = url
        held.urls.move_to_end(digest)
        while len(held.urls) > KEPT:
            held.urls.popitem(last=False)


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
