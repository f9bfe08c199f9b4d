"""Quick self-checks of the fake fal server itself (not of the pack's client)."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

try:
    from fake_fal import CONTENT_POLICY_MESSAGE, FakeFal, fake_image_size, index_from_colour
except ImportError:  # tests/ imported as a package
    from tests.fake_fal import CONTENT_POLICY_MESSAGE, FakeFal, fake_image_size, index_from_colour

KEY = "test-key-1234"
TEXT = "xai/grok-imagine-image"
EDIT = "xai/grok-imagine-image/edit"


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
    fake.queue_time, fake.run_time = 0.1, 0.1
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
    script = Path(__file__).with_name("fake_fal.py")
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
