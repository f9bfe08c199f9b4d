"""Cancel: whatever the size of the batch, the node ends at once and fal hears a cancel for every
request it accepted, so nothing the user stopped runs on and is billed.

The stand-in for ComfyUI (tests/fake_comfy.py) behaves as the real host does: the first progress
update after the Cancel raises ComfyUI's interrupt and clears its flag.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import time
from pathlib import Path

import pytest
from comfy_like import pack_module, run_node, run_node_over_list
from fake_comfy import InterruptProcessingException, fake_comfy
from fake_fal import FakeFal

Node = pack_module("nodes.text_to_image").FalGrokImagineImage
cancels = pack_module("fal_transport.cancels")
journal_module = pack_module("fal_transport.journal")

LONG_LIST = 400


def prompts(count: int, word: str = "lighthouse") -> list[str]:
    return [f"{word} number {i}" for i in range(count)]


def every_accepted_request_cancelled(fake: FakeFal) -> bool:
    return {s.request_id for s in fake.submits} <= set(fake.cancels)


@pytest.mark.parametrize("api", ["0.3", "0.38"])
async def test_cancel_of_a_long_prompt_list_ends_the_node_and_cancels_every_request_at_fal(
    fake_fal: FakeFal, tmp_path: Path, api: str
) -> None:
    # The account runs two at a time and nothing finishes: every other request stays queued at fal.
    fake_fal.faults.update({"account_concurrency": 2, "never_complete": True})
    with fake_comfy(tmp_path, api=api) as host:  # type: ignore[arg-type]
        run = asyncio.ensure_future(run_node_over_list(Node, prompt=prompts(LONG_LIST), num_images=1, unique_id="5"))
        assert await fake_fal.sees(lambda f: len(f.submits) == LONG_LIST, 60)
        host.interrupted = True  # the user's Cancel
        pressed = time.monotonic()
        with pytest.raises(InterruptProcessingException):
            await asyncio.wait_for(run, 30)
        ended = time.monotonic() - pressed
    assert await fake_fal.sees(every_accepted_request_cancelled, 30), (
        f"{len(set(fake_fal.cancels))} of {LONG_LIST} accepted requests were cancelled at fal")
    print(f"{LONG_LIST} prompts: the node ended {ended:.2f} s after Cancel; every cancel reached fal "
          f"{time.monotonic() - pressed:.2f} s after it")
    assert len(fake_fal.submits) == LONG_LIST
    if api == "0.3":  # the bar's hook took ComfyUI's flag: the pack gave it back to every list item
        assert host.interrupts_raised >= 1
    else:  # 0.38's set_progress leaves the flag alone
        assert host.interrupts_raised == 0 and host.bar_updates


def set_aside_usd() -> tuple[int, float]:
    """The spend reservations in the state database: how many, and what they hold against the daily limit."""
    database = sqlite3.connect(Path(os.environ["GROK_IMAGINE_STATE_DIR"]) / "state.sqlite3")
    try:
        return database.execute("SELECT COUNT(*), TOTAL(usd) FROM reservations").fetchone()
    finally:
        database.close()


async def test_cancel_of_a_list_while_its_submits_wait_gives_back_all_it_set_aside_by_the_time_it_ends(
    fake_fal: FakeFal, tmp_path: Path
) -> None:
    # fal answers each submit after a while: when the user cancels, most of the list waits for a submit slot.
    fake_fal.faults.update({"submit_delay": 0.5, "never_complete": True})
    with fake_comfy(tmp_path) as host:
        run = asyncio.ensure_future(run_node_over_list(Node, prompt=prompts(60), num_images=1, unique_id="6"))
        assert await fake_fal.sees(lambda f: len(f.submits) >= 1, 30)
        assert set_aside_usd()[0] > 0  # every prompt of the list set its price aside before sending
        host.interrupted = True  # the user's Cancel
        with pytest.raises(InterruptProcessingException):
            await asyncio.wait_for(run, 30)
        assert set_aside_usd() == (0, 0.0)  # nothing of the list holds the daily limit back any longer
    assert len(fake_fal.submits) < 60  # some prompts were never sent
    assert await fake_fal.sees(every_accepted_request_cancelled, 30)


def journal_state(request_id: str) -> str:
    return journal_module.Journal(Path(os.environ["GROK_IMAGINE_STATE_DIR"])).entries()[request_id].state


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[concurrent.futures.Future[bool]]:
    """fal's answer to every cancel the pack asks for (True once fal took it, False if it never will)."""
    answers: list[concurrent.futures.Future[bool]] = []
    ask = cancels.cancel

    def spy(*args: object) -> concurrent.futures.Future[bool]:
        answers.append(ask(*args))
        return answers[-1]

    monkeypatch.setattr(cancels, "cancel", spy)
    return answers


