"""The Grok Imagine Video nodes end to end against the fake fal: what each sends, the VIDEO, URL and last frame it
hands on, the video playing on the node, and everything the image nodes promise (refusals before anything is
sent, Cancel at fal, the journal, the Video Result node, the ledger)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from comfy_like import pack_module, run_node, run_node_over_list, run_node_raw
from fake_comfy import FakeHost, InterruptProcessingException
from fake_comfy_video import VideoComponents, VideoFromComponents, VideoFromFile
from fake_fal import FakeFal
from fake_fal.video import LAST_RGB, write_mp4

video = pack_module("nodes.video")
api = pack_module("nodes.video_api")
errors = pack_module("fal_transport.errors")
journal_module = pack_module("fal_transport.journal")
routes = pack_module("nodes.routes")
storage = pack_module("fal_transport.storage")

Video, Reference = video.FalGrokImagineVideo, video.FalGrokImagineReferenceVideo
Edit, Extend = video.FalGrokImagineVideoEdit, video.FalGrokImagineVideoExtend
VideoResult = video.FalGrokImagineVideoResult
APP_PATH = "/xai/grok-imagine-video"


def image(width: int = 320, height: int = 200, batch: int = 1, value: float = 0.5) -> torch.Tensor:
    tensor = torch.full((batch, height, width, 3), value)
    for i in range(batch):
        tensor[i, :, :, 0] = i / 10  # each image of a batch differs
    return tensor


def load_video(tmp_path: Path, seconds: float = 3.0, size: tuple[int, int] = (320, 240)) -> VideoFromFile:
    """What Load Video hands on: ComfyUI's VideoFromFile of a file on disk."""
    path = tmp_path / f"loaded_{seconds:g}.mp4"
    write_mp4(str(path), *size, seconds)
    return VideoFromFile(str(path))


def spend() -> dict[str, Any]:
    status, payload = routes.spend_payload()
    assert status == 200
    return payload


def journal() -> Any:
    return journal_module.Journal(Path(os.environ["GROK_IMAGINE_STATE_DIR"]))


