"""Living in ComfyUI: progress on the node, Cancel that stops fal, time limits, previews, key routes.

ComfyUI's modules are replaced by small stand-ins (tests/fake_comfy.py) exposing only the surface
the pack uses; the real host is exercised in tests/e2e/.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from comfy_like import TEST_KEY, pack_module, run_node, run_node_raw
from fake_comfy import FakeHost, InterruptProcessingException, fake_comfy
from fake_fal import FakeFal

text_to_image = pack_module("nodes.text_to_image")
errors = pack_module("fal_transport.errors")
routes = pack_module("nodes.routes")
Node = text_to_image.FalGrokImagineImage

INPUTS = {"prompt": "a quiet harbour", "num_images": 2, "aspect_ratio": "1:1", "resolution": "1k",
          "output_format": "jpeg", "sync_mode": False, "seed": 0, "unique_id": "7"}


@pytest.fixture
def comfy(tmp_path: Path) -> Iterator[FakeHost]:
    with fake_comfy(tmp_path / "temp") as host:
        yield host


async def test_the_node_shows_queue_position_running_time_logs_and_download(
    fake_fal: FakeFal, comfy: FakeHost
) -> None:
    fake_fal.faults.queue_time = 0.6
    fake_fal.faults.run_time = 1.2
    await run_node(Node, **INPUTS)
    texts = comfy.texts_for("7")
    assert any(t.startswith("Queued at fal, position") for t in texts)
    assert any(t.startswith("Running at fal (1s)") for t in texts), texts
    assert any("Generating image" in t for t in texts)
    assert any(t.startswith("Downloading 2 images") for t in texts)
    assert texts[-1].startswith("Done: 2 images") and "Revised prompt: Revised: a quiet harbour" in texts[-1]
    request_id = fake_fal.submits[-1].request_id
    assert all(request_id in t for t in texts)


async def test_the_progress_bar_moves_and_ends_full(fake_fal: FakeFal, comfy: FakeHost) -> None:
    await run_node(Node, **INPUTS)
    values = [value for value, _, _ in comfy.bar_updates]
    assert values == sorted(values) and values[-1] == 100
    assert {node_id for _, _, node_id in comfy.bar_updates} == {"7"}


async def test_progress_text_from_fal_is_shown_as_text_not_html(fake_fal: FakeFal, comfy: FakeHost) -> None:
    await run_node(Node, **{**INPUTS, "prompt": "<img src=x onerror=alert(1)>"})
    assert "<img" not in comfy.progress_texts[-1][1] and "&lt;img" in comfy.progress_texts[-1][1]


async def test_cancel_stops_the_node_within_a_second_and_cancels_at_fal(fake_fal: FakeFal, comfy: FakeHost) -> None:
    fake_fal.faults.never_complete = True
    task = asyncio.ensure_future(run_node(Node, **INPUTS))
    while not fake_fal.submits:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    comfy.interrupted = True
    pressed = time.monotonic()
    with pytest.raises(InterruptProcessingException):
        await task
    assert time.monotonic() - pressed < 1.0
    assert fake_fal.cancels == [fake_fal.submits[-1].request_id]


async def test_cancel_while_downloading_ends_the_node_as_an_interruption(fake_fal: FakeFal, comfy: FakeHost) -> None:
    fake_fal.faults.image_trickle = 0.2
    task = asyncio.ensure_future(run_node(Node, **INPUTS))
    while not fake_fal.requests_of("file"):
        await asyncio.sleep(0.02)
    comfy.interrupted = True
    pressed = time.monotonic()
    with pytest.raises(InterruptProcessingException):
        await task
    assert time.monotonic() - pressed < 1.0


async def test_independent_nodes_in_one_event_loop_wait_concurrently(fake_fal: FakeFal) -> None:
    # As ComfyUI runs awaiting nodes: every request is in flight before the first one completes.
    fake_fal.faults.run_time = 0.8
    await asyncio.gather(*(run_node(Node, **{**INPUTS, "num_images": 1}) for _ in range(4)))
    submit_times = sorted(r.time for r in fake_fal.submits)
    first_result = min(r.time for r in fake_fal.requests_of("result"))
    assert len(submit_times) == 4 and submit_times[-1] < first_result


@pytest.mark.parametrize(
    ("variable", "fault"),
    [("GROK_IMAGINE_QUEUE_TIMEOUT", "stuck_in_queue"), ("GROK_IMAGINE_TIMEOUT", "never_complete")],
)
async def test_a_passed_time_limit_cancels_at_fal_and_names_the_limit_and_request(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch, variable: str, fault: str
) -> None:
    monkeypatch.setenv(variable, "0.5")
    setattr(fake_fal.faults, fault, True)
    started = time.monotonic()
    with pytest.raises(errors.FalTimeoutError) as caught:
        await run_node(Node, **INPUTS)
    assert time.monotonic() - started < 2.0
    request_id = fake_fal.submits[-1].request_id
    assert variable in str(caught.value) and request_id in str(caught.value)
    assert fake_fal.cancels == [request_id]


async def test_a_bad_time_limit_setting_is_named_before_anything_is_sent(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROK_IMAGINE_TIMEOUT", "ten minutes")
    with pytest.raises(errors.FalConfigError, match="GROK_IMAGINE_TIMEOUT"):
        await run_node(Node, **INPUTS)
    assert fake_fal.requests == []


async def test_previews_appear_on_the_node_from_comfys_temp_folder(fake_fal: FakeFal, comfy: FakeHost) -> None:
    returned = await run_node_raw(Node, **INPUTS)
    previews = returned["ui"]["images"]
    assert len(previews) == 2 and all(p["type"] == "temp" for p in previews)
    for preview in previews:
        assert (comfy.temp_dir / preview["subfolder"] / preview["filename"]).stat().st_size > 0
    assert returned["ui"]["text"] == ["Revised: a quiet harbour"]


async def test_without_comfyui_the_node_still_runs_and_simply_shows_no_previews(fake_fal: FakeFal) -> None:
    returned = await run_node_raw(Node, **INPUTS)
    assert returned["ui"]["images"] == []
    assert returned["result"][0].shape[0] == 2


# ---- the key setting and the price table, served to the web extension ----


@pytest.fixture
async def pack_routes(fake_fal: FakeFal) -> aiohttp.ClientSession:
    table = web.RouteTableDef()
    routes.add_routes(table)
    app = web.Application()
    app.add_routes(table)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        yield session
    await runner.cleanup()


async def test_the_price_table_is_served_from_python(pack_routes: aiohttp.ClientSession) -> None:
    async with pack_routes.get("/grok_imagine/pricing") as response:
        table = await response.json()
    entry = table["nodes"]["FalGrokImagineImage"]
    assert (entry["count_input"], entry["tier_input"], entry["max_images_per_request"]) == ("num_images", "tier", 4)
    assert entry["tiers"]["standard"] == {"endpoint": "xai/grok-imagine-image", "price_per_image": 0.02}
    assert entry["tiers"]["quality"]["endpoint"] == "xai/grok-imagine-image/quality/text-to-image"
    assert set(table["nodes"]) == {"FalGrokImagineImage", "FalGrokImagineEdit"}


async def test_the_key_status_names_its_source_and_never_returns_the_key(
    pack_routes: aiohttp.ClientSession,
) -> None:
    async with pack_routes.get("/grok_imagine/key") as response:
        text = await response.text()
    status = json.loads(text)
    assert status["configured"] is True and "FAL_KEY" in status["source"]
    assert status["last4"] == TEST_KEY[-4:]
    assert TEST_KEY[:-4] not in text and TEST_KEY.split(":")[1][:-4] not in text


async def test_a_key_set_in_the_settings_is_stored_privately_and_the_environment_wins(
    pack_routes: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored_key = "stored-id:stored-secret-99887766"
    async with pack_routes.post("/grok_imagine/key", json={"key": stored_key}) as response:
        body = await response.text()
    assert response.status == 200 and "stored-secret" not in body
    key_file = Path(os.environ["GROK_IMAGINE_STATE_DIR"]) / "fal_key"
    assert key_file.read_text().strip() == stored_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    async with pack_routes.get("/grok_imagine/key") as response:
        status = await response.json()
    assert status["environment_wins"] is True and "FAL_KEY" in status["source"]

    monkeypatch.delenv("FAL_KEY")
    async with pack_routes.get("/grok_imagine/key") as response:
        status = await response.json()
    assert status["source"].startswith("key file") and status["last4"] == "7766"

    async with pack_routes.delete("/grok_imagine/key") as response:
        status = await response.json()
    assert status["configured"] is False and not key_file.exists()


async def test_a_key_stored_in_the_settings_is_used_when_no_variable_is_set(
    fake_fal: FakeFal, pack_routes: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pack_routes.post("/grok_imagine/key", json={"key": TEST_KEY}) as response:
        assert response.status == 200
    monkeypatch.delenv("FAL_KEY")
    images, _, _ = await run_node(Node, **{**INPUTS, "num_images": 1})
    assert images.shape[0] == 1


@pytest.mark.parametrize("bad", ["", "   ", "two words", None, 42])
async def test_a_malformed_key_is_refused_with_a_reason(pack_routes: aiohttp.ClientSession, bad: object) -> None:
    async with pack_routes.post("/grok_imagine/key", json={"key": bad}) as response:
        body = await response.json()
    assert response.status == 400 and "fal.ai/dashboard/keys" in body["error"]


def test_the_state_directory_is_outside_anything_comfyui_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    config = pack_module("fal_transport.config")
    monkeypatch.delenv("GROK_IMAGINE_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert config.state_dir() == Path.home() / ".local" / "state" / "grok-imagine-fal"
