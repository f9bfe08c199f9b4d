"""The pack's routes and provenance inside the real ComfyUI: its own middleware in front of the settings
routes, and the PNG that its Save Image writes.

- Settings writes (the stored fal key, the daily limit) are sent with raw `http.client`, so Host and
  Origin are exactly what a hostile page or a DNS-rebinding attack would send. ComfyUI's own origin
  middleware stops some of them (an empty 403) and lets the others through to the pack, which must
  refuse them (a JSON error). Either way nothing may change.
- A prompt queued as the browser queues it (`extra_data.extra_pnginfo.workflow`) leaves the fal request
  ids in the PNG that Save Image writes, and the Result node reloads the images from such an id. In a
  Prompt List batch, the PNG of item k finds its own request under `list_index` k.

ComfyUI runs here without FAL_KEY, so the key in use is the stored one (Settings > Grok Imagine (fal)).
Needs COMFYUI_DIR (see README: e2e tests).
"""

from __future__ import annotations

import copy
import http.client
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from comfy_host import PACK_ROOT, ComfyServer
from comfy_like import TEST_KEY
from fake_fal import FakeFal
from PIL import Image
from workflow_ui import load_workflow, to_api_prompt

ATTACKER_KEY = "attacker-key-id:attacker-secret-fedcba9876543210"
OTHER_KEY = "second-key-id:second-key-secret-00112233445566"
PANEL = {"Content-Type": "application/json", "X-Grok-Imagine": "1"}  # what the Settings panel sends
PREFIXES = ["", "/api"]  # ComfyUI serves every custom route under both
ANSWERS: list[str] = []  # every answer any route gave in this module, to look for the state directory
# the fake fal and ComfyUI of this module (tests/e2e/conftest.py): an empty key counts as unset, so the key
# stored through the settings is used
FAL = {"accepted_keys": {TEST_KEY, OTHER_KEY}}
COMFY = {"key": "", "env": {"FAL_KEY_ID": "", "FAL_KEY_SECRET": "", "GROK_IMAGINE_DAILY_LIMIT_USD": ""},
         "never_logged": [ATTACKER_KEY]}


def state_dir(comfy: ComfyServer) -> Path:
    return comfy.base_dir / "grok-state"


def key_file(comfy: ComfyServer) -> Path:
    return state_dir(comfy) / "fal_key"


@dataclass
class Answer:
    status: int
    body: str
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def refused_by(self) -> str:
        """ComfyUI's origin middleware answers a bare 403; the pack answers with a JSON error."""
        return "pack" if self.body.startswith("{") else "ComfyUI" if self.status >= 400 else "-"