def assert_a_video(outputs: tuple[Any, ...], seconds: float, size: tuple[int, int]) -> None:
    clip, url, last = outputs
    assert fal_url_of(clip) == url and url.endswith(".mp4")
    assert clip.get_duration() == pytest.approx(seconds, abs=0.05)
    assert clip.get_dimensions() == size
    assert last.shape == (1, size[1], size[0], 3) and last.dtype == torch.float32
    assert last[0, size[1] // 2, size[0] // 2].mul(255).round().tolist() == pytest.approx(LAST_RGB, abs=3)


fal_url_of = pack_module("media.video").fal_url_of


# --------------------------------------------------------------------------------------------
# Each node
# --------------------------------------------------------------------------------------------


async def test_text_to_video_hands_on_comfyuis_video_its_url_and_last_frame(fake_fal: FakeFal, host: FakeHost) -> None:
    returned = await run_node_raw(Video, prompt="a lighthouse in a storm", duration=4, unique_id="7")
    submit = fake_fal.submits[0]
    assert submit.path == f"{APP_PATH}/text-to-video"
    assert submit.json == {"prompt": "a lighthouse in a storm", "duration": 4, "resolution": "720p"}
    assert_a_video(returned["result"], 4.0, (1280, 720))
    assert fake_fal.uploads == []


async def test_the_video_plays_on_the_node_as_save_videos_preview_does(fake_fal: FakeFal, host: FakeHost) -> None:
    returned = await run_node_raw(Video, prompt="waves", duration=2, unique_id="7")
    ui = returned["ui"]
    [preview] = ui["images"]
    assert preview["subfolder"] == "grok_imagine" and preview["type"] == "temp" and ui["animated"] == (True,)
    path = host.temp_dir / "grok_imagine" / preview["filename"]
    assert path.suffix == ".mp4" and Path(returned["result"][0].get_stream_source()) == path
    assert ui["request_id"] == [fake_fal.submits[0].request_id]


async def test_the_download_shows_its_bytes_on_the_node(fake_fal: FakeFal, host: FakeHost) -> None:
    await run_node(Video, prompt="waves", duration=2, unique_id="7")
    texts = host.texts_for("7")
    assert any(t.startswith("Downloading the video: ") and " MB" in t for t in texts), texts
    assert texts[-1].startswith("Done: a 2.0 s video, 1280x720"), texts[-1]


async def test_image_to_video_uploads_the_first_image_and_sends_its_url(fake_fal: FakeFal, host: FakeHost) -> None:
    outputs = await run_node(Video, prompt="it comes alive", duration=3, resolution="480p", image=image(batch=2))
    submit = fake_fal.submits[0]
    assert submit.path == f"{APP_PATH}/image-to-video" and len(fake_fal.uploads) == 1
    assert submit.json["image_url"].startswith(fake_fal.url + "/files/uploads/")
    assert submit.json["aspect_ratio"] == "auto"
    assert_a_video(outputs, 3.0, (720, 480))  # auto: the shape of the 320x200 image, 3:2 at 480p


async def test_v15_makes_1080p_from_text(fake_fal: FakeFal, host: FakeHost) -> None:
    outputs = await run_node(Video, prompt="a city at night", duration=1, resolution="1080p",
                             model="grok-imagine-video-1.5", aspect_ratio="9:16")
    assert fake_fal.submits[0].path == f"{APP_PATH}/v1.5/text-to-video"
    assert fake_fal.submits[0].json["aspect_ratio"] == "9:16"
    assert_a_video(outputs, 1.0, (1080, 1920))


async def test_v15_image_to_video_sends_no_aspect_ratio(fake_fal: FakeFal, host: FakeHost) -> None:
    await run_node(Video, prompt="alive", duration=1, model="grok-imagine-video-1.5", image=image())
    submit = fake_fal.submits[0]
    assert submit.path == f"{APP_PATH}/v1.5/image-to-video" and "aspect_ratio" not in submit.json


async def test_reference_video_sends_three_images_as_image1_to_image3(fake_fal: FakeFal, host: FakeHost) -> None:
    outputs = await run_node(Reference, image=image(batch=2), prompt="@Image1 meets @Image2 at @Image3",
                             duration=2, image_2=image(200, 200, value=0.9))
    submit = fake_fal.submits[0]
    assert submit.path == f"{APP_PATH}/reference-to-video"
    assert len(submit.json["reference_image_urls"]) == 3 and len(fake_fal.uploads) == 3
    assert submit.json == {"prompt": "@Image1 meets @Image2 at @Image3", "duration": 2, "aspect_ratio": "16:9",
                           "resolution": "480p", "reference_image_urls": submit.json["reference_image_urls"]}
    assert_a_video(outputs, 2.0, (854, 480))


@pytest.mark.parametrize(("node", "inputs", "endpoint", "seconds"), [
    (Edit, {"prompt": "make it snow"}, "edit-video", 3.0),
    (Extend, {"prompt": "and then it rains", "duration": 2}, "extend-video", 5.0),
])
async def test_a_grok_video_goes_to_edit_and_extend_by_its_url_with_no_upload(
    fake_fal: FakeFal, host: FakeHost, node: type, inputs: dict, endpoint: str, seconds: float
) -> None:
    made, url, _ = await run_node(Video, prompt="a street", duration=3, resolution="480p")
    downloads = len(fake_fal.requests_of("file"))
    outputs = await run_node(node, video=made, **inputs)
    submit = fake_fal.submits[1]
    assert submit.path == f"{APP_PATH}/{endpoint}" and submit.json["video_url"] == url
    assert fake_fal.uploads == [] and len(fake_fal.requests_of("file")) == downloads + 1  # only the new result
    assert_a_video(outputs, seconds, (854, 480))


async def test_a_load_video_input_is_uploaded_as_an_mp4_and_extended(
    fake_fal: FakeFal, host: FakeHost, tmp_path: Path
) -> None:
    outputs = await run_node(Extend, video=load_video(tmp_path, 3.0, (640, 360)), prompt="it goes on", duration=2)
    submit = fake_fal.submits[0]
    assert len(fake_fal.uploads) == 1 and fake_fal.uploads[0]["content_type"] == "video/mp4"
    assert submit.json["video_url"].startswith(fake_fal.url + "/files/uploads/")
    assert_a_video(outputs, 5.0, (854, 480))  # a 640x360 input is extended at 480p
    assert list((host.temp_dir / "grok_imagine").glob("grok_video_input_*")) == [], "the upload's MP4 is deleted"


async def test_frames_from_create_video_are_encoded_and_edited(fake_fal: FakeFal, host: FakeHost) -> None:
    frames = VideoFromComponents(VideoComponents(torch.rand(48, 120, 160, 3), frame_rate=24))
    await run_node(Edit, video=frames, prompt="as a watercolour")
    assert len(fake_fal.uploads) == 1 and fake_fal.submits[0].path == f"{APP_PATH}/edit-video"


# --------------------------------------------------------------------------------------------
# Refused before anything is sent
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("node", "inputs", "field", "message"), [
    (Video, {"prompt": "p", "resolution": "1080p"}, "resolution", "set model to grok-imagine-video-1.5"),
    (Video, {"prompt": "x" * 4097}, "prompt", "4,097 characters long; fal takes at most 4,096"),
    (Video, {"prompt": "p", "model": "grok-imagine-video-1.5", "aspect_ratio": "1:1", "image": image()},
     "aspect_ratio", "Set aspect_ratio to auto"),
    (Reference, {"prompt": "p", "image": image(batch=7), "image_2": image()}, "image", "at most 7 reference images"),
    (Extend, {"prompt": "p", "video": "short"}, "video", "'video' is 1.5 s. Connect a longer video"),
    (Extend, {"prompt": "p", "video": "long"}, "video", "Trim it to at most 15 s"),
])
async def test_bad_input_is_refused_before_anything_is_uploaded_or_sent(
    fake_fal: FakeFal, host: FakeHost, tmp_path: Path, node: type, inputs: dict, field: str, message: str
) -> None:
    if inputs.get("video") in ("short", "long"):
        inputs = {**inputs, "video": load_video(tmp_path, 1.5 if inputs["video"] == "short" else 16.0)}
    with pytest.raises(errors.InvalidInputError, match=message) as raised:
        await run_node(node, **inputs)
    assert raised.value.field == field
    assert fake_fal.requests == []


