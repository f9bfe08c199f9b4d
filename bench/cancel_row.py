"""Row 9: Cancel of a list of 1,000 prompts waiting at fal.

1,000 prompts fed to one Grok node as a ComfyUI list feeds it (`run_node_over_list`, in a fresh event loop on
the prompt thread) against a fake (in this process) that runs two jobs at a time and never finishes one, so
998 wait in fal's queue. Once the fake has accepted all 1,000, the user presses Cancel: ComfyUI's interrupt
flag is set in the stand-in for ComfyUI, whose progress hook, like ComfyUI's, raises the interrupt and
clears the flag. Measured from the Cancel: the end of the prompt (target 1 s), and the last of the 1,000
cancels reaching the fake (target 30 s).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import harness as h

PROMPTS, ACCOUNT_CONCURRENCY = 1000, 2
END_TARGET_MS, CANCELS_TARGET_MS = 1000.0, 30000.0


def one_cancel(fake: h.FakeFal, host: Any) -> dict[str, Any]:
    fake.reset()
    fake.faults.update({"account_concurrency": ACCOUNT_CONCURRENCY, "never_complete": True})
    inputs = h.node_inputs("8") | {"prompt": [h.new_prompt() for _ in range(PROMPTS)]}
    ended: dict[str, Any] = {}

    def prompt() -> None:  # one ComfyUI prompt on a thread of its own, as `h.run_prompt` runs it
        try:
            asyncio.run(h.run_node_over_list(h.node_class(), **inputs))
            ended["outcome"] = "finished"
        except BaseException as exc:  # noqa: BLE001 - the interrupt is the expected end
            ended["outcome"] = type(exc).__name__
        ended["at"] = time.monotonic()

    with host.lock:
        host.interrupted = False  # ComfyUI clears its interrupt flag when a prompt starts
    worker = threading.Thread(target=prompt, name="prompt_worker")
    started = time.monotonic()
    worker.start()
    submitted = fake.wait_for(lambda f: len(f.submits) == PROMPTS, 300)
    submitted_s = time.monotonic() - started
    with host.lock:
        host.interrupted = True  # the user's Cancel
    pressed = time.monotonic()
    worker.join(120)
    accepted = {s.request_id for s in fake.submits}
    fake.wait_for(lambda f: accepted <= set(f.cancels), 120)
    cancels = [r.time for r in fake.requests_of("cancel")]
    return {"end": ended.get("at", float("nan")) - pressed, "outcome": ended.get("outcome", "still running"),
            "cancels": (max(cancels) - pressed) if cancels else float("nan"),
            "cancelled": len(accepted & set(fake.cancels)), "accepted": len(accepted),
            "all submitted": submitted, "submit phase s": submitted_s}


def measure_cancel(state_root: Path, s: Any, report: h.Report) -> None:
    runs = []
    with h.FakeFal(accepted_keys={h.TEST_KEY}) as fake, h.fake_comfy(state_root / "cancel-temp") as host:
        h.fresh_pack(fake.url, state_root, "cancel")
        h.run_prompt(h.call_node, 1)  # the process's first prompt, before the batches
        try:
            for _ in range(1 if s.quick else 3):
                runs.append(one_cancel(fake, host))
        finally:  # the background loop finishes what it has under way (the journal's last marks) and ends
            h.pack_module("fal_transport.process_state").reset()
    end = h.median([r["end"] for r in runs]) * 1e3
    cancels = h.median([r["cancels"] for r in runs]) * 1e3
    rows = [{"figure": "Cancel -> the prompt ends", "ms": end, "target ms": END_TARGET_MS,
             "met": report.check("9 cancel of 1,000: prompt ends", end, END_TARGET_MS, "ms")},
            {"figure": "Cancel -> the last cancel reaches fal", "ms": cancels, "target ms": CANCELS_TARGET_MS,
             "met": report.check("9 cancel of 1,000: all cancels at fal", cancels, CANCELS_TARGET_MS, "ms")}]
    runs_note = "; ".join(f"ended {r['end']:.2f} s ({r['outcome']}), {r['cancelled']}/{r['accepted']} cancels at fal "
                          f"by {r['cancels']:.2f} s, submit phase {r['submit phase s']:.1f} s" for r in runs)
    report.table("cancel", f"9. Cancel of {PROMPTS} prompts into one node, {ACCOUNT_CONCURRENCY} running at fal and "
                 f"the rest queued; median of {len(runs)} run(s)", rows, f"runs: {runs_note}")
    report.tables["cancel"][0]["runs"] = runs