async def cancel_one_running_request(fake: FakeFal, tmp_path: Path) -> str:
    """Run one prompt that never finishes at fal, press Cancel once the node follows it there, and answer its
    request id."""
    fake.faults.never_complete = True
    with fake_comfy(tmp_path) as host:
        run = asyncio.ensure_future(run_node(Node, prompt="a lighthouse", num_images=1, unique_id="8"))
        assert await fake.sees(lambda f: f.followed(), 10)
        host.interrupted = True
        with pytest.raises(InterruptProcessingException):
            await asyncio.wait_for(run, 10)
    return fake.submits[0].request_id


async def test_a_cancel_fal_cannot_take_yet_is_asked_again_and_the_request_stays_journalled_until_it_does(
    fake_fal: FakeFal, tmp_path: Path, asked: list[concurrent.futures.Future[bool]]
) -> None:
    fake_fal.faults.update({"cancel_status": [503] * 1000, "retry_after": "0.1"})  # fal cannot take cancels
    request_id = await cancel_one_running_request(fake_fal, tmp_path)
    assert len(asked) == 1 and not asked[0].done() and journal_state(request_id) == "submitted"
    fake_fal.faults.cancel_status = []  # fal is back
    assert await asyncio.wait_for(asyncio.wrap_future(asked[0]), 10) is True
    assert fake_fal.cancels == [request_id] and journal_state(request_id) == "cancelled"


async def test_a_request_whose_cancel_fal_never_took_is_collected_by_the_next_run_without_paying_again(
    fake_fal: FakeFal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asked: list[concurrent.futures.Future[bool]]
) -> None:
    monkeypatch.setattr(cancels, "KEEP_TRYING_S", 0.5)
    fake_fal.faults.update({"cancel_status": [503] * 1000, "retry_after": "0.1"})
    request_id = await cancel_one_running_request(fake_fal, tmp_path)
    assert len(asked) == 1 and await asyncio.wait_for(asyncio.wrap_future(asked[0]), 10) is False
    assert journal_state(request_id) == "submitted"
    fake_fal.faults.update({"cancel_status": [], "never_complete": False})
    fake_fal.complete_job(request_id)  # fal finished it anyway
    images, _, urls = await run_node(Node, prompt="a lighthouse", num_images=1)
    assert len(fake_fal.submits) == 1 and request_id in urls and images.shape[0] == 1


async def test_cancel_stops_the_node_within_a_second_and_cancels_at_fal(fake_fal: FakeFal, tmp_path: Path) -> None:
    fake_fal.faults.never_complete = True
    with fake_comfy(tmp_path) as host:
        run = asyncio.ensure_future(run_node(Node, prompt="a quiet harbour", num_images=2, unique_id="7"))
        assert await fake_fal.sees(lambda f: f.followed(), 10)  # the node has fal's answer and waits on the request
        host.interrupted = True
        pressed = time.monotonic()
        with pytest.raises(InterruptProcessingException):
            await run
    assert time.monotonic() - pressed < 1.0
    assert fake_fal.cancels == [fake_fal.submits[-1].request_id]


async def test_cancel_while_downloading_ends_the_node_as_an_interruption(fake_fal: FakeFal, tmp_path: Path) -> None:
    fake_fal.faults.image_trickle = 0.2  # 64 bytes every 0.2 s: the download lasts far longer than the test
    with fake_comfy(tmp_path) as host:
        run = asyncio.ensure_future(run_node(Node, prompt="a quiet harbour", num_images=2, unique_id="7"))
        assert await fake_fal.sees(lambda f: f.requests_of("file"), 10)
        host.interrupted = True
        pressed = time.monotonic()
        with pytest.raises(InterruptProcessingException):
            await run
    assert time.monotonic() - pressed < 1.0
