"""The video nodes inside the real ComfyUI, against the project's fake fal server: Save Video writes a playable MP4
of the right length that names its fal request, Get Video Components reads its frames, a Load Video file is
uploaded and extended, Cancel reaches fal, and the Video Result node loads a video again without paying.

Needs COMFYUI_DIR (a ComfyUI checkout) with its venv beside it (or COMFYUI_VENV); see README. Without them every
test here skips with the reason.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from comfy_host import ComfyServer, comfy_paths, pack_env, start_comfy
from comfy_like import TEST_KEY
from fake_fal import FakeFal
from fake_fal.video import write_mp4

PATHS = comfy_paths()
pytestmark = pytest.mark.skipif(
    PATHS is None, reason="COMFYUI_DIR is not set to a ComfyUI checkout with its venv (see README: e2e tests)"
)
RUN_TIME_S = 1.0


@pytest.fixture(scope="module")
def fal() -> Iterator[FakeFal]:
    server = FakeFal(accepted_keys={TEST_KEY}, run_time=RUN_TIME_S).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def comfy(fal: FakeFal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyServer]:
    assert PATHS is not None
    base = tmp_path_factory.mktemp("comfy-video")
    server = start_comfy(*PATHS, base, pack_env(fal.url, base, TEST_KEY))
    yield server
    server.stop()
    assert TEST_KEY.split(":")[1] not in server.log(), "the fal key appeared in ComfyUI's log"


@pytest.fixture(autouse=True)
def _fresh_fake(fal: FakeFal) -> None:
    fal.reset()
    fal.faults.run_time = RUN_TIME_S


def video_node(duration: int, resolution: str = "480p", prompt: str = "a paper boat on a puddle") -> dict[str, Any]:
    return {"class_type": "FalGrokImagineVideo",
            "inputs": {"prompt": f"{prompt} {uuid.uuid4().hex[:6]}", "duration": duration, "aspect_ratio": "auto",
                       "resolution": resolution, "model": "grok-imagine-video", "seed": 0}}


def save_video(source: str, prefix: str) -> dict[str, Any]:
    return {"class_type": "SaveVideo",
            "inputs": {"video": [source, 0], "filename_prefix": f"video/{prefix}", "format": "auto", "codec": "auto"}}


def run_with_workflow(comfy: ComfyServer, prompt: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """Queue `prompt` as the frontend does, with its workflow in `extra_pnginfo` (what Save Video embeds)."""
    workflow = {"nodes": [{"id": int(node_id), "type": node["class_type"]} for node_id, node in prompt.items()]}
    queued = comfy.post("/prompt", {"prompt": prompt, "client_id": f"e2e-{uuid.uuid4()}",
                                    "extra_data": {"extra_pnginfo": {"workflow": workflow}}})
    entry = comfy.wait(queued["prompt_id"], timeout)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[-3000:]
    return entry


def saved_video(comfy: ComfyServer, entry: dict[str, Any], node_id: str) -> Path:
    [saved] = entry["outputs"][node_id]["images"]
    assert saved["type"] == "output" and saved["filename"].endswith(".mp4")
    return comfy.base_dir / "output" / saved["subfolder"] / saved["filename"]


def test_save_video_writes_a_playable_mp4_of_the_right_length_naming_its_request(
    comfy: ComfyServer, fal: FakeFal
) -> None:
    entry = run_with_workflow(comfy, {"1": video_node(3), "2": save_video("1", "grok_t2v")})
    path = saved_video(comfy, entry, "2")
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.name, video.width, video.height) == ("h264", 854, 480)
        assert float(video.duration * video.time_base) == pytest.approx(3.0, abs=0.05)
        assert sum(1 for _ in container.decode(video=0)) == 72
        assert container.streams.audio, "the sound fal made is kept"
        workflow = json.loads(container.metadata["workflow"])
    [run] = next(n for n in workflow["nodes"] if n["id"] == 1)["properties"]["grok_imagine"]
    assert run["request_ids"] == [fal.submits[0].request_id] and run["video_url"].endswith(".mp4")
    ui = entry["outputs"]["1"]  # the video plays on the node, as Save Video's preview
    assert ui["animated"] == [True] and ui["images"][0]["type"] == "temp"
    assert ui["images"][0]["subfolder"] == "grok_imagine"
    assert (comfy.base_dir / "temp" / "grok_imagine" / ui["images"][0]["filename"]).is_file()


def test_get_video_components_reads_the_frames_of_a_grok_video(comfy: ComfyServer) -> None:
    prompt = {
        "1": video_node(2),
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["1", 2]}},
    }
    entry = run_with_workflow(comfy, prompt)
    assert len(entry["outputs"]["3"]["images"]) == 48, "2 s at 24 fps"
    assert float(entry["outputs"]["4"]["text"][0]) == 24.0
    assert len(entry["outputs"]["5"]["images"]) == 1, "last_frame is one image"


def test_a_load_video_file_is_uploaded_and_extended(comfy: ComfyServer, fal: FakeFal) -> None:
    name = f"clip_{uuid.uuid4().hex[:6]}.mp4"
    write_mp4(str(comfy.base_dir / "input" / name), 640, 360, 3.0)
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": name}},
        "2": {"class_type": "FalGrokImagineVideoExtend",
              "inputs": {"video": ["1", 0], "prompt": "and then it rains", "duration": 2, "seed": 0}},
        "3": save_video("2", "grok_extend"),
    }
    entry = run_with_workflow(comfy, prompt)
    assert len(fal.uploads) == 1 and fal.submits[0].json["video_url"].startswith(fal.url + "/files/uploads/")
    with av.open(str(saved_video(comfy, entry, "3"))) as container:
        stream = container.streams.video[0]
        assert float(stream.duration * stream.time_base) == pytest.approx(5.0, abs=0.05)


def test_a_grok_video_is_edited_by_its_url_without_an_upload(comfy: ComfyServer, fal: FakeFal) -> None:
    prompt = {
        "1": video_node(2),
        "2": {"class_type": "FalGrokImagineVideoEdit",
              "inputs": {"video": ["1", 0], "prompt": "make it snow", "resolution": "auto", "seed": 0}},
        "3": save_video("2", "grok_edit"),
    }
    run_with_workflow(comfy, prompt)
    made, edit = fal.submits
    assert fal.uploads == [] and edit.json["video_url"].split("/files/")[1].startswith(made.request_id)


def test_an_interrupt_cancels_the_video_request_at_fal(comfy: ComfyServer, fal: FakeFal) -> None:
    fal.faults.never_complete = True
    prompt_id = comfy.queue({"1": video_node(15, "720p"), "2": save_video("1", "grok_cancel")})
    assert fal.wait_for(lambda f: len(f.submits) == 1, 30), "the node never submitted"
    time.sleep(0.5)
    interrupted_at = time.monotonic()
    comfy.post("/interrupt", {})
    entry = comfy.wait(prompt_id, timeout=30)
    assert fal.wait_for(lambda f: f.cancels == [f.submits[0].request_id], 10)
    assert next(r.time for r in fal.requests if r.kind == "cancel") - interrupted_at < 1.0
    messages = [kind for kind, _ in entry["status"]["messages"]]
    assert "execution_interrupted" in messages and "execution_error" not in messages


def test_the_video_result_node_loads_a_video_again_without_paying(comfy: ComfyServer, fal: FakeFal) -> None:
    first = run_with_workflow(comfy, {"1": video_node(2), "2": save_video("1", "grok_first")})
    request_id = fal.submits[0].request_id
    entry = run_with_workflow(comfy, {
        "1": {"class_type": "FalGrokImagineVideoResult", "inputs": {"request_id": request_id}},
        "2": save_video("1", "grok_again"),
    })
    assert len(fal.submits) == 1
    again, before = saved_video(comfy, entry, "2"), saved_video(comfy, first, "2")
    with av.open(str(again)) as a, av.open(str(before)) as b:
        assert [bytes(p) for p in a.demux(video=0)] == [bytes(p) for p in b.demux(video=0)]
