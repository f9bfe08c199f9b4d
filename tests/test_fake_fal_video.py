"""Self-checks of the fake fal's video endpoints (not of the pack's client): what each accepts and refuses,
and that its results are real MP4 files of the promised size, frame rate and length."""

from __future__ import annotations

import base64
import io

import av
import httpx
import pytest
from fake_fal import FakeFal
from fake_fal.plain_client import wait_completed
from fake_fal.video import (
    EDIT_VIDEO,
    EXTEND_VIDEO,
    FPS,
    IMAGE_TO_VIDEO,
    LAST_RGB,
    REFERENCE_TO_VIDEO,
    TEXT_TO_VIDEO,
    V15_IMAGE_TO_VIDEO,
    V15_TEXT_TO_VIDEO,
    VIDEO_ENDPOINTS,
    render_mp4,
    video_size,
)
from PIL import Image

IMAGE_URL = "https://example.com/cat.png"


def minimal_body(endpoint: str, video_url: str = "https://example.com/in.mp4") -> dict[str, object]:
    body: dict[str, object] = {"prompt": "a fox runs"}
    if endpoint in (IMAGE_TO_VIDEO, V15_IMAGE_TO_VIDEO):
        body["image_url"] = IMAGE_URL
    elif endpoint == REFERENCE_TO_VIDEO:
        body["reference_image_urls"] = [IMAGE_URL]
    elif endpoint in (EDIT_VIDEO, EXTEND_VIDEO):
        body["video_url"] = video_url
    return body


def run(client: httpx.Client, endpoint: str, body: dict[str, object]) -> dict:
    """Submit, wait for COMPLETED, and return the result JSON."""
    answer = client.post(f"/{endpoint}", json=body)
    assert answer.status_code == 200, answer.text
    handle = answer.json()
    wait_completed(client, handle["status_url"], 5)
    result = client.get(handle["response_url"])
    assert result.status_code == 200, result.text
    return result.json()


def read_video(data: bytes) -> dict[str, object]:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        frames = list(container.decode(video))
        return {"codec": video.codec_context.name, "audio": [s.codec_context.name for s in container.streams.audio],
                "size": (video.width, video.height), "fps": float(video.average_rate), "frames": len(frames),
                "seconds": float(video.duration * video.time_base),
                "last": tuple(int(v) for v in frames[-1].to_ndarray(format="rgb24")[4, 4])}


def uploaded_png(client: httpx.Client, width: int, height: int) -> str:
    """The fake's URL of a PNG of this size, uploaded as the pack uploads references."""
    token = client.post("/storage/auth/token", params={"storage_type": "fal-cdn-v3"}, json={}).json()
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, "PNG")
    answer = client.post("/files/upload", content=buffer.getvalue(),
                         headers={"Authorization": f"Bearer {token['token']}", "Content-Type": "image/png",
                                  "X-Fal-File-Name": "ref.png"})
    return answer.json()["access_url"]


@pytest.mark.parametrize(("endpoint", "size", "seconds"), [
    (TEXT_TO_VIDEO, (1280, 720), 6), (IMAGE_TO_VIDEO, (1280, 720), 6), (V15_TEXT_TO_VIDEO, (1280, 720), 6),
    (V15_IMAGE_TO_VIDEO, (1280, 720), 6), (REFERENCE_TO_VIDEO, (854, 480), 8), (EDIT_VIDEO, (854, 480), 6),
    (EXTEND_VIDEO, (1280, 720), 12),
])
def test_each_endpoint_answers_a_real_mp4_with_its_defaults(fal_http: httpx.Client, endpoint: str,
                                                            size: tuple[int, int], seconds: int) -> None:
    result = run(fal_http, endpoint, minimal_body(endpoint))
    video = result["video"]
    assert set(video) == {"url", "content_type", "file_name", "file_size", "width", "height", "fps", "duration",
                          "num_frames"}
    assert (video["width"], video["height"], video["fps"], video["duration"], video["num_frames"]) == \
        (*size, FPS, seconds, seconds * FPS)
    download = httpx.get(video["url"])  # no key, as a CDN is read
    assert download.headers["content-type"] == video["content_type"] == "video/mp4"
    assert len(download.content) == video["file_size"]
    read = read_video(download.content)
    assert read["codec"] == "h264" and read["audio"] == ["aac"]
    assert read["size"] == size and read["fps"] == FPS and read["frames"] == seconds * FPS
    assert read["seconds"] == pytest.approx(seconds)
    assert max(abs(a - b) for a, b in zip(read["last"], LAST_RGB)) <= 4, "the last frame has the known colour"


