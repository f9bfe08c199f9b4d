"""The fake fal's queue protocol (`fake_fal.handler`, `fake_fal.server`): a job from submit to result over one
keep-alive client, the key, cancel and failed jobs, the control endpoints, what the fake counts and records, how
`wait_for` wakes, and a stop that does not wait for open streams."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import httpx
from comfy_like import TEST_KEY
from fake_fal import CONTENT_POLICY_MESSAGE, FakeFal, index_from_colour
from fake_fal.plain_client import sse_events, submit, wait_completed
from PIL import Image

TEXT = "xai/grok-imagine-image"


def test_happy_path_over_one_keepalive_client(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.update({"queue_time": 0.5, "run_time": 0.2})  # room for a busy machine to open the stream
    response = submit(fal_http, num_images=2, aspect_ratio="16:9")
    assert response.status_code == 200
    handle = response.json()
    rid = handle["request_id"]
    assert response.headers["x-fal-request-id"] == rid
    assert handle["status_url"] == f"{fake_fal.url}/{TEXT}/requests/{rid}/status"
    assert fal_http.get(handle["response_url"]).status_code == 400  # still running

    events = sse_events(fal_http, handle["status_url"] + "/stream")
    assert events[0]["status"] == "IN_QUEUE" and events[-1]["status"] == "COMPLETED"
    assert any(e["status"] == "IN_PROGRESS" for e in events)
    assert any("Generating image 2/2" in line["message"] for line in events[-1]["logs"])
    assert fal_http.get(handle["status_url"]).json()["logs"] is None

    result = fal_http.get(handle["response_url"])
    assert result.status_code == 200 and result.headers["x-fal-request-id"] == rid
    body = result.json()
    assert body["revised_prompt"] == "Revised: a red fox"
    for index, image in enumerate(body["images"]):
        assert (image["width"], image["height"]) == (1408, 768)
        download = httpx.get(image["url"])  # no Authorization
        assert download.headers["content-type"] == "image/jpeg"
        assert int(download.headers["content-length"]) == len(download.content)
        pil = Image.open(io.BytesIO(download.content)).convert("RGB")
        assert pil.size == (1408, 768)
        assert index_from_colour(pil.getpixel((0, 0))[0]) == index
    files = fake_fal.requests_of("file")
    assert len(files) == 2 and not any(r.has_authorization for r in files)
    assert len(fake_fal.submits) == 1 and fake_fal.jobs[rid].num_images == 2


def test_auth(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    for headers in ({}, {"Authorization": "Key wrong"}, {"Authorization": f"Bearer {TEST_KEY}"}):
        response = httpx.post(f"{fake_fal.url}/{TEXT}", json={"prompt": "x"}, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid or missing API key"}
    rid = submit(fal_http).json()["request_id"]
    assert httpx.get(f"{fake_fal.url}/{TEXT}/requests/{rid}/status").status_code == 401
    assert len(fake_fal.accepted_submits) == 1 and len(fake_fal.submit_attempts) == 4


def test_cancel_and_errors(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.never_complete = True
    handle = submit(fal_http).json()
    assert fake_fal.state_of(handle["request_id"]) == "IN_PROGRESS"  # no queue time: running at once
    cancel = fal_http.put(handle["cancel_url"])
    assert cancel.status_code == 202 and cancel.json() == {"status": "CANCELLATION_REQUESTED"}
    status = fal_http.get(handle["status_url"]).json()
    assert status["status"] == "COMPLETED" and status["error"] == "Request cancelled"
    assert fal_http.put(handle["cancel_url"]).json() == {"status": "ALREADY_COMPLETED"}
    assert fake_fal.cancels == [handle["request_id"]] * 2

    fake_fal.faults.never_complete = False
    fake_fal.faults.content_policy = True
    handle = submit(fal_http).json()
    status = wait_completed(fal_http, handle["status_url"])
    assert status["error_type"] == "content_policy_violation" and status["error"] == CONTENT_POLICY_MESSAGE
    result = fal_http.get(handle["response_url"])
    assert result.status_code == 422 and result.json()["detail"][0]["type"] == "content_policy_violation"

    fake_fal.faults.content_policy = False
    fake_fal.faults.complete_with_error = "Internal error: GPU fell over"
    handle = submit(fal_http).json()
    wait_completed(fal_http, handle["status_url"])
    assert fal_http.get(handle["response_url"]).status_code == 500

    fake_fal.faults.complete_with_error = None
    fake_fal.faults.result_body = b"<html>oops</html>"
    handle = submit(fal_http).json()
    assert fal_http.get(handle["response_url"]).text == "<html>oops</html>"


def test_control_endpoints(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    control = f"{fake_fal.url}/_fake/faults"
    assert httpx.post(control, json={"run_time": 3, "never_complete": True}).status_code == 200
    assert fake_fal.faults.run_time == 3 and fake_fal.faults.never_complete
    assert httpx.post(control, json={"bogus": 1}).status_code == 400
    handle = submit(fal_http).json()
    fal_http.put(handle["cancel_url"])
    log = httpx.get(f"{fake_fal.url}/_fake/log").json()
    assert log["submits"] == [{"prompt": "a red fox"}] and log["cancels"] == [handle["request_id"]]
    assert [r["has_authorization"] for r in log["requests"]] == [True, True]
    assert httpx.post(f"{fake_fal.url}/_fake/reset").status_code == 200
    assert not fake_fal.jobs and not fake_fal.requests and fake_fal.faults.run_time is None


def test_stop_is_prompt_with_open_stream() -> None:
    fake = FakeFal(run_time=0.05).start()
    fake.faults.never_complete = True
    with httpx.Client(base_url=fake.url, headers={"Authorization": "Key any"}) as c:
        handle = submit(c).json()
        outcome: list[object] = []

        def follow() -> None:
            try:
                outcome.append(len(sse_events(c, handle["status_url"] + "/stream")))
            except httpx.HTTPError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        assert fake.wait_for(lambda f: f.open_streams == 1, 5)  # stopped while the stream is open
        started = time.monotonic()
        fake.stop()
        thread.join(2)
        assert time.monotonic() - started < 1.0 and outcome


def test_open_streams_and_connections_are_counted(fake_fal: FakeFal) -> None:
    with FakeFal(run_time=0.05) as own:
        own.faults.never_complete = True
        clients = [httpx.Client(base_url=own.url, headers={"Authorization": "Key k"}) for _ in range(3)]
        handles = [submit(c).json() for c in clients]
        assert own.open_connections == 3 and own.max_open_connections == 3
        outcome: list[int] = []

        def follow(handle: dict) -> None:
            with httpx.Client(headers={"Authorization": "Key k"}) as c:
                outcome.append(len(sse_events(c, handle["status_url"] + "/stream")))

        threads = [threading.Thread(target=follow, args=(h,), daemon=True) for h in handles[:2]]
        for thread in threads:
            thread.start()
        assert own.wait_for(lambda f: f.open_streams == 2, 3)
        assert own.max_open_streams == 2 and own.max_open_connections == 5
        log = httpx.get(f"{own.url}/_fake/log").json()
        assert (log["open_streams"], log["max_open_streams"]) == (2, 2)
        assert log["max_open_connections"] == log["open_connections"] == 6  # + this log request
        for handle in handles[:2]:
            own.complete_job(handle["request_id"])
        for thread in threads:
            thread.join(3)
        assert own.wait_for(lambda f: f.open_streams == 0, 3)
        for c in clients:
            c.close()
        assert own.wait_for(lambda f: f.open_connections == 0, 3)
        assert own.max_open_streams == 2 and len(outcome) == 2 and min(outcome) >= 2
        own.reset()
        assert own.max_open_streams == 0 and own.max_open_connections == 0


def test_wait_for_wakes_when_a_job_completes_by_the_clock(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.run_time = 0.3
    rid = submit(fal_http).json()["request_id"]
    # nothing is requested meanwhile: only the clock can end the wait before its 5 s
    assert fake_fal.wait_for(lambda f: f.jobs[rid].completed_at is not None, 5)
    assert time.monotonic() - fake_fal.jobs[rid].completed_at < 1.0


def test_wait_for_wakes_on_each_request_the_fake_records_and_gives_up_at_its_timeout(
    fake_fal: FakeFal, fal_http: httpx.Client
) -> None:
    seen: list[bool] = []
    waiter = threading.Thread(target=lambda: seen.append(fake_fal.wait_for(lambda f: f.requests_of("balance"), 5)))
    waiter.start()
    fal_http.get("/billing/user_balance")
    waiter.join(6)
    assert seen == [True]
    started = time.monotonic()
    assert fake_fal.wait_for(lambda f: f.cancels, 0.2) is False and time.monotonic() - started >= 0.2


async def test_sees_waits_in_its_own_thread_while_the_event_loop_goes_on(fake_fal: FakeFal) -> None:
    async with httpx.AsyncClient(base_url=fake_fal.url, headers={"Authorization": f"Key {TEST_KEY}"}) as client:
        waiting = asyncio.ensure_future(fake_fal.sees(lambda f: len(f.submits) == 2, 5))
        for _ in range(2):  # the loop runs the submits while `sees` waits for them
            assert (await client.post(f"/{TEXT}", json={"prompt": "x"})).status_code == 200
        assert await waiting is True
