"""The pack inside the real ComfyUI, against the project's fake fal server.

Needs COMFYUI_DIR (see README: e2e tests).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import av
import pytest
from comfy_host import PACK_ROOT, ComfyServer
from comfy_like import TEST_KEY
from fake_fal import FakeFal
from PIL import Image
from workflow_ui import load_workflow, to_api_prompt

EXAMPLES = sorted((PACK_ROOT / "example_workflows").glob("*.json"))
RUN_TIME_S = 2.0
FAL = {"run_time": RUN_TIME_S}  # the fake fal of this module (tests/e2e/conftest.py)
VIDEO_NODES = {"FalGrokImagineVideo", "FalGrokImagineReferenceVideo", "FalGrokImagineVideoEdit",
               "FalGrokImagineVideoExtend"}


@pytest.fixture(autouse=True)
def _fresh_fake(fal: FakeFal) -> None:
    fal.reset()
    fal.faults.run_time = RUN_TIME_S


def api_prompt(path: Path, object_info: dict[str, Any]) -> dict[str, Any]:
    """The prompt the frontend queues for a UI workflow file."""
    return to_api_prompt(load_workflow(path), object_info)


def is_generating(node: dict[str, Any]) -> bool:
    """A Grok node that sends requests to fal (the Prompt List only splits text)."""
    return node["class_type"].startswith("FalGrokImagine") and node["class_type"] != "FalGrokImaginePromptList"


def expected_submits(prompt: dict[str, Any], node_id: str) -> int:
    """Requests a Grok node sends: one per 4 images, once per prompt when a Prompt List feeds its prompt."""
    inputs = prompt[node_id]["inputs"]
    runs = 1
    source = inputs.get("prompt")
    if isinstance(source, list) and prompt[source[0]]["class_type"] == "FalGrokImaginePromptList":
        runs = len([line for line in prompt[source[0]]["inputs"]["prompts"].splitlines() if line.strip()])
    return runs * -(-int(inputs.get("num_images", 1)) // 4)


def bust_cache(prompt: dict[str, Any]) -> dict[str, Any]:
    """A new seed on every Grok node, as the seed widget's "randomize" does before each queue."""
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        if "seed" in node["inputs"]:
            node["inputs"]["seed"] = time.time_ns() % 2**48
    return prompt


def saved_metadata(path: Path) -> str:
    """What Save Image wrote into a PNG's text chunks, or Save Video into an MP4's metadata, as text."""
    if path.suffix == ".mp4":
        with av.open(str(path)) as container:
            return json.dumps(dict(container.metadata))
    return json.dumps(Image.open(path).info, default=str)


def saved_images(comfy: ComfyServer, entry: dict[str, Any]) -> list[Path]:
    files = []
    for output in entry["outputs"].values():
        for image in output.get("images", []):
            if image.get("type") == "output":
                files.append(comfy.base_dir / "output" / image["subfolder"] / image["filename"])
    return files


def test_object_info_shows_the_node_as_specified(comfy: ComfyServer, object_info: dict[str, Any]) -> None:
    info = object_info["FalGrokImagineImage"]
    assert info["display_name"] == "Grok Imagine Image (fal)"
    assert info["category"] == "fal/Grok Imagine"
    assert info["input_order"]["required"] == [
        "prompt", "num_images", "aspect_ratio", "resolution", "output_format", "sync_mode", "seed"
    ]
    assert info["output_name"] == ["images", "revised_prompt", "image_urls"]
    assert info["output"] == ["IMAGE", "STRING", "STRING"]
    assert info["description"] and all(info["output_tooltips"])
    assert "IMPORT FAILED): " + str(comfy.base_dir) not in comfy.log()
    assert "custom_nodes/grok-imagine-fal" in comfy.log()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_workflow_runs_and_saves_its_images(
    comfy: ComfyServer, object_info: dict[str, Any], fal: FakeFal, example: Path
) -> None:
    prompt = bust_cache(api_prompt(example, object_info))
    entry, _ = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[-2000:]
    files = saved_images(comfy, entry)
    assert files and all(f.is_file() and f.stat().st_size > 0 for f in files)
    for saved in files:  # Save Image (Save Video) embeds the prompt and workflow in the PNG (MP4): never the key
        metadata = saved_metadata(saved)
        assert "FalGrokImagine" in metadata and TEST_KEY.split(":")[1] not in metadata
    grok_nodes = [node_id for node_id, node in prompt.items() if is_generating(node)]
    assert len(fal.submits) == sum(expected_submits(prompt, node_id) for node_id in grok_nodes)
    for node in prompt.values():  # a Prompt List's prompts each went to fal, once
        if node["class_type"] == "FalGrokImaginePromptList":
            listed = [line.strip() for line in node["inputs"]["prompts"].splitlines() if line.strip()]
            sent = [s.json["prompt"] for s in fal.submits]
            assert sorted(p for p in sent if p in listed) == sorted(listed)
    for node_id in grok_nodes:  # previews and the revised prompt (or the video) are shown on the node itself
        ui = entry["outputs"][node_id]
        assert ui["images"] and ui["images"][0]["type"] == "temp"
        if prompt[node_id]["class_type"] in VIDEO_NODES:
            assert ui["animated"] == [True] and ui["images"][0]["filename"].endswith(".mp4")
        else:
            assert ui["text"][0].startswith("Revised:")


