"""Input images (an edit's references, a video's image): which images of the inputs, and how they reach fal.

An image fal already holds (one a Grok node made and nothing changed since, proven by its pixels:
`media.fal_images`) goes by fal's own URL: no encode, no upload. Any other is encoded as PNG and uploaded to
fal's storage like fal's own clients do (the request stays small, fal fetches the file once); only when an
upload fails is a small image (at most 2 MiB as PNG) sent inline as a data URI instead.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping, Sequence

import torch

from ..fal_transport import config
from ..fal_transport.aio import until_cancelled
from ..fal_transport.credentials import FalCredentials, resolve_credentials
from ..fal_transport.errors import AuthenticationError, FalError, InvalidInputError, UploadError
from ..fal_transport.lifecycle import cancelled_before_sending
from ..fal_transport.storage import upload
from ..media import fal_images
from ..media.codec import encode_png
from ..media.fal_images import pixel_digest
from . import host
from .grok_api import Reference

log = logging.getLogger("grok_imagine_fal")

DATA_URI_MAX_BYTES = 2 * 1024 * 1024


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


def reference_tensors(inputs: Mapping[str, object], names: Sequence[str], limit: int) -> list[torch.Tensor]:
    """The reference images, in order: the first one to `limit` images of the batch on `names[0]`, then the first
    image of each further input of `names` connected; more than `limit` in all is refused, naming the inputs."""
    first, further = names[0], names[1:]
    batch = check_image(first, inputs.get(first))
    references = list(batch[:limit])
    if batch.shape[0] > limit:
        log.warning("[Grok Imagine] '%s' holds %d images; the first %d are the references", first, batch.shape[0],
                    limit)
    for name in further:
        extra = inputs.get(name)
        if extra is not None:
            references.append(check_image(name, extra)[0])
    if len(references) > limit:
        from_first = min(batch.shape[0], limit)
        raise InvalidInputError(
            f"fal takes at most {limit} reference images; '{first}' gives {from_first} and the further inputs "
            f"{len(references) - from_first} more. Use a smaller batch on '{first}' or disconnect some of "
            f"{'/'.join(further)}.",
            field=first,
        )
    return references


async def _upload(credentials: FalCredentials, image: torch.Tensor, index: int) -> str:
    """A URL fal can read the image from: an upload, or (if that fails and it is small) a data URI."""
    png = await asyncio.to_thread(encode_png, image)
    try:
        return await upload(credentials, png, content_type="image/png", file_name=f"reference_{index + 1}.png")
    except AuthenticationError:
        raise
    except FalError as exc:
        if len(png) > DATA_URI_MAX_BYTES:
            raise UploadError(
                f"Reference image {index + 1} could not be uploaded to fal's storage and is too large to send "
                f"inline ({len(png) / 2**20:.1f} MiB > {DATA_URI_MAX_BYTES // 2**20} MiB): {exc} "
                "Queue again in a moment, or scale the reference down.",
            ) from exc
        log.warning("[Grok Imagine] upload of reference image %d failed (%s); sending it inline", index + 1, exc)
        return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _progress_text(reused: int, uploads: int) -> str:
    """What the node says: "Reusing fal's image", "Uploading 2 images to fal", or both."""
    parts = ["reusing fal's image" if reused == 1 else f"reusing fal's {reused} images"] if reused else []
    if uploads:
        parts.append(f"uploading {uploads} image{'s' if uploads > 1 else ''} to fal")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:]


async def _references(node_id: str | None, images: list[torch.Tensor], reuse: bool) -> tuple[Reference, ...]:
    digests = await asyncio.gather(*(asyncio.to_thread(pixel_digest, image) for image in images))
    if reuse:
        await asyncio.to_thread(fal_images.settled)  # the images decoded just before are remembered
    held = [fal_images.url_of(digest) if reuse else None for digest in digests]
    to_upload = [index for index, url in enumerate(held) if url is None]
    host.send_progress_text(node_id, _progress_text(len(images) - len(to_upload), len(to_upload)))
    urls: dict[int, str] = {}
    if to_upload:
        credentials = resolve_credentials(config.key_file())
        uploaded = await asyncio.gather(*(_upload(credentials, images[i], i) for i in to_upload))
        urls = dict(zip(to_upload, uploaded))
        for index, url in urls.items():
            if not url.startswith("data:"):
                fal_images.remember(digests[index], url)
    return tuple(Reference(url, digest, reused=True) if url is not None else Reference(urls[index], digest)
                 for index, (url, digest) in enumerate(zip(held, digests)))


async def references_for_fal(node_id: str | None, images: list[torch.Tensor], *,
                             reuse: bool = True) -> tuple[Reference, ...]:
    """The images as fal reads them and as the journal knows them (by their pixels): an image fal already holds
    (one a Grok node made, unchanged, or one uploaded before) by fal's own URL, with no encode and no upload; any
    other encoded as PNG and uploaded (`reuse` False: every one uploaded). The node's progress text says which.
    Cancel stops it before anything is sent."""
    return await until_cancelled(_references(node_id, images, reuse), host.interrupted, cancelled_before_sending)
