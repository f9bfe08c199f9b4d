"""Grok Imagine 2.0 Image and Edit (fal): the same nodes as the older model, with `quality`."""

from __future__ import annotations

import pytest
import torch
from comfy_like import pack_module, run_node
from fake_fal import FakeFal, fake_image_size

Image2 = pack_module("nodes.text_to_image").FalGrokImagine2Image
Edit2 = pack_module("nodes.edit").FalGrokImagine2Edit
Result = pack_module("nodes.result_node").FalGrokImagineResult


def picture(width: int = 320, height: int = 200) -> torch.Tensor:
    return torch.full((1, height, width, 3), 0.4)


@pytest.mark.parametrize("quality", ["medium", "low"])
async def test_the_2_0_image_node_sends_quality_to_the_2_0_endpoint(fake_fal: FakeFal, quality: str) -> None:
    images, revised, _ = await run_node(Image2, prompt="a glass city", aspect_ratio="16:9", quality=quality)
    submit = fake_fal.submits[0]
    assert submit.path == "/xai/grok-imagine-image/v2.0/text-to-image"
    assert submit.json == {"prompt": "a glass city", "num_images": 1, "aspect_ratio": "16:9",
                           "output_format": "jpeg", "sync_mode": False, "quality": quality}
    assert tuple(images.shape[1:3]) == tuple(reversed(fake_image_size("16:9", "1k")))
    assert revised == "Revised: a glass city"


async def test_the_2_0_image_node_defaults_to_medium_quality(fake_fal: FakeFal) -> None:
    await run_node(Image2, prompt="a glass city")
    assert fake_fal.submits[0].json["quality"] == "medium"


async def test_the_2_0_edit_takes_up_to_three_references_and_keeps_the_first_ones_shape(fake_fal: FakeFal) -> None:
    images, _, _ = await run_node(Edit2, image=picture(400, 200), prompt="as a mosaic", image_2=picture(),
                                  image_3=picture(), quality="low")
    submit = fake_fal.submits[0]
    assert submit.path == "/xai/grok-imagine-image/v2.0/edit"
    assert len(submit.json["image_urls"]) == 3 and submit.json["aspect_ratio"] == "auto"
    assert submit.json["quality"] == "low"
    assert images.shape[2] > images.shape[1]  # auto: landscape like the first reference


async def test_a_2_0_node_fans_out_beyond_four_images_like_the_others(fake_fal: FakeFal) -> None:
    images, _, _ = await run_node(Image2, prompt="twelve moons", num_images=10)
    assert images.shape[0] == 10 and sorted(s.json["num_images"] for s in fake_fal.submits) == [2, 4, 4]
    assert {s.json["quality"] for s in fake_fal.submits} == {"medium"}


@pytest.mark.parametrize("endpoint", ["xai/grok-imagine-image/v2.0/text-to-image", "xai/grok-imagine-image/v2.0/edit"])
async def test_the_result_node_reloads_a_2_0_request(fake_fal: FakeFal, endpoint: str) -> None:
    images, _, _ = await run_node(Image2, prompt="a glass city", num_images=2)
    again, _, _ = await run_node(Result, request_id=fake_fal.submits[0].request_id, endpoint=endpoint)
    assert torch.equal(again, images) and len(fake_fal.submits) == 1