def grok_prompt(count: int) -> dict[str, Any]:
    prompt: dict[str, Any] = {}
    for i in range(count):
        prompt[f"{i + 1}"] = {
            "class_type": "FalGrokImagineImage",
            "inputs": {"prompt": f"concurrency probe {i}", "num_images": 1, "aspect_ratio": "1:1",
                       "resolution": "1k", "output_format": "jpeg", "sync_mode": False, "seed": 0},
        }
        prompt[f"{100 + i}"] = {"class_type": "PreviewImage", "inputs": {"images": [f"{i + 1}", 0]}}
    return prompt


def test_four_independent_grok_nodes_take_about_the_time_of_one(comfy: ComfyServer) -> None:
    one, four = [], []
    for _ in range(2):  # alternate A/B runs; ComfyUI's periodic GC stalls are short
        one.append(comfy.run(bust_cache(grok_prompt(1)))[1])
        four.append(comfy.run(bust_cache(grok_prompt(4)))[1])
    print(f"one node: {sorted(one)} s, four nodes: {sorted(four)} s")
    assert min(four) < min(one) * 1.5, (one, four)
    assert min(four) < RUN_TIME_S * 4 * 0.6


def test_an_interrupt_cancels_the_request_at_fal_and_ends_the_prompt_interrupted(
    comfy: ComfyServer, fal: FakeFal
) -> None:
    fal.faults.never_complete = True
    prompt_id = comfy.queue(bust_cache(grok_prompt(1)))
    assert fal.wait_for(lambda f: f.followed(), 30), "the node never waited on its request at fal"
    interrupted_at = time.monotonic()
    comfy.post("/interrupt", {})
    entry = comfy.wait(prompt_id, timeout=30)
    request_id = fal.submits[0].request_id
    assert fal.cancels == [request_id]
    cancel_time = next(r.time for r in fal.requests if r.kind == "cancel")
    assert cancel_time - interrupted_at < 1.0
    messages = [kind for kind, _ in entry["status"]["messages"]]
    assert "execution_interrupted" in messages and "execution_error" not in messages


