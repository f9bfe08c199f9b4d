"""Quick self-checks of the fake fal server itself (not of the pack's client)."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fake_fal import (
    CONTENT_POLICY_MESSAGE,
    EDIT_ENDPOINTS,
    ENDPOINTS,
    EXHAUSTED_BALANCE_MESSAGE,
    TEXT_ENDPOINTS,
    V2_ENDPOINTS,
    FakeFal,
    Job,
    billed_price,
    fake_image_size,
    http_date,
    index_from_colour,
)
from PIL import Image

KEY = "test-key-1234"
TEXT = "xai/grok-imagine-image"
EDIT = "xai/grok-imagine-image/edit"
V2_TEXT = "xai/grok-imagine-image/v2.0/text-to-image"
V2_EDIT = "xai/grok-imagine-image/v2.0/edit"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeFal]:
    with FakeFal(accepted_keys={KEY}, run_time=0.05) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeFal) -> Iterator[FakeFal]:
    server.reset()
    server.queue_time, server.run_time = 0.0, 0.05
    yield server
    server.reset()


@pytest.fixture
def client(fake: FakeFal) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, headers={"Authorization": f"Key {KEY}"}, timeout=5) as c:
        yield c


def submit(client: httpx.Client, endpoint: str = TEXT, **body: object) -> httpx.Response:
    body.setdefault("prompt", "a red fox")
    return client.post(f"/{endpoint}", json=body)


def wait_completed(client: httpx.Client, status_url: str, timeout: float = 3.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(status_url, params={"logs": "1"}).json()
        if status["status"] == "COMPLETED":
            return status
        time.sleep(0.02)
    raise AssertionError("job did not complete")


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


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


async def raw_sse(port: int, path: str, events: list[dict]) -> list[dict]:
    """Follow a status stream over a bare socket (cheap enough for hundreds at once)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Key {KEY}\r\n\r\n".encode())
        await writer.drain()
        assert b" 200 " in await reader.readline()
        async for line in reader:
            if line.startswith(b"data:"):
                events.append(json.loads(line[5:]))
    finally:
        writer.close()
    return events


