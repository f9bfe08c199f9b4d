"""The fake fal's account queue (`fake_fal.jobs`): at most N jobs run at once, in submit order, with queue positions
that count down; queue time first; stuck jobs stay out of it; 400 jobs and 400 open streams stay cheap."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from comfy_like import TEST_KEY
from fake_fal import FakeFal, Job
from fake_fal.plain_client import raw_sse, sse_events, submit, wait_completed

TEXT = "xai/grok-imagine-image"


def max_overlap(jobs: list[Job]) -> int:
    """The most of these jobs IN_PROGRESS at one instant, from their recorded times."""
    edges = []
    for job in jobs:
        if job.started_at is not None:
            assert job.completed_at is not None and job.completed_at >= job.started_at
            edges += [(job.started_at, 1), (job.completed_at, -1)]
    running = peak = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):  # an end before a start at one time
        running += step
        peak = max(peak, running)
    return peak


def test_account_concurrency_runs_at_most_n_in_submit_order(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.account_concurrency = 2
    fake_fal.faults.run_time = 0.6
    answers = [submit(fal_http, prompt=f"job {i}").json() for i in range(6)]
    rids = [a["request_id"] for a in answers]
    jobs = [fake_fal.jobs[rid] for rid in rids]
    assert [a["queue_position"] for a in answers] == [0, 0, 0, 1, 2, 3]
    assert [fake_fal.state_of(rid) for rid in rids] == ["IN_PROGRESS"] * 2 + ["IN_QUEUE"] * 4
    assert [fal_http.get(a["status_url"]).json().get("queue_position") for a in answers] == [None, None, 0, 1, 2, 3]

    assert fal_http.put(answers[3]["cancel_url"]).status_code == 202  # a queued job leaves the queue
    assert [fake_fal.queue_position_of(rid) for rid in rids[2:]] == [0, None, 1, 2]
    assert fake_fal.state_of(rids[3]) == "COMPLETED" and jobs[3].started_at is None
    # the fake's clock, not a race: from 0.2 s into job 1's run, job 5 spends 0.2 s at position 0
    time.sleep(max(0.0, (jobs[1].started_at or 0.0) + 0.2 - time.monotonic()))
    assert fake_fal.state_of(rids[1]) == "IN_PROGRESS"
    assert fal_http.put(answers[0]["cancel_url"]).status_code == 202  # a running one frees its slot
    assert fake_fal.state_of(rids[2]) == "IN_PROGRESS"
    assert [fake_fal.queue_position_of(rid) for rid in rids[4:]] == [0, 1]

    events = sse_events(fal_http, answers[5]["status_url"] + "/stream")
    positions = [e["queue_position"] for e in events if e["status"] == "IN_QUEUE"]
    assert positions == [1, 0], "the position counts down one by one as slots free"
    assert events[-1]["status"] == "COMPLETED" and "error" not in events[-1]
    assert any("Generating image 1/1" in line["message"] for line in events[-1]["logs"])
    for rid in rids:
        wait_completed(fal_http, f"{fake_fal.url}/{TEXT}/requests/{rid}/status")

    assert jobs[2].started_at == jobs[0].completed_at  # started by the cancel of job 0
    assert jobs[4].started_at == jobs[1].completed_at == jobs[1].started_at + 0.6
    assert jobs[5].started_at == jobs[2].completed_at
    started = [job.started_at for job in jobs if job.started_at is not None]
    assert len(started) == 5 and started == sorted(started)
    assert fake_fal.max_running_seen == 2 and max_overlap(jobs) == 2
    metrics = fal_http.get(answers[5]["status_url"]).json()["metrics"]
    assert metrics["inference_time"] == pytest.approx(0.6)  # its run, not its wait

    log = httpx.get(f"{fake_fal.url}/_fake/log").json()
    assert log["max_running_seen"] == 2
    times = log["job_times"]
    assert times[rids[3]]["started_at"] is None and times[rids[3]]["completed_at"] is not None
    assert times[rids[5]]["started_at"] == pytest.approx(jobs[5].started_at - fake_fal.epoch, abs=1e-5)
    assert times[rids[5]]["completed_at"] - times[rids[5]]["started_at"] == pytest.approx(0.6, abs=1e-5)


def test_account_concurrency_from_the_constructor_and_the_fault_override(fake_fal: FakeFal) -> None:
    with FakeFal(account_concurrency=1, run_time=5) as own, httpx.Client(
        base_url=own.url, headers={"Authorization": "Key any"}
    ) as c:
        first, second = (submit(c).json()["request_id"] for _ in range(2))
        assert (own.state_of(first), own.state_of(second)) == ("IN_PROGRESS", "IN_QUEUE")
        own.faults.account_concurrency = 0  # 0 overrides with "no limit"
        assert own.state_of(second) == "IN_PROGRESS" and own.max_running_seen == 2
    assert fake_fal.max_running_seen == 0  # the shared server has no limit and nothing ran yet


def test_queue_time_still_comes_first_under_account_concurrency(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.account_concurrency = 1
    fake_fal.faults.queue_time, fake_fal.faults.run_time = 0.2, 0.05
    first, second = (submit(fal_http).json()["request_id"] for _ in range(2))
    assert fake_fal.state_of(first) == "IN_QUEUE" and fake_fal.queue_position_of(second) == 1
    assert fake_fal.wait_for(lambda f: f.state_of(second) == "COMPLETED", 3)
    a, b = fake_fal.jobs[first], fake_fal.jobs[second]
    # the second starts when the first frees the slot, or when its own queue time is over if that is later
    assert a.started_at == a.submitted_at + 0.2 and b.started_at == max(a.completed_at, b.eligible_at)
    assert fake_fal.max_running_seen == 1


def test_stuck_in_queue_stays_put_under_account_concurrency(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.account_concurrency = 1
    fake_fal.faults.run_time = 0.2
    running = submit(fal_http).json()
    fake_fal.faults.stuck_in_queue = True
    stuck = submit(fal_http).json()
    fake_fal.faults.stuck_in_queue = False
    behind = submit(fal_http).json()
    stuck_position = fal_http.get(stuck["status_url"]).json()["queue_position"]
    assert stuck_position == 1
    assert fal_http.get(behind["status_url"]).json()["queue_position"] == 0  # the stuck job is not ahead of it
    wait_completed(fal_http, behind["status_url"])
    wait_completed(fal_http, running["status_url"])
    status = fal_http.get(stuck["status_url"]).json()  # the other two came and went meanwhile
    assert status["status"] == "IN_QUEUE" and status["queue_position"] == stuck_position
    assert fake_fal.max_running_seen == 1 and fake_fal.jobs[stuck["request_id"]].started_at is None
    assert fal_http.put(stuck["cancel_url"]).status_code == 202
    assert fal_http.get(stuck["status_url"]).json()["error"] == "Request cancelled"


def test_400_jobs_and_400_streams_under_account_concurrency() -> None:
    limit, count, run_time = 16, 400, 0.05
    with FakeFal(accepted_keys={TEST_KEY}, account_concurrency=limit, run_time=run_time) as fake, httpx.Client(
        base_url=fake.url, headers={"Authorization": f"Key {TEST_KEY}"}
    ) as c:
        fake.faults.never_complete = True
        blockers = [submit(c).json()["request_id"] for _ in range(limit)]  # hold every slot
        fake.faults.never_complete = False
        rids = [submit(c, prompt=f"job {i}").json()["request_id"] for i in range(count)]
        assert [fake.queue_position_of(rid) for rid in rids] == list(range(count))

        async def follow_all() -> tuple[list[list[dict]], float]:
            streams: list[list[dict]] = [[] for _ in rids]
            tasks = [
                asyncio.create_task(raw_sse(fake.port, f"/{TEXT}/requests/{rid}/status/stream", TEST_KEY, events))
                for rid, events in zip(rids, streams)
            ]
            deadline = time.monotonic() + 20
            while fake.open_streams < count or not all(streams):
                assert time.monotonic() < deadline, f"only {fake.open_streams} streams open"
                await asyncio.sleep(0.02)
            cpu = time.process_time()
            await asyncio.sleep(1.0)  # 400 idle streams: the fake must not burn the CPU checking them
            idle_cpu = time.process_time() - cpu
            for rid in blockers:
                fake.complete_job(rid)
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
            return streams, idle_cpu

        released = time.monotonic()
        streams, idle_cpu = asyncio.run(follow_all())
        assert idle_cpu < 0.5, f"{idle_cpu:.2f} s of CPU in 1 s with 400 idle streams"
        assert fake.max_open_streams == count and fake.max_open_connections >= count + 1
        assert fake.wait_for(lambda f: f.open_streams == 0, 3)
        for index, events in enumerate(streams):
            positions = [e["queue_position"] for e in events if e["status"] == "IN_QUEUE"]
            assert positions[0] == index and positions == sorted(positions, reverse=True)
            assert events[-1]["status"] == "COMPLETED" and "error" not in events[-1]
        last_positions = {e["queue_position"] for e in streams[-1] if e["status"] == "IN_QUEUE"}
        assert len(last_positions) >= 5, "the positions were streamed as they dropped"

        jobs = [fake.jobs[rid] for rid in rids]
        started = [job.started_at for job in jobs]
        assert None not in started and started == sorted(started)  # type: ignore[type-var]
        assert fake.max_running_seen == limit and max_overlap(jobs) == limit
        freed = sorted(fake.jobs[rid].completed_at or 0.0 for rid in blockers)
        last = max(job.completed_at or 0.0 for job in jobs)
        # 400 runs of 0.05 s on 16 slots take at least 1.25 s from the first free slot, and no longer
        # than that from the last one (plus nothing: the fake's clock has no overhead).
        drain = count / limit * run_time
        assert drain - 1e-6 <= last - freed[0] and last - freed[-1] <= drain + 1e-6
        assert last - released < 60
