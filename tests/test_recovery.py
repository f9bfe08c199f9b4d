"""Nothing paid is lost: the request journal, collecting unfinished requests, and the Result node."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from comfy_like import TEST_KEY, pack_module, run_node, stored_state
from fake_comfy import InterruptProcessingException, fake_comfy
from fake_fal import FakeFal

errors = pack_module("fal_transport.errors")
journal_module = pack_module("fal_transport.journal")
queue_module = pack_module("fal_transport.queue")
credentials_module = pack_module("fal_transport.credentials")
text_to_image = pack_module("nodes.text_to_image")
Node = text_to_image.FalGrokImagineImage
Result = pack_module("nodes.result_node").FalGrokImagineResult
ENDPOINT = "xai/grok-imagine-image"
INPUTS = {"prompt": "a paper boat on a puddle", "num_images": 2}


def journal() -> object:
    return journal_module.Journal(Path(os.environ["GROK_IMAGINE_STATE_DIR"]))


def journal_text() -> str:
    return stored_state(Path(os.environ["GROK_IMAGINE_STATE_DIR"]))


async def submit_and_stop(arguments: dict) -> str:
    """What a run does before ComfyUI stops: the submit reached fal and was journalled, nothing more."""
    queue = queue_module.FalQueue(credentials_module.resolve_credentials())
    handle = await queue.submit(ENDPOINT, arguments)
    fp = journal_module.fingerprint(ENDPOINT, arguments)
    journal().record_submitted(handle.request_id, ENDPOINT, fp, sync_mode=bool(arguments.get("sync_mode")))
    journal().release(handle.request_id)
    return handle.request_id


def fal_arguments(**overrides: object) -> dict:
    values = {"prompt": INPUTS["prompt"], "num_images": 2, "aspect_ratio": "1:1", "resolution": "1k",
              "output_format": "jpeg", "sync_mode": False}
    values.update(overrides)
    return Node.image_request(values, {}).body()


async def test_every_submit_is_journalled_with_id_endpoint_fingerprint_time_and_state(fake_fal: FakeFal) -> None:
    await run_node(Node, **INPUTS)
    request_id = fake_fal.submits[0].request_id
    entry = journal().entries()[request_id]
    assert entry.endpoint == ENDPOINT and entry.state == "collected" and entry.submitted_at > 0
    assert entry.fingerprint == journal_module.fingerprint(ENDPOINT, fal_arguments())
    text = journal_text()
    assert INPUTS["prompt"] not in text and TEST_KEY not in text and TEST_KEY.split(":")[1] not in text


async def test_a_request_in_flight_when_comfyui_stopped_is_collected_instead_of_paid_again(fake_fal: FakeFal) -> None:
    request_id = await submit_and_stop(fal_arguments())
    images, revised, urls = await run_node(Node, **INPUTS, seed=999)  # the seed widget moved on: not sent
    assert len(fake_fal.submits) == 1
    assert images.shape[0] == 2 and request_id in urls
    assert journal().entries()[request_id].state == "collected"


async def test_a_request_whose_images_failed_to_download_is_collected_by_the_next_run(fake_fal: FakeFal) -> None:
    fake_fal.faults.image_404 = True
    with pytest.raises(errors.ResultError):
        await run_node(Node, **INPUTS)
    assert journal().entries()[fake_fal.submits[0].request_id].state == "completed"
    fake_fal.faults.image_404 = False
    images, _, _ = await run_node(Node, **INPUTS)
    assert images.shape[0] == 2 and len(fake_fal.submits) == 1


async def test_a_submit_whose_answer_was_lost_is_collected_by_the_next_run(fake_fal: FakeFal) -> None:
    fake_fal.faults.submit_accept_then_status = 503
    with pytest.raises(errors.SubmitUncertainError):
        await run_node(Node, **INPUTS)
    fake_fal.faults.submit_accept_then_status = None
    images, _, _ = await run_node(Node, **INPUTS)
    assert images.shape[0] == 2 and len(fake_fal.submits) == 1


async def test_other_inputs_never_pick_up_a_journalled_request(fake_fal: FakeFal) -> None:
    await submit_and_stop(fal_arguments())
    await run_node(Node, **{**INPUTS, "aspect_ratio": "16:9"})
    assert len(fake_fal.submits) == 2


async def test_identical_nodes_running_at_once_each_pay_for_their_own_images(fake_fal: FakeFal) -> None:
    fake_fal.faults.run_time = 0.3
    results = await asyncio.gather(run_node(Node, **INPUTS), run_node(Node, **INPUTS))
    assert len(fake_fal.submits) == 2
    assert results[0][2] != results[1][2]


async def test_a_finished_request_is_never_collected_twice(fake_fal: FakeFal) -> None:
    await run_node(Node, **INPUTS)
    await run_node(Node, **INPUTS, seed=1)
    assert len(fake_fal.submits) == 2


async def test_sync_mode_requests_cannot_be_recovered_so_they_are_not_resumed(fake_fal: FakeFal) -> None:
    await submit_and_stop(fal_arguments(sync_mode=True))
    await run_node(Node, **{**INPUTS, "sync_mode": True})
    assert len(fake_fal.submits) == 2


async def test_a_journalled_request_fal_no_longer_knows_is_marked_lost_and_a_new_one_sent(fake_fal: FakeFal) -> None:
    fp = journal_module.fingerprint(ENDPOINT, fal_arguments())
    journal().record_submitted("00000000-dead-beef-0000-000000000000", ENDPOINT, fp, sync_mode=False)
    journal().release("00000000-dead-beef-0000-000000000000")
    images, _, _ = await run_node(Node, **INPUTS)
    assert images.shape[0] == 2 and len(fake_fal.submits) == 1
    assert journal().entries()["00000000-dead-beef-0000-000000000000"].state == "lost"


async def test_a_finished_request_is_collected_even_when_fals_status_check_failed_six_times_in_a_row(
    fake_fal: FakeFal
) -> None:
    request_id = await submit_and_stop(fal_arguments())
    fake_fal.faults.update({"status_status": [503] * 6, "retry_after": "0"})  # a passing outage, not "gone"
    images, _, urls = await run_node(Node, **INPUTS)
    assert len(fake_fal.submits) == 1 and request_id in urls and images.shape[0] == 2
    assert journal().entries()[request_id].state == "collected"


async def test_a_finished_request_survives_a_run_with_a_mistyped_key_and_is_collected_once_the_key_is_fixed(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = await submit_and_stop(fal_arguments())
    monkeypatch.setenv("FAL_KEY", TEST_KEY.replace("secret", "secrte"))  # fal answers 401
    with pytest.raises(errors.AuthenticationError):
        await run_node(Node, **INPUTS)
    assert journal().entries()[request_id].state == "submitted"
    monkeypatch.setenv("FAL_KEY", TEST_KEY)
    images, _, urls = await run_node(Node, **INPUTS)
    assert len(fake_fal.submits) == 1 and request_id in urls and images.shape[0] == 2


# ---- Grok Imagine Result (fal)


async def test_the_result_node_loads_a_request_by_id_without_a_new_generation(fake_fal: FakeFal) -> None:
    images, revised, urls = await run_node(Node, **INPUTS)
    request_id = fake_fal.submits[0].request_id
    again = await run_node(Result, request_id=f"  {request_id}\n", endpoint=ENDPOINT)
    assert len(fake_fal.submits) == 1
    assert tuple(again[0].shape) == tuple(images.shape)
    assert again[1] == revised and again[2] == urls


async def test_the_result_node_waits_for_a_request_that_is_still_running(fake_fal: FakeFal) -> None:
    fake_fal.faults.run_time = 0.5
    request_id = await submit_and_stop(fal_arguments())
    images, _, _ = await run_node(Result, request_id=request_id, endpoint=ENDPOINT)
    assert images.shape[0] == 2 and len(fake_fal.submits) == 1


async def test_the_result_node_explains_an_unknown_request_id(fake_fal: FakeFal) -> None:
    with pytest.raises(errors.RequestNotFoundError) as caught:
        await run_node(Result, request_id="11111111-2222-3333-4444-555555555555", endpoint=ENDPOINT)
    assert "11111111-2222-3333-4444-555555555555" in str(caught.value) and "an hour" in str(caught.value)


@pytest.mark.parametrize("bad", ["", "   ", "not an id!", "../../etc/passwd"])
async def test_the_result_node_refuses_a_malformed_id_before_any_request(fake_fal: FakeFal, bad: str) -> None:
    with pytest.raises(errors.InvalidInputError, match="request_id"):
        await run_node(Result, request_id=bad, endpoint=ENDPOINT)
    assert fake_fal.requests == []


async def test_cancelling_the_result_node_never_cancels_the_original_request(
    fake_fal: FakeFal, tmp_path: Path
) -> None:
    fake_fal.faults.never_complete = True
    request_id = await submit_and_stop(fal_arguments())
    with fake_comfy(tmp_path) as host:
        task = asyncio.ensure_future(run_node(Result, request_id=request_id, endpoint=ENDPOINT, unique_id="9"))
        assert await fake_fal.sees(lambda f: request_id in f.followed(), 10)  # the Result node waits on it at fal
        host.interrupted = True
        with pytest.raises(InterruptProcessingException):
            await task
    assert fake_fal.cancels == []


async def test_a_journalled_request_that_ended_with_an_error_at_fal_is_not_resumed(fake_fal: FakeFal) -> None:
    fake_fal.faults.run_time = 30  # still running when it is cancelled, however slow the machine
    request_id = await submit_and_stop(fal_arguments())
    queue = queue_module.FalQueue(credentials_module.resolve_credentials())
    assert await queue.cancel(queue.handle_for(ENDPOINT, request_id))  # e.g. cancelled from fal's dashboard
    fake_fal.faults.run_time = None
    images, _, _ = await run_node(Node, **INPUTS)
    assert images.shape[0] == 2 and len(fake_fal.submits) == 2
    assert journal().entries()[request_id].state == "failed"


async def test_a_cancelled_submit_whose_request_had_already_finished_is_collected_by_the_next_run(
    fake_fal: FakeFal, tmp_path: Path
) -> None:
    fake_fal.faults.submit_delay = 1.0  # fal's answer is slow; the request itself is done long before it arrives
    with fake_comfy(tmp_path) as host:
        task = asyncio.ensure_future(run_node(Node, **INPUTS, unique_id="4"))
        assert await fake_fal.sees(lambda f: f.submits, 10)  # accepted, and its answer a second away
        host.interrupted = True
        with pytest.raises(InterruptProcessingException):
            await task
    request_id = fake_fal.submits[0].request_id
    # the background loop gets fal's answer, journals the request, and its cancel comes too late
    assert await fake_fal.sees(lambda f: f.cancels, 10)
    assert journal().entries().get(request_id) is not None
    fake_fal.faults.submit_delay = None
    images, _, urls = await run_node(Node, **INPUTS)
    assert len(fake_fal.submits) == 1 and request_id in urls and images.shape[0] == 2
