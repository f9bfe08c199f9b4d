"""Two ComfyUI processes on one state directory (two GPUs, two instances on one user folder) share one daily
limit and one journal: they never pass the limit together, never collect the same request, and a process that
dies gives back what it held at once. The state directory's path has spaces and non-ASCII characters, as
Windows user folders do."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from comfy_like import ROOT, pack_module
from fake_fal import FakeFal

errors = pack_module("fal_transport.errors")
journal_module = pack_module("fal_transport.journal")
ledger_module = pack_module("fal_transport.ledger")
ENDPOINT = "xai/grok-imagine-image"
FINGERPRINT = "c" * 64


@pytest.fixture
def shared_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "Zoë Ångström" / "grok imagine state"
    monkeypatch.setenv("GROK_IMAGINE_STATE_DIR", str(state))
    return state


class Process:
    """`tests/state_process.py` in a process of its own, driven line by line."""

    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen(  # noqa: S603
            [sys.executable, str(ROOT / "tests" / "state_process.py"), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8")

    def tell(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def answer(self) -> str:
        assert self.popen.stdout is not None
        return self.popen.stdout.readline().strip()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.popen.kill()
        process.popen.communicate(timeout=30)  # and its pipes closed


def unfinished_request(state: Path, request_id: str) -> None:
    """A request an earlier run left unfinished, nobody following it."""
    journal_module.Journal(state).record_submitted(request_id, ENDPOINT, FINGERPRINT, sync_mode=False, follow=False)


async def test_two_processes_never_pass_the_daily_limit_together(
    fake_fal: FakeFal, shared_state: Path, processes: list[Process], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GROK_IMAGINE_DAILY_LIMIT_USD", "0.5")  # 25 images at $0.02
    processes += [Process("batch", "first"), Process("batch", "second")]  # each a list of 20 prompts
    assert [p.answer() for p in processes] == ["ready", "ready"]
    for process in processes:
        process.tell("go")
    answers = [p.answer() for p in processes]
    assert len(fake_fal.submits) == 25
    not_run = [re.search(r"(\d+) of its 20 prompts did not run", a) for a in answers]
    assert sum(int(m.group(1)) for m in not_run if m) == 15, answers
    assert ledger_module.Ledger(shared_state).totals().today_usd == pytest.approx(0.5)


def test_two_processes_never_claim_the_same_unfinished_request(
    shared_state: Path, processes: list[Process]
) -> None:
    unfinished_request(shared_state, "req-left-by-a-crash")
    processes += [Process("claim", ENDPOINT, FINGERPRINT), Process("claim", ENDPOINT, FINGERPRINT)]
    assert [p.answer() for p in processes] == ["ready", "ready"]
    for process in processes:
        process.tell("go")
    assert sorted(p.answer() for p in processes) == ["claimed none", "claimed req-left-by-a-crash"]


def test_a_killed_process_gives_back_its_reservation_and_its_claim_at_once(
    shared_state: Path, processes: list[Process], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROK_IMAGINE_DAILY_LIMIT_USD", "0.5")
    unfinished_request(shared_state, "req-left-by-a-crash")
    holder = Process("hold", "0.4", ENDPOINT, FINGERPRINT)
    processes.append(holder)
    assert holder.answer() == "holding req-left-by-a-crash"
    ledger, journal = ledger_module.Ledger(shared_state), journal_module.Journal(shared_state)
    with pytest.raises(errors.SpendLimitError, match=r"today's spend is \$0.40"):  # its $0.40 is set aside
        ledger.reserve(0.2)
    assert journal.claim_resumable(ENDPOINT, FINGERPRINT) is None  # and the request is its own
    holder.popen.kill()  # as a crash, or the task manager, ends it: nothing of the pack runs on the way out
    holder.popen.wait(timeout=30)
    ledger_module.release_all([ledger.reserve(0.2)])
    entry = journal.claim_resumable(ENDPOINT, FINGERPRINT)
    assert entry is not None and entry.request_id == "req-left-by-a-crash"
