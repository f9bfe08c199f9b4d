"""Grok Imagine Image (fal): what a ComfyUI user gets from the node, end to end against the fake fal."""

from __future__ import annotations

import asyncio
import logging

import pytest
import torch
from comfy_like import TEST_KEY, pack_module, run_node
from fake_fal import FakeFal, fake_image_size

text_to_image = pack_module("nodes.text_to_image")
errors = pack_module("fal_transport.errors")
spec = pack_module("nodes.grok_api")
Node = text_to_image.FalGrokImagineImage

ASPECT_RATIOS = ["2:1", "20:9", "19.5:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:19.5", "9:20", "1:2"]


def inputs(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "prompt": "a lighthouse at dusk",
        "num_images": 1,
        "aspect_ratio": "1:1",
        "resolution": "1k",
        "output_format": "jpeg",
        "sync_mode": False,
        "seed": 0,
    }
    values.update(overrides)
    return values


def assert_comfy_image(images: torch.Tensor, count: int, width: int, height: int) -> None:
    assert images.dtype == torch.float32
    assert images.device.type == "cpu"
    assert tuple(images.shape) == (count, height, width, 3)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


@pytest.mark.parametrize("resolution", ["1k", "2k"])
@pytest.mark.parametrize("aspect_ratio", ASPECT_RATIOS)
async def test_every_aspect_ratio_and_resolution_gives_the_generated_pixel_size(
    fake_fal: FakeFal, aspect_ratio: str, resolution: str
) -> None:
    images, _, _ = await run_node(Node, **inputs(aspect_ratio=aspect_ratio, resolution=resolution))
    width, height = fake_image_size(aspect_ratio, resolution)
    assert_comfy_image(images, 1, width, height)


@pytest.mark.parametrize("output_format", ["jpeg", "png", "webp"])
async def test_each_output_format_decodes_to_the_right_colours(fake_fal: FakeFal, output_format: str) -> None:
    images, _, urls = await run_node(Node, **inputs(output_format=output_format, num_images=2))
    assert_comfy_image(images, 2, *fake_image_size("1:1", "1k"))
    assert fake_fal.submits[-1].json["output_format"] == output_format
    # the fake paints image N with red = 40*N + 20 at the top-left corner
    for index in range(2):
        assert abs(float(images[index, 0, 0, 0]) * 255 - (40 * index + 20)) < 8


@pytest.mark.parametrize("num_images", [1, 2, 3, 4])
async def test_one_to_four_images_come_back_as_one_batch_in_order(fake_fal: FakeFal, num_images: int) -> None:
    images, _, urls = await run_node(Node, **inputs(num_images=num_images, aspect_ratio="16:9"))
    assert_comfy_image(images, num_images, *fake_image_size("16:9", "1k"))
    reds = [round(float(images[i, 0, 0, 0]) * 255) for i in range(num_images)]
    assert reds == sorted(reds)
    assert len(urls.splitlines()) == num_images


async def test_revised_prompt_and_image_urls_pass_through(fake_fal: FakeFal) -> None:
    _, revised, urls = await run_node(Node, **inputs(prompt="a red fox", num_images=2))
    job = fake_fal.jobs[fake_fal.submits[-1].request_id]
    assert revised == "Revised: a red fox"
    assert urls.splitlines() == [image["url"] for image in job.result()["images"]]
    assert all(url.startswith(fake_fal.url + "/files/") for url in urls.splitlines())


async def test_sync_mode_decodes_data_uris_and_returns_no_urls(fake_fal: FakeFal) -> None:
    images, revised, urls = await run_node(Node, **inputs(sync_mode=True, num_images=2, output_format="png"))
    assert_comfy_image(images, 2, *fake_image_size("1:1", "1k"))
    assert urls == ""
    assert revised.startswith("Revised:")
    assert fake_fal.submits[-1].json["sync_mode"] is True
    assert not [r for r in fake_fal.requests if r.path.startswith("/files/")]


async def test_request_body_holds_exactly_fals_fields_and_no_seed(fake_fal: FakeFal) -> None:
    await run_node(Node, **inputs(seed=123456, aspect_ratio="9:16", output_format="png"))
    assert fake_fal.submits[-1].json == {
        "prompt": "a lighthouse at dusk",
        "num_images": 1,
        "aspect_ratio": "9:16",
        "output_format": "png",
        "sync_mode": False,
    }


async def test_resolution_is_sent_only_when_not_the_default(fake_fal: FakeFal) -> None:
    await run_node(Node, **inputs(resolution="2k"))
    assert fake_fal.submits[-1].json["resolution"] == "2k"
    await run_node(Node, **inputs(resolution="1k"))
    assert "resolution" not in fake_fal.submits[-1].json


async def test_the_key_goes_to_fals_queue_only_never_to_image_downloads(fake_fal: FakeFal) -> None:
    await run_node(Node, **inputs(num_images=3))
    downloads = [r for r in fake_fal.requests if r.path.startswith("/files/")]
    queue_calls = [r for r in fake_fal.requests if not r.path.startswith("/files/")]
    assert len(downloads) == 3
    assert all("authorization" not in r.headers for r in downloads)
    assert queue_calls and all(r.headers.get("authorization") == f"Key {TEST_KEY}" for r in queue_calls)