def prompt_list_batch(count: int) -> dict[str, Any]:
    """A Prompt List of `count` prompts into one Grok Image node, previewed."""
    lines = "\n".join(f"cancel probe {time.time_ns()} number {i}" for i in range(count))
    return {
        "1": {"class_type": "FalGrokImaginePromptList", "inputs": {"prompts": lines}},
        "2": {"class_type": "FalGrokImagineImage",
              "inputs": {"prompt": ["1", 0], "num_images": 1, "aspect_ratio": "1:1", "resolution": "1k",
                         "output_format": "jpeg", "sync_mode": False, "seed": 0}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }


def test_an_interrupt_of_a_long_prompt_list_cancels_every_request_at_fal_and_ends_the_prompt_at_once(
    comfy: ComfyServer, fal: FakeFal
) -> None:
    # The account runs two at a time and nothing finishes: all but two of the requests wait in fal's queue.
    count = 60
    fal.faults.update({"account_concurrency": 2, "never_complete": True})
    prompt_id = comfy.queue(prompt_list_batch(count))
    assert fal.wait_for(lambda f: len(f.submits) == count, 60), f"{len(fal.submits)} of {count} submitted"
    interrupted_at = time.monotonic()
    comfy.post("/interrupt", {})
    entry = comfy.wait(prompt_id, timeout=60)
    ended = time.monotonic() - interrupted_at
    accepted = {s.request_id for s in fal.submits}
    assert fal.wait_for(lambda f: accepted <= set(f.cancels), 30), (
        f"{len(accepted & set(fal.cancels))} of {count} accepted requests were cancelled at fal")
    reached = max(r.time for r in fal.requests if r.kind == "cancel") - interrupted_at
    print(f"{count} prompts: the prompt ended {ended:.2f} s after the interrupt; the last cancel reached fal "
          f"{reached:.2f} s after it")
    messages = [kind for kind, _ in entry["status"]["messages"]]
    assert "execution_interrupted" in messages and "execution_error" not in messages
    assert ended < 5.0, f"the prompt took {ended:.1f} s to end"


def test_the_key_status_and_price_routes_answer_inside_comfyui_without_the_key(comfy: ComfyServer) -> None:
    for prefix in ("", "/api"):  # ComfyUI serves custom routes under both
        status = comfy.get(f"{prefix}/grok_imagine/key")
        assert status["configured"] is True and "FAL_KEY" in status["source"]
        assert TEST_KEY[:-4] not in json.dumps(status)
        pricing = comfy.get(f"{prefix}/grok_imagine/pricing")
        assert set(pricing["nodes"]) == {"FalGrokImagineImage", "FalGrokImagineEdit", "FalGrokImagine2Image",
                                         "FalGrokImagine2Edit", *VIDEO_NODES}


def test_the_result_node_reloads_a_request_by_id_inside_comfyui(comfy: ComfyServer, fal: FakeFal) -> None:
    entry, _ = comfy.run(bust_cache(grok_prompt(1)))
    assert entry["status"]["status_str"] == "success"
    request_id = fal.submits[0].request_id
    prompt = {
        "1": {"class_type": "FalGrokImagineResult",
              "inputs": {"request_id": request_id, "endpoint": "xai/grok-imagine-image"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    entry, _ = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert len(fal.submits) == 1
    assert entry["outputs"]["2"]["images"]


def test_a_grok_image_goes_into_the_next_grok_node_by_its_url_and_a_changed_one_is_uploaded(
        comfy: ComfyServer, fal: FakeFal) -> None:
    prompt = bust_cache(grok_prompt(1))
    edit = {"prompt": "make it night", "num_images": 1, "aspect_ratio": "16:9", "resolution": "1k",
            "output_format": "jpeg", "sync_mode": False, "seed": 0}
    prompt |= {
        "2": {"class_type": "FalGrokImagineEdit", "inputs": {"image": ["1", 0], **edit}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "4": {"class_type": "FalGrokImagineEdit", "inputs": {"image": ["3", 0], **edit, "prompt": "make it dawn"}},
        "102": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
        "104": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
    }
    entry, _ = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", entry["status"]
    made = fal.jobs[fal.submits[0].request_id]
    by_prompt = {submit.json["prompt"]: submit.json["image_urls"] for submit in fal.submits[1:]}
    assert by_prompt["make it night"] == [image["url"] for image in made.result()["images"]]
    assert len(fal.uploads) == 1 and by_prompt["make it dawn"][0].startswith(fal.url + "/files/uploads/")


def set_balance_floor(comfy: ComfyServer, usd: float | None) -> None:
    """As the Settings panel does (its header passes the pack's write guard)."""
    request = urllib.request.Request(
        f"{comfy.url}/grok_imagine/spend/floor", data=json.dumps({"balance_floor_usd": usd}).encode(), method="POST",
        headers={"Content-Type": "application/json", "X-Grok-Imagine": "1"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
        assert json.loads(response.read())["balance_floor_usd"] == usd


def test_a_prompt_list_the_fal_balance_cannot_pay_does_not_start_inside_comfyui(
    comfy: ComfyServer, fal: FakeFal
) -> None:
    prompts = [f"balance probe {i}" for i in range(10)]  # $0.20 in all; the floor leaves $0.10 of fal's $100
    prompt = {
        "1": {"class_type": "FalGrokImaginePromptList", "inputs": {"prompts": "\n".join(prompts)}},
        "2": {"class_type": "FalGrokImagineImage",
              "inputs": {"prompt": ["1", 0], "num_images": 1, "aspect_ratio": "1:1", "resolution": "1k",
                         "output_format": "jpeg", "sync_mode": False, "seed": 0}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    set_balance_floor(comfy, 99.9)
    try:
        entry, _ = comfy.run(bust_cache(prompt))
    finally:
        set_balance_floor(comfy, None)
    assert entry["status"]["status_str"] == "error"
    error = next(body for kind, body in entry["status"]["messages"] if kind == "execution_error")
    assert error["exception_message"].startswith(
        "This batch of 10 prompts costs $0.20; your fal balance is $100.00, and the balance floor of $99.90 (set by "
        "Settings > Grok Imagine (fal)) is kept."), error["exception_message"]
    assert fal.submit_attempts == []  # not the first five that would have fitted: none


def browser_tools() -> tuple[Path, Path] | None:
    script = PACK_ROOT.parent / "shared" / "comfyui-host" / "browser_check.py"
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if not script.is_file() or chromium is None:
        return None
    return script, Path(chromium)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_the_workflow_loads_and_runs_in_the_real_frontend_without_console_errors(
    comfyui: tuple[Path, Path], comfy: ComfyServer, example: Path, tmp_path: Path
) -> None:
    tools = browser_tools()
    if tools is None:
        pytest.skip("needs ../shared/comfyui-host/browser_check.py and Debian's chromium")
    result = subprocess.run(  # noqa: S603 (our own argv)
        [str(comfyui[1]), str(tools[0]), str(example), "--url", comfy.url, "--click-queue",
         "--fail-on-console-error", "--shots-dir", str(tmp_path),
         "--expect-js", "window.app.extensions.some((e) => e.name === 'grok_imagine_fal.extension')"],
        capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    sys.stdout.write(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