@pytest.mark.parametrize(("endpoint", "body", "size", "frames"), [
    (TEXT_TO_VIDEO, {"duration": 1, "resolution": "480p", "aspect_ratio": "9:16"}, (480, 854), 24),
    (V15_TEXT_TO_VIDEO, {"duration": 2, "resolution": "1080p", "aspect_ratio": "4:3"}, (1440, 1080), 48),
    (REFERENCE_TO_VIDEO, {"duration": 1, "resolution": "720p", "aspect_ratio": "1:1"}, (720, 720), 24),
    (EDIT_VIDEO, {"resolution": "720p"}, (1280, 720), 144),
])
def test_the_asked_size_and_length_are_what_comes_back(fal_http: httpx.Client, endpoint: str, body: dict,
                                                       size: tuple[int, int], frames: int) -> None:
    video = run(fal_http, endpoint, {**minimal_body(endpoint), **body})["video"]
    assert (video["width"], video["height"], video["num_frames"]) == (*size, frames)
    assert read_video(httpx.get(video["url"]).content)["size"] == size


def test_auto_takes_the_shape_of_an_image_the_fake_can_read(fal_http: httpx.Client) -> None:
    portrait = uploaded_png(fal_http, 600, 800)
    video = run(fal_http, IMAGE_TO_VIDEO, {"prompt": "x", "image_url": portrait, "resolution": "480p"})["video"]
    assert (video["width"], video["height"]) == video_size("3:4", "480p") == (480, 640)
    v15 = run(fal_http, V15_IMAGE_TO_VIDEO, {"prompt": "x", "image_url": portrait})["video"]
    assert (v15["width"], v15["height"]) == (720, 960)


def test_edit_and_extend_follow_the_input_video(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    portrait = run(fal_http, TEXT_TO_VIDEO, {"prompt": "x", "aspect_ratio": "9:16", "duration": 10,
                                           "resolution": "480p"})["video"]
    edited = run(fal_http, EDIT_VIDEO, {"prompt": "x", "video_url": portrait["url"]})["video"]
    assert (edited["width"], edited["height"], edited["duration"]) == (480, 854, 8), "fal uses the first 8 s"
    extended = run(fal_http, EXTEND_VIDEO, {"prompt": "x", "video_url": portrait["url"], "duration": 3})["video"]
    assert (extended["width"], extended["height"], extended["duration"]) == (480, 854, 13)
    square = run(fal_http, TEXT_TO_VIDEO, {"prompt": "x", "aspect_ratio": "1:1", "duration": 2})["video"]
    larger = run(fal_http, EXTEND_VIDEO, {"prompt": "x", "video_url": square["url"], "duration": 2})["video"]
    assert (larger["width"], larger["height"], larger["duration"]) == (720, 720, 4), "above 480p: 720p"
    inline = "data:video/mp4;base64," + base64.b64encode(render_mp4(854, 480, 2.0)).decode()
    small = run(fal_http, EXTEND_VIDEO, {"prompt": "x", "video_url": inline})["video"]
    assert (small["width"], small["height"], small["duration"]) == (854, 480, 8), "a 480p input stays 480p"
    assert fake_fal.jobs[next(reversed(fake_fal.jobs))].image_urls == [inline], "the input URL is recorded on the job"


@pytest.mark.parametrize("seconds", [1.0, 16.0])
def test_extend_refuses_an_input_outside_2_to_15_seconds(fake_fal: FakeFal, fal_http: httpx.Client,
                                                          seconds: float) -> None:
    inline = "data:video/mp4;base64," + base64.b64encode(render_mp4(160, 90, seconds)).decode()
    answer = fal_http.post(f"/{EXTEND_VIDEO}", json={"prompt": "x", "video_url": inline})
    assert answer.status_code == 422 and fake_fal.jobs == {}
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "video_url"] and "2 to 15 seconds" in detail["msg"]


