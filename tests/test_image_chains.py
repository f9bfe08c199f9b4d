"""Chains of Grok nodes pass fal's URLs, not pixels: an image a Grok node made goes into the next Grok node
(Edit, 2.0 Edit, the video node's image, Reference Video) by fal's own URL, with no encode and no upload, as
long as nothing changed it. A changed image is uploaded as any other; an expired URL falls back to one
upload, and the refused request is not paid for."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from comfy_like import pack_module, run_node, run_node_over_list
from fake_comfy import FakeHost
from fake_fal import FakeFal

errors = pack_module("fal_transport.errors")
ledger = pack_module("fal_transport.ledger")
journal_module = pack_module("fal_transport.journal")
Image = pack_module("nodes.text_to_image").FalGrokImagineImage
Edit = pack_module("nodes.edit").FalGrokImagineEdit
Edit2 = pack_module("nodes.edit").FalGrokImagine2Edit
video_nodes = pack_module("nodes.video")
Video, ReferenceVideo, Extend = (video_nodes.FalGrokImagineVideo, video_nodes.FalGrokImagineReferenceVideo,
                                 video_nodes.FalGrokImagineVideoExtend)


def result_urls(fake: FakeFal, index: int = 0) -> list[str]:
    """The image URLs of the `index`-th accepted request's result."""
    job = fake.jobs[fake.submits[index].request_id]
    return [image["url"] for image in job.result()["images"]]


def today_usd() -> float:
    return ledger.Ledger(Path(os.environ["GROK_IMAGINE_STATE_DIR"])).totals().today_usd


async def test_an_image_a_grok_node_made_goes_into_edit_by_fals_url_with_no_upload(
        fake_fal: FakeFal, host: FakeHost) -> None:
    made, _, _ = await run_node(Image, prompt="a lighthouse", aspect_ratio="16:9")
    edited, _, _ = await run_node(Edit, image=made, prompt="make it night", unique_id="5")
    submit = fake_fal.submits[1]
    assert submit.json["image_urls"] == result_urls(fake_fal) and fake_fal.uploads == []
    assert fake_fal.requests_of("token") == [], "nothing was even prepared for an upload"
    assert host.texts_for("5")[0] == "Reusing fal's image"
    assert edited.shape[2] > edited.shape[1], "auto kept the shape fal read from its own file"


async def test_three_references_from_one_grok_batch_and_the_2_0_edit(fake_fal: FakeFal, host: FakeHost) -> None:
    made, _, _ = await run_node(Image, prompt="three ships", num_images=3)
    await run_node(Edit2, image=made, prompt="one fleet", unique_id="5")
    assert fake_fal.submits[1].json["image_urls"] == result_urls(fake_fal) and fake_fal.uploads == []
    assert host.texts_for("5")[0] == "Reusing fal's 3 images"


CHANGES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "a crop": lambda images: images[:, 8:, 8:, :],
    "an upscale": lambda images: torch.nn.functional.interpolate(
        images.movedim(-1, 1), scale_factor=1.5, mode="bilinear").movedim(1, -1),
    "a colour fix": lambda images: (images * 0.9).clamp(0, 1),
    "an edit in place": lambda images: images.index_fill_(1, torch.tensor([3]), 1.0),
    "an edit in place through numpy": lambda images: (images.numpy().__setitem__((0, 5, 7, 1), 0.25), images)[1],
}


@pytest.mark.parametrize("change", CHANGES)
async def test_an_image_another_node_changed_is_uploaded(fake_fal: FakeFal, host: FakeHost, change: str) -> None:
    made, _, _ = await run_node(Image, prompt="a harbour")
    changed = CHANGES[change](made)
    await run_node(Edit, image=changed, prompt="make it night", unique_id="5")
    [url] = fake_fal.submits[1].json["image_urls"]
    assert url.startswith(fake_fal.url + "/files/uploads/") and len(fake_fal.uploads) == 1
    assert host.texts_for("5")[0] == "Uploading 1 image to fal"


