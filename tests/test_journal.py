"""The request journal survives anything: malformed lines, two ComfyUI processes sharing it, compaction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from comfy_like import ROOT, pack_module, run_node
from fake_fal import FakeFal

journal_module = pack_module("fal_transport.journal")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage
ENDPOINT = "xai/grok-imagine-image"


def journal_path() -> Path:
    return Path(os.environ["GROK_IMAGINE_STATE_DIR"]) / "requests.jsonl"


def fill(path: Path, lines: int, since: float = 1_700_000_000, prefix: str = "old") -> None:
    """About `lines` well-formed lines of finished requests (four lines each), as months of use leave them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for i in range(lines // 4 + 1):
            rid, at = f"{prefix}-{i:05d}", since + i * 0.01
            handle.write(json.dumps({"request_id": rid, "endpoint": ENDPOINT, "fingerprint": "f" * 64,
                                     "submitted_at": at, "state": "submitted", "sync_mode": False,
                                     "updated_at": at}) + "\n")
            for state in ("completed", "collected", "collected"):
                handle.write(json.dumps({"request_id": rid, "state": state, "updated_at": at}) + "\n")


MALFORMED = [
    '{"request_id": "bad-1", "endpoint": "x", "fingerprint": "f", "submitted_at": "yesterday", "state": "submitted"}',
    '{"request_id": 42, "state": "submitted"}',
    '["not", "an", "object"]',
    '{"request_id": "bad-2", "state": "exploded"}',
    "{ torn",
]


async def test_malformed_lines_are_skipped_and_kept_even_past_the_compaction_size(fake_fal: FakeFal) -> None:
    path = journal_path()
    fill(path, journal_module.COMPACT_ABOVE_LINES + 10)
    with path.open("a") as handle:
        handle.write("\n".join(MALFORMED) + "\n")
    images, _, _ = await run_node(Node, prompt="a lighthouse")  # the node compacts the journal on its way
    assert images.shape[0] == 1
    text = path.read_text()
    assert len(text.splitlines()) < journal_module.COMPACT_ABOVE_LINES  # compacted
    assert all(line in text for line in MALFORMED)  # and nothing it could not read was thrown away
    assert fake_fal.submits[0].request_id in journal_module.Journal(path.parent).entries()


async def test_a_compaction_keeps_every_request_that_may_still_be_collected(fake_fal: FakeFal) -> None:
    path = journal_path()
    journal = journal_module.Journal(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"request_id": "still-running-0001", "endpoint": ENDPOINT, "fingerprint": "a" * 64,
                                "submitted_at": time.time() - 600, "state": "submitted"}) + "\n")  # 10 minutes ago
    fill(path, 4 * journal_module.KEEP_ENTRIES + 40, since=time.time() - 300, prefix="new")  # newer, finished
    fill(path, journal_module.COMPACT_ABOVE_LINES)
    await run_node(Node, prompt="a lighthouse")
    assert journal.entries()["still-running-0001"].state == "submitted"


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from comfy_like import pack_module
    journal = pack_module("fal_transport.journal").Journal(__import__("pathlib").Path({state!r}))
    for i in range({count}):
        journal.record_submitted(f"{{sys.argv[1]}}-{{i:04d}}", "xai/grok-imagine-image", "f" * 64, sync_mode=False)
        journal.release(f"{{sys.argv[1]}}-{{i:04d}}")
        if i % 10 == 0:
            journal.claim_resumable("xai/grok-imagine-image", "none")  # reads, and compacts past the size
""")


def test_two_comfyui_processes_sharing_the_journal_never_lose_each_others_records(tmp_path: Path) -> None:
    state = tmp_path / "state"
    fill(state / "requests.jsonl", journal_module.COMPACT_ABOVE_LINES - 100)  # compactions start at once
    count = 1500  # each process passes the compaction size, so both compact while the other appends
    script = WRITER.format(tests=str(ROOT / "tests"), state=str(state), count=count)
    writers = [subprocess.Popen([sys.executable, "-c", script, name]) for name in ("proc-a", "proc-b")]  # noqa: S603
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    entries = journal_module.Journal(state).entries()
    newest = {f"{name}-{i:04d}" for name in ("proc-a", "proc-b") for i in range(count - 250, count)}
    assert newest - set(entries) == set()  # the newest records of both survived every compaction
    written = {f"{name}-{i:04d}" for name in ("proc-a", "proc-b") for i in range(count)}
    assert written - set(entries) == set()  # and so did every other one fal may still hold (an hour's worth)
    assert {entries[r].state for r in written} == {"submitted"}


def test_journal_records_are_one_json_object_per_line(tmp_path: Path) -> None:
    j = journal_module.Journal(tmp_path)
    j.record_submitted("r1", ENDPOINT, "f" * 64, sync_mode=False)
    j.mark("r1", "collected")
    j.release("r1")
    lines = (tmp_path / "requests.jsonl").read_text().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == ["r1", "r1"]
    assert j.entries()["r1"].state == "collected"
