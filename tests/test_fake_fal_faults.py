"""The fake fal's faults (`fake_fal.faults`): each does what its documentation says, and the control endpoint refuses
what is not one."""

from __future__ import annotations

import email.utils
import io
import struct
import time
from urllib.parse import urlsplit

import httpx
import pytest
from comfy_like import TEST_KEY
from fake_fal import CONTENT_POLICY_MESSAGE, FakeFal, http_date
from fake_fal.plain_client import sse_events, submit, wait_completed
from PIL import Image

TEXT = "xai/grok-imagine-image"
V2_TEXT = "xai/grok-imagine-image/v2.0/text-to-image"


def test_submit_faults(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.submit_status = [503, 429]
    first = submit(fal_http)
    assert first.status_code == 503 and "x-fal-request-id" not in first.headers
    assert first.headers["content-type"].startswith("text/html")
    second = submit(fal_http)
    assert second.status_code == 429 and second.headers["retry-after"] == "0"
    assert submit(fal_http).status_code == 200

    fake_fal.faults.submit_drop_connection = 1
    with pytest.raises(httpx.RemoteProtocolError):
        submit(fal_http)
    assert len(fake_fal.submits) == 1 and fake_fal.submit_attempts[-1].outcome == "dropped"

    fake_fal.faults.submit_accept_then_status = 500
    lost = submit(fal_http)
    assert lost.status_code == 500 and lost.headers["x-fal-request-id"] in fake_fal.jobs
    assert len(fake_fal.submits) == 2 and len(fake_fal.jobs) == 2


def test_status_faults(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.never_complete = True
    handle = submit(fal_http).json()
    fake_fal.faults.status_status = [429, 503]
    limited = fal_http.get(handle["status_url"])
    assert limited.status_code == 429 and limited.headers["retry-after"] == "0"
    assert fal_http.get(handle["status_url"]).status_code == 503
    fake_fal.faults.status_drop_connection = 1
    with pytest.raises(httpx.RemoteProtocolError):
        fal_http.get(handle["status_url"])
    assert fal_http.get(handle["status_url"]).json()["status"] in ("IN_QUEUE", "IN_PROGRESS")

    fake_fal.faults.stream_unavailable = True
    assert fal_http.get(handle["status_url"] + "/stream").status_code == 404
    fake_fal.faults.stream_unavailable = False
    fake_fal.faults.stream_cut = 1
    events = sse_events(fal_http, handle["status_url"] + "/stream")
    assert len(events) == 1 and events[0]["status"] != "COMPLETED"
    assert fal_http.get("/xai/grok-imagine-image/requests/nope/status").status_code == 404


def test_image_faults(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.mixed_sizes = True
    handle = submit(fal_http, num_images=2, output_format="png").json()
    wait_completed(fal_http, handle["status_url"])
    images = fal_http.get(handle["response_url"]).json()["images"]
    assert (images[0]["width"], images[1]["width"]) == (1024, 960)
    url = images[1]["url"]
    assert url.endswith("/1.png")
    assert Image.open(io.BytesIO(httpx.get(url).content)).size == (960, 1024)

    fake_fal.faults.image_status = [404]
    assert httpx.get(url).status_code == 404
    fake_fal.faults.image_bomb = True
    bomb = httpx.get(url)
    assert bomb.status_code == 200 and len(bomb.content) < 1_000_000
    assert bomb.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", bomb.content[16:24]) == (30000, 30000)  # IHDR width, height
    with pytest.raises(Image.DecompressionBombError):  # Pillow reads the header only
        Image.open(io.BytesIO(bomb.content))
    fake_fal.faults.image_bomb = False
    fake_fal.faults.image_corrupt = True
    with pytest.raises(Exception):  # noqa: B017 - any Pillow error
        Image.open(io.BytesIO(httpx.get(url).content))
    fake_fal.faults.image_corrupt = False
    fake_fal.faults.image_wrong_content_type = True
    assert httpx.get(url).headers["content-type"].startswith("text/html")
    fake_fal.faults.image_wrong_content_type = False
    fake_fal.faults.image_truncate = True
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url)
    fake_fal.faults.image_truncate = False
    fake_fal.faults.image_redirect_loop = True
    with pytest.raises(httpx.TooManyRedirects):
        httpx.get(url, follow_redirects=True)
    fake_fal.faults.image_redirect_loop = False
    fake_fal.faults.image_trickle = 0.05
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url, timeout=httpx.Timeout(5, read=0.02))


def test_submit_delay_accepts_first_and_answers_late(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.submit_delay = 0.5
    with pytest.raises(httpx.ReadTimeout):
        fal_http.post(f"/{TEXT}", json={"prompt": "x"}, timeout=httpx.Timeout(5, read=0.1))
    assert len(fake_fal.jobs) == 1 and len(fake_fal.submits) == 1, "the job exists although the answer never came"
    started = time.monotonic()
    answer = submit(fal_http)
    assert answer.status_code == 200 and time.monotonic() - started >= 0.45
    assert fake_fal.jobs[answer.json()["request_id"]].submitted_at < started + 0.1


def test_result_trickle(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    handle = submit(fal_http).json()
    wait_completed(fal_http, handle["status_url"])
    whole = fal_http.get(handle["response_url"]).content
    fake_fal.faults.result_trickle = 0.001
    trickled = fal_http.get(handle["response_url"])
    assert trickled.content == whole and int(trickled.headers["content-length"]) == len(whole)
    fake_fal.faults.result_trickle = 1.0
    received = b""
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        with fal_http.stream("GET", handle["response_url"], timeout=httpx.Timeout(5, read=0.3)) as response:
            assert int(response.headers["content-length"]) == len(whole)
            for chunk in response.iter_raw():
                received += chunk
    assert received == whole[:1] and time.monotonic() - started < 2


def test_foreign_urls(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.foreign_urls = True
    handle = submit(fal_http).json()
    rid = handle["request_id"]
    foreign = fake_fal.foreign_url
    assert urlsplit(foreign).hostname == "127.0.0.1" and urlsplit(foreign).port != fake_fal.port
    base = f"{foreign}/{TEXT}/requests/{rid}"
    assert (handle["response_url"], handle["status_url"], handle["cancel_url"]) == (
        base, f"{base}/status", f"{base}/cancel"
    )
    own = f"{fake_fal.url}/{TEXT}/requests/{rid}"  # what a well-behaved fal_http builds itself
    wait_completed(fal_http, f"{own}/status")
    assert fal_http.get(own).status_code == 200
    assert fake_fal.foreign_requests == []

    status = fal_http.get(handle["status_url"])  # a fal_http that follows the answer's URLs is caught
    assert status.status_code == 200 and status.json()["status"] == "COMPLETED"
    assert status.json()["request_id"] == rid
    result = fal_http.get(handle["response_url"]).json()
    assert result["images"][0]["url"].startswith(foreign)
    assert fal_http.put(handle["cancel_url"]).json() == {"status": "ALREADY_COMPLETED"}
    events = sse_events(fal_http, handle["status_url"] + "/stream")
    assert [e["status"] for e in events] == ["COMPLETED"]
    seen = [(r.method, urlsplit(r.path).path) for r in fake_fal.foreign_requests]
    assert seen == [
        ("GET", f"/{TEXT}/requests/{rid}/status"),
        ("GET", f"/{TEXT}/requests/{rid}"),
        ("PUT", f"/{TEXT}/requests/{rid}/cancel"),
        ("GET", f"/{TEXT}/requests/{rid}/status/stream"),
    ]
    assert fake_fal.foreign_requests[0].headers["authorization"] == f"Key {TEST_KEY}"
    assert fake_fal.foreign_requests[0].kind == "foreign" and fake_fal.cancels == []
    assert len(httpx.get(f"{fake_fal.url}/_fake/log").json()["foreign_requests"]) == 4
    fake_fal.reset()
    assert fake_fal.foreign_requests == []


def test_retry_after(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    handle = submit(fal_http).json()
    rid = handle["request_id"]
    image_url = f"/files/{rid}/0.jpg"
    for value in ("inf", "1e12", "nan", "-5", http_date(time.time() + 3)):
        fake_fal.faults.retry_after = value
        faults = fake_fal.faults
        faults.submit_status, faults.status_status, faults.result_status = [429, 503], [503, 429], [429, 503]
        faults.cancel_status, faults.image_status, faults.upload_status = [429, 503], [503, 429], [429, 503]
        answers = [submit(fal_http) for _ in range(2)]
        answers += [fal_http.get(handle["status_url"]) for _ in range(2)]
        answers += [fal_http.get(handle["response_url"]) for _ in range(2)]
        answers += [fal_http.put(handle["cancel_url"]) for _ in range(2)]
        answers += [fal_http.get(image_url) for _ in range(2)]
        answers += [fal_http.post("/files/upload", content=b"x") for _ in range(2)]
        assert sorted({a.status_code for a in answers}) == [429, 503]
        assert [a.headers.get("retry-after") for a in answers] == [value] * 12
    when = email.utils.parsedate_to_datetime(value).timestamp()
    assert 1 < when - time.time() <= 4
    faults.submit_accept_then_status = 503
    assert submit(fal_http).headers["retry-after"] == value
    faults.submit_accept_then_status = None
    assert fake_fal.cancels == []  # the cancel faults never reached the job

    faults.retry_after = None
    faults.submit_status, faults.cancel_status = [503, 429], [503]
    first, second = submit(fal_http), submit(fal_http)
    assert "retry-after" not in first.headers and second.headers["retry-after"] == "0"
    assert "retry-after" not in fal_http.put(handle["cancel_url"]).headers


def test_content_policy_for_some_requests(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.content_policy_every = 3
    rids = []
    for i in range(7):
        if i == 2:
            assert submit(fal_http, seed=1).status_code == 422  # refused at submit: not counted
        rids.append(submit(fal_http, prompt=f"p{i}").json()["request_id"])
    refused = [i for i, rid in enumerate(rids) if fake_fal.jobs[rid].error_type == "content_policy_violation"]
    assert refused == [2, 5]
    status = wait_completed(fal_http, f"{fake_fal.url}/{TEXT}/requests/{rids[2]}/status")
    assert status["error"] == CONTENT_POLICY_MESSAGE
    assert fal_http.get(f"/{TEXT}/requests/{rids[2]}").status_code == 422

    fake_fal.reset()  # the count starts again
    fake_fal.faults.content_policy_every = 2
    rids = [submit(fal_http, V2_TEXT if i % 2 else TEXT).json()["request_id"] for i in range(4)]
    assert [fake_fal.jobs[rid].failed for rid in rids] == [False, True, False, True]

    fake_fal.faults.content_policy_every = None
    fake_fal.faults.content_policy_prompts = ["forbidden", "Nope"]
    prompts = ["a forbidden fox", "a red fox", "nope", "well Nope!"]
    rids = [submit(fal_http, prompt=p).json()["request_id"] for p in prompts]
    assert [fake_fal.jobs[rid].error_type for rid in rids] == ["content_policy_violation", None, None,
                                                           "content_policy_violation"]


def test_new_faults_validate_through_the_control_endpoint(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    control = "/_fake/faults"
    for bad in (
        {"account_concurrency": -1}, {"account_concurrency": 1.5}, {"content_policy_every": 0},
        {"content_policy_prompts": [3]}, {"content_policy_prompts": "x"}, {"retry_after": 5},
        {"retry_after": "1\r\nX-Evil: 1"}, {"submit_delay": -1}, {"result_trickle": "x"}, {"foreign_urls": 1},
    ):
        assert fal_http.post(control, json=bad).status_code == 400, bad
    good = {
        "account_concurrency": 3, "submit_delay": 0.5, "result_trickle": 2, "foreign_urls": True,
        "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT", "content_policy_every": 4, "content_policy_prompts": ["x"],
    }
    answer = fal_http.post(control, json=good)
    assert answer.status_code == 200 and {k: answer.json()[k] for k in good} == good
    assert fake_fal.faults.account_concurrency == 3 and fake_fal.faults.content_policy_prompts == ["x"]
    assert fal_http.post("/_fake/reset").status_code == 200
    assert {k: fal_http.get(control).json()[k] for k in good} == {
        "account_concurrency": None, "submit_delay": None, "result_trickle": None, "foreign_urls": False,
        "retry_after": None, "content_policy_every": None, "content_policy_prompts": None,
    }
