"""Encode ComfyUI IMAGE tensors as files to send (reference images for edits)."""

from __future__ import annotations

import io

import torch
from PIL import Image


def encode_png(image: torch.Tensor) -> bytes:
    """One image [H, W, C] float in 0..1 (C = 1, 3 or 4) as a PNG file, quickly (low compression)."""
    array = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if array.shape[-1] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
