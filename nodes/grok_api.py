"""fal's contract for Grok Imagine images, in one place: the endpoints and what they accept (choices,
limits, the sizes they return), what each costs, the typed request a node run sends (`ImageRequest`),
and how its result reads (`read_result`). Every image node and the price badge use this table.

Prices, US dollars as of 2026-12: xAI's rates, which fal passes through. fal publishes $0.02 per image
for `xai/grok-imagine-image`; the other rates are xAI's, the ones ComfyUI's own Grok nodes use. The
reference rate is per reference image sent, per request (each request of a batch beyond four images
sends the references again).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..fal_transport.errors import ResultError
from ..fal_transport.journal import fingerprint
from ..fal_transport.ledger import Spend

log = logging.getLogger("grok_imagine_fal")

Kind = Literal["text-to-image", "edit"]

APP = "xai/grok-imagine-image"
TEXT_TO_IMAGE_ENDPOINT = APP
QUALITY_TEXT_TO_IMAGE_ENDPOINT = f"{APP}/quality/text-to-image"
EDIT_ENDPOINT = f"{APP}/edit"
QUALITY_EDIT_ENDPOINT = f"{APP}/quality/edit"
V2_TEXT_TO_IMAGE_ENDPOINT = f"{APP}/v2.0/text-to-image"
V2_EDIT_ENDPOINT = f"{APP}/v2.0/edit"

TIERS: tuple[str, ...] = ("standard", "quality")
DEFAULT_TIER = "standard"
QUALITIES: tuple[str, ...] = ("medium", "low")  # Grok Imagine 2.0's `quality` field
DEFAULT_QUALITY = "medium"

# (kind, tier) -> endpoint, for the nodes of the first model; 2.0 has one endpoint per kind.
ENDPOINT_BY_TIER: dict[str, dict[str, str]] = {
    "text-to-image": {"standard": TEXT_TO_IMAGE_ENDPOINT, "quality": QUALITY_TEXT_TO_IMAGE_ENDPOINT},
    "edit": {"standard": EDIT_ENDPOINT, "quality": QUALITY_EDIT_ENDPOINT},
}
V2_ENDPOINTS: dict[str, str] = {"text-to-image": V2_TEXT_TO_IMAGE_ENDPOINT, "edit": V2_EDIT_ENDPOINT}
# Every endpoint of the family, in the Result node's order (new ones only at the end). Their requests share
# one queue path (owner/app), so any of them finds a request of any other.
ENDPOINTS: tuple[str, ...] = (TEXT_TO_IMAGE_ENDPOINT, QUALITY_TEXT_TO_IMAGE_ENDPOINT, EDIT_ENDPOINT,
                              QUALITY_EDIT_ENDPOINT, V2_TEXT_TO_IMAGE_ENDPOINT, V2_EDIT_ENDPOINT)

# fal's 13 values, in fal's order (fal-js endpoints.ts, XAIImageInput.aspect_ratio).
ASPECT_RATIOS: tuple[str, ...] = (
    "2:1", "20:9", "19.5:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:19.5", "9:20", "1:2",
)
DEFAULT_ASPECT_RATIO = "1:1"
EDIT_ASPECT_RATIOS: tuple[str, ...] = ("auto", *ASPECT_RATIOS)  # auto keeps the first image's shape
DEFAULT_EDIT_ASPECT_RATIO = "auto"
RESOLUTIONS: tuple[str, ...] = ("1k", "2k")
DEFAULT_RESOLUTION = "1k"
OUTPUT_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp")
DEFAULT_OUTPUT_FORMAT = "jpeg"
MAX_IMAGES_PER_REQUEST = 4  # fal's limit for one request
MAX_IMAGES_PER_NODE = 16  # above 4 the node sends ceil(n / 4) requests at once
MAX_REFERENCE_IMAGES = 3
MAX_PROMPT_CHARS = 8000  # fal's schema for every Grok Imagine endpoint (XAIImageInput, XAIImageEditInput, 2.0)

# Output sizes (width, height) at 1k as xAI documents them for Grok Imagine (listed on Runware's page for
# the same xAI model); the portrait ratios are these turned. At 2k each side is assumed doubled (no
# published table found).
IMAGE_SIZES_1K: dict[str, tuple[int, int]] = {
    "2:1": (1408, 704), "20:9": (1280, 576), "19.5:9": (1248, 576), "16:9": (1408, 768), "4:3": (1280, 896),
    "3:2": (1296, 864), "1:1": (1024, 1024),
}
LONG_SIDE = {"1k": 1024, "2k": 2048}


def documented_image_size(aspect_ratio: str, resolution: str) -> tuple[int, int] | None:
    """The (width, height) Grok Imagine is documented to return for these settings; None for "auto"."""
    width, _, height = aspect_ratio.partition(":")
    size = IMAGE_SIZES_1K.get(aspect_ratio)
    if size is None and f"{height}:{width}" in IMAGE_SIZES_1K:
        size = IMAGE_SIZES_1K[f"{height}:{width}"][::-1]
    if size is None or resolution not in RESOLUTIONS:
        return None
    scale = 2 if resolution == "2k" else 1
    return size[0] * scale, size[1] * scale


def size_for_shape(width: int, height: int, resolution: str) -> tuple[int, int]:
    """The size an `auto` edit of a width x height reference is expected to have: the longer side at
    the resolution's length, the other in proportion (rounded to 8)."""
    long_side = LONG_SIDE.get(resolution, 1024)
    if width >= height:
        return long_side, max(8, 8 * round(long_side * height / width / 8))
    return max(8, 8 * round(long_side * width / height / 8)), long_side


