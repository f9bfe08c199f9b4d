"""Upgrading from a version that kept its state in files (`requests.jsonl`, `spend.jsonl`, `settings.json`)
loses nothing recoverable: the files are imported into the state database on first use and kept beside it
renamed `*.imported`; what cannot be read is skipped with a warning and blocks nothing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from comfy_like import pack_module, run_node, stored_state
from fake_fal import FakeFal

errors = pack_module("fal_transport.errors")
journal_module = pack_module("fal_transport.journal")
ledger_module = pack_module("fal_transport.ledger")
process_state = pack_module("fal_transport.process_state")
queue_module = pack_module("fal_transport.queue")
credentials = pack_module("fal_transport.credentials")
state_import = pack_module("fal_transport.state_import")
routes = pack_module("nodes.routes")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage
ENDPOINT = "xai/grok-imagine-image"
INPUTS = {"prompt": "a paper boat on a puddle", "num_images": 2}
MALFORMED = [
    '{"request_id": "bad-1", "endpoint": "x", "fingerprint": "f", "submitted_at": "yesterday", "state": "submitted"}',
    '{"request_id": 42, "state": "submitted"}',
    '["not", "an", "object"]',
    '{"request_id": "bad-2", "state": "exploded"}',
    "{ torn",
]


def state() -> Path:
    return Path(os.environ["GROK_IMAGINE_STATE_DIR"])


def write_lines(name: str, records: list[dict | str]) -> Path:
    path = state() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def spend() -> dict:
    status, payload = routes.spend_payload()
    assert status == 200, payload
    return payload


def journal_lines(request_id: str, fingerprint: str, at: float, *states: str) -> list[dict]:
    """A request as the old journal wrote it: its first line whole, then one line per change of state."""
    return [{"request_id": request_id, "endpoint": ENDPOINT, "fingerprint": fingerprint, "submitted_at": at,
             "state": states[0], "sync_mode": False, "updated_at": at},
            *({"request_id": request_id, "state": s, "updated_at": at} for s in states[1:])]


async def test_an_unfinished_request_of_the_old_journal_is_collected_instead_of_paid_again(
    fake_fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    arguments = Node.image_request({"aspect_ratio": "1:1", "resolution": "1k", "output_format": "jpeg",
                                    "sync_mode": False, **INPUTS}, {}).body()
    queue = queue_module.FalQueue(credentials.resolve_credentials())
    handle = await queue.submit(ENDPOINT, arguments)  # sent by the old version, which then stopped
    old = write_lines("requests.jsonl", [
        *journal_lines("old-finished-0001", "f" * 64, time.time() - 900, "submitted", "completed", "collected"),
        *journal_lines(handle.request_id, journal_module.fingerprint(ENDPOINT, arguments), time.time() - 60,
                       "submitting", "submitted"),
        *MALFORMED,
    ])
    with old.open("a") as torn:
        torn.write('{"request_id": "half')  # the old version died while writing
    images, _, urls = await run_node(Node, **INPUTS)
    assert images.shape[0] == 2 and len(fake_fal.submits) == 1 and handle.request_id in urls
    entries = journal_module.Journal(state()).entries()
    assert entries[handle.request_id].state == "collected"
    assert entries["old-finished-0001"].state == "collected"
    assert "skipped 6 malformed line(s) of requests.jsonl" in caplog.text
    assert not old.exists() and (state() / "requests.jsonl.imported").read_text().startswith('{"request_id"')


async def test_the_old_ledger_and_limit_count_today(fake_fal: FakeFal) -> None:
    now = time.time()
    write_lines("spend.jsonl", [
        {"request_id": "summary-today", "summary": True, "price_usd": 0.9, "at": now},  # the old compaction's
        {"request_id": "req-a", "endpoint": ENDPOINT, "images": 4, "references": 0, "price_usd": 0.08, "at": now},
        {"request_id": "req-b", "endpoint": ENDPOINT, "images": 2, "references": 1, "price_usd": 0.04, "at": now},
        {"request_id": "req-c", "price_usd": -5, "at": now},  # no spend record: skipped
        "not json",
    ])
    write_lines("settings.json", ['{"daily_limit_usd": 1.05}'])
    totals = spend()
    assert totals["today_usd"] == pytest.approx(1.02) and totals["month_usd"] == pytest.approx(1.02)
    assert [r["request_id"] for r in totals["recent"]] == ["req-b", "req-a"]
    assert totals["recent"][0]["references"] == 1 and totals["daily_limit_usd"] == 1.05
    with pytest.raises(errors.SpendLimitError, match=r"today's spend is \$1.02"):
        await run_node(Node, prompt="two more", num_images=2)  # $0.04 more would pass $1.05
    await run_node(Node, prompt="one more")  # $0.02 fits
    assert {p.name for p in state().iterdir()} >= {"spend.jsonl.imported", "settings.json.imported"}


@pytest.mark.parametrize("corrupt", ['{"daily_limit_usd": 5', "[5]", "\xff\xfe garbage"])
async def test_a_corrupt_settings_file_blocks_nothing_and_the_limit_can_be_set_and_cleared(
    fake_fal: FakeFal, caplog: pytest.LogCaptureFixture, corrupt: str
) -> None:
    path = state() / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(corrupt.encode("latin-1"))
    assert spend()["daily_limit_usd"] is None  # its limit is ignored,
    assert "settings.json could not be read" in caplog.text and "set them again in Settings" in caplog.text
    images, _, _ = await run_node(Node, prompt="a lighthouse")  # runs run,
    assert images.shape[0] == 1
    status, payload = routes.set_daily_limit({"daily_limit_usd": 0.5})  # and the limit can be set
    assert status == 200 and payload["daily_limit_usd"] == 0.5
    status, payload = routes.set_daily_limit({"daily_limit_usd": None})  # and cleared
    assert status == 200 and payload["daily_limit_usd"] is None
    assert (state() / "settings.json.imported").read_bytes() == corrupt.encode("latin-1")  # kept, not deleted


async def test_a_journal_of_thousands_of_failed_submits_is_imported_and_slows_nothing(fake_fal: FakeFal) -> None:
    lines = [line for i in range(2000)  # 4,000 lines: each submit journalled, then refused before fal took it
             for line in journal_lines(f"pending-{i:05d}", "e" * 64, time.time() - 3000 + i, "submitting", "not_sent")]
    write_lines("requests.jsonl", lines)
    images, _, _ = await run_node(Node, prompt="a lighthouse")
    assert images.shape[0] == 1 and len(fake_fal.submits) == 1
    entries = journal_module.Journal(state()).entries()
    assert len(entries) == 2001 and sum(e.state == "not_sent" for e in entries.values()) == 2000


def test_old_entries_and_last_years_spend_are_dropped_but_everything_collectable_stays(fake_fal: FakeFal) -> None:
    now = time.time()
    write_lines("requests.jsonl", [*journal_lines("req-of-last-month", "a" * 64, now - 30 * 86400, "submitted",
                                                  "collected"),
                                   *journal_lines("req-of-an-hour-ago", "b" * 64, now - 3000, "submitted")])
    write_lines("spend.jsonl", [{"request_id": "req-of-last-year", "price_usd": 5.0, "at": now - 365 * 86400},
                                {"request_id": "req-of-today", "price_usd": 0.02, "at": now}])
    assert set(journal_module.Journal(state()).entries()) == {"req-of-an-hour-ago"}
    assert spend()["month_usd"] == pytest.approx(0.02) and "req-of-last-year" not in stored_state(state())


def test_an_old_file_that_cannot_be_renamed_is_imported_again_without_counting_twice(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    old = write_lines("spend.jsonl", [{"request_id": "req-a", "price_usd": 0.08, "at": time.time()}])

    def held_open(source: object, target: object) -> None:  # Windows, while an old version has the file open
        raise PermissionError(13, "The process cannot access the file because it is being used by another process")

    with monkeypatch.context() as patch:
        patch.setattr(state_import.os, "rename", held_open)
        assert spend()["today_usd"] == pytest.approx(0.08)
    assert old.exists() and "could not rename it" in caplog.text
    process_state.reset()  # the next ComfyUI start imports it again
    assert spend()["today_usd"] == pytest.approx(0.08)
    assert not old.exists() and (state() / "spend.jsonl.imported").exists()
    write_lines("spend.jsonl", [{"request_id": "req-b", "price_usd": 0.02, "at": time.time()}])  # an old version
    process_state.reset()  # still running beside the new one wrote another
    assert spend()["today_usd"] == pytest.approx(0.10)
    assert (state() / "spend.jsonl.imported.2").exists()
