"""Reading a Grok Imagine result from fal: its images, the revised prompt, the size it states."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..fal_transport.errors import ResultError

log = logging.getLogger("grok_imagine_fal")


@dataclass(frozen=True)
class GrokResult:
    image_urls: list[str]
    revised_prompt: str
    stated_size: tuple[int, int] | None  # (width, height) when fal states one size for every image


def read_result(result: dict[str, Any], request_id: str, expected: int | None = None) -> GrokResult:
    """The parts of fal's result JSON the nodes use; a result without images is an error. With `expected` (the
    images the request asked for), fewer are kept with a warning, and more are cut to that many, so that a
    request's images stay in its own slots of the node's batch (the request keeps them all at fal)."""
    images = result.get("images")
    if not isinstance(images, list) or not images:
        raise ResultError(
            "fal's result holds no images. The request may have been filtered; try another prompt.",
            request_id=request_id,
        )
    urls = [item.get("url") if isinstance(item, dict) else None for item in images]
    if not all(isinstance(url, str) and url for url in urls):
        raise ResultError("fal's result lists an image without a URL.", request_id=request_id)
    if expected is not None and len(urls) < expected:
        log.warning("[Grok Imagine] fal returned %d of %d images for request %s", len(urls), expected, request_id)
    if expected is not None and len(urls) > expected:
        log.warning("[Grok Imagine] fal returned %d images for request %s, which asked for %d: the extra %s left out "
                    "of the batch (the Grok Imagine Result node loads them all)", len(urls), request_id, expected,
                    "one is" if len(urls) - expected == 1 else f"{len(urls) - expected} are")
        images, urls = images[:expected], urls[:expected]
    revised = result.get("revised_prompt")
    return GrokResult(urls, revised if isinstance(revised, str) else "", _stated_size(images))  # type: ignore[arg-type]


def _stated_size(images: list[Any]) -> tuple[int, int] | None:
    sizes = {(item.get("width"), item.get("height")) if isinstance(item, dict) else None for item in images}
    if len(sizes) != 1:
        return None
    size = sizes.pop()
    if size is None or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        return None
    return size
