"""The request lifecycle on its own, as any caller (not only ComfyUI) can drive it: callbacks in,
a collected result out, the journal current at every step, nothing left open after it."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from comfy_like import pack_module, run_node
from fake_fal import FakeFal

lifecycle = pack_module("fal_transport.lifecycle")
journal_module = pack_module("fal_transport.journal")
queue_module = pack_module("fal_transport.queue")
credentials = pack_module("fal_transport.credentials")
config = pack_module("fal_transport.config")
client = pack_module("fal_transport.http")
errors = pack_module("fal_transport.errors")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage
ledger = pack_module("fal_transport.ledger")
ENDPOINT = "xai/grok-imagine-image"
BODY = {"prompt": "a paper boat", "num_images": 1, "aspect_ratio": "1:1", "output_format": "png", "sync_mode": False}


@dataclass(frozen=True)
class PaperBoat:
    """A typed request as any model family gives the lifecycle (the transport knows no node)."""

    endpoint: str = ENDPOINT
    sync_mode: bool = False

    def body(self) -> dict:
        return dict(BODY)

    def fingerprint(self) -> str:
        return journal_module.fingerprint(ENDPOINT, BODY)

    def spend(self) -> object:
        return ledger.Spend(0.02, 1, 0)


def request(events: object) -> object:
    queue = queue_module.FalQueue(credentials.resolve_credentials())
    journal = journal_module.Journal(Path(os.environ["GROK_IMAGINE_STATE_DIR"]))
    return lifecycle.FalRequest(PaperBoat(), queue, journal, config.Limits(), events)


async def test_a_request_runs_from_submit_to_collect_driven_by_callbacks_alone(fake_fal: FakeFal) -> None:
    fake_fal.faults.update({"queue_time": 0.3, "run_time": 0.3})
    seen: list[str] = []
    boat = request(lifecycle.RequestEvents(on_status=lambda s: seen.append(s.state),
                                           on_submitted=lambda h: seen.append(f"submitted {h.request_id}")))
    assert not await boat.find_earlier()  # nothing in the journal yet
    result = await boat.result()
    request_id = fake_fal.submits[0].request_id
    assert boat.request_id == request_id and len(result["images"]) == 1
    assert seen[0] == f"submitted {request_id}" and {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"} <= set(seen)
    journal = boat.journal
    assert journal.entries()[request_id].state == "completed"  # fetched, but not yet used by the caller
    boat.settle(used=True)
    # the submit's pending entry became the request's own once fal answered: one entry, collected
    assert {rid: entry.state for rid, entry in journal.entries().items()} == {request_id: "collected"}


async def test_the_callers_cancel_stops_the_wait_and_cancels_at_fal(fake_fal: FakeFal) -> None:
    fake_fal.faults.never_complete = True
    pressed = asyncio.Event()
    boat = request(lifecycle.RequestEvents(should_cancel=pressed.is_set, on_submitted=lambda h: pressed.set()))
    journal = boat.journal
    try:
        await boat.result()
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
    assert open_clients() == 1  # only the background loop's, which submits and cancels


def open_clients() -> int:
    """How many of the pack's HTTP clients are open now (one per event loop that holds a lease)."""
    return sum(1 for entry in pack_module("fal_transport.process_state").current().loops.values()
               if not entry.client.is_closed)