def sse_events(client: httpx.Client, url: str) -> list[dict]:
    events = []
    with client.stream("GET", url, params={"logs": "1"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    return events


def test_size_table_follows_xai_at_1k_and_doubles_at_2k() -> None:
    assert fake_image_size("16:9", "1k") == (1408, 768)
    assert fake_image_size("9:16", "1k") == (768, 1408)
    assert fake_image_size("1:1", "2k") == (2048, 2048)
    assert fake_image_size("9:19.5", "1k") == (576, 1248)
    assert fake_image_size("20:9", "2k") == (2560, 1152)
    assert fake_image_size("auto", "1k") == (1024, 1024)
    for ratio in ("2:1", "4:3", "3:2", "9:20", "1:2"):
        w, h = fake_image_size(ratio, "1k")
        assert w % 8 == 0 and h % 8 == 0 and fake_image_size(ratio, "2k") == (2 * w, 2 * h)


def test_happy_path_over_one_keepalive_client(fake: FakeFal, client: httpx.Client) -> None:
    fake.queue_time, fake.run_time = 0.5, 0.2  # room for a busy machine to open the stream in time
    response = submit(client, num_images=2, aspect_ratio="16:9")
    assert response.status_code == 200
    handle = response.json()
    rid = handle["request_id"]
    assert response.headers["x-fal-request-id"] == rid
    assert handle["status_url"] == f"{fake.url}/{TEXT}/requests/{rid}/status"
    assert client.get(handle["response_url"]).status_code == 400  # still running

    events = sse_events(client, handle["status_url"] + "/stream")
    assert events[0]["status"] == "IN_QUEUE" and events[-1]["status"] == "COMPLETED"
    assert any(e["status"] == "IN_PROGRESS" for e in events)
    assert any("Generating image 2/2" in line["message"] for line in events[-1]["logs"])
    assert client.get(handle["status_url"]).json()["logs"] is None

    result = client.get(handle["response_url"])
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
    files = fake.requests_of("file")
    assert len(files) == 2 and not any(r.has_authorization for r in files)
    assert len(fake.submits) == 1 and fake.jobs[rid].num_images == 2


def test_auth(fake: FakeFal, client: httpx.Client) -> None:
    for headers in ({}, {"Authorization": "Key wrong"}, {"Authorization": f"Bearer {KEY}"}):
        response = httpx.post(f"{fake.url}/{TEXT}", json={"prompt": "x"}, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid or missing API key"}
    rid = submit(client).json()["request_id"]
    assert httpx.get(f"{fake.url}/{TEXT}/requests/{rid}/status").status_code == 401
    assert len(fake.accepted_submits) == 1 and len(fake.submit_attempts) == 4


def test_validation(fake: FakeFal, client: httpx.Client) -> None:
    def error(response: httpx.Response) -> tuple[object, str]:
        assert response.status_code == 422
        first = response.json()["detail"][0]
        return first["loc"][-1], first["type"]

    assert error(submit(client, seed=3)) == ("seed", "extra_forbidden")
    assert error(client.post(f"/{TEXT}", json={})) == ("prompt", "missing")
    assert error(submit(client, prompt="")) == ("prompt", "string_too_short")
    assert error(submit(client, num_images=5)) == ("num_images", "less_than_equal")
    assert error(submit(client, aspect_ratio="auto")) == ("aspect_ratio", "literal_error")
    assert error(submit(client, resolution="4k")) == ("resolution", "literal_error")
    assert error(submit(client, EDIT)) == ("image_urls", "missing")
    assert error(submit(client, EDIT, image_urls=["ftp://x"])) == (0, "value_error")
    assert submit(client, "xai/other").status_code == 404
    assert not fake.submits and not fake.jobs
    ok = submit(client, "xai/grok-imagine-image/quality/edit", image_urls=["https://example.com/a.png"])
    assert ok.status_code == 200
    assert f"/{TEXT}/requests/" in ok.json()["response_url"]


def test_submit_faults(fake: FakeFal, client: httpx.Client) -> None:
    fake.faults.submit_status = [503, 429]
    first = submit(client)
    assert first.status_code == 503 and "x-fal-request-id" not in first.headers
    assert first.headers["content-type"].startswith("text/html")
    second = submit(client)
    assert second.status_code == 429 and second.headers["retry-after"] == "0"
    assert submit(client).status_code == 200

    fake.faults.submit_drop_connection = 1
    with pytest.raises(httpx.RemoteProtocolError):
        submit(client)
    assert len(fake.submits) == 1 and fake.submit_attempts[-1].outcome == "dropped"

    fake.faults.submit_accept_then_status = 500
    lost = submit(client)
    assert lost.status_code == 500 and lost.headers["x-fal-request-id"] in fake.jobs
    assert len(fake.submits) == 2 and len(fake.jobs) == 2


def test_status_faults(fake: FakeFal, client: httpx.Client) -> None:
    fake.faults.never_complete = True
    handle = submit(client).json()
    fake.faults.status_status = [429, 503]
    limited = client.get(handle["status_url"])
    assert limited.status_code == 429 and limited.headers["retry-after"] == "0"
    assert client.get(handle["status_url"]).status_code == 503
    fake.faults.status_drop_connection = 1
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(handle["status_url"])
    assert client.get(handle["status_url"]).json()["status"] in ("IN_QUEUE", "IN_PROGRESS")

    fake.faults.stream_unavailable = True
    assert client.get(handle["status_url"] + "/stream").status_code == 404
    fake.faults.stream_unavailable = False
    fake.faults.stream_cut = 1
    events = sse_events(client, handle["status_url"] + "/stream")
    assert len(events) == 1 and events[0]["status"] != "COMPLETED"
    assert client.get("/xai/grok-imagine-image/requests/nope/status").status_code == 404


def test_cancel_and_errors(fake: FakeFal, client: httpx.Client) -> None:
    fake.faults.never_complete = True
    handle = submit(client).json()
    time.sleep(0.1)
    assert fake.state_of(handle["request_id"]) == "IN_PROGRESS"
    cancel = client.put(handle["cancel_url"])
    assert cancel.status_code == 202 and cancel.json() == {"status": "CANCELLATION_REQUESTED"}
    status = client.get(handle["status_url"]).json()
    assert status["status"] == "COMPLETED" and status["error"] == "Request cancelled"
    assert client.put(handle["cancel_url"]).json() == {"status": "ALREADY_COMPLETED"}
    assert fake.cancels == [handle["request_id"]] * 2

    fake.faults.never_complete = False
    fake.faults.content_policy = True
    handle = submit(client).json()
    status = wait_completed(client, handle["status_url"])
    assert status["error_type"] == "content_policy_violation" and status["error"] == CONTENT_POLICY_MESSAGE
    result = client.get(handle["response_url"])
    assert result.status_code == 422 and result.json()["detail"][0]["type"] == "content_policy_violation"

    fake.faults.content_policy = False
    fake.faults.complete_with_error = "Internal error: GPU fell over"
    handle = submit(client).json()
    wait_completed(client, handle["status_url"])
    assert client.get(handle["response_url"]).status_code == 500

    fake.faults.complete_with_error = None
    fake.faults.result_body = b"<html>oops</html>"
    handle = submit(client).json()
    assert client.get(handle["response_url"]).text == "<html>oops</html>"


def test_image_faults(fake: FakeFal, client: httpx.Client) -> None:
    fake.faults.mixed_sizes = True
    handle = submit(client, num_images=2, output_format="png").json()
    wait_completed(client, handle["status_url"])
    images = client.get(handle["response_url"]).json()["images"]
    assert (images[0]["width"], images[1]["width"]) == (1024, 960)
    url = images[1]["url"]
    assert url.endswith("/1.png")
    assert Image.open(io.BytesIO(httpx.get(url).content)).size == (960, 1024)

    fake.faults.image_status = [404]
    assert httpx.get(url).status_code == 404
    fake.faults.image_bomb = True
    bomb = httpx.get(url)
    assert bomb.status_code == 200 and len(bomb.content) < 1_000_000
    assert bomb.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", bomb.content[16:24]) == (30000, 30000)  # IHDR width, height
    with pytest.raises(Image.DecompressionBombError):  # Pillow reads the header only
        Image.open(io.BytesIO(bomb.content))
    fake.faults.image_bomb = False
    fake.faults.image_corrupt = True
    with pytest.raises(Exception):  # noqa: B017 - any Pillow error
        Image.open(io.BytesIO(httpx.get(url).content))
    fake.faults.image_corrupt = False
    fake.faults.image_wrong_content_type = True
    assert httpx.get(url).headers["content-type"].startswith("text/html")
    fake.faults.image_wrong_content_type = False
    fake.faults.image_truncate = True
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url)
    fake.faults.image_truncate = False
    fake.faults.image_redirect_loop = True
    with pytest.raises(httpx.TooManyRedirects):
        httpx.get(url, follow_redirects=True)
    fake.faults.image_redirect_loop = False
    fake.faults.image_trickle = 0.05
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url, timeout=httpx.Timeout(5, read=0.02))


def test_sync_mode_and_formats(fake: FakeFal, client: httpx.Client) -> None:
    handle = submit(client, sync_mode=True, output_format="webp", aspect_ratio="9:16").json()
    wait_completed(client, handle["status_url"])
    (image,) = client.get(handle["response_url"]).json()["images"]
    assert image["url"].startswith("data:image/webp;base64,")
    pil = Image.open(io.BytesIO(base64.b64decode(image["url"].partition(",")[2])))
    assert pil.format == "WEBP" and pil.size == fake_image_size("9:16", "1k")


def test_upload_and_auto_aspect(fake: FakeFal, client: httpx.Client) -> None:
    token = client.post("/storage/auth/token", params={"storage_type": "fal-cdn-v3"}).json()
    assert token["token_type"] == "Bearer" and token["base_url"] == fake.url
    buffer = io.BytesIO()
    Image.new("RGB", (300, 600), "blue").save(buffer, "PNG")
    upload = httpx.post(
        f"{token['base_url']}/files/upload",
        content=buffer.getvalue(),
        headers={
            "Authorization": f"Bearer {token['token']}",
            "Content-Type": "image/png",
            "X-Fal-File-Name": "in put.png",
        },
    )
    assert upload.status_code == 200
    access_url = upload.json()["access_url"]
    assert httpx.get(access_url).content == buffer.getvalue()
    assert fake.uploads[0]["file_name"] == "in put.png" and fake.uploads[0]["size"] == len(buffer.getvalue())
    assert httpx.post(f"{fake.url}/files/upload", content=b"x").status_code == 401

    handle = submit(client, EDIT, image_urls=[access_url]).json()
    wait_completed(client, handle["status_url"])
    (image,) = client.get(handle["response_url"]).json()["images"]
    assert (image["width"], image["height"]) == (512, 1024)


def test_control_endpoints(fake: FakeFal, client: httpx.Client) -> None:
    control = f"{fake.url}/_fake/faults"
    assert httpx.post(control, json={"run_time": 3, "never_complete": True}).status_code == 200
    assert fake.faults.run_time == 3 and fake.faults.never_complete
    assert httpx.post(control, json={"bogus": 1}).status_code == 400
    handle = submit(client).json()
    client.put(handle["cancel_url"])
    log = httpx.get(f"{fake.url}/_fake/log").json()
    assert log["submits"] == [{"prompt": "a red fox"}] and log["cancels"] == [handle["request_id"]]
    assert [r["has_authorization"] for r in log["requests"]] == [True, True]
    assert httpx.post(f"{fake.url}/_fake/reset").status_code == 200
    assert not fake.jobs and not fake.requests and fake.faults.run_time is None


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
        time.sleep(0.2)
        started = time.monotonic()
        fake.stop()
        thread.join(2)
        assert time.monotonic() - started < 1.0 and outcome


def test_script_mode() -> None:
    script = Path(__file__).with_name("fake_fal")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--key", "k1"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("FAKE_FAL_URL=http://127.0.0.1:")
        url = line.partition("=")[2]
        for key, expected in (("k2", 401), ("k1", 200)):
            headers = {"Authorization": f"Key {key}"}
            assert httpx.post(f"{url}/{TEXT}", json={"prompt": "x"}, headers=headers).status_code == expected
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_script_mode_balance() -> None:
    script = Path(__file__).with_name("fake_fal")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--balance", "0.03", "--charge-balance"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().partition("=")[2]
        headers = {"Authorization": "Key any"}
        assert httpx.get(f"{url}/billing/user_balance", headers=headers).json() == 0.03
        codes = [httpx.post(f"{url}/{TEXT}", json={"prompt": "x", "num_images": 2}, headers=headers).status_code
                 for _ in range(2)]
        assert codes == [200, 403]
        assert httpx.get(f"{url}/billing/user_balance", headers=headers).json() == -0.01
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


# --------------------------------------------------------------------------------------------
# Account concurrency
# --------------------------------------------------------------------------------------------


def test_account_concurrency_runs_at_most_n_in_submit_order(fake: FakeFal, client: httpx.Client) -> None:
    fake.faults.account_concurrency = 2
    fake.run_time = 0.6
    answers = [submit(client, prompt=f"job {i}").json() for i in range(6)]
    rids = [a["request_id"] for a in answers]
    jobs = [fake.jobs[rid] for rid in rids]
    assert [a["queue_position"] for a in answers] == [0, 0, 0, 1, 2, 3]
    assert [fake.state_of(rid) for rid in rids] == ["IN_PROGRESS"] * 2 + ["IN_QUEUE"] * 4
    assert [client.get(a["status_url"]).json().get("queue_position") for a in answers] == [None, None, 0, 1, 2, 3]

    assert client.put(answers[3]["cancel_url"]).status_code == 202  # a queued job leaves the queue
    assert [fake.queue_position_of(rid) for rid in rids[2:]] == [0, None, 1, 2]
    assert fake.state_of(rids[3]) == "COMPLETED" and jobs[3].started_at is None
    time.sleep(max(0.0, (jobs[1].started_at or 0.0) + 0.2 - time.monotonic()))  # job 5 then spends 0.2 s at position 0
    assert fake.state_of(rids[1]) == "IN_PROGRESS"
    assert client.put(answers[0]["cancel_url"]).status_code == 202  # a running one frees its slot
    assert fake.state_of(rids[2]) == "IN_PROGRESS"
    assert [fake.queue_position_of(rid) for rid in rids[4:]] == [0, 1]

    events = sse_events(client, answers[5]["status_url"] + "/stream")
    positions = [e["queue_position"] for e in events if e["status"] == "IN_QUEUE"]
    assert positions == [1, 0], "the position counts down one by one as slots free"
    assert events[-1]["status"] == "COMPLETED" and "error" not in events[-1]
    assert any("Generating image 1/1" in line["message"] for line in events[-1]["logs"])
    for rid in rids:
        wait_completed(client, f"{fake.url}/{TEXT}/requests/{rid}/status")

    assert jobs[2].started_at == jobs[0].completed_at  # started by the cancel of job 0
    assert jobs[4].started_at == jobs[1].completed_at == jobs[1].started_at + 0.6
    assert jobs[5].started_at == jobs[2].completed_at
    started = [job.started_at for job in jobs if job.started_at is not None]
    assert len(started) == 5 and started == sorted(started)
    assert fake.max_running_seen == 2 and max_overlap(jobs) == 2
    metrics = client.get(answers[5]["status_url"]).json()["metrics"]
    assert metrics["inference_time"] == pytest.approx(0.6)  # its run, not its wait

    log = httpx.get(f"{fake.url}/_fake/log").json()
    assert log["max_running_seen"] == 2
    times = log["job_times"]
    assert times[rids[3]]["started_at"] is None and times[rids[3]]["completed_at"] is not None
    assert times[rids[5]]["started_at"] == pytest.approx(jobs[5].started_at - fake.epoch, abs=1e-5)
    assert times[rids[5]]["completed_at"] - times[rids[5]]["started_at"] == pytest.approx(0.6, abs=1e-5)


def test_account_concurrency_from_the_constructor_and_the_fault_override(fake: FakeFal) -> None:
    with FakeFal(account_concurrency=1, run_time=5) as own, httpx.Client(
        base_url=own.url, headers={"Authorization": "Key any"}
    ) as c:
        first, second = (submit(c).json()["request_id"] for _ in range(2))
        assert (own.state_of(first), own.state_of(second)) == ("IN_PROGRESS", "IN_QUEUE")
        own.faults.account_concurrency = 0  # 0 overrides with "no limit"
        assert own.state_of(second) == "IN_PROGRESS" and own.max_running_seen == 2
    assert fake.max_running_seen == 0  # the shared server has no limit and nothing ran yet


def test_queue_time_still_comes_first_under_account_concurrency(fake: FakeFal, client: httpx.Client) -> None:
    fake.faults.account_concurrency = 1
    fake.queue_time, fake.run_time = 0.2, 0.05
    first, second = (submit(client).json()["request_id"] for _ in range(2))
    assert fake.state_of(first) == "IN_QUEUE" and fake.queue_position_of(second) == 1
    wait_for(lambda: fake.state_of(second) == "COMPLETED")
    a, b = fake.jobs[first], fake.jobs[second]
    # the second starts when the first frees the slot, or when its own queue time is over if that is later
    assert a.started_at == a.submitted_at + 0.2 and b.started_at == max(a.completed_at, b.eligible_at)
    assert fake.max_running_seen == 1


def test_stuck_in_queue_stays_put_under_account_concurrency(fake: FakeFal, client: httpx.Client) -> None:
    fake.faults.account_concurrency = 1
    fake.run_time = 0.2
    running = submit(client).json()
    fake.faults.stuck_in_queue = True
    stuck = submit(client).json()
    fake.faults.stuck_in_queue = False
    behind = submit(client).json()
    stuck_position = client.get(stuck["status_url"]).json()["queue_position"]
    assert stuck_position == 1
    assert client.get(behind["status_url"]).json()["queue_position"] == 0  # the stuck job is not ahead of it
    wait_completed(client, behind["status_url"])
    wait_completed(client, running["status_url"])
    for _ in range(3):
        status = client.get(stuck["status_url"]).json()
        assert status["status"] == "IN_QUEUE" and status["queue_position"] == stuck_position
        time.sleep(0.05)
    assert fake.max_running_seen == 1 and fake.jobs[stuck["request_id"]].started_at is None
    assert client.put(stuck["cancel_url"]).status_code == 202
    assert client.get(stuck["status_url"]).json()["error"] == "Request cancelled"


def test_400_jobs_and_400_streams_under_account_concurrency() -> None:
    limit, count, run_time = 16, 400, 0.05
    with FakeFal(accepted_keys={KEY}, account_concurrency=limit, run_time=run_time) as fake, httpx.Client(
        base_url=fake.url, headers={"Authorization": f"Key {KEY}"}
    ) as c:
        fake.faults.never_complete = True
        blockers = [submit(c).json()["request_id"] for _ in range(limit)]  # hold every slot
        fake.faults.never_complete = False
        rids = [submit(c, prompt=f"job {i}").json()["request_id"] for i in range(count)]
        assert [fake.queue_position_of(rid) for rid in rids] == list(range(count))

        async def follow_all() -> tuple[list[list[dict]], float]:
            streams: list[list[dict]] = [[] for _ in rids]
            tasks = [
                asyncio.create_task(raw_sse(fake.port, f"/{TEXT}/requests/{rid}/status/stream", events))
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
        wait_for(lambda: fake.open_streams == 0)
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


def test_script_mode_account_concurrency() -> None:
    script = Path(__file__).with_name("fake_fal")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--account-concurrency", "1", "--run-time", "30"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().partition("=")[2]
        with httpx.Client(base_url=url, headers={"Authorization": "Key k"}) as c:
            first, second = (submit(c).json() for _ in range(2))
            assert second["queue_position"] == 0
            assert c.get(second["status_url"]).json()["status"] == "IN_QUEUE"
            assert c.put(first["cancel_url"]).status_code == 202
            assert c.get(second["status_url"]).json()["status"] == "IN_PROGRESS"
            log = c.get("/_fake/log").json()
            assert log["max_running_seen"] == 1 and log["job_times"][second["request_id"]]["started_at"] is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_open_streams_and_connections_are_counted(fake: FakeFal) -> None:
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
        wait_for(lambda: own.open_streams == 2)
        assert own.max_open_streams == 2 and own.max_open_connections == 5
        log = httpx.get(f"{own.url}/_fake/log").json()
        assert (log["open_streams"], log["max_open_streams"]) == (2, 2)
        assert log["max_open_connections"] == log["open_connections"] == 6  # + this log request
        for handle in handles[:2]:
            own.complete_job(handle["request_id"])
        for thread in threads:
            thread.join(3)
        wait_for(lambda: own.open_streams == 0)
        for c in clients:
            c.close()
        wait_for(lambda: own.open_connections == 0)
        assert own.max_open_streams == 2 and len(outcome) == 2 and min(outcome) >= 2
        own.reset()
        assert own.max_open_streams == 0 and own.max_open_connections == 0


# --------------------------------------------------------------------------------------------
# Slow answers, foreign URLs, Retry-After
# --------------------------------------------------------------------------------------------


def test_submit_delay_accepts_first_and_answers_late(fake: FakeFal, client: httpx.Client) -> None:
    fake.faults.submit_delay = 0.5
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"/{TEXT}", json={"prompt": "x"}, timeout=httpx.Timeout(5, read=0.1))
    assert len(fake.jobs) == 1 and len(fake.submits) == 1, "the job exists although the answer never came"
    started = time.monotonic()
    answer = submit(client)
    assert answer.status_code == 200 and time.monotonic() - started >= 0.45
    assert fake.jobs[answer.json()["request_id"]].submitted_at < started + 0.1


def test_result_trickle(fake: FakeFal, client: httpx.Client) -> None:
    handle = submit(client).json()
    wait_completed(client, handle["status_url"])
    whole = client.get(handle["response_url"]).content
    fake.faults.result_trickle = 0.001
    trickled = client.get(handle["response_url"])
    assert trickled.content == whole and int(trickled.headers["content-length"]) == len(whole)
    fake.faults.result_trickle = 1.0
    received = b""
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        with client.stream("GET", handle["response_url"], timeout=httpx.Timeout(5, read=0.3)) as response:
            assert int(response.headers["content-length"]) == len(whole)
            for chunk in response.iter_raw():
                received += chunk
    assert received == whole[:1] and time.monotonic() - started < 2


def test_foreign_urls(fake: FakeFal, client: httpx.Client) -> None:
    fake.faults.foreign_urls = True
    handle = submit(client).json()
    rid = handle["request_id"]
    foreign = fake.foreign_url
    assert urlsplit(foreign).hostname == "127.0.0.1" and urlsplit(foreign).port != fake.port
    base = f"{foreign}/{TEXT}/requests/{rid}"
    assert (handle["response_url"], handle["status_url"], handle["cancel_url"]) == (
        base, f"{base}/status", f"{base}/cancel"
    )
    own = f"{fake.url}/{TEXT}/requests/{rid}"  # what a well-behaved client builds itself
    wait_completed(client, f"{own}/status")
    assert client.get(own).status_code == 200
    assert fake.foreign_requests == []

    status = client.get(handle["status_url"])  # a client that follows the answer's URLs is caught
    assert status.status_code == 200 and status.json()["status"] == "COMPLETED"
    assert status.json()["request_id"] == rid
    result = client.get(handle["response_url"]).json()
    assert result["images"][0]["url"].startswith(foreign)
    assert client.put(handle["cancel_url"]).json() == {"status": "ALREADY_COMPLETED"}
    events = sse_events(client, handle["status_url"] + "/stream")
    assert [e["status"] for e in events] == ["COMPLETED"]
    seen = [(r.method, urlsplit(r.path).path) for r in fake.foreign_requests]
    assert seen == [
        ("GET", f"/{TEXT}/requests/{rid}/status"),
        ("GET", f"/{TEXT}/requests/{rid}"),
        ("PUT", f"/{TEXT}/requests/{rid}/cancel"),
        ("GET", f"/{TEXT}/requests/{rid}/status/stream"),
    ]
    assert fake.foreign_requests[0].headers["authorization"] == f"Key {KEY}"
    assert fake.foreign_requests[0].kind == "foreign" and fake.cancels == []
    assert len(httpx.get(f"{fake.url}/_fake/log").json()["foreign_requests"]) == 4
    fake.reset()
    assert fake.foreign_requests == []


def test_retry_after(fake: FakeFal, client: httpx.Client) -> None:
    handle = submit(client).json()
    rid = handle["request_id"]
    image_url = f"/files/{rid}/0.jpg"
    for value in ("inf", "1e12", "nan", "-5", http_date(time.time() + 3)):
        fake.faults.retry_after = value
        faults = fake.faults
        faults.submit_status, faults.status_status, faults.result_status = [429, 503], [503, 429], [429, 503]
        faults.cancel_status, faults.image_status, faults.upload_status = [429, 503], [503, 429], [429, 503]
        answers = [submit(client) for _ in range(2)]
        answers += [client.get(handle["status_url"]) for _ in range(2)]
        answers += [client.get(handle["response_url"]) for _ in range(2)]
        answers += [client.put(handle["cancel_url"]) for _ in range(2)]
        answers += [client.get(image_url) for _ in range(2)]
        answers += [client.post("/files/upload", content=b"x") for _ in range(2)]
        assert sorted({a.status_code for a in answers}) == [429, 503]
        assert [a.headers.get("retry-after") for a in answers] == [value] * 12
    when = email.utils.parsedate_to_datetime(value).timestamp()
    assert 1 < when - time.time() <= 4
    faults.submit_accept_then_status = 503
    assert submit(client).headers["retry-after"] == value
    faults.submit_accept_then_status = None
    assert fake.cancels == []  # the cancel faults never reached the job

    faults.retry_after = None
    faults.submit_status, faults.cancel_status = [503, 429], [503]
    first, second = submit(client), submit(client)
    assert "retry-after" not in first.headers and second.headers["retry-after"] == "0"
    assert "retry-after" not in client.put(handle["cancel_url"]).headers


# --------------------------------------------------------------------------------------------
# Grok Imagine 2.0, content policy for some requests, fault validation
# --------------------------------------------------------------------------------------------


def test_grok_imagine_2_endpoints(fake: FakeFal, client: httpx.Client) -> None:
    assert V2_ENDPOINTS == (V2_TEXT, V2_EDIT)
    assert isinstance(ENDPOINTS, tuple) and isinstance(TEXT_ENDPOINTS, tuple) and isinstance(EDIT_ENDPOINTS, tuple)
    assert ENDPOINTS[:4] == (TEXT, f"{TEXT}/quality/text-to-image", EDIT, f"{TEXT}/quality/edit")
    assert ENDPOINTS[4:] == V2_ENDPOINTS and TEXT_ENDPOINTS[-1] == V2_TEXT and EDIT_ENDPOINTS[-1] == V2_EDIT

    def error(response: httpx.Response) -> tuple[object, str]:
        assert response.status_code == 422
        first = response.json()["detail"][0]
        return first["loc"][-1], first["type"]

    urls = ["https://example.com/a.png"]
    assert error(submit(client, V2_TEXT, quality="high")) == ("quality", "literal_error")
    assert error(submit(client, TEXT, quality="low")) == ("quality", "extra_forbidden")
    assert error(submit(client, EDIT, image_urls=urls, quality="low")) == ("quality", "extra_forbidden")
    assert error(submit(client, f"{TEXT}/quality/text-to-image", quality="medium")) == ("quality", "extra_forbidden")
    assert error(submit(client, V2_TEXT, seed=1)) == ("seed", "extra_forbidden")
    too_long = submit(client, V2_TEXT, prompt="x" * 8001)
    assert too_long.json() == {
        "detail": [
            {"loc": ["body", "prompt"], "msg": "String should have at most 8000 characters", "type": "string_too_long"}
        ]
    }
    assert error(submit(client, V2_EDIT, prompt="x" * 8001, image_urls=urls)) == ("prompt", "string_too_long")
    assert error(submit(client, V2_EDIT)) == ("image_urls", "missing")
    assert error(submit(client, V2_EDIT, image_urls=urls * 4)) == ("image_urls", "too_long")
    assert error(submit(client, V2_TEXT, aspect_ratio="auto")) == ("aspect_ratio", "literal_error")
    assert not fake.jobs

    assert error(submit(client, TEXT, prompt="x" * 8001)) == ("prompt", "string_too_long")  # every endpoint's limit
    assert error(submit(client, EDIT, prompt="x" * 8001, image_urls=urls)) == ("prompt", "string_too_long")
    text = submit(client, V2_TEXT, prompt="y" * 8000).json()
    low = submit(client, V2_TEXT, quality="low", aspect_ratio="16:9").json()
    edit = submit(client, V2_EDIT, image_urls=urls * 3).json()
    for handle in (text, low, edit):
        assert handle["status_url"].startswith(f"{fake.url}/{TEXT}/requests/")
    jobs = [fake.jobs[h["request_id"]] for h in (text, low, edit)]
    assert [(j.endpoint, j.quality, j.aspect_ratio) for j in jobs] == [
        (V2_TEXT, "medium", "1:1"), (V2_TEXT, "low", "16:9"), (V2_EDIT, "medium", "auto")
    ]
    assert fake.jobs[submit(client, TEXT).json()["request_id"]].quality is None  # the older endpoints have none
    wait_completed(client, low["status_url"])
    (image,) = client.get(low["response_url"]).json()["images"]
    assert (image["width"], image["height"]) == fake_image_size("16:9", "1k")


def test_content_policy_for_some_requests(fake: FakeFal, client: httpx.Client) -> None:
    fake.faults.content_policy_every = 3
    rids = []
    for i in range(7):
        if i == 2:
            assert submit(client, seed=1).status_code == 422  # refused at submit: not counted
        rids.append(submit(client, prompt=f"p{i}").json()["request_id"])
    refused = [i for i, rid in enumerate(rids) if fake.jobs[rid].error_type == "content_policy_violation"]
    assert refused == [2, 5]
    status = wait_completed(client, f"{fake.url}/{TEXT}/requests/{rids[2]}/status")
    assert status["error"] == CONTENT_POLICY_MESSAGE
    assert client.get(f"/{TEXT}/requests/{rids[2]}").status_code == 422

    fake.reset()  # the count starts again
    fake.faults.content_policy_every = 2
    rids = [submit(client, V2_TEXT if i % 2 else TEXT).json()["request_id"] for i in range(4)]
    assert [fake.jobs[rid].failed for rid in rids] == [False, True, False, True]

    fake.faults.content_policy_every = None
    fake.faults.content_policy_prompts = ["forbidden", "Nope"]
    prompts = ["a forbidden fox", "a red fox", "nope", "well Nope!"]
    rids = [submit(client, prompt=p).json()["request_id"] for p in prompts]
    assert [fake.jobs[rid].error_type for rid in rids] == ["content_policy_violation", None, None,
                                                           "content_policy_violation"]


def test_new_faults_validate_through_the_control_endpoint(fake: FakeFal, client: httpx.Client) -> None:
    control = "/_fake/faults"
    for bad in (
        {"account_concurrency": -1}, {"account_concurrency": 1.5}, {"content_policy_every": 0},
        {"content_policy_prompts": [3]}, {"content_policy_prompts": "x"}, {"retry_after": 5},
        {"retry_after": "1\r\nX-Evil: 1"}, {"submit_delay": -1}, {"result_trickle": "x"}, {"foreign_urls": 1},
    ):
        assert client.post(control, json=bad).status_code == 400, bad
    good = {
        "account_concurrency": 3, "submit_delay": 0.5, "result_trickle": 2, "foreign_urls": True,
        "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT", "content_policy_every": 4, "content_policy_prompts": ["x"],
    }
    answer = client.post(control, json=good)
    assert answer.status_code == 200 and {k: answer.json()[k] for k in good} == good
    assert fake.faults.account_concurrency == 3 and fake.faults.content_policy_prompts == ["x"]
    assert client.post("/_fake/reset").status_code == 200
    assert {k: client.get(control).json()[k] for k in good} == {
        "account_concurrency": None, "submit_delay": None, "result_trickle": None, "foreign_urls": False,
        "retry_after": None, "content_policy_every": None, "content_policy_prompts": None,
    }


# --------------------------------------------------------------------------------------------
# The balance
# --------------------------------------------------------------------------------------------


def test_the_balance_is_a_bare_number_for_the_key(fake: FakeFal, client: httpx.Client) -> None:
    answer = client.get("/billing/user_balance")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.text == "100.0" and answer.json() == 100.0
    fake.balance_usd = 3.25
    assert client.get("/billing/user_balance").json() == 3.25
    for headers in ({}, {"Authorization": "Key wrong"}):
        refused = httpx.get(f"{fake.url}/billing/user_balance", headers=headers)
        assert refused.status_code == 401 and refused.json() == {"detail": "Invalid or missing API key"}
    assert client.post("/billing/user_balance").status_code == 405
    assert [r.kind for r in fake.requests_of("balance")] == ["balance"] * 5
    submit(client, num_images=4)
    assert client.get("/billing/user_balance").json() == 3.25  # nothing is charged unless asked
    fake.reset()
    assert client.get("/billing/user_balance").json() == 100.0


def test_balance_faults(fake: FakeFal, client: httpx.Client) -> None:
    fake.faults.balance_status = [500, 403]
    assert client.get("/billing/user_balance").status_code == 500
    assert client.get("/billing/user_balance").status_code == 403
    fake.faults.balance_body = "not a number"
    garbled = client.get("/billing/user_balance")
    assert garbled.status_code == 200 and garbled.text == "not a number"
    fake.faults.balance_body = None
    fake.faults.balance_delay = 0.3
    started = time.monotonic()
    assert client.get("/billing/user_balance").json() == 100.0 and time.monotonic() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        client.get("/billing/user_balance", timeout=0.05)
    for bad in ({"balance_status": ["x"]}, {"balance_body": 3}, {"balance_delay": -1}):
        assert client.post("/_fake/faults", json=bad).status_code == 400, bad


def test_a_charged_balance_pays_for_each_accepted_request_until_fal_locks_the_account(
    fake: FakeFal, client: httpx.Client
) -> None:
    assert billed_price(TEXT, {"num_images": 3, "resolution": "1k"}) == 0.06
    assert billed_price("xai/grok-imagine-image/quality/edit",
                        {"num_images": 2, "resolution": "2k", "image_urls": ["a", "b"]}) == 0.16
    assert billed_price(V2_TEXT, {"num_images": 1, "resolution": "1k", "quality": "low"}) == 0.04
    assert billed_price(V2_EDIT, {"num_images": 1, "resolution": "2k", "image_urls": ["a"]}) == 0.09
    fake.balance_usd, fake.charge_balance = 0.10, True
    assert submit(client, num_images=4).status_code == 200  # $0.08
    assert submit(client, num_images=4).status_code == 200  # $0.08 more: fal lets the last one go below zero
    assert client.get("/billing/user_balance").json() == -0.06
    assert submit(client, num_images=1, seed=1).status_code == 422  # validation comes first
    locked = submit(client)
    assert locked.status_code == 403 and locked.json() == {"detail": EXHAUSTED_BALANCE_MESSAGE}
    assert "Exhausted balance" in EXHAUSTED_BALANCE_MESSAGE
    assert len(fake.jobs) == 2 and len(fake.submits) == 2
    fake.balance_usd = 1.0  # a top-up unlocks it
    assert submit(client).status_code == 200 and client.get("/billing/user_balance").json() == 0.98
    fake.reset()
    assert not fake.charge_balance and fake.balance_usd == 100.0
    with FakeFal(balance_usd=0.0, charge_balance=True) as broke:
        assert httpx.post(f"{broke.url}/{TEXT}", json={"prompt": "x"}, headers={"Authorization": "Key k"}
                          ).status_code == 403
