"""Waiting for fal: what a request costs while it waits, how it notices the end, and how much of what
fal sends it reads.

A request waiting in fal's queue runs only when something happens to it: its status is checked less
often the deeper it sits in the queue, all polling requests of a loop together stay within a budget,
and one watch per event loop looks at the user's Cancel for all of them. A status stream that stops
talking is checked; a stream line and a result are read only up to a cap. Independent nodes wait together,
and a time limit that passes cancels the request at fal and names the limit.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections import Counter

import pytest
from comfy_like import pack_module, run_node
from fake_fal import FakeFal

aio = pack_module("fal_transport.aio")
client = pack_module("fal_transport.http")
config = pack_module("fal_transport.config")
credentials = pack_module("fal_transport.credentials")
errors = pack_module("fal_transport.errors")
queue_module = pack_module("fal_transport.queue")
status_watch = pack_module("fal_transport.status_watch")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage
ENDPOINT = "xai/grok-imagine-image"
INPUTS = {"prompt": "a quiet harbour", "num_images": 2}
MIB = 2**20


def fal_queue() -> object:
    return queue_module.FalQueue(credentials.resolve_credentials())


async def submitted(fake: FakeFal, count: int) -> list[object]:
    """`count` requests submitted at once, in the order fal queued them."""
    queue = fal_queue()
    handles = await asyncio.gather(*(queue.submit(ENDPOINT, {"prompt": f"prompt {i}"}) for i in range(count)))
    return sorted(handles, key=lambda handle: fake.jobs[handle.request_id].seq)


async def not_cancelled_at_fal() -> bool:
    return False


async def test_a_stream_gone_silent_is_checked_and_the_node_ends_soon_after_the_request_completes(
        fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROK_IMAGINE_TIMEOUT", "60")
    monkeypatch.setenv("GROK_IMAGINE_QUEUE_TIMEOUT", "60")
    fake_fal.faults.update({"stream_pings_only": True, "run_time": 0.3})
    images, _, _ = await run_node(Node, prompt="a lighthouse")
    ended = time.monotonic()
    request_id = fake_fal.submits[0].request_id
    assert images.shape[0] == 1 and fake_fal.state_of(request_id) == "COMPLETED"
    completed_at = fake_fal.jobs[request_id].completed_at
    assert ended - completed_at < status_watch.STREAM_QUIET_S + 2.0, "the node trusted a silent stream"


async def test_queued_requests_cost_a_few_polls_a_second_deep_ones_rarely_and_end_together_on_cancel(
        fake_fal: FakeFal) -> None:
    # Every request polls (no streams), the account runs one at a time: 299 wait in fal's queue.
    fake_fal.faults.update({"stream_unavailable": True, "account_concurrency": 1, "run_time": 3600})
    handles = await submitted(fake_fal, 300)
    cancel_checks, ticks, pressed = Counter(), Counter(), False

    def should_cancel() -> bool:
        cancel_checks["calls"] += 1
        return pressed

    queue, limits = fal_queue(), config.Limits()
    waits = [asyncio.ensure_future(status_watch.wait_until_done(
        queue, handle, limits, status_watch.WaitEvents(on_tick=lambda i=i: ticks.update([i]),
                                                       should_cancel=should_cancel), not_cancelled_at_fal))
        for i, handle in enumerate(handles)]
    # Each request first tries its stream (unavailable) when a stream slot comes its way, then polls at once.
    assert await fake_fal.sees(lambda f: len({r.request_id for r in f.requests_of("status")}) == len(handles), 60)
    window_s, opened, checks_before, ticks_before = 8.0, time.monotonic(), cancel_checks["calls"], ticks.copy()
    await asyncio.sleep(window_s)
    closed, checks, ticked = time.monotonic(), cancel_checks["calls"] - checks_before, ticks - ticks_before
    polls = Counter(r.request_id for r in fake_fal.requests_of("status") if opened <= r.time <= closed)
    place = {handle.request_id: fake_fal.queue_position_of(handle.request_id) for handle in handles}

    pressed, cancelled_at = True, time.monotonic()
    done, _ = await asyncio.wait(waits, timeout=5.0)
    ended = time.monotonic() - cancelled_at
    assert len(done) == len(waits) and ended < 1.0, f"{len(done)} of {len(waits)} ended {ended:.2f} s after Cancel"
    assert all(isinstance(wait.exception(), errors.RequestCancelledError) for wait in waits)

    head = [rid for rid, position in place.items() if position in (None, 0)]  # running, and next in line
    deep = [rid for rid, position in place.items() if position is not None and position >= 100]
    assert len(head) == 2 and len(deep) == 199
    assert min(polls[rid] for rid in head) >= 8, "the head of the queue is checked often"
    assert max(polls[rid] for rid in deep) <= 1, "a request deep in the queue is checked rarely"
    assert sum(polls.values()) / window_s <= client.MAX_POLLS_PER_S, "the loop's polls stay within the budget"
    # One watch looks at Cancel for all of them, once a tick; each wait's on_tick runs once a second.
    assert checks <= 1.5 * window_s / aio.TICK_S
    assert max(ticked.values()) <= window_s / aio.ON_TICK_EVERY_S + 1


async def test_status_checks_reuse_their_connection_while_the_loops_streams_are_open(
        fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch) -> None:
    # Queued streams fall quiet; their own status checks (every STREAM_QUIET_S) would share the window.
    monkeypatch.setattr(status_watch, "STREAM_QUIET_S", 3600.0)
    fake_fal.faults.update({"account_concurrency": 1, "run_time": 3600})
    handles = await submitted(fake_fal, client.MAX_STREAMS + 1)
    queue, pressed = fal_queue(), False
    async with client.lease():
        waits = [asyncio.ensure_future(status_watch.wait_until_done(
            queue, handle, config.Limits(), status_watch.WaitEvents(should_cancel=lambda: pressed),
            not_cancelled_at_fal)) for handle in handles[:-1]]
        assert await fake_fal.sees(lambda f: f.open_streams == client.MAX_STREAMS, 10)
        for _ in range(10):
            await queue.status(handles[-1])
        pressed = True
        await asyncio.wait(waits)
    # Counted on the checks themselves: the fake is shared, and what an earlier test left finishing (its
    # background cancels) may connect to it meanwhile.
    checks = [r for r in fake_fal.requests_of("status") if r.request_id == handles[-1].request_id]
    assert len(checks) == 10 and len({r.connection for r in checks}) == 1, {r.connection for r in checks}


async def test_a_status_stream_line_past_its_cap_is_not_read_further_and_the_request_is_polled(
        fake_fal: FakeFal, caplog: pytest.LogCaptureFixture) -> None:
    fake_fal.faults.update({"stream_huge_line": 64 * MIB, "run_time": 0.5})
    (handle,) = await submitted(fake_fal, 1)
    tracemalloc.start()
    try:
        final = await status_watch.wait_until_done(fal_queue(), handle, config.Limits(), status_watch.WaitEvents(),
                                                   not_cancelled_at_fal)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert final.state == "COMPLETED"
    assert peak < 16 * MIB, f"held {peak / MIB:.0f} MiB of a 64 MiB line"
    assert "a line longer than 1 MiB (the most this pack reads)" in caplog.text


async def test_a_result_past_its_cap_is_refused_naming_the_cap_without_holding_more(fake_fal: FakeFal) -> None:
    fake_fal.faults.update({"result_huge": 256 * MIB})
    (handle,) = await submitted(fake_fal, 1)
    queue = fal_queue()
    await status_watch.wait_until_done(queue, handle, config.Limits(), status_watch.WaitEvents(),
                                       not_cancelled_at_fal)
    tracemalloc.start()
    try:
        with pytest.raises(errors.ResultError) as caught:
            await queue.result(handle)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "larger than 128 MiB" in str(caught.value) and handle.request_id in str(caught.value)
    assert peak < 1.25 * queue_module.MAX_RESULT_BYTES, f"held {peak / MIB:.0f} MiB of a 256 MiB result"


async def test_independent_nodes_in_one_event_loop_wait_concurrently(fake_fal: FakeFal) -> None:
    # As ComfyUI runs awaiting nodes: every request is in flight before the first one completes.
    fake_fal.faults.run_time = 0.8
    await asyncio.gather(*(run_node(Node, **{**INPUTS, "num_images": 1}) for _ in range(4)))
    submit_times = sorted(r.time for r in fake_fal.submits)
    first_result = min(r.time for r in fake_fal.requests_of("result"))
    assert len(submit_times) == 4 and submit_times[-1] < first_result


@pytest.mark.parametrize(
    ("variable", "fault"),
    [("GROK_IMAGINE_QUEUE_TIMEOUT", "stuck_in_queue"), ("GROK_IMAGINE_TIMEOUT", "never_complete")],
)
async def test_a_passed_time_limit_cancels_at_fal_and_names_the_limit_and_request(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch, variable: str, fault: str
) -> None:
    monkeypatch.setenv(variable, "0.5")
    setattr(fake_fal.faults, fault, True)
    started = time.monotonic()
    with pytest.raises(errors.FalTimeoutError) as caught:
        await run_node(Node, **INPUTS)
    assert time.monotonic() - started < 2.0
    request_id = fake_fal.submits[-1].request_id
    assert variable in str(caught.value) and request_id in str(caught.value)
    assert fake_fal.cancels == [request_id]


async def test_a_bad_time_limit_setting_is_named_before_anything_is_sent(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROK_IMAGINE_TIMEOUT", "ten minutes")
    with pytest.raises(errors.FalConfigError, match="GROK_IMAGINE_TIMEOUT"):
        await run_node(Node, **INPUTS)
    assert fake_fal.requests == []