async def test_an_image_fitted_to_the_first_reference_is_not_fals_and_is_uploaded(fake_fal: FakeFal) -> None:
    fitted, _, _ = await run_node(Edit, image=torch.full((1, 200, 320, 3), 0.4), prompt="night",
                                  output_size="match first reference")
    assert tuple(fitted.shape[1:3]) == (200, 320)
    await run_node(Edit, image=fitted, prompt="dawn")
    assert len(fake_fal.uploads) == 2, "the fitted image was uploaded, not sent as fal's larger original"


async def test_the_result_nodes_images_go_by_url_too(fake_fal: FakeFal) -> None:
    await run_node(Image, prompt="a harbour", aspect_ratio="2:1")
    request_id = fake_fal.submits[0].request_id
    loaded, _, _ = await run_node(pack_module("nodes.result_node").FalGrokImagineResult, request_id=request_id,
                                  endpoint="xai/grok-imagine-image")
    await run_node(Edit, image=loaded, prompt="make it night")
    assert fake_fal.submits[1].json["image_urls"] == result_urls(fake_fal) and fake_fal.uploads == []


async def test_a_change_below_one_8_bit_level_uploads_the_same_pixels_so_it_goes_by_url(fake_fal: FakeFal) -> None:
    made, _, _ = await run_node(Image, prompt="a harbour")
    await run_node(Edit, image=made * 1.0005, prompt="make it night")  # the PNG of it: fal's pixels exactly
    assert fake_fal.submits[1].json["image_urls"] == result_urls(fake_fal) and fake_fal.uploads == []


async def test_an_unchanged_copy_goes_by_url_too(fake_fal: FakeFal) -> None:
    made, _, _ = await run_node(Image, prompt="a harbour", num_images=2)
    second = made[1:2].clone()  # what Image From Batch hands on
    await run_node(Edit, image=second, prompt="make it night")
    assert fake_fal.submits[1].json["image_urls"] == result_urls(fake_fal)[1:] and fake_fal.uploads == []


async def test_it_holds_across_runs_and_list_items_and_mixes_with_uploads(fake_fal: FakeFal, host: FakeHost) -> None:
    # The fake draws a request's first image alike for every request of one size: the list's two sizes differ.
    made = [images for images, _, _ in await run_node_over_list(Image, prompt=["a ship", "a storm"],
                                                                aspect_ratio=["2:1", "1:2"])]
    by_size = {fake_fal.jobs[submit.request_id].size: result_urls(fake_fal, index)
               for index, submit in enumerate(fake_fal.submits)}
    made_urls = {tuple(images.shape): by_size[(images.shape[2], images.shape[1])] for images in made}
    await run_node_over_list(Edit, image=made, prompt=["at night", "at dawn"], aspect_ratio="1:1")
    await run_node(Edit, image=made[0], prompt="in fog", aspect_ratio="1:1")  # a later run: ComfyUI's cache
    sent = [submit.json["image_urls"] for submit in fake_fal.submits[2:]]
    expected = [made_urls[tuple(made[0].shape)], made_urls[tuple(made[1].shape)], made_urls[tuple(made[0].shape)]]
    assert sorted(sent) == sorted(expected) and fake_fal.uploads == []

    loaded = torch.full((1, 64, 96, 3), 0.3)  # Load Image's picture: uploaded once, then fal holds it too
    await run_node(Edit, image=made[1], image_2=loaded, prompt="combine", unique_id="6")
    await run_node(Edit, image=made[1], image_2=loaded, prompt="combine again", unique_id="7")
    assert len(fake_fal.uploads) == 1
    assert host.texts_for("6")[0] == "Reusing fal's image; uploading 1 image to fal"
    assert host.texts_for("7")[0] == "Reusing fal's 2 images"


async def test_images_of_sync_mode_have_no_url_and_are_uploaded(fake_fal: FakeFal) -> None:
    made, _, _ = await run_node(Image, prompt="a harbour", sync_mode=True)
    await run_node(Edit, image=made, prompt="make it night")
    assert len(fake_fal.uploads) == 1
    assert fake_fal.submits[1].json["image_urls"][0].startswith(fake_fal.url + "/files/uploads/")


