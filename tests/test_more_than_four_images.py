"""More than four images from one node: fal makes at most four per request, so the node sends one request per
four, all at once, puts each request's images in its own slots of one batch in request order, and a Cancel or a
failing request stops every one of them at fal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from comfy_like import pack_module, run_node
from fake_comfy import InterruptProcessingException, fake_comfy
from fake_fal import FakeFal, fake_image_size, index_from_colour

Node = pack_module("nodes.text_to_image").FalGrokImagineImage
INPUTS = {"prompt": "a field of tulips", "aspect_ratio": "3:2"}


@pytest.mark.parametrize(("count", "sizes"), [(5, [4, 1]), (10, [4, 4, 2]), (16, [4, 4, 4, 4])])
async def test_more_than_four_images_are_one_request_per_four_in_one_batch_in_request_order(
    fake_fal: FakeFal, count: int, sizes: list[int]
) -> None:
    images, _, urls = await run_node(Node, **INPUTS, num_images=count)
    assert tuple(images.shape) == (count, *reversed(fake_image_size("3:2", "1k")), 3)
    assert sorted(s.json["num_images"] for s in fake_fal.submits) == sorted(sizes)
    request_order = []
    for url in urls.splitlines():
        request_id = url.split("/files/")[1].split("/")[0]
        if not request_order or request_order[-1] != request_id:
            request_order.append(request_id)
    assert [fake_fal.jobs[r].num_images for r in request_order] == sizes


async def test_a_request_that_returns_more_images_than_asked_keeps_to_its_own_slots(
    fake_fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    fake_fal.faults.extra_images = 1  # fal answers five images where four were asked, for both requests
    images, _, urls = await run_node(Node, **INPUTS, num_images=8, output_format="png")
    assert images.shape[0] == 8 and len(urls.splitlines()) == 8
    indices = [index_from_colour(round(float(images[i, 0, 0, 0]) * 255)) for i in range(8)]
    assert indices == [0, 1, 2, 3, 0, 1, 2, 3]  # each request's first four, in its own four slots
    for submit in fake_fal.submits:
        assert (f"fal returned 5 images for request {submit.request_id}, which asked for 4: the extra one is left "
                "out of the batch (the Grok Imagine Result node loads them all)") in caplog.text


async def test_the_requests_of_a_large_batch_are_sent_at_once(fake_fal: FakeFal) -> None:
    fake_fal.faults.run_time = 0.5
    await run_node(Node, **INPUTS, num_images=12)
    last_submit = max(s.time for s in fake_fal.submits)
    first_result = min(r.time for r in fake_fal.requests_of("result"))
    assert len(fake_fal.submits) == 3 and last_submit < first_result


async def test_cancel_stops_every_request_of_a_large_batch_at_fal(fake_fal: FakeFal, tmp_path: Path) -> None:
    fake_fal.faults.never_complete = True
    with fake_comfy(tmp_path) as host:
        task = asyncio.ensure_future(run_node(Node, **INPUTS, num_images=9, unique_id="4"))
        assert await fake_fal.sees(lambda f: len(f.followed()) == 3, 10)  # the node waits on all three at fal
        host.interrupted = True
        with pytest.raises(InterruptProcessingException):
            await task
        assert any(text.startswith("[3/3] ") for _, text in host.progress_texts)
    assert sorted(fake_fal.cancels) == sorted(s.request_id for s in fake_fal.submits)


async def test_one_failing_request_of_a_batch_stops_the_others_at_fal(fake_fal: FakeFal) -> None:
    errors = pack_module("fal_transport.errors")
    fake_fal.faults.submit_status = [400, 400]  # two of the three submits are refused
    fake_fal.faults.run_time = 5
    with pytest.raises(errors.FalError):
        await run_node(Node, **INPUTS, num_images=12)
    # the accepted one is cancelled at fal, in the background if the node ended first (on a busy machine the node
    # may fail before the third submit leaves: then it is never sent, and nothing is paid)
    if await fake_fal.sees(lambda f: len(f.requests_of("submit")) == 3, 2):
        assert await fake_fal.sees(lambda f: len(f.submits) == 1 and f.cancels == [f.submits[0].request_id], 10)
    else:
        assert fake_fal.submits == [] and fake_fal.cancels == []


async def test_a_request_still_on_its_way_when_another_fails_is_cancelled_at_fal_once_fal_answers(
        fake_fal: FakeFal) -> None:
    errors = pack_module("fal_transport.errors")
    fake_fal.faults.submit_status = [400, 400]  # refused at once...
    fake_fal.faults.submit_delay = 1.0  # ...while fal's answer to the accepted one is still on its way
    fake_fal.faults.run_time = 5
    with pytest.raises(errors.FalError):
        await run_node(Node, **INPUTS, num_images=12)  # the node fails without waiting for that answer
    # Either the third submit had left (fal accepts it, its answer 1 s away): it is cancelled at fal once fal
    # answers; or the node failed before it left (a busy machine): it is never sent, and nothing is paid.
    third_left = await asyncio.to_thread(fake_fal.wait_for, lambda f: len(f.requests_of("submit")) == 3, 2)
    if third_left:
        assert await asyncio.to_thread(fake_fal.wait_for, lambda f: len(f.cancels) == 1, 10)
        assert len(fake_fal.submits) == 1 and fake_fal.cancels == [fake_fal.submits[0].request_id]
    else:
        assert fake_fal.submits == [] and fake_fal.cancels == []
