"""Decoding result images into ComfyUI's IMAGE: orientation, colour modes, limits, mixed sizes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from comfy_like import pack_module
from PIL import Image

decode = pack_module("image_io.decode")


def encoded(image: Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def test_exif_orientation_is_applied_so_portraits_stand_upright() -> None:
    landscape = Image.new("RGB", (64, 32), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    array = decode.decode_image(encoded(landscape, "JPEG", exif=exif))[0]
    assert array.shape == (64, 32, 3)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK"])
def test_any_colour_mode_becomes_three_channel_rgb(mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    array = decode.decode_image(encoded(Image.new(mode, (16, 8)), fmt))[0]
    assert array.shape == (8, 16, 3) and array.dtype == np.uint8


def test_a_batch_is_float32_zero_to_one_on_the_cpu() -> None:
    arrays = [np.full((4, 6, 3), 255, np.uint8), np.zeros((4, 6, 3), np.uint8)]
    batch = decode.to_image_batch(arrays)
    assert batch.dtype == torch.float32 and batch.device.type == "cpu"
    assert tuple(batch.shape) == (2, 4, 6, 3)
    assert float(batch[0].min()) == 1.0 and float(batch[1].max()) == 0.0


def test_images_of_another_size_are_fitted_to_the_first_without_distortion() -> None:
    first = np.zeros((40, 80, 3), np.uint8)
    square = np.zeros((60, 60, 3), np.uint8)
    square[:, 20:40] = 255  # a white centre column survives a centre crop
    batch = decode.to_image_batch([first, square])
    assert tuple(batch.shape) == (2, 40, 80, 3)
    assert float(batch[1, 20, 40, 0]) > 0.9 and float(batch[1, 20, 2, 0]) < 0.1


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = encoded(Image.new("1", (10_000, 10_000)))
    with pytest.raises(decode.ImageDecodeError, match="MP limit"):
        decode.decode_image(bomb, request_id="req-1")


@pytest.mark.parametrize("data", [b"<html>not an image</html>", b"\xff\xd8\xff\xe0" + b"\x00" * 40])
def test_bytes_that_are_no_image_give_a_clear_error_naming_the_request(data: bytes) -> None:
    with pytest.raises(decode.ImageDecodeError) as caught:
        decode.decode_image(data, index=1, request_id="req-42")
    assert "Result image 2" in str(caught.value) and "req-42" in str(caught.value)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "javascript:alert(1)", "/a.png"])
async def test_only_https_http_and_data_urls_are_loaded(url: str) -> None:
    download = pack_module("image_io.download")
    with pytest.raises(download.ImageFetchError, match="only https, http and data"):
        await download.fetch_image_bytes(url, timeout_s=1, request_id="req-7")