def send(comfy: ComfyServer, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> Answer:
    """One raw request: Host and Origin are exactly the ones given (http.client adds no Host when given one)."""
    address = urlsplit(comfy.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Host": address.netloc, **headers})
        response = connection.getresponse()
        answer = Answer(response.status, response.read().decode("utf-8", "replace"),
                        {name.lower(): value for name, value in response.getheaders()})
    finally:
        connection.close()
    ANSWERS.append(answer.body)
    return answer


def key_status(comfy: ComfyServer, prefix: str = "") -> dict[str, Any]:
    answer = send(comfy, "GET", f"{prefix}/grok_imagine/key", {})
    assert answer.status == 200, answer
    return answer.json


def store_properly(comfy: ComfyServer, key: str, prefix: str = "", headers: dict[str, str] | None = None) -> Answer:
    return send(comfy, "POST", f"{prefix}/grok_imagine/key", {**PANEL, **(headers or {})},
                json.dumps({"key": key}).encode())


@pytest.fixture
def stored_key(comfy: ComfyServer) -> str:
    """TEST_KEY stored the way the Settings panel stores it."""
    answer = store_properly(comfy, TEST_KEY)
    assert answer.status == 200, answer
    assert key_file(comfy).read_text().strip() == TEST_KEY
    return TEST_KEY


def hostile_requests(port: int) -> dict[str, tuple[dict[str, str], str]]:
    """name -> (headers, body kind) of a write no page other than the pack's own panel may make."""
    return {
        "Origin: null": ({**PANEL, "Origin": "null"}, "json"),
        "foreign Origin": ({**PANEL, "Origin": "http://evil.example"}, "json"),
        "foreign Origin, same port": ({**PANEL, "Origin": f"http://evil.example:{port}"}, "json"),
        "rebound Host + matching Origin": (
            {**PANEL, "Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}, "json"),
        "rebound Host, no Origin": ({**PANEL, "Host": f"evil.example:{port}"}, "json"),
        "no X-Grok-Imagine header": ({"Content-Type": "application/json"}, "json"),
        "form post": ({"Content-Type": "application/x-www-form-urlencoded", "X-Grok-Imagine": "1"}, "form"),
        "form post from another page": (
            {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"}, "form"),
        "text/plain (no-cors fetch)": ({"Content-Type": "text/plain", "X-Grok-Imagine": "1"}, "json"),
    }


def body_of(kind: str, payload: dict[str, Any]) -> bytes:
    if kind == "form":
        return "&".join(f"{name}={value}" for name, value in payload.items()).encode()
    return json.dumps(payload).encode()


@pytest.mark.parametrize("prefix", PREFIXES, ids=["plain", "api"])
def test_hostile_writes_are_refused_and_the_stored_key_and_limit_stay(
    comfy: ComfyServer, stored_key: str, prefix: str
) -> None:
    port = urlsplit(comfy.url).port
    assert port is not None
    before = key_status(comfy, prefix)
    assert before["configured"] is True and before["last4"] == stored_key[-4:]
    assert before["source"].startswith("the key file")
    spend_before = send(comfy, "GET", f"{prefix}/grok_imagine/spend", {}).json
    seen: list[str] = []
    for name, (headers, kind) in hostile_requests(port).items():
        writes = [
            ("POST", f"{prefix}/grok_imagine/key", body_of(kind, {"key": ATTACKER_KEY})),
            ("DELETE", f"{prefix}/grok_imagine/key", body_of(kind, {})),
            ("POST", f"{prefix}/grok_imagine/spend/limit", body_of(kind, {"daily_limit_usd": 0})),
        ]
        for method, path, body in writes:
            answer = send(comfy, method, path, headers, body)
            seen.append(f"{method} {path} [{name}]: {answer.status} from {answer.refused_by}"
                        + (f" ({answer.json['error'][:70]})" if answer.refused_by == "pack" else ""))
            assert answer.status in (403, 415), seen[-1]
            if answer.refused_by == "pack":
                assert answer.json["error"], seen[-1]
            assert key_file(comfy).read_text().strip() == stored_key, seen[-1]
            assert key_status(comfy, prefix) == before, seen[-1]
    assert send(comfy, "GET", f"{prefix}/grok_imagine/spend", {}).json["daily_limit_usd"] == \
        spend_before["daily_limit_usd"]
    print("\n" + "\n".join(seen))


@pytest.mark.parametrize("prefix", PREFIXES, ids=["plain", "api"])
@pytest.mark.parametrize("origin", ["null", "http://evil.example"])
def test_no_other_page_is_granted_the_preflight_a_json_write_with_the_panel_s_header_needs(
    comfy: ComfyServer, prefix: str, origin: str
) -> None:
    """A page elsewhere can only send JSON or X-Grok-Imagine after a CORS preflight; ComfyUI grants none
    (without --enable-cors-header), so the browser never sends the write itself."""
    answer = send(comfy, "OPTIONS", f"{prefix}/grok_imagine/key", {
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-grok-imagine",
    })
    print(f"\nOPTIONS {prefix}/grok_imagine/key from Origin {origin}: {answer.status}, "
          f"CORS headers: {sorted(h for h in answer.headers if h.startswith('access-control'))}")
    assert not [h for h in answer.headers if h.startswith("access-control-allow")], answer.headers


@pytest.mark.parametrize("prefix", PREFIXES, ids=["plain", "api"])
@pytest.mark.parametrize("origin", ["no Origin", "same origin", "localhost"])
def test_the_settings_panel_s_own_writes_store_and_remove_the_key(
    comfy: ComfyServer, stored_key: str, prefix: str, origin: str
) -> None:
    address = urlsplit(comfy.url)
    headers = {
        "no Origin": {},
        "same origin": {"Origin": comfy.url},
        "localhost": {"Host": f"localhost:{address.port}", "Origin": f"http://localhost:{address.port}"},
    }[origin]
    stored = store_properly(comfy, OTHER_KEY, prefix, headers)
    assert stored.status == 200, stored
    assert stored.json["configured"] is True and stored.json["last4"] == OTHER_KEY[-4:]
    assert key_file(comfy).read_text().strip() == OTHER_KEY
    assert key_status(comfy, prefix)["last4"] == OTHER_KEY[-4:]
    assert OTHER_KEY[:-4] not in stored.body
    removed = send(comfy, "DELETE", f"{prefix}/grok_imagine/key", {**PANEL, **headers}, b"{}")
    assert removed.status == 200, removed
    assert removed.json["configured"] is False and not key_file(comfy).exists()
    assert key_status(comfy, prefix)["configured"] is False
    limit = send(comfy, "POST", f"{prefix}/grok_imagine/spend/limit", {**PANEL, **headers},
                 b'{"daily_limit_usd": 5}')
    assert limit.status == 200 and limit.json["daily_limit_usd"] == 5.0, limit
    cleared = send(comfy, "POST", f"{prefix}/grok_imagine/spend/limit", {**PANEL, **headers},
                   b'{"daily_limit_usd": null}')
    assert cleared.status == 200 and cleared.json["daily_limit_usd"] is None, cleared


def test_no_answer_names_the_state_directory(comfy: ComfyServer, stored_key: str) -> None:
    for prefix in PREFIXES:
        for path in ("/grok_imagine/key", "/grok_imagine/spend", "/grok_imagine/pricing"):
            send(comfy, "GET", f"{prefix}{path}", {})
        send(comfy, "POST", f"{prefix}/grok_imagine/key", PANEL, b'{"key": "not a key"}')  # an error answer
    state = str(state_dir(comfy).resolve())
    assert ANSWERS and not [a for a in ANSWERS if state in a or str(comfy.base_dir) in a]


# ---- provenance in the PNG ---------------------------------------------------------------------------


def queue_as_the_browser_does(comfy: ComfyServer, prompt: dict[str, Any], workflow: dict[str, Any]) -> str:
    """POST /prompt with the body ComfyUI's frontend sends (api.queuePrompt): the UI workflow rides along
    in extra_data.extra_pnginfo, and Save Image embeds it in the PNG."""
    body = {"client_id": f"e2e-{uuid.uuid4()}", "prompt": prompt,
            "extra_data": {"extra_pnginfo": {"workflow": workflow}}}
    return comfy.post("/prompt", body)["prompt_id"]


def files_of(comfy: ComfyServer, entry: dict[str, Any], node_id: str) -> list[Path]:
    images = entry["outputs"][node_id]["images"]
    return [comfy.base_dir / image["type"] / image["subfolder"] / image["filename"] for image in images]


def key_fragments(key: str, width: int = 8) -> set[str]:
    return {key[i:i + width] for i in range(len(key) - width + 1)}


def test_the_png_save_image_writes_names_the_fal_requests_and_the_result_node_reloads_them(
    comfy: ComfyServer, object_info: dict[str, Any], fal: FakeFal, stored_key: str
) -> None:
    fal.reset()
    workflow = copy.deepcopy(load_workflow(PACK_ROOT / "example_workflows" / "grok_imagine_text_to_image.json"))
    grok = next(n for n in workflow["nodes"] if n["type"] == "FalGrokImagineImage")
    save = next(n for n in workflow["nodes"] if n["type"] == "SaveImage")
    text = grok["widgets_values"][0]
    grok["widgets_values"][1] = 6  # num_images: two requests at fal, 4 + 2
    grok["widgets_values"][6] = time.time_ns() % 2**48  # what "randomize" does before the queue
    prompt = to_api_prompt(workflow, object_info)
    entry = comfy.wait(queue_as_the_browser_does(comfy, prompt, workflow))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[-2000:]

    submits = list(fal.submits)
    assert sorted(s.json["num_images"] for s in submits) == [2, 4]
    # request order: the node's batch is request 1's four images, then request 2's two (the two submits go
    # out at once, so the order they reach fal in says nothing)
    in_request_order = [s.request_id for s in sorted(submits, key=lambda s: -s.json["num_images"])]
    saved = files_of(comfy, entry, str(save["id"]))
    assert len(saved) == 6
    for path in saved:
        with Image.open(path) as png:
            chunks = dict(png.text)  # type: ignore[attr-defined]
        embedded = json.loads(chunks["workflow"])
        node = next(n for n in embedded["nodes"] if n["id"] == grok["id"])
        assert node["properties"]["grok_imagine"] == [{
            "endpoint": "xai/grok-imagine-image",
            "request_ids": in_request_order,
            "revised_prompt": f"Revised: {text}",
        }], path.name
        others = [n for n in embedded["nodes"] if n["id"] != grok["id"]]
        assert not [n for n in others if "grok_imagine" in n.get("properties", {})]
        assert json.loads(chunks["prompt"])[str(grok["id"])]["inputs"]["num_images"] == 6
        raw = path.read_bytes().decode("latin-1")
        leaked = [f for f in key_fragments(stored_key) if f in raw or any(f in v for v in chunks.values())]
        assert not leaked, f"{path.name} holds part of the key: {leaked}"

    with Image.open(saved[0]) as png:  # what a user finds in the PNG is enough to reload the images
        embedded = json.loads(png.text["workflow"])  # type: ignore[attr-defined]
    record = next(n for n in embedded["nodes"] if n["id"] == grok["id"])["properties"]["grok_imagine"][0]
    reload = {
        "1": {"class_type": "FalGrokImagineResult",
              "inputs": {"request_id": record["request_ids"][0], "endpoint": record["endpoint"]}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    again, _ = comfy.run(reload)
    assert again["status"]["status_str"] == "success", json.dumps(again["status"])[-2000:]
    assert len(fal.submits) == 2, "the Result node paid again"
    reloaded = files_of(comfy, again, "2")
    assert len(reloaded) == 4
    for original, copy_ in zip(saved[:4], reloaded, strict=True):  # the same pixels as the first request's four
        with Image.open(original) as a, Image.open(copy_) as b:
            assert a.size == b.size and a.convert("RGB").tobytes() == b.convert("RGB").tobytes()


def test_each_png_of_a_prompt_list_batch_finds_its_own_request_under_its_list_index(
    comfy: ComfyServer, object_info: dict[str, Any], fal: FakeFal, stored_key: str
) -> None:
    fal.reset()
    workflow = copy.deepcopy(load_workflow(PACK_ROOT / "example_workflows" / "grok_imagine_prompt_list_batch.json"))
    prompts = next(n for n in workflow["nodes"] if n["type"] == "FalGrokImaginePromptList")["widgets_values"][0]
    prompts = [line.strip() for line in prompts.splitlines() if line.strip()]
    grok = next(n for n in workflow["nodes"] if n["type"] == "FalGrokImagineImage")
    save = next(n for n in workflow["nodes"] if n["type"] == "SaveImage")
    grok["widgets_values"][6] = time.time_ns() % 2**48  # what "randomize" does before the queue
    fal.faults.never_complete = True  # the requests finish when the test says, last item first
    try:
        prompt_id = queue_as_the_browser_does(comfy, to_api_prompt(workflow, object_info), workflow)
        assert fal.wait_for(lambda f: len(f.submits) == len(prompts), 60)
        by_prompt = {s.json["prompt"]: s.request_id for s in fal.submits}
        assert sorted(by_prompt) == sorted(prompts)
        for text in reversed(prompts):
            fal.complete_job(by_prompt[text])
            assert fal.wait_for(lambda f, rid=by_prompt[text]: rid in {r.request_id for r in f.requests_of("result")},
                                30), "the node never fetched a completed result"
    finally:
        fal.faults.never_complete = False
    entry = comfy.wait(prompt_id)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[-2000:]
    saved = files_of(comfy, entry, str(save["id"]))
    assert len(saved) == len(prompts)
    for index, path in enumerate(saved):  # one image per prompt: PNG k is item k's
        with Image.open(path) as png:
            embedded = json.loads(png.text["workflow"])  # type: ignore[attr-defined]
        record = next(n for n in embedded["nodes"] if n["id"] == grok["id"])["properties"]["grok_imagine"]
        assert [e["list_index"] for e in record] == list(range(len(prompts)))
        assert record[index]["request_ids"] == [by_prompt[prompts[index]]], path.name
        assert record[index]["revised_prompt"] == f"Revised: {prompts[index]}"
