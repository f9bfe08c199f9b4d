"""Refusals that do not stop a batch (`on_refusal`), and edits that fit their crop (`output_size`)."""

from __future__ import annotations

import logging

import pytest
import torch
from comfy_like import pack_module, run_node, run_node_raw
from fake_fal import FakeFal, fake_image_size

errors = pack_module("fal_transport.errors")
spec = pack_module("nodes.grok_api")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage
Edit = pack_module("nodes.edit").FalGrokImagineEdit
Edit2 = pack_module("nodes.edit").FalGrokImagine2Edit


async def test_a_refusal_with_placeholder_gives_neutral_images_of_the_expected_size_and_says_why(
    fake_fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    fake_fal.faults.content_policy = True
    with caplog.at_level(logging.WARNING, logger="grok_imagine_fal"):
        returned = await run_node_raw(Node, prompt="something refused", num_images=2, aspect_ratio="16:9",
                                      on_refusal="placeholder")
    images, revised, urls = returned["result"]
    request_id = fake_fal.submits[0].request_id
    assert tuple(images.shape) == (2, *reversed(fake_image_size("16:9", "1k")), 3)
    assert torch.all(images == 0.5)
    assert revised.startswith(f"Refused by fal's content policy (request {request_id}):")
    assert "flagged by a content checker" in revised  # fal's own reason
    assert urls == "" and returned["ui"]["images"] == []
    assert [r for r in caplog.records if request_id in r.getMessage() and "content policy" in r.getMessage()]


async def test_in_a_fan_out_only_the_refused_requests_become_placeholders(fake_fal: FakeFal) -> None:
    fake_fal.faults.content_policy_every = 2  # the second request of the node is refused
    images, revised, urls = await run_node(Node, prompt="eight tries", num_images=8, on_refusal="placeholder")
    refused = fake_fal.submits[1].request_id
    grey = {i for i in range(8) if torch.all(images[i] == 0.5)}
    assert images.shape[0] == 8 and grey in ({0, 1, 2, 3}, {4, 5, 6, 7})  # the refused request's four slots
    assert len(urls.splitlines()) == 4 and refused not in urls
    assert revised.startswith("Revised: eight tries") and f"(request {refused})" in revised


async def test_with_fail_a_refusal_still_stops_the_node(fake_fal: FakeFal) -> None:
    fake_fal.faults.content_policy = True
    with pytest.raises(errors.ContentPolicyError):
        await run_node(Node, prompt="something refused")


async def test_other_errors_still_fail_the_node_with_placeholder(fake_fal: FakeFal) -> None:
    fake_fal.faults.complete_with_error = "runner crashed"
    with pytest.raises(errors.JobFailedError, match="runner crashed"):
        await run_node(Node, prompt="a lighthouse", on_refusal="placeholder")


def reference(width: int, height: int) -> torch.Tensor:
    tensor = torch.zeros((1, height, width, 3))
    tensor[:, :, :, 1] = torch.linspace(0, 1, width)  # a horizontal ramp shows any stretch
    return tensor


@pytest.mark.parametrize("node", [Edit, Edit2])
@pytest.mark.parametrize(("width", "height", "aspect_ratio"),
                         [(333, 517, "auto"), (640, 360, "1:1"), (300, 300, "2:1")])
async def test_match_first_reference_gives_exactly_the_references_pixel_size(
    fake_fal: FakeFal, node: type, width: int, height: int, aspect_ratio: str
) -> None:
    images, _, _ = await run_node(node, image=reference(width, height), prompt="paste back", num_images=2,
                                  aspect_ratio=aspect_ratio, output_size="match first reference")
    assert tuple(images.shape) == (2, height, width, 3)


async def test_match_first_reference_scales_to_cover_and_centre_crops_never_stretching(fake_fal: FakeFal) -> None:
    # fal returns a 2:1 image for a square reference: it is scaled to cover 300 x 300 and its middle kept
    images, _, _ = await run_node(Edit, image=reference(300, 300), prompt="wide", aspect_ratio="2:1",
                                  output_size="match first reference")
    assert tuple(images.shape) == (1, 300, 300, 3)
    # The fake's bottom half is a left-to-right green ramp over the whole width. Kept: its middle half
    # (a stretch would keep all of it, from about 0 to about 1).
    ramp = images[0, 290, :, 1]
    assert 0.2 < float(ramp[0]) < 0.3 and 0.7 < float(ramp[-1]) < 0.8


async def test_the_default_output_size_is_what_fal_returns(fake_fal: FakeFal) -> None:
    images, _, _ = await run_node(Edit, image=reference(300, 300), prompt="wide", aspect_ratio="2:1")
    assert tuple(images.shape[1:3]) == tuple(reversed(fake_image_size("2:1", "1k")))


async def test_match_first_reference_refuses_a_batch_over_the_limit_before_anything_is_sent(fake_fal: FakeFal) -> None:
    # 16 images at a 4K reference's 3840 x 2160 would be 133 MP, over the 100 MP one output batch may hold
    with pytest.raises(errors.InvalidInputError) as caught:
        await run_node(Edit, image=torch.zeros((1, 2160, 3840, 3)), prompt="paste back", num_images=16,
                       output_size="match first reference")
    message = str(caught.value)
    assert caught.value.field == "num_images"
    assert "16 images of 3840x2160 (the first reference's size, as 'output_size' is 'match first reference')" \
           " make a batch of 133 MP" in message
    assert "over the node's limit of 100 MP, so nothing was sent" in message
    assert "Set 'num_images' to at most 12, scale the first reference down, or set 'output_size' to 'fal'" in message
    assert fake_fal.requests == [] and fake_fal.uploads == []  # not even the reference went to fal's storage
    images, _, _ = await run_node(Edit, image=torch.zeros((1, 2160, 3840, 3)), prompt="as fal makes it",
                                  num_images=16)  # fal's own size (about 1 MP each) fits
    assert images.shape[0] == 16


async def test_a_documented_size_that_cannot_fit_the_batch_is_refused_before_anything_is_sent(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(spec.IMAGE_SIZES_1K, "1:1", (4096, 4096))  # were xAI to document 16 MP at 2k
    with pytest.raises(errors.InvalidInputError) as caught:
        await run_node(Node, prompt="a lighthouse", num_images=2, resolution="2k")
    assert "2 images of 8192x8192 (the size xAI documents for 1:1 at 2k) make a batch of 134 MP" in str(caught.value)
    assert "Set 'num_images' to at most 1, or choose a smaller 'resolution'." in str(caught.value)
    assert fake_fal.requests == []