async def test_a_video_over_fals_upload_size_is_refused_before_anything_is_paid(
    fake_fal: FakeFal, host: FakeHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "MAX_UPLOAD_BYTES", 1_000)  # the fake's flat 3 s video is a few kB
    with pytest.raises(errors.InvalidInputError, match="fal's storage takes at most") as raised:
        await run_node(Edit, video=load_video(tmp_path), prompt="snow")
    assert raised.value.field == "video" and fake_fal.requests == []
    assert list((host.temp_dir / "grok_imagine").glob("*.mp4")) == []


async def test_a_video_result_node_refuses_what_is_not_a_request_id(fake_fal: FakeFal, host: FakeHost) -> None:
    with pytest.raises(errors.InvalidInputError, match="'request_id' must be a fal request id"):
        await run_node(VideoResult, request_id="my video")
    assert fake_fal.requests == []


# --------------------------------------------------------------------------------------------
# Cancel, the journal, the Result node, the ledger
# --------------------------------------------------------------------------------------------


async def test_cancel_reaches_fal_and_ends_the_node_as_interrupted(fake_fal: FakeFal, host: FakeHost) -> None:
    fake_fal.faults.never_complete = True
    run = asyncio.ensure_future(run_node(Video, prompt="a long take", duration=15, unique_id="3"))
    assert await asyncio.to_thread(fake_fal.wait_for, lambda f: len(f.submits) == 1, 30)
    host.interrupted = True  # the user's Cancel
    with pytest.raises(InterruptProcessingException):
        await asyncio.wait_for(run, 10)
    assert await asyncio.to_thread(fake_fal.wait_for, lambda f: f.submits[0].request_id in f.cancels, 10)


async def test_a_video_whose_download_failed_is_collected_by_the_next_run_without_paying_again(
    fake_fal: FakeFal, host: FakeHost
) -> None:
    fake_fal.faults.image_404 = True  # fal's file host has lost the video for now
    with pytest.raises(errors.ResultError):
        await run_node(Video, prompt="a paper boat", duration=2, seed=1)
    request_id = fake_fal.submits[0].request_id
    assert journal().entries()[request_id].state == "completed"
    fake_fal.faults.image_404 = False
    _, url, _ = await run_node(Video, prompt="a paper boat", duration=2, seed=2)  # the seed is not sent
    assert len(fake_fal.submits) == 1 and request_id in url
    assert journal().entries()[request_id].state == "collected"
    assert len(spend()["recent"]) == 1, "paid once"