def request_sizes(num_images: int) -> list[int]:
    """How many images each of the node's requests asks for: at most four per request."""
    requests = math.ceil(num_images / MAX_IMAGES_PER_REQUEST)
    return [min(MAX_IMAGES_PER_REQUEST, num_images - i * MAX_IMAGES_PER_REQUEST) for i in range(requests)]


PRICES_AS_OF = "2026-12"


@dataclass(frozen=True)
class Rate:
    per_image_1k: float
    per_image_2k: float
    per_reference: float

    def per_image(self, resolution: str) -> float:
        return self.per_image_2k if resolution == "2k" else self.per_image_1k


STANDARD = Rate(0.02, 0.02, 0.002)
QUALITY = Rate(0.05, 0.07, 0.01)
V2_LOW = Rate(0.04, 0.06, 0.01)
V2_MEDIUM = Rate(0.06, 0.08, 0.01)

# endpoint -> rate, or endpoint -> {quality: rate} where the endpoint takes `quality`
RATES: dict[str, Rate | dict[str, Rate]] = {
    TEXT_TO_IMAGE_ENDPOINT: STANDARD,
    EDIT_ENDPOINT: STANDARD,
    QUALITY_TEXT_TO_IMAGE_ENDPOINT: QUALITY,
    QUALITY_EDIT_ENDPOINT: QUALITY,
    V2_TEXT_TO_IMAGE_ENDPOINT: {"low": V2_LOW, "medium": V2_MEDIUM},
    V2_EDIT_ENDPOINT: {"low": V2_LOW, "medium": V2_MEDIUM},
}


def rate(endpoint: str, quality: str | None = None) -> Rate:
    found = RATES[endpoint]
    return found[quality or DEFAULT_QUALITY] if isinstance(found, dict) else found


@dataclass(frozen=True)
class GrokModel:
    """One Grok Imagine model on fal, as the nodes see it: which optional input picks the endpoint (the first
    model's `tier`, 2.0's `quality`), and whether that choice also goes into the body."""

    choice_input: str
    choices: tuple[str, ...]
    default_choice: str
    endpoints: dict[str, dict[str, str]]  # kind -> choice -> endpoint
    choice_in_body: bool  # 2.0 sends its `quality`; the first model's tier is only the endpoint


