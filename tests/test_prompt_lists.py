"""A Prompt List into one Grok node (ComfyUI runs the node once per prompt, all at once): the list runs at fal's
pace, nothing moving in fal's queue is cancelled, resources stay bounded, an interrupted list resumes paying only
for the rest, the daily limit stops it cleanly, and it shows its progress as a whole."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
from comfy_like import pack_module, run_node_over_list
from fake_comfy import InterruptProcessingException, fake_comfy
from fake_fal import FakeFal

errors = pack_module("fal_transport.errors")
client = pack_module("fal_transport.http")
journal_module = pack_module("fal_transport.journal")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage
PromptList = pack_module("nodes.prompt_list").FalGrokImaginePromptList


def prompts(count: int, word: str = "harbour") -> list[str]:
    return [f"{word} number {i}" for i in range(count)]


async def test_a_moving_queue_is_never_cancelled_and_every_image_comes_back_in_list_order(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 60 prompts on an account that runs 6 at a time, 0.5 s each: the last waits about 5 s, far past the
    # 2 s queue limit, but its queue position keeps falling, so nothing is cancelled.
    monkeypatch.setenv("GROK_IMAGINE_QUEUE_TIMEOUT", "2")
    fake_fal.faults.update({"account_concurrency": 6, "run_time": 0.5})
    results = await run_node_over_list(Node, prompt=prompts(60), num_images=1, unique_id="3")
    assert fake_fal.cancels == []
    assert len(fake_fal.submits) == 60 and len({s.json["prompt"] for s in fake_fal.submits}) == 60
    assert [revised for _, revised, _ in results] == [f"Revised: {p}" for p in prompts(60)]
    assert fake_fal.max_running_seen == 6


async def test_a_stuck_queue_still_ends_at_the_limit_with_a_clear_error(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROK_IMAGINE_QUEUE_TIMEOUT", "1")
    monkeypatch.setenv("GROK_IMAGINE_TIMEOUT", "3")
    fake_fal.faults.update({"account_concurrency": 1, "never_complete": True})  # the first holds the only slot
    with pytest.raises(errors.FalTimeoutError) as caught:
        await asyncio.wait_for(run_node_over_list(Node, prompt=prompts(5), num_images=1, unique_id="2"), 10)
    assert "GROK_IMAGINE_QUEUE_TIMEOUT" in str(caught.value) or "GROK_IMAGINE_TIMEOUT" in str(caught.value)
    assert sorted(fake_fal.cancels) == sorted(s.request_id for s in fake_fal.submits)  # all five stopped at fal


async def test_status_streams_and_connections_stay_under_their_caps_whatever_the_batch_size(
    fake_fal: FakeFal,
) -> None:
    fake_fal.faults.update({"account_concurrency": 8, "run_time": 0.3})
    results = await run_node_over_list(Node, prompt=prompts(120), num_images=1, unique_id="4")
    assert len(results) == 120
    assert fake_fal.max_open_streams <= client.MAX_STREAMS
    assert fake_fal.max_open_connections <= 2 * client.MAX_CONNECTIONS  # the node's loop and the background loop
    assert open_clients() <= 1  # the node's client is closed; only the background loop's stays


async def test_an_interrupted_batch_resumes_from_the_journal_and_pays_only_for_the_rest(
    fake_fal: FakeFal, tmp_path: Path
) -> None:
    fake_fal.faults.update({"account_concurrency": 2, "run_time": 0.3})
    batch = prompts(16, "lantern")
    with fake_comfy(tmp_path) as host:
        task = asyncio.ensure_future(run_node_over_list(Node, prompt=batch, num_images=1, unique_id="9"))
        assert await fake_fal.sees(lambda f: sum(1 for job in f.jobs.values() if job.completed_at) >= 6, 30)
        host.interrupted = True  # six done, two running, the rest queued at fal
        with pytest.raises(InterruptProcessingException):
            await task
    cancelled = sum(1 for job in fake_fal.jobs.values() if job.cancelled)
    first_run = len(fake_fal.submits)
    assert cancelled >= 1
    results = await run_node_over_list(Node, prompt=batch, num_images=1, unique_id="9")  # again, no Cancel
    assert len(fake_fal.submits) - first_run == cancelled + (16 - first_run)  # only what did not finish
    assert [revised for _, revised, _ in results] == [f"Revised: {p}" for p in batch]


async def test_the_daily_limit_stops_a_batch_cleanly_and_says_how_many_prompts_did_not_run(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROK_IMAGINE_DAILY_LIMIT_USD", "0.10")  # five images at $0.02
    fake_fal.faults.run_time = 0.2
    batch = prompts(10, "meadow")
    with pytest.raises(errors.SpendLimitError) as caught:
        await run_node_over_list(Node, prompt=batch, num_images=1, unique_id="6")
    message = str(caught.value)
    assert "5 of its 10 prompts did not run" in message and "daily limit of $0.10" in message
    assert "Settings > Grok Imagine (fal)" in message and "GROK_IMAGINE_DAILY_LIMIT_USD" in message
    assert len(fake_fal.submits) == 5 and fake_fal.cancels == []  # nothing submitted was lost
    monkeypatch.setenv("GROK_IMAGINE_DAILY_LIMIT_USD", "1")
    results = await run_node_over_list(Node, prompt=batch, num_images=1, unique_id="6")
    assert len(fake_fal.submits) == 10  # the five that ran were collected from the journal, free
    assert [revised for _, revised, _ in results] == [f"Revised: {p}" for p in batch]


async def test_a_batch_gets_through_rate_limits_and_retries_with_each_request_accepted_once(
    fake_fal: FakeFal,
) -> None:
    fake_fal.faults.update({"submit_status": [429] * 6 + [503] * 3, "status_status": [500, 502, 429],
                            "account_concurrency": 4, "run_time": 0.2})
    results = await run_node_over_list(Node, prompt=prompts(12), num_images=1, unique_id="7")
    assert len(results) == 12 and len(fake_fal.submits) == 12
    assert len({s.json["prompt"] for s in fake_fal.submits}) == 12


async def test_a_batch_shows_its_progress_as_a_whole_and_logs_one_line_per_request(
    fake_fal: FakeFal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_fal.faults.update({"account_concurrency": 2, "run_time": 0.3})
    with fake_comfy(tmp_path) as host, caplog.at_level(logging.INFO, logger="grok_imagine_fal"):
        await run_node_over_list(Node, prompt=prompts(6), num_images=1, unique_id="12")
    texts = host.texts_for("12")
    assert any(t.startswith("Batch of 6 prompts:") and "queued at fal" in t for t in texts)
    assert texts[-1].startswith("Batch of 6 prompts: 6 done, 0 running, 0 queued at fal")
    bar = [value for value, _, node in host.bar_updates if node == "12"]
    assert bar == sorted(bar) and bar[-1] == 100
    submitted = [r for r in caplog.records if "submitted to" in r.getMessage()]
    assert len(submitted) == 6
    journal = journal_module.Journal(Path(os.environ["GROK_IMAGINE_STATE_DIR"])).entries()
    assert {journal[s.request_id].state for s in fake_fal.submits} == {"collected"}


def test_the_prompt_list_node_gives_one_prompt_per_non_blank_line_as_a_list() -> None:
    node = PromptList()
    prompts_out, count = node.split("  a red fox \n\n\ta blue heron\n   \nthe moon  ")
    assert prompts_out == ["a red fox", "a blue heron", "the moon"] and count == 3
    assert PromptList.OUTPUT_IS_LIST == (True, False)
    with pytest.raises(errors.InvalidInputError, match="empty"):
        node.split(" \n \n")


def open_clients() -> int:
    """How many of the pack's HTTP clients are open now (one per event loop that holds a lease)."""
    return sum(1 for entry in pack_module("fal_transport.process_state").current().loops.values()
               if not entry.client.is_closed)
