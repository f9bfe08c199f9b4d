"""Videos on disk: a result streamed from fal to a file (capped, retried, with progress, nothing left behind),
read there (size, length, last frame), handed to ComfyUI as its VIDEO remembering fal's URL, and any other
VIDEO written as an MP4 and uploaded to fal's storage."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path

import av
import httpx
import pytest
import torch
from comfy_like import TEST_KEY, pack_module
from fake_comfy_video import VideoComponents, fake_comfy_api
from fake_fal import FakeFal
from fake_fal.video import BODY_RGB, LAST_RGB, TEXT_TO_VIDEO, write_mp4

video_io = pack_module("media.video")
errors = pack_module("fal_transport.errors")
storage = pack_module("fal_transport.storage")
credentials = pack_module("fal_transport.credentials")
config = pack_module("fal_transport.config")


def fal_video(fake: FakeFal, **body: object) -> dict:
    """Run a text-to-video job on the fake to completion; its result's `video`."""
    with httpx.Client(base_url=fake.url, headers={"Authorization": f"Key {TEST_KEY}"}, timeout=10) as client:
        handle = client.post(f"/{TEXT_TO_VIDEO}", json={"prompt": "a fox", **body}).json()
        assert fake.wait_for(lambda f: f.state_of(handle["request_id"]) == "COMPLETED", 10)
        return client.get(handle["response_url"]).json()["video"]


def colour_of(image: torch.Tensor) -> tuple[int, ...]:
    return tuple(round(float(v) * 255) for v in image[0, 4, 4])


def close_to(colour: tuple[int, ...], expected: tuple[int, int, int]) -> bool:
    return max(abs(a - b) for a, b in zip(colour, expected)) <= 4


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


async def test_a_result_video_is_streamed_to_a_file_with_its_progress(fake_fal: FakeFal, tmp_path: Path) -> None:
    video = fal_video(fake_fal, duration=2, resolution="480p")
    seen: list[tuple[int, int | None]] = []
    path = await video_io.download_video(video["url"], tmp_path, stem="grok_video", timeout_s=10,
                                         on_progress=lambda done, total: seen.append((done, total)))
    assert path.parent == tmp_path and path.name.startswith("grok_video_") and path.suffix == ".mp4"
    files = fake_fal.requests_of("file")
    assert len(files) == 1 and not files[0].has_authorization, "the fal key never goes to the file host"
    assert path.read_bytes() == httpx.get(video["url"]).content
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no partial file is left"
    assert seen[0] == (0, video["file_size"]) and seen[-1] == (video["file_size"], video["file_size"])
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


async def test_progress_without_a_declared_size_reports_none_for_the_total(fake_fal: FakeFal, tmp_path: Path) -> None:
    video = fal_video(fake_fal, duration=1, resolution="480p")
    fake_fal.faults.file_chunked = True
    seen: list[tuple[int, int | None]] = []
    path = await video_io.download_video(video["url"], tmp_path, stem="v", timeout_s=10,
                                         on_progress=lambda done, total: seen.append((done, total)))
    assert path.stat().st_size == video["file_size"] and seen[-1] == (video["file_size"], None)


@pytest.mark.parametrize("chunked", [False, True], ids=["declared size", "chunked"])
async def test_a_video_over_the_byte_cap_is_refused_and_nothing_is_left(fake_fal: FakeFal, tmp_path: Path,
                                                                        chunked: bool) -> None:
    video = fal_video(fake_fal, duration=2, resolution="480p")
    fake_fal.faults.file_chunked = chunked
    with pytest.raises(video_io.VideoFetchError, match="MiB") as raised:
        await video_io.download_video(video["url"], tmp_path, stem="v", timeout_s=10, request_id="rid-1",
                                      max_bytes=video["file_size"] - 1)
    assert raised.value.request_id == "rid-1"
    assert list(tmp_path.iterdir()) == []
    assert len(fake_fal.requests_of("file")) == 1, "a refused video is not fetched again"


async def test_server_errors_are_retried_and_the_download_starts_over(fake_fal: FakeFal, tmp_path: Path) -> None:
    video = fal_video(fake_fal, duration=1, resolution="480p")
    fake_fal.faults.image_status = [503, 429]
    path = await video_io.download_video(video["url"], tmp_path, stem="v", timeout_s=20)
    assert path.stat().st_size == video["file_size"]
    assert [r.status for r in fake_fal.requests_of("file")] == [503, 429, 200]


