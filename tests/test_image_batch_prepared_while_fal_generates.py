"""The node's IMAGE batch is prepared while fal generates (at the size these settings gave before, or the one xAI
documents), never while the request waits in fal's queue nor at an implausible size; and whatever arrives still
makes the right batch, pixel for pixel: images of another size than stated, fewer images than asked for."""

from __future__ import annotations

import base64
import io
import logging

import numpy as np
import pytest
import torch
from comfy_like import pack_module, run_node
from fake_fal import FakeFal, fake_image_size, render_image
from PIL import Image

Node = pack_module("nodes.text_to_image").FalGrokImagineImage


def expected_batch(aspect_ratio: str, resolution: str, indexes: list[int]) -> torch.Tensor:
    """The fake's PNG images `indexes`, decoded the way ComfyUI's own LoadImage does."""
    width, height = fake_image_size(aspect_ratio, resolution)
    arrays = [np.asarray(Image.open(io.BytesIO(render_image(width, height, "png", i))).convert("RGB")) for i in indexes]
    return torch.from_numpy(np.stack(arrays).astype(np.float32) / 255.0)


def png_data_uri(width: int, height: int, colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def prepared_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "preparing the output batch" in r.getMessage()]


async def test_a_repeat_of_the_same_settings_prepares_its_batch_while_fal_generates_and_gets_exact_pixels(
    fake_fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {"aspect_ratio": "9:16", "resolution": "1k", "output_format": "png", "num_images": 6}
    fake_fal.faults.run_time = 0.2
    with caplog.at_level(logging.DEBUG, logger="grok_imagine_fal"):
        await run_node(Node, prompt="the first run learns the size", **settings)
        caplog.clear()
        images, _, _ = await run_node(Node, prompt="the second run prepares its batch", **settings)
    assert any("the size these settings gave before" in m for m in prepared_messages(caplog))
    assert torch.equal(images, expected_batch("9:16", "1k", [0, 1, 2, 3, 0, 1]))  # two requests: 4 + 2


async def test_images_of_another_size_than_fal_stated_still_make_the_right_batch(
    fake_fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    await run_node(Node, prompt="learn 1:1", aspect_ratio="1:1")  # the next 1:1 run expects 1024 x 1024
    caplog.clear()
    fake_fal.faults.result_images_override = [
        {"url": png_data_uri(64, 32, (255, 0, 0)), "width": 1024, "height": 1024},  # a stated size that is wrong
        {"url": png_data_uri(64, 32, (0, 0, 255)), "width": 1024, "height": 1024},
    ]
    with caplog.at_level(logging.DEBUG, logger="grok_imagine_fal"):
        images, _, _ = await run_node(Node, prompt="the size changed", aspect_ratio="1:1", num_images=2)
    assert len(prepared_messages(caplog)) == 2  # both hints were taken, and both were wrong
    assert tuple(images.shape) == (2, 32, 64, 3)
    assert images[0, 0, 0].tolist() == [1.0, 0.0, 0.0] and images[1, 31, 63].tolist() == [0.0, 0.0, 1.0]


async def test_the_first_run_of_documented_settings_prepares_its_batch_while_fal_generates(
    fake_fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    fake_fal.faults.run_time = 0.2
    with caplog.at_level(logging.DEBUG, logger="grok_imagine_fal"):
        images, _, _ = await run_node(Node, prompt="a first 16:9 run", aspect_ratio="16:9", output_format="png")
    prepared = prepared_messages(caplog)
    assert prepared and "1 x 1408x768 (the size xAI documents for these settings)" in prepared[0]
    assert torch.equal(images, expected_batch("16:9", "1k", [0]))


async def test_fewer_images_than_asked_for_give_a_smaller_batch_in_request_order(fake_fal: FakeFal) -> None:
    width, height = 48, 32
    fake_fal.faults.result_images_override = [{"url": png_data_uri(width, height, (0, 255, 0))}]
    images, _, _ = await run_node(Node, prompt="one each", aspect_ratio="3:2", num_images=6)  # 4 + 2 asked
    assert tuple(images.shape) == (2, height, width, 3)
    assert float(images[:, :, :, 1].min()) == 1.0 and float(images[:, :, :, 0].max()) == 0.0


async def test_an_implausibly_large_stated_size_is_not_allocated_ahead_of_the_images(
    fake_fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    fake_fal.faults.result_images_override = [{"url": png_data_uri(16, 16, (9, 9, 9)), "width": 60000, "height": 60000}]
    with caplog.at_level(logging.DEBUG, logger="grok_imagine_fal"):
        images, _, _ = await run_node(Node, prompt="a huge claim", aspect_ratio="2:3")
    assert not any("60000" in m for m in prepared_messages(caplog)) and tuple(images.shape) == (1, 16, 16, 3)


async def test_a_request_waiting_in_fals_queue_prepares_no_batch_yet(
    fake_fal: FakeFal, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A list of hundreds of queued prompts must not allocate hundreds of batches at its start.
    monkeypatch.setenv("GROK_IMAGINE_QUEUE_TIMEOUT", "0.5")
    fake_fal.faults.stuck_in_queue = True
    errors = pack_module("fal_transport.errors")
    with caplog.at_level(logging.DEBUG, logger="grok_imagine_fal"), pytest.raises(errors.FalTimeoutError):
        await run_node(Node, prompt="never leaves the queue", aspect_ratio="16:9", num_images=4)
    assert prepared_messages(caplog) == []
