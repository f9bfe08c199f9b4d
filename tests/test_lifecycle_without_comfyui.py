"""The request lifecycle on its own, as any caller (not only ComfyUI) can drive it: callbacks in,
a collected result out, the journal current at every step, nothing left open after it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from comfy_like import pack_module, run_node
from fake_fal import FakeFal

lifecycle = pack_module("fal_transport.lifecycle")
journal_module = pack_module("fal_transport.journal")
queue_module = pack_module("fal_transport.queue")
credentials = pack_module("fal_transport.credentials")
config = pack_module("fal_transport.config")
client = pack_module("fal_transport.client")
errors = pack_module("fal_transport.errors")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage
ENDPOINT = "xai/grok-imagine-image"
BODY = {"prompt": "a paper boat", "num_images": 1, "aspect_ratio": "1:1", "output_format": "png", "sync_mode": False}


def parts() -> tuple[object, object, object]:
    queue = queue_module.FalQueue(credentials.resolve_credentials())
    journal = journal_module.Journal(Path(os.environ["GROK_IMAGINE_STATE_DIR"]))
    plan = lifecycle.RequestPlan(ENDPOINT, BODY, journal_module.fingerprint(ENDPOINT, BODY))
    return queue, journal, plan


async def test_a_request_runs_from_submit_to_collect_driven_by_callbacks_alone(fake_fal: FakeFal) -> None:
    fake_fal.faults.update({"queue_time": 0.3, "run_time": 0.3})
    queue, journal, plan = parts()
    seen: list[str] = []
    events = lifecycle.RequestEvents(on_status=lambda s: seen.append(s.state),
                                     on_submitted=lambda h: seen.append(f"submitted {h.request_id}"))

    async def collect(handle: object, result: dict) -> list[str]:
        return [image["url"] for image in result["images"]]

    collected = await lifecycle.run_request(queue, journal, plan, config.Limits(), events, collect)
    request_id = fake_fal.submits[0].request_id
    assert collected.request_id == request_id and len(collected.value) == 1
    assert seen[0] == f"submitted {request_id}" and {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"} <= set(seen)
    assert journal.entries()[request_id].state == "completed"  # collected, but not yet used by the caller
    lifecycle.settle(journal, [request_id], used=True)
    # the submit's pending entry became the request's own once fal answered: one entry, collected
    assert {rid: entry.state for rid, entry in journal.entries().items()} == {request_id: "collected"}


async def test_the_callers_cancel_stops_the_wait_and_cancels_at_fal(fake_fal: FakeFal) -> None:
    fake_fal.faults.never_complete = True
    queue, journal, plan = parts()
    pressed = asyncio.Event()
    events = lifecycle.RequestEvents(should_cancel=pressed.is_set, on_submitted=lambda h: asyncio.get_running_loop()
                                     .call_later(0.2, pressed.set))
    try:
        await lifecycle.run_request(queue, journal, plan, config.Limits(), events, lambda h, r: asyncio.sleep(0))
    except errors.RequestCancelledError as exc:
        assert "fal stopped the request" in str(exc)
    else:
        raise AssertionError("the request was not stopped")
    assert fake_fal.cancels == [fake_fal.submits[0].request_id]
    assert journal.entries()[fake_fal.submits[0].request_id].state == "cancelled"


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_prompts_in_fresh_event_loops_leave_no_connection_or_client_behind(fake_fal: FakeFal) -> None:
    # ComfyUI runs every prompt in a fresh event loop (asyncio.run): nothing of one may outlive it.
    asyncio.run(run_node(Node, prompt="warm-up"))  # the background loop and its client start here
    before = open_descriptors()
    for i in range(40):
        images, _, _ = asyncio.run(run_node(Node, prompt=f"prompt {i}"))
        assert images.shape[0] == 1
    assert open_descriptors() - before <= 2  # not one per prompt
    assert client.open_clients() == 1  # only the background loop's, which submits and cancels
