"""Reference images for edits: which images of the inputs, and how they reach fal.

They are uploaded to fal's storage like fal's own clients do (the request stays small, fal fetches
the file once); only when an upload fails is a small image (at most 2 MiB as PNG) sent inline as a
data URI instead.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from dataclasses import dataclass

import torch

from ..fal_transport.credentials import FalCredentials
from ..fal_transport.errors import AuthenticationError, FalError, InvalidInputError, UploadError
from ..fal_transport.storage import upload
from ..media.codec import encode_png
from . import grok_api as api
from .grok_api import Reference

log = logging.getLogger("grok_imagine_fal")

DATA_URI_MAX_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class EncodedImage:
    png: bytes
    sha256: str


def check_image(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim != 4 or value.shape[-1] not in (1, 3, 4) \
            or value.shape[0] == 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise InvalidInputError(
            f"'{name}' must be an IMAGE (a batch of images [B, H, W, 3]); got {shape}. Connect an image output "
            "such as Load Image to it.",
            field=name,
        )
    if value.shape[1] == 0 or value.shape[2] == 0:
        raise InvalidInputError(
            f"'{name}' is an empty image ({value.shape[2]}x{value.shape[1]} pixels): there is nothing to edit. Check "
            "the node that makes it (a crop or a mask of zero size, for example).",
            field=name,
        )
    return value


def reference_tensors(image: object, image_2: object = None, image_3: object = None) -> list[torch.Tensor]:
    """The first one to three images of `image`, then the first image of `image_2` and of `image_3`."""
    batch = check_image("image", image)
    references = list(batch[: api.MAX_REFERENCE_IMAGES])
    if batch.shape[0] > api.MAX_REFERENCE_IMAGES:
        log.warning("[Grok Imagine] 'image' holds %d images; the first %d are the references",
                    batch.shape[0], api.MAX_REFERENCE_IMAGES)
    for name, extra in (("image_2", image_2), ("image_3", image_3)):
        if extra is not None:
            references.append(check_image(name, extra)[0])
    if len(references) > api.MAX_REFERENCE_IMAGES:
        raise InvalidInputError(
            f"fal takes at most {api.MAX_REFERENCE_IMAGES} reference images; 'image' gave "
            f"{min(batch.shape[0], api.MAX_REFERENCE_IMAGES)} and image_2/image_3 add more. Use a smaller "
            "batch on 'image' or disconnect image_2/image_3.",
            field="image_2",
        )
    return references


async def encode_references(tensors: list[torch.Tensor]) -> list[EncodedImage]:
    pngs = await asyncio.gather(*(asyncio.to_thread(encode_png, t) for t in tensors))
    return [EncodedImage(png, hashlib.sha256(png).hexdigest()) for png in pngs]


async def reference_url(credentials: FalCredentials, reference: EncodedImage, index: int) -> str:
    """A URL fal can read the reference from: an upload, or (if that fails and it is small) a data URI."""
    try:
        return await upload(credentials, reference.png, content_type="image/png",
                            file_name=f"reference_{index + 1}.png", sha256=reference.sha256)
    except AuthenticationError:
        raise
    except FalError as exc:
        if len(reference.png) > DATA_URI_MAX_BYTES:
            raise UploadError(
                f"Reference image {index + 1} could not be uploaded to fal's storage and is too large to send "
                f"inline ({len(reference.png) / 2**20:.1f} MiB > {DATA_URI_MAX_BYTES // 2**20} MiB): {exc} "
                "Queue again in a moment, or scale the reference down.",
            ) from exc
        log.warning("[Grok Imagine] upload of reference image %d failed (%s); sending it inline", index + 1, exc)
        return "data:image/png;base64," + base64.b64encode(reference.png).decode("ascii")


async def reference_urls(credentials: FalCredentials, references: list[EncodedImage]) -> list[str]:
    return list(await asyncio.gather(*(reference_url(credentials, r, i) for i, r in enumerate(references))))


async def references_for_fal(credentials: FalCredentials, tensors: list[torch.Tensor]) -> tuple[Reference, ...]:
    """The images as fal reads them (uploaded) and as the journal knows them (by content)."""
    encoded = await encode_references(tensors)
    urls = await reference_urls(credentials, encoded)
    return tuple(Reference(url, image.sha256) for url, image in zip(urls, encoded))