async def test_an_expired_url_falls_back_to_one_upload_and_is_not_paid_twice(fake_fal: FakeFal) -> None:
    fake_fal.charge_balance = True
    made, _, _ = await run_node(Image, prompt="a harbour", aspect_ratio="2:1")  # not the edits' 1:1
    balance, spent = fake_fal.balance_usd, today_usd()
    fake_fal.expire_files()
    edited, _, _ = await run_node(Edit, image=made, prompt="make it night", aspect_ratio="1:1")
    refused, sent = fake_fal.submits[1:]
    assert refused.json["image_urls"] == result_urls(fake_fal)
    assert fake_fal.jobs[refused.request_id].error_type == "file_download_error"
    assert sent.json["image_urls"][0].startswith(fake_fal.url + "/files/uploads/") and len(fake_fal.uploads) == 1
    assert edited.shape[0] == 1
    price = 0.022  # one image and one reference at the standard rate
    assert fake_fal.balance_usd == pytest.approx(balance - price) and today_usd() == pytest.approx(spent + price)
    journal = journal_module.Journal(Path(os.environ["GROK_IMAGINE_STATE_DIR"]))
    assert journal.entry(refused.request_id).state == "failed"

    await run_node(Edit, image=made, prompt="make it dawn", aspect_ratio="1:1")  # fal holds the upload now
    assert fake_fal.submits[3].json["image_urls"] == sent.json["image_urls"] and len(fake_fal.uploads) == 1


async def test_a_list_whose_urls_expired_ends_without_a_failure_on_the_node(fake_fal: FakeFal, host: FakeHost) -> None:
    made = [images for images, _, _ in await run_node_over_list(Image, prompt=["a ship", "a storm"],
                                                                aspect_ratio=["2:1", "1:2"])]
    fake_fal.expire_files()
    await run_node_over_list(Edit, image=made, prompt=["at night", "at dawn"], aspect_ratio="1:1", unique_id="5")
    assert len(fake_fal.submits) == 6 and len(fake_fal.uploads) == 2
    assert host.texts_for("5")[-1].startswith("Batch of 2 prompts: 2 done, 0 running, 0 queued at fal\n")


async def test_the_fallback_is_tried_once(fake_fal: FakeFal) -> None:
    made, _, _ = await run_node(Image, prompt="a harbour")
    fake_fal.faults.update({"inputs_unreadable": True})
    with pytest.raises(errors.InputRejectedError, match="'image_urls'") as failure:
        await run_node(Edit, image=made, prompt="make it night")
    assert failure.value.fal_type == "file_download_error"
    assert len(fake_fal.submits) == 3 and len(fake_fal.uploads) == 1


async def test_an_input_fal_refuses_for_another_reason_is_not_sent_again(fake_fal: FakeFal) -> None:
    loaded = torch.full((1, 64, 96, 3), 0.3)
    fake_fal.faults.update({"inputs_unreadable": True})
    with pytest.raises(errors.InputRejectedError):
        await run_node(Edit, image=loaded, prompt="make it night")  # uploaded: nothing to fall back from
    assert len(fake_fal.submits) == 1


async def test_the_video_nodes_take_a_grok_image_by_url(fake_fal: FakeFal, host: FakeHost) -> None:
    made, _, _ = await run_node(Image, prompt="a harbour", num_images=2)
    await run_node(Video, prompt="it comes alive", duration=2, resolution="480p", image=made, unique_id="5")
    await run_node(ReferenceVideo, image=made, prompt="@Image1 meets @Image2", duration=2, unique_id="6")
    urls = result_urls(fake_fal)
    assert fake_fal.submits[1].json["image_url"] == urls[0]
    assert fake_fal.submits[2].json["reference_image_urls"] == urls and fake_fal.uploads == []
    assert host.texts_for("5")[0] == "Reusing fal's image" and host.texts_for("6")[0] == "Reusing fal's 2 images"


async def test_an_expired_video_url_falls_back_to_uploading_the_video(fake_fal: FakeFal, host: FakeHost) -> None:
    clip, url, _ = await run_node(Video, prompt="waves", duration=3)
    fake_fal.expire_files()
    await run_node(Extend, video=clip, prompt="and then a storm", duration=2)
    refused, sent = fake_fal.submits[1:]
    assert refused.json["video_url"] == url and fake_fal.jobs[refused.request_id].error_type == "file_download_error"
    assert sent.json["video_url"].startswith(fake_fal.url + "/files/uploads/") and len(fake_fal.uploads) == 1
