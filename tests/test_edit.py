"""Grok Imagine Edit (fal): reference images reach fal like fal's own clients send files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from comfy_like import TEST_KEY, pack_module, run_node
from fake_comfy import InterruptProcessingException, fake_comfy
from fake_fal import FakeFal, fake_image_size

errors = pack_module("fal_transport.errors")
Edit = pack_module("nodes.edit").FalGrokImagineEdit
EDIT_PATH = "/xai/grok-imagine-image/edit"


def image(width: int = 320, height: int = 200, batch: int = 1, value: float = 0.5) -> torch.Tensor:
    tensor = torch.full((batch, height, width, 3), value)
    for i in range(batch):
        tensor[i, :, :, 0] = i / 10  # each image of a batch is different
    return tensor


async def test_references_are_uploaded_to_fal_storage_and_sent_as_urls(fake_fal: FakeFal) -> None:
    images, revised, _ = await run_node(Edit, image=image(), prompt="make it night")
    submit = fake_fal.submits[0]
    assert submit.path == EDIT_PATH
    assert len(fake_fal.uploads) == 1
    assert submit.json["image_urls"][0].startswith(fake_fal.url + "/files/uploads/")
    assert submit.json["aspect_ratio"] == "auto" and "seed" not in submit.json
    assert images.shape[0] == 1 and revised.startswith("Revised:")


async def test_the_key_goes_only_to_the_token_request_never_to_the_upload(fake_fal: FakeFal) -> None:
    await run_node(Edit, image=image(), prompt="make it night")
    token = fake_fal.requests_of("token")[0]
    uploaded = fake_fal.requests_of("upload")[0]
    assert token.headers["authorization"] == f"Key {TEST_KEY}"
    assert uploaded.headers["authorization"].startswith("Bearer ") and TEST_KEY not in str(uploaded.headers)


async def test_auto_keeps_the_shape_of_the_first_reference(fake_fal: FakeFal) -> None:
    images, _, _ = await run_node(Edit, image=image(400, 200), prompt="watercolour")
    height, width = images.shape[1:3]
    assert width > height


async def test_an_explicit_aspect_ratio_is_sent(fake_fal: FakeFal) -> None:
    images, _, _ = await run_node(Edit, image=image(), prompt="poster", aspect_ratio="9:16")
    assert fake_fal.submits[0].json["aspect_ratio"] == "9:16"
    assert tuple(images.shape[1:3]) == tuple(reversed(fake_image_size("9:16", "1k")))


async def test_the_first_three_images_of_a_batch_are_the_references(fake_fal: FakeFal) -> None:
    await run_node(Edit, image=image(batch=5), prompt="combine")
    assert len(fake_fal.submits[0].json["image_urls"]) == 3 and len(fake_fal.uploads) == 3


async def test_image_2_and_image_3_add_references_from_other_branches(fake_fal: FakeFal) -> None:
    await run_node(Edit, image=image(), prompt="combine", image_2=image(value=0.1), image_3=image(value=0.9))
    assert len(fake_fal.submits[0].json["image_urls"]) == 3


async def test_more_than_three_references_are_refused_naming_the_inputs(fake_fal: FakeFal) -> None:
    with pytest.raises(errors.InvalidInputError, match="at most 3 reference images"):
        await run_node(Edit, image=image(batch=3), prompt="combine", image_2=image())
    assert fake_fal.requests == []


async def test_a_blank_prompt_uploads_and_sends_nothing(fake_fal: FakeFal) -> None:
    with pytest.raises(errors.InvalidInputError, match="prompt"):
        await run_node(Edit, image=image(), prompt="  ")
    assert fake_fal.requests == []


async def test_something_that_is_not_an_image_is_refused(fake_fal: FakeFal) -> None:
    with pytest.raises(errors.InvalidInputError, match="'image' must be an IMAGE"):
        await run_node(Edit, image=torch.zeros(3, 3), prompt="x")


async def test_the_same_reference_is_uploaded_once(fake_fal: FakeFal) -> None:
    reference = image()
    await run_node(Edit, image=reference, prompt="one")
    await run_node(Edit, image=reference, prompt="two")
    assert len(fake_fal.uploads) == 1 and len(fake_fal.submits) == 2


async def test_a_small_reference_goes_inline_when_the_upload_fails(fake_fal: FakeFal) -> None:
    fake_fal.faults.upload_status = [400] * 3
    images, _, _ = await run_node(Edit, image=image(), prompt="night")
    assert fake_fal.submits[0].json["image_urls"][0].startswith("data:image/png;base64,")
    assert images.shape[0] == 1


async def test_a_large_reference_that_cannot_be_uploaded_gives_a_clear_error(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pack_module("nodes.references"), "DATA_URI_MAX_BYTES", 100)
    fake_fal.faults.upload_status = [400] * 3
    with pytest.raises(errors.UploadError, match="too large to send inline"):
        await run_node(Edit, image=image(), prompt="night")
    assert fake_fal.submits == []


async def test_the_quality_tier_uses_the_quality_edit_endpoint(fake_fal: FakeFal) -> None:
    await run_node(Edit, image=image(), prompt="night", tier="quality")
    assert fake_fal.submits[0].path == "/xai/grok-imagine-image/quality/edit"


async def test_an_edit_beyond_four_images_fans_out_with_the_same_references(fake_fal: FakeFal) -> None:
    images, _, _ = await run_node(Edit, image=image(), prompt="variations", num_images=6)
    assert images.shape[0] == 6 and len(fake_fal.submits) == 2 and len(fake_fal.uploads) == 1
    assert fake_fal.submits[0].json["image_urls"] == fake_fal.submits[1].json["image_urls"]


async def test_a_rerun_collects_an_unfinished_edit_even_after_a_new_upload(fake_fal: FakeFal) -> None:
    fake_fal.faults.image_404 = True
    with pytest.raises(errors.ResultError):
        await run_node(Edit, image=image(), prompt="night")
    fake_fal.faults.image_404 = False
    pack_module("fal_transport.process_state").reset()  # e.g. after a restart: the reference gets a new URL
    images, _, _ = await run_node(Edit, image=image(), prompt="night")
    assert images.shape[0] == 1 and len(fake_fal.submits) == 1


async def test_cancel_during_the_upload_ends_as_an_interruption(fake_fal: FakeFal, tmp_path: Path) -> None:
    fake_fal.faults.cdn_latency = 0  # uploads are quick; interrupt before the node even starts
    with fake_comfy(tmp_path) as host:
        host.interrupted = True
        with pytest.raises(InterruptProcessingException):
            await asyncio.wait_for(run_node(Edit, image=image(), prompt="night", unique_id="5"), 5)
    assert fake_fal.submits == []


async def test_fal_refusing_one_item_of_a_list_input_names_the_input(fake_fal: FakeFal) -> None:
    queue = pack_module("fal_transport.queue").FalQueue(pack_module("fal_transport.credentials").resolve_credentials())
    with pytest.raises(errors.InputRejectedError) as caught:  # fal's loc: ["body", "image_urls", 1]
        await queue.submit("xai/grok-imagine-image/edit", {"prompt": "x", "image_urls": ["https://a.test/1.png", 7]})
    assert caught.value.field == "image_urls" and "input 'image_urls'" in str(caught.value)