async def test_an_expired_video_fails_at_once_naming_the_cause(fake_fal: FakeFal, tmp_path: Path) -> None:
    video = fal_video(fake_fal, duration=1, resolution="480p")
    fake_fal.faults.image_404 = True
    with pytest.raises(video_io.VideoFetchError, match=r"HTTP 404.*expired"):
        await video_io.download_video(video["url"], tmp_path, stem="v", timeout_s=10)
    assert len(fake_fal.requests_of("file")) == 1 and list(tmp_path.iterdir()) == []


async def test_a_broken_connection_is_retried_until_the_deadline(fake_fal: FakeFal, tmp_path: Path) -> None:
    video = fal_video(fake_fal, duration=1, resolution="480p")
    fake_fal.faults.image_truncate = True
    with pytest.raises(video_io.VideoFetchError, match=r"longer than 0.8 s.*connection closed"):
        await video_io.download_video(video["url"], tmp_path, stem="v", timeout_s=0.8)
    assert len(fake_fal.requests_of("file")) >= 2 and list(tmp_path.iterdir()) == []


async def test_only_http_urls_are_downloaded(fake_fal: FakeFal, tmp_path: Path) -> None:
    with pytest.raises(video_io.VideoFetchError, match="scheme 'file'"):
        await video_io.download_video("file:///etc/passwd", tmp_path, stem="v", timeout_s=5)
    assert fake_fal.requests == []