@pytest.mark.parametrize(("endpoint", "field", "value", "error_type"), [
    (TEXT_TO_VIDEO, "duration", 16, "less_than_equal"),
    (TEXT_TO_VIDEO, "duration", 0, "greater_than_equal"),
    (TEXT_TO_VIDEO, "duration", True, "int_type"),
    (TEXT_TO_VIDEO, "resolution", "1080p", "literal_error"),
    (TEXT_TO_VIDEO, "aspect_ratio", "auto", "literal_error"),
    (TEXT_TO_VIDEO, "aspect_ratio", "21:9", "literal_error"),
    (TEXT_TO_VIDEO, "image_url", IMAGE_URL, "extra_forbidden"),
    (TEXT_TO_VIDEO, "prompt", "x" * 4097, "string_too_long"),
    (TEXT_TO_VIDEO, "prompt", "  ", "string_too_short"),
    (IMAGE_TO_VIDEO, "image_url", "ftp://example.com/a.png", "value_error"),
    (V15_TEXT_TO_VIDEO, "resolution", "2160p", "literal_error"),
    (V15_IMAGE_TO_VIDEO, "aspect_ratio", "16:9", "extra_forbidden"),
    (V15_IMAGE_TO_VIDEO, "resolution", "1080p", "literal_error"),
    (REFERENCE_TO_VIDEO, "duration", 11, "less_than_equal"),
    (REFERENCE_TO_VIDEO, "reference_image_urls", [IMAGE_URL] * 8, "too_long"),
    (REFERENCE_TO_VIDEO, "reference_image_urls", [], "too_short"),
    (EDIT_VIDEO, "duration", 6, "extra_forbidden"),
    (EDIT_VIDEO, "resolution", "1080p", "literal_error"),
    (EXTEND_VIDEO, "duration", 1, "greater_than_equal"),
    (EXTEND_VIDEO, "duration", 11, "less_than_equal"),
    (EXTEND_VIDEO, "resolution", "720p", "extra_forbidden"),
    (EXTEND_VIDEO, "seed", 1, "extra_forbidden"),
])
def test_each_endpoint_refuses_what_fal_refuses(fake_fal: FakeFal, fal_http: httpx.Client, endpoint: str, field: str,
                                                value: object, error_type: str) -> None:
    answer = fal_http.post(f"/{endpoint}", json={**minimal_body(endpoint), field: value})
    assert answer.status_code == 422 and fake_fal.jobs == {}
    detail = answer.json()["detail"]
    assert detail[0]["loc"][:2] == ["body", field] and detail[0]["type"] == error_type


@pytest.mark.parametrize("endpoint", [IMAGE_TO_VIDEO, V15_IMAGE_TO_VIDEO, REFERENCE_TO_VIDEO, EDIT_VIDEO,
                                      EXTEND_VIDEO])
def test_the_input_url_is_required(fal_http: httpx.Client, endpoint: str) -> None:
    body = {"prompt": "x"}
    answer = fal_http.post(f"/{endpoint}", json=body)
    assert answer.status_code == 422 and answer.json()["detail"][0]["type"] == "missing"


def test_video_jobs_share_the_queue_faults_refusals_and_cancel(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.content_policy_prompts = ["forbidden"]
    refused = fal_http.post(f"/{TEXT_TO_VIDEO}", json={"prompt": "a forbidden fox"}).json()
    wait_completed(fal_http, refused["status_url"], 5)
    answer = fal_http.get(refused["response_url"])
    assert answer.status_code == 422 and answer.json()["detail"][0]["type"] == "content_policy_violation"

    fake_fal.faults.never_complete = True
    held = fal_http.post(f"/{EDIT_VIDEO}", json=minimal_body(EDIT_VIDEO)).json()
    assert held["status_url"].startswith(f"{fake_fal.url}/xai/grok-imagine-video/requests/")
    assert fal_http.put(held["cancel_url"]).status_code == 202
    assert fal_http.get(held["response_url"]).status_code == 400
    assert fake_fal.cancels == [held["request_id"]]
    logs = fal_http.get(held["status_url"], params={"logs": "1"}).json()["logs"]
    assert [line["message"] for line in logs][-1] == "Generating video"


def test_the_file_faults_of_images_apply_to_videos(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    video = run(fal_http, TEXT_TO_VIDEO, {"prompt": "x", "duration": 1, "resolution": "480p"})["video"]
    fake_fal.faults.image_status = [503]
    assert httpx.get(video["url"]).status_code == 503
    fake_fal.faults.image_truncate = True
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(video["url"])


@pytest.mark.parametrize("endpoint", VIDEO_ENDPOINTS)
def test_every_video_endpoint_needs_the_key(fake_fal: FakeFal, endpoint: str) -> None:
    answer = httpx.post(f"{fake_fal.url}/{endpoint}", json=minimal_body(endpoint))
    assert answer.status_code == 401 and fake_fal.jobs == {}
