"""Decoding result images into ComfyUI's IMAGE: orientation, colour modes, limits, mixed sizes."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from comfy_like import pack_module
from PIL import Image

decode = pack_module("media.codec")
batch = pack_module("media.output_batch")
output_batch = pack_module("media.output_batch")


def encoded(image: Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def test_exif_orientation_is_applied_so_portraits_stand_upright() -> None:
    landscape = Image.new("RGB", (64, 32), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    decoded = decode.decode_image(encoded(landscape, "JPEG", exif=exif))
    assert (decoded.width, decoded.height) == (32, 64) and decoded.file_format == "jpeg"


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK"])
def test_any_colour_mode_becomes_three_channel_rgb(mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode.decode_image(encoded(Image.new(mode, (16, 8)), fmt))
    assert decoded.image.mode == "RGB" and decoded.image.size == (16, 8)


def data_uri(image: Image.Image, fmt: str = "PNG") -> str:
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(encoded(image, fmt)).decode()}"


async def load_images(uris: list[str]) -> torch.Tensor:
    """The node's own path: every image fetched and decoded into its slot of one output batch."""
    out = output_batch.OutputBatch(len(uris), key=None)
    files = await out.fetch(uris, first_slot=0, timeout_s=10, request_id=None)
    return await out.finish(files)


async def test_a_16_bit_grey_png_keeps_its_levels_in_every_channel() -> None:
    # a real 16-bit grey PNG: a ramp over the whole range, plus mid grey and black rows; the image of another size
    # is fitted to the first (the 16-bit values survive the resize too)
    ramp = np.tile(np.linspace(0, 65535, 300).round().astype(np.uint16), (40, 1))
    ramp[10], ramp[20] = 32768, 0
    png = encoded(Image.fromarray(ramp))
    with Image.open(io.BytesIO(png)) as opened:
        assert opened.mode in ("I;16", "I")  # what Pillow makes of 16-bit grey (by version)
    smaller = encoded(Image.fromarray(np.full((20, 150), 16384, np.uint16)))
    images = await load_images([f"data:image/png;base64,{base64.b64encode(data).decode()}" for data in (png, smaller)])
    expected = torch.from_numpy(ramp.astype(np.float32) / 65535)
    assert torch.allclose(images[0, :, :, 0], expected, atol=1e-6)  # not clipped to white above 255
    assert torch.equal(images[0, :, :, 0], images[0, :, :, 1]) and torch.equal(images[0, :, :, 0], images[0, :, :, 2])
    assert abs(float(images[0, 10, 5, 0]) - 0.5) < 1e-4 and float(images[0, 20, 5, 0]) == 0.0
    assert tuple(images.shape) == (2, 40, 300, 3) and torch.allclose(images[1], torch.full_like(images[1], 0.25),
                                                                      atol=1e-3)


async def test_a_batch_is_float32_zero_to_one_on_the_cpu_with_every_pixel_exact() -> None:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(3, 300, 700, 3), dtype=np.uint8)  # several strips per image
    uris = [data_uri(Image.fromarray(p)) for p in pixels]
    images = await load_images(uris)
    assert images.dtype == torch.float32 and images.device.type == "cpu"
    assert tuple(images.shape) == (3, 300, 700, 3) and images.is_contiguous()
    assert torch.equal(images, torch.from_numpy(pixels.astype(np.float32) / 255.0))  # as LoadImage does


async def test_images_of_another_size_are_fitted_to_the_first_without_distortion() -> None:
    first = Image.new("RGB", (80, 40))
    square = Image.new("RGB", (60, 60))
    square.paste((255, 255, 255), (20, 0, 40, 60))  # a white centre column survives a centre crop
    images = await load_images([data_uri(first), data_uri(square)])
    assert tuple(images.shape) == (2, 40, 80, 3)
    assert float(images[1, 20, 40, 0]) > 0.9 and float(images[1, 20, 2, 0]) < 0.1


def test_a_prepared_batch_of_the_wrong_size_is_replaced_not_used() -> None:
    builder = batch.BatchBuilder(2)
    builder.prepare(64, 64)  # e.g. a size remembered from settings that now give another one
    image = decode.decode_image(encoded(Image.new("RGB", (32, 16), (255, 0, 0))))
    files = [batch.FetchedImage(b"", "png", 32, 16, slot) for slot in (0, 1)]
    assert builder.put(0, image.image) and builder.put(1, image.image)
    images = builder.finish(files)
    assert tuple(images.shape) == (2, 16, 32, 3) and float(images[:, :, :, 0].min()) == 1.0


def test_a_prepared_batch_receives_the_images_in_their_slots() -> None:
    builder = batch.BatchBuilder(2)
    builder.prepare(32, 16)
    red, blue = (decode.decode_image(encoded(Image.new("RGB", (32, 16), colour))).image
                 for colour in ((255, 0, 0), (0, 0, 255)))
    assert builder.put(1, blue) and builder.put(0, red)
    images = builder.finish([batch.FetchedImage(b"", "png", 32, 16, slot) for slot in (0, 1)])
    assert images[0, 0, 0].tolist() == [1.0, 0.0, 0.0] and images[1, 0, 0].tolist() == [0.0, 0.0, 1.0]


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
    download = pack_module("media.download")
    with pytest.raises(download.ImageFetchError, match="only https, http and data"):
        await download.fetch_image_bytes(url, timeout_s=1, request_id="req-7")