async def test_a_video_on_a_non_public_address_is_never_fetched(
    fake_fal: FakeFal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = fal_video(fake_fal, duration=1, resolution="480p")
    monkeypatch.setenv("FAL_QUEUE_BASE_URL", "http://queue.fal.test")  # fal's queue is not local: only public hosts
    with pytest.raises(video_io.VideoFetchError, match=r"a video on 127\.0\.0\.1, a loopback address"):
        await video_io.download_video(video["url"], tmp_path, stem="v", timeout_s=10)
    assert fake_fal.requests_of("file") == [] and list(tmp_path.iterdir()) == []


async def test_every_redirect_hop_of_a_video_is_checked(
    fake_fal: FakeFal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = fal_video(fake_fal, duration=1, resolution="480p")
    for name, value in {"FAL_QUEUE_BASE_URL": "http://queue.fal.test", "HTTP_PROXY": fake_fal.url}.items():
        monkeypatch.setenv(name, value)  # fal and its file host are public names, reached through a proxy
    on_cdn = video["url"].replace(fake_fal.url, "http://cdn.fal.test")
    path = await video_io.download_video(on_cdn, tmp_path, stem="v", timeout_s=10)
    assert path.stat().st_size == video["file_size"]
    fake_fal.faults.image_redirect_to = "http://169.254.169.254/meta-data"
    with pytest.raises(video_io.VideoFetchError, match=r"169\.254\.169\.254, a link-local address"):
        await video_io.download_video(on_cdn, tmp_path, stem="w", timeout_s=10)
    assert not any("meta-data" in r.path for r in fake_fal.requests)


async def test_a_cancelled_download_leaves_no_file(fake_fal: FakeFal, tmp_path: Path) -> None:
    video = fal_video(fake_fal, duration=2, resolution="480p")
    fake_fal.faults.image_trickle = 0.05
    started = asyncio.Event()
    task = asyncio.create_task(video_io.download_video(video["url"], tmp_path, stem="v", timeout_s=30,
                                                       on_progress=lambda done, total: started.set()))
    await asyncio.wait_for(started.wait(), 10)
    assert [p.suffix for p in tmp_path.iterdir()] == [".part"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Reading a video file
# --------------------------------------------------------------------------------------------


async def test_probe_reads_what_fal_says_of_its_video(fake_fal: FakeFal, tmp_path: Path) -> None:
    video = fal_video(fake_fal, duration=3, resolution="480p", aspect_ratio="9:16")
    path = await video_io.download_video(video["url"], tmp_path, stem="v", timeout_s=10)
    info = video_io.probe_video(path)
    assert (info.width, info.height, info.fps, info.duration, info.frames) == \
        (video["width"], video["height"], video["fps"], video["duration"], video["num_frames"])
    assert info.codec == "h264" and "mp4" in info.container.split(",")
    assert video_io.read_video(path)[0] == info, "read with its last frame, the same"


def test_probe_answers_none_for_a_file_that_is_not_a_video(tmp_path: Path) -> None:
    (tmp_path / "page.mp4").write_bytes(b"<html>Not Found</html>")
    assert video_io.probe_video(tmp_path / "page.mp4") is None
    assert video_io.read_video(tmp_path / "page.mp4") is None


@pytest.mark.parametrize(("seconds", "gop", "audio"), [(6.0, 48, True), (6.0, 1000, False), (1 / 24, 48, True)],
                         ids=["key frame every 2 s", "one key frame", "a single frame"])
def test_the_last_frame_is_one_image_of_the_final_frame(tmp_path: Path, seconds: float, gop: int, audio: bool) -> None:
    path = tmp_path / "v.mp4"
    write_mp4(str(path), 320, 180, seconds, gop=gop, audio=audio)
    image = video_io.read_video(path)[1]
    assert image.shape == (1, 180, 320, 3) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert close_to(colour_of(image), LAST_RGB)


def test_the_last_frame_of_a_video_that_cannot_seek_is_read_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "v.mkv"
    with av.open(str(path), "w") as container:  # frames with no duration in the header: nothing to seek to
        stream = container.add_stream("mjpeg", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for index, colour in enumerate((BODY_RGB, BODY_RGB, LAST_RGB)):
            pixels = torch.tensor(colour, dtype=torch.uint8).expand(48, 64, 3).contiguous().numpy()
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuvj420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert close_to(colour_of(video_io.read_video(path)[1]), LAST_RGB)


# --------------------------------------------------------------------------------------------
# ComfyUI's VIDEO
# --------------------------------------------------------------------------------------------


def test_a_result_is_comfyuis_own_video_remembering_fals_url(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    write_mp4(str(path), 320, 180, 2.0)
    with fake_comfy_api() as impl:
        video = video_io.as_comfy_video(path, "https://fal.media/files/v.mp4")
        assert isinstance(video, impl.VideoFromFile)
        assert video.get_stream_source() == str(path) and video.get_dimensions() == (320, 180)
        assert video.get_components().images.shape == (48, 180, 320, 3)
        assert video_io.fal_url_of(video) == "https://fal.media/files/v.mp4"
        assert video_io.fal_url_of(video.as_trimmed(0.5, 1.0)) is None, "a trimmed copy is another video"
        assert video_io.fal_url_of(impl.VideoFromFile(str(path))) is None, "Load Video's file is not fal's"
        again = video_io.as_comfy_video(path, "https://fal.media/files/w.mp4")
        assert type(again) is type(video) and video_io.fal_url_of(again).endswith("w.mp4")


def test_the_length_of_any_video_is_read_with_its_trim(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    write_mp4(str(path), 160, 90, 4.0)
    with fake_comfy_api() as impl:
        loaded = impl.VideoFromFile(str(path))
        assert video_io.video_seconds(loaded, "video") == pytest.approx(4.0, abs=0.05)
        assert video_io.video_seconds(loaded.as_trimmed(1.0, 2.0), "video") == pytest.approx(2.0)
        frames = impl.VideoFromComponents(VideoComponents(torch.zeros(30, 16, 16, 3), Fraction(10)))
        assert video_io.video_seconds(frames, "video") == pytest.approx(3.0)
        broken = impl.VideoFromFile(str(tmp_path / "missing.mp4"))
        with pytest.raises(errors.InvalidInputError, match="'video' could not be read") as raised:
            video_io.video_seconds(broken, "video")
        assert raised.value.field == "video"


# --------------------------------------------------------------------------------------------
# Any VIDEO as an MP4 for fal
# --------------------------------------------------------------------------------------------


def test_load_videos_mp4_is_copied_not_encoded(tmp_path: Path) -> None:
    source = tmp_path / "clip.mp4"
    write_mp4(str(source), 320, 180, 3.0)
    with fake_comfy_api() as impl:
        prepared = video_io.mp4_for_upload(impl.VideoFromFile(str(source)), tmp_path / "out", field="video")
    assert prepared.path.parent == tmp_path / "out" and prepared.size == prepared.path.stat().st_size
    assert (prepared.info.codec, prepared.info.width, prepared.info.frames) == ("h264", 320, 72)
    with av.open(str(source)) as a, av.open(str(prepared.path)) as b:
        assert [bytes(p) for p in a.demux(video=0)] == [bytes(p) for p in b.demux(video=0)], "the same packets"


def test_a_trimmed_video_is_written_as_trimmed(tmp_path: Path) -> None:
    source = tmp_path / "clip.mp4"
    write_mp4(str(source), 160, 90, 4.0)
    with fake_comfy_api() as impl:
        prepared = video_io.mp4_for_upload(impl.VideoFromFile(str(source)).as_trimmed(1.0, 2.0), tmp_path,
                                           field="video")
    assert prepared.info.frames == 48 and prepared.info.codec == "h264"


def test_frames_are_encoded_as_h264(tmp_path: Path) -> None:
    frames = torch.rand(12, 64, 96, 3)
    with fake_comfy_api() as impl:
        prepared = video_io.mp4_for_upload(impl.VideoFromComponents(VideoComponents(frames, Fraction(24))), tmp_path,
                                           field="video")
    info = prepared.info
    assert (info.codec, info.width, info.height, info.frames) == ("h264", 96, 64, 12)


@pytest.mark.skipif("libvpx-vp9" not in av.codecs_available, reason="this PyAV has no VP9 encoder")
def test_an_mp4_of_a_codec_fal_cannot_read_is_encoded_as_h264(tmp_path: Path) -> None:
    source = tmp_path / "vp9.mp4"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(6):
            frame = av.VideoFrame.from_ndarray(torch.zeros(48, 64, 3, dtype=torch.uint8).numpy(), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame.reformat(format="yuv420p")))
        container.mux(stream.encode(None))
    with fake_comfy_api() as impl:
        prepared = video_io.mp4_for_upload(impl.VideoFromFile(str(source)), tmp_path / "out", field="video")
    assert prepared.info.codec == "h264" and prepared.info.frames == 6


def test_a_video_too_large_for_one_upload_is_refused_naming_the_input(tmp_path: Path) -> None:
    source = tmp_path / "clip.mp4"
    write_mp4(str(source), 160, 90, 2.0)
    with fake_comfy_api() as impl, pytest.raises(errors.InvalidInputError, match=r"'video' is .* MiB") as raised:
        video_io.mp4_for_upload(impl.VideoFromFile(str(source)), tmp_path / "out", field="video", max_bytes=1000)
    assert raised.value.field == "video" and "Trim the video" in str(raised.value)
    assert list((tmp_path / "out").iterdir()) == [], "the refused file is removed"


def test_a_video_that_cannot_be_written_is_refused_naming_the_input(tmp_path: Path) -> None:
    with fake_comfy_api() as impl, pytest.raises(errors.InvalidInputError, match="'video' could not be written"):
        video_io.mp4_for_upload(impl.VideoFromFile(str(tmp_path / "missing.mp4")), tmp_path / "out", field="video")
    assert list((tmp_path / "out").iterdir()) == []


async def test_a_load_video_input_reaches_fals_storage_streamed_and_once(fake_fal: FakeFal, tmp_path: Path) -> None:
    source = tmp_path / "clip.mp4"
    write_mp4(str(source), 320, 180, 2.0)
    creds = credentials.resolve_credentials(config.key_file())
    with fake_comfy_api() as impl:
        prepared = video_io.mp4_for_upload(impl.VideoFromFile(str(source)), tmp_path / "out", field="video")
    url = await storage.upload_file(creds, prepared.path, content_type="video/mp4", file_name="clip.mp4")
    assert httpx.get(url).content == prepared.path.read_bytes()
    (upload,) = fake_fal.requests_of("upload")
    assert upload.headers["content-length"] == str(prepared.size) and "transfer-encoding" not in upload.headers
    assert fake_fal.uploads[0]["content_type"] == "video/mp4"
    assert await storage.upload_file(creds, prepared.path, content_type="video/mp4", file_name="clip.mp4") == url
    assert len(fake_fal.requests_of("upload")) == 1, "the same file is not uploaded twice within the hour"


async def test_an_upload_that_fails_once_is_streamed_again_whole(fake_fal: FakeFal, tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_mp4(str(path), 160, 90, 1.0)
    fake_fal.faults.upload_status = [503]
    url = await storage.upload_file(credentials.resolve_credentials(config.key_file()), path,
                                    content_type="video/mp4", file_name="clip.mp4")
    assert [r.status for r in fake_fal.requests_of("upload")] == [503, 200]
    assert httpx.get(url).content == path.read_bytes()