GROK_IMAGINE = GrokModel("tier", TIERS, DEFAULT_TIER, ENDPOINT_BY_TIER, False)
GROK_IMAGINE_2 = GrokModel("quality", QUALITIES, DEFAULT_QUALITY,
                           {kind: {q: endpoint for q in QUALITIES} for kind, endpoint in V2_ENDPOINTS.items()}, True)


@dataclass(frozen=True)
class Reference:
    """An input image or video as fal reads it (its URL) and as the journal knows it (its content's hash: an
    image's pixels, a video's file). `reused`: a file fal already holds, sent by its URL with no upload."""

    url: str
    sha256: str
    reused: bool = False


@dataclass(frozen=True)
class ImageRequest:
    """What one run of an image node asks of fal, checked and typed. `split()` gives the requests it is sent
    as (fal makes at most four images per request), each of which prices itself (`spend`), says what fal
    receives (`body`) and what the journal knows it by (`fingerprint`)."""

    endpoint: str
    prompt: str
    num_images: int
    aspect_ratio: str
    resolution: str = DEFAULT_RESOLUTION
    output_format: str = DEFAULT_OUTPUT_FORMAT
    sync_mode: bool = False
    quality: str | None = None  # sent by the models that take it (2.0)
    references: tuple[Reference, ...] = ()  # the images to edit
    part: tuple[int, int] | None = None  # (index, of) once split into several requests

    def split(self) -> tuple[ImageRequest, ...]:
        sizes = request_sizes(self.num_images)
        if len(sizes) == 1:
            return (self,)
        return tuple(replace(self, num_images=size, part=(index, len(sizes))) for index, size in enumerate(sizes))

    def body(self) -> dict[str, Any]:
        """The JSON fal receives; `resolution` only when not the default, so the body stays valid for an
        endpoint that does not know the field."""
        body: dict[str, Any] = {"prompt": self.prompt, "num_images": self.num_images,
                                "aspect_ratio": self.aspect_ratio, "output_format": self.output_format,
                                "sync_mode": self.sync_mode}
        if self.resolution != DEFAULT_RESOLUTION:
            body["resolution"] = self.resolution
        if self.quality is not None:
            body["quality"] = self.quality
        if self.references:
            body["image_urls"] = [reference.url for reference in self.references]
        return body

    def _identity(self) -> dict[str, Any]:
        """The body as the journal knows it: references by content, not by upload URL (a rerun finds its
        request even after a new upload), and which part of the run it is."""
        identity = self.body()
        if self.references:
            del identity["image_urls"]
            identity["image_sha256"] = [reference.sha256 for reference in self.references]
        if self.part is not None:
            identity["part"] = list(self.part)
        return identity

    def fingerprint(self) -> str:
        return fingerprint(self.endpoint, self._identity())

    def reused_urls(self) -> frozenset[str]:
        """The URLs of the references fal already held (sent with no upload)."""
        return frozenset(reference.url for reference in self.references if reference.reused)

    def spend(self) -> Spend:
        r = rate(self.endpoint, self.quality)
        price = self.num_images * r.per_image(self.resolution) + len(self.references) * r.per_reference
        return Spend(round(price, 6), self.num_images, len(self.references))

    def size_key(self) -> str:
        """What decides the images' size: endpoint, aspect ratio, resolution (and the references for "auto")."""
        shape: dict[str, Any] = {"aspect_ratio": self.aspect_ratio, "resolution": self.body().get("resolution")}
        if self.aspect_ratio == "auto":
            shape["references"] = [reference.sha256 for reference in self.references]
        return fingerprint(self.endpoint, shape)

    @property
    def documented_size(self) -> tuple[int, int] | None:
        return documented_image_size(self.aspect_ratio, self.resolution)


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
