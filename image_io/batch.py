"""Fetch and decode all images of a result concurrently into one IMAGE batch."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import torch

from .decode import decode_image, to_image_batch
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


async def _fetch_one(url: str, index: int, timeout_s: float, request_id: str | None) -> FetchedImage:
    data = await fetch_image_bytes(url, timeout_s=timeout_s, request_id=request_id)
    array, file_format = await asyncio.to_thread(decode_image, data, index=index, request_id=request_id)
    return FetchedImage(data, array, file_format)


async def fetch_images(urls: list[str], *, timeout_s: float, request_id: str | None = None) -> list[FetchedImage]:
    """All images of `urls`, in order; downloads and decodes run concurrently."""
    tasks = [asyncio.ensure_future(_fetch_one(url, i, timeout_s, request_id)) for i, url in enumerate(urls)]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


async def load_images(urls: list[str], *, timeout_s: float, request_id: str | None = None) -> LoadedImages:
    """One IMAGE tensor of all `urls` (in order), plus the fetched files."""
    files = await fetch_images(urls, timeout_s=timeout_s, request_id=request_id)
    images = await asyncio.to_thread(to_image_batch, [f.array for f in files])
    return LoadedImages(images, files)
