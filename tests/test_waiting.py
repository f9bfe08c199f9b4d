"""Waiting for fal: how much of what fal sends a request reads. A stream line and a result are read
only up to a cap.
"""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest
from comfy_like import pack_module
from fake_fal import FakeFal

config = pack_module("fal_transport.config")
credentials = pack_module("fal_transport.credentials")
errors = pack_module("fal_transport.errors")
queue_module = pack_module("fal_transport.queue")
status_watch = pack_module("fal_transport.status_watch")
ENDPOINT = "xai/grok-imagine-image"
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