async def test_an_uploaded_video_is_known_by_its_content_so_a_rerun_finds_its_request(
    fake_fal: FakeFal, host: FakeHost, tmp_path: Path
) -> None:
    fake_fal.faults.image_404 = True
    with pytest.raises(errors.ResultError):
        await run_node(Extend, video=load_video(tmp_path, 3.0), prompt="more", duration=2)
    fake_fal.faults.image_404 = False
    storage_state = pack_module("fal_transport.process_state").current()
    storage_state.uploads.clear()  # as after a restart: the video is written and uploaded again, to a new URL
    await run_node(Extend, video=load_video(tmp_path, 3.0), prompt="more", duration=2)
    assert len(fake_fal.uploads) == 2 and len(fake_fal.submits) == 1


async def test_the_video_result_node_loads_a_video_by_its_id_without_paying(fake_fal: FakeFal, host: FakeHost) -> None:
    _, url, _ = await run_node(Video, prompt="a kite", duration=2)
    request_id = fake_fal.submits[0].request_id
    returned = await run_node_raw(VideoResult, request_id=f"  {request_id} ", unique_id="9")
    assert len(fake_fal.submits) == 1 and len(spend()["recent"]) == 1
    assert_a_video(returned["result"], 2.0, (1280, 720))
    assert returned["result"][1] == url and returned["ui"]["animated"] == (True,)


async def test_each_result_node_points_to_the_other_for_an_id_of_the_other_family(
    fake_fal: FakeFal, host: FakeHost
) -> None:
    await run_node(Video, prompt="a kite", duration=1)
    await run_node(pack_module("nodes.text_to_image").FalGrokImagineImage, prompt="a kite")
    video_id, image_id = (s.request_id for s in fake_fal.submits)
    with pytest.raises(errors.RequestNotFoundError, match="loaded by the Grok Imagine Video Result node"):
        await run_node(pack_module("nodes.result_node").FalGrokImagineResult, request_id=video_id)
    with pytest.raises(errors.RequestNotFoundError, match="loaded by the Grok Imagine Result node"):
        await run_node(VideoResult, request_id=image_id)


async def test_the_ledger_records_what_fal_charged(fake_fal: FakeFal, host: FakeHost, tmp_path: Path) -> None:
    fake_fal.charge_balance = True
    before = fake_fal.balance_usd
    made, _, _ = await run_node(Video, prompt="a", duration=5, resolution="480p", image=image())  # 5 x 0.05 + 0.002
    await run_node(Extend, video=made, prompt="b", duration=6)  # 6 x 0.05 (a 480p input) + 5 s x 0.01
    await run_node(Edit, video=load_video(tmp_path, 10.0), prompt="c", resolution="720p")  # 8 s x (0.07 + 0.01)
    recent = sorted((r["endpoint"].rsplit("/", 1)[-1], r["price_usd"]) for r in spend()["recent"])
    assert recent == [("edit-video", 0.64), ("extend-video", 0.35), ("image-to-video", 0.252)]
    assert spend()["today_usd"] == pytest.approx(before - fake_fal.balance_usd) == pytest.approx(1.242)


async def test_a_prompt_list_makes_one_video_per_prompt_in_list_order(fake_fal: FakeFal, host: FakeHost) -> None:
    fake_fal.faults.account_concurrency = 2
    prompts = [f"shot {i}" for i in range(4)]
    outputs = await run_node_over_list(Video, prompt=prompts, duration=1, resolution="480p", unique_id="5")
    by_prompt = {s.json["prompt"]: s.request_id for s in fake_fal.submits}
    assert [url.split("/files/")[1].split("/")[0] for _, url, _ in outputs] == [by_prompt[p] for p in prompts]
    assert len(spend()["recent"]) == 4


async def test_provenance_names_the_request_for_save_video_to_write(fake_fal: FakeFal, host: FakeHost) -> None:
    extra = {"workflow": {"nodes": [{"id": 4, "type": "FalGrokImagineVideo"}]}}
    _, url, _ = await run_node(Video, prompt="a", duration=1, unique_id="4", extra_pnginfo=extra)
    [entry] = extra["workflow"]["nodes"][0]["properties"]["grok_imagine"]
    assert entry == {"endpoint": "xai/grok-imagine-video/text-to-video",
                     "request_ids": [fake_fal.submits[0].request_id], "video_url": url}
