"""Row 8: what waiting costs. 1,000 prompts fed to one node as a ComfyUI list feeds it, against the fake fal
in this process, whose account runs 2 jobs at a time for an hour each: all are submitted, 2 run, 998 wait in
fal's queue. Once every submit is in and the waits have settled, the row measures over a window the process's
CPU time over wall time (the fake's threads included, so a little pessimistic), the status requests the fake
received per second and the streams it had open. Then it presses Cancel and reports how long the node took to
end and how many cancels reached the fake (for information: the cancel path has its own figures).
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from pathlib import Path
from typing import Any

import harness as h

PROMPTS, ACCOUNT_CONCURRENCY, TARGET_PERCENT = 1000, 2, 5.0
SETTLE_S = 5.0  # after the last submit, before the window opens (each request's first status check comes first)
END_WITHIN_S = 120.0


async def pack_batch(prompts: list[str]) -> int:
    inputs = h.node_inputs("8") | {"prompt": prompts}
    return len(await h.run_node_over_list(h.node_class(), **inputs))


PACK_THREADS = ("prompt_worker", "grok-imagine-fal background")  # the prompt's loop, the submit/cancel loop


def pack_cpu_s() -> float | None:
    """CPU seconds of the pack's own threads so far (Linux: from /proc), None where that cannot be read."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    for thread in threading.enumerate():
        if not thread.name.startswith(PACK_THREADS):
            continue
        try:
            fields = open(f"/proc/self/task/{thread.native_id}/stat").read().rpartition(")")[2].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(0.1)


def one_run(fake: h.FakeFal, host: Any, window_s: float) -> dict[str, Any]:
    fake.reset()
    fake.account_concurrency, fake.run_time = ACCOUNT_CONCURRENCY, 3600.0
    host.interrupted = False
    prompts = [h.new_prompt() for _ in range(PROMPTS)]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        prompt = pool.submit(h.run_prompt, pack_batch, prompts)
        started = time.monotonic()
        wait_for(lambda: len(fake.submits) >= PROMPTS or prompt.done(), 600, f"{PROMPTS} submits")
        submitted_s = time.monotonic() - started
        time.sleep(SETTLE_S)
        wall0, cpu0, pack0, seen0 = time.monotonic(), time.process_time(), pack_cpu_s(), len(fake.requests)
        time.sleep(window_s)
        wall1, cpu1, pack1 = time.monotonic(), time.process_time(), pack_cpu_s()
        window = [r for r in fake.requests[seen0:] if wall0 <= r.time <= wall1]
        status_per_s = sum(r.kind == "status" for r in window) / (wall1 - wall0)
        streams = fake.open_streams
        print(f"  waiting: {100.0 * (cpu1 - cpu0) / (wall1 - wall0):.1f} % of a core, {status_per_s:.1f} status "
              f"requests/s, {streams} streams; pressing Cancel", flush=True)
        host.interrupted = True
        pressed = time.monotonic()
        try:
            prompt.result(timeout=END_WITHIN_S)
            outcome = "ended"
        except concurrent.futures.TimeoutError:
            outcome = f"still running {END_WITHIN_S:g} s after Cancel: the fake was stopped"
            fake.stop()  # every wait then fails, and the prompt ends
        except BaseException as exc:  # noqa: BLE001 - the interrupted batch raises; reported, not asserted
            outcome = type(exc).__name__
        ended_s = time.monotonic() - pressed
    pack = None if pack0 is None or pack1 is None else 100.0 * (pack1 - pack0) / (wall1 - wall0)
    return {"cpu %": 100.0 * (cpu1 - cpu0) / (wall1 - wall0), "pack threads %": pack, "status/s": status_per_s,
            "streams": streams,
            "submitted in s": submitted_s, "cancel -> end s": ended_s, "end": outcome,
            "cancels at fal": len(set(fake.cancels))}


def measure_waiting(state_root: Path, s: Any, report: h.Report) -> None:
    window_s = 10.0 if s.quick else 60.0
    with h.FakeFal(accepted_keys={h.TEST_KEY}) as fake, h.fake_comfy(state_root / "comfy-temp-waiting") as host:
        h.fresh_pack(fake.url, state_root, "waiting")
        h.run_prompt(h.call_node, 1)  # the process's first prompt, before the batch
        run = one_run(fake, host, window_s)
    run |= {"target %": TARGET_PERCENT,
            "met": report.check(f"8 waiting: {PROMPTS} queued prompts, % of a core", run["cpu %"], TARGET_PERCENT,
                                "%")}
    report.table("waiting", f"8. Waiting: {PROMPTS} prompts into one node, {ACCOUNT_CONCURRENCY} running at fal and "
                 f"the rest queued; CPU over a {window_s:g} s window, fake fal in this process", [run], NOTE)


NOTE = """\
cpu %: process CPU time / wall time over the window (one core = 100 %), the fake's own threads included;
pack threads %: the same for the prompt's loop thread and the pack's background loop only (Linux, /proc).
status/s: status requests (polls) the fake received per second in the window; streams: status streams open.
A request n places back in the queue first polls within n s (at most 5 minutes): in the first minutes of a
batch (the window) its deep end has polled less than it does later, about 4.5 polls a second in all here.
cancel -> end: from Cancel to the node's end (the batch then ends interrupted); cancels at fal: distinct ids."""