async def test_status_is_polled_where_the_stream_is_not_available(fake_fal: FakeFal) -> None:
    fake_fal.faults.stream_unavailable = True
    fake_fal.faults.run_time = 0.4
    images, _, _ = await run_node(Node, **inputs())
    assert images.shape[0] == 1
    polls = [r for r in fake_fal.requests if r.path.split("?")[0].endswith("/status")]
    assert polls, "expected the node to fall back to polling the status URL"


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t "])
async def test_a_blank_prompt_is_refused_before_any_request(fake_fal: FakeFal, prompt: str) -> None:
    with pytest.raises(errors.InvalidInputError, match="prompt"):
        await run_node(Node, **inputs(prompt=prompt))
    assert fake_fal.requests == []


async def test_a_missing_key_is_refused_before_any_request_and_says_how_to_set_it(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAL_KEY")
    with pytest.raises(errors.MissingCredentialsError) as caught:
        await run_node(Node, **inputs())
    assert "FAL_KEY" in str(caught.value) and "export FAL_KEY" in str(caught.value)
    assert fake_fal.requests == []


async def test_key_id_and_secret_variables_work_as_fal_documents(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAL_KEY")
    key_id, secret = TEST_KEY.split(":")
    monkeypatch.setenv("FAL_KEY_ID", key_id)
    monkeypatch.setenv("FAL_KEY_SECRET", secret)
    images, _, _ = await run_node(Node, **inputs())
    assert images.shape[0] == 1


async def test_a_rejected_key_reads_well_and_never_shows_the_key(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_key = "wrong-id:wrong-secret-feedfacecafe"
    monkeypatch.setenv("FAL_KEY", wrong_key)
    with pytest.raises(errors.AuthenticationError) as caught:
        await run_node(Node, **inputs())
    message = str(caught.value)
    assert "rejected the API key" in message and "FAL_KEY" in message
    assert "wrong-secret" not in message and "wrong-secret" not in caplog.text
    assert len(fake_fal.accepted_submits) == 0


async def test_invalid_input_names_the_field_fal_rejected(fake_fal: FakeFal) -> None:
    queue_module = pack_module("fal_transport.queue")
    credentials = pack_module("fal_transport.credentials").resolve_credentials()
    with pytest.raises(errors.InputRejectedError) as caught:
        await queue_module.FalQueue(credentials).submit(spec.TEXT_TO_IMAGE_ENDPOINT, {"prompt": "x", "num_images": 9})
    assert caught.value.field == "num_images"
    assert "input 'num_images'" in str(caught.value) and TEST_KEY not in str(caught.value)


async def test_a_content_policy_refusal_says_so_with_the_request_id(
    fake_fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    fake_fal.faults.content_policy = True
    with pytest.raises(errors.ContentPolicyError) as caught:
        await run_node(Node, **inputs())
    message = str(caught.value)
    request_id = fake_fal.submits[-1].request_id
    assert "content policy" in message and request_id in message
    assert TEST_KEY.split(":")[1] not in message + caplog.text


async def test_a_job_that_completed_with_an_error_reports_it(fake_fal: FakeFal) -> None:
    fake_fal.faults.complete_with_error = "GPU out of memory"
    with pytest.raises(errors.FalError) as caught:
        await run_node(Node, **inputs())
    assert fake_fal.submits[-1].request_id in str(caught.value)


async def test_mixed_sizes_in_one_result_are_fitted_to_the_first_image(fake_fal: FakeFal) -> None:
    fake_fal.faults.mixed_sizes = True
    images, _, _ = await run_node(Node, **inputs(num_images=3, aspect_ratio="4:3"))
    assert_comfy_image(images, 3, *fake_image_size("4:3", "1k"))


def test_the_shared_http_client_survives_a_new_event_loop(fake_fal: FakeFal) -> None:
    # ComfyUI (and users' scripts) may run nodes in more than one event loop over a session.
    first = asyncio.run(run_node(Node, **inputs()))
    second = asyncio.run(run_node(Node, **inputs()))
    assert first[0].shape == second[0].shape


async def test_the_console_gets_one_line_per_request_with_its_id(
    fake_fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="grok_imagine_fal"):
        await run_node(Node, **inputs())
    request_id = fake_fal.submits[-1].request_id
    lines = [r for r in caplog.records if r.levelno >= logging.INFO and request_id in r.getMessage()]
    assert len(lines) == 1


@pytest.mark.parametrize(
    ("tier", "path"),
    [("standard", "/xai/grok-imagine-image"), ("quality", "/xai/grok-imagine-image/quality/text-to-image")],
)
async def test_the_tier_picks_the_endpoint(fake_fal: FakeFal, tier: str, path: str) -> None:
    await run_node(Node, **inputs(tier=tier))
    assert fake_fal.submits[0].path == path


async def test_a_node_without_the_tier_input_uses_the_standard_endpoint(fake_fal: FakeFal) -> None:
    await run_node(Node, **inputs())  # a workflow saved before the tier input existed
    assert fake_fal.submits[0].path == "/xai/grok-imagine-image"
