"""The routes behind Settings > Grok Imagine (fal) and the price badge: the key never leaves, no other
page can change it, the price table and the spend come from Python."""

from __future__ import annotations

import json
import math
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from comfy_like import ROOT, TEST_KEY, pack_module, run_node
from fake_fal import FakeFal

routes = pack_module("nodes.routes")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage
PANEL = {"X-Grok-Imagine": "1"}  # what the pack's own Settings panel sends with every change


@pytest.fixture
async def pack_routes(fake_fal: FakeFal) -> AsyncIterator[aiohttp.ClientSession]:
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


def key_file() -> Path:
    return Path(os.environ["GROK_IMAGINE_STATE_DIR"]) / "fal_key"


async def test_the_price_table_is_served_from_python(pack_routes: aiohttp.ClientSession) -> None:
    async with pack_routes.get("/grok_imagine/pricing") as response:
        table = await response.json()
    assert table["as_of"] == "2026-12" and table["currency"] == "USD"
    image = table["nodes"]["FalGrokImagineImage"]
    assert (image["count_input"], image["choice_input"], image["max_images_per_request"]) == ("num_images", "tier", 4)
    assert image["choices"]["standard"] == {"endpoint": "xai/grok-imagine-image",
                                            "per_image": {"1k": 0.02, "2k": 0.02}, "per_reference": 0.0}
    assert image["choices"]["quality"]["per_image"] == {"1k": 0.05, "2k": 0.07}
    v2_edit = table["nodes"]["FalGrokImagine2Edit"]
    assert v2_edit["choice_input"] == "quality" and v2_edit["default_choice"] == "medium"
    assert v2_edit["choices"]["low"] == {"endpoint": "xai/grok-imagine-image/v2.0/edit",
                                         "per_image": {"1k": 0.04, "2k": 0.06}, "per_reference": 0.01}
    assert table["nodes"]["FalGrokImagineEdit"]["choices"]["standard"]["per_reference"] == 0.002
    assert set(table["nodes"]) == {"FalGrokImagineImage", "FalGrokImagineEdit", "FalGrokImagine2Image",
                                   "FalGrokImagine2Edit", "FalGrokImagineVideo", "FalGrokImagineReferenceVideo",
                                   "FalGrokImagineVideoEdit", "FalGrokImagineVideoExtend"}
    video = table["nodes"]["FalGrokImagineVideo"]
    assert video["kind"] == "video" and video["choices"]["grok-imagine-video-1.5"]["text"]["per_second"] == {
        "480p": 0.08, "720p": 0.14, "1080p": 0.25}
    assert "1080p" not in video["choices"]["grok-imagine-video-1.5"]["image"]["per_second"], "fal has no 1080p there"
    assert table["nodes"]["FalGrokImagineVideoExtend"]["rate"]["per_input_second"] == 0.01


async def test_the_key_status_names_its_source_and_never_returns_the_key(
    pack_routes: aiohttp.ClientSession,
) -> None:
    async with pack_routes.get("/grok_imagine/key") as response:
        text = await response.text()
    status = json.loads(text)
    assert status["configured"] is True and "FAL_KEY" in status["source"]
    assert status["last4"] == TEST_KEY[-4:]
    assert TEST_KEY[:-4] not in text and TEST_KEY.split(":")[1][:-4] not in text


async def test_no_route_tells_the_browser_an_absolute_path(pack_routes: aiohttp.ClientSession) -> None:
    state = os.environ["GROK_IMAGINE_STATE_DIR"]
    async with pack_routes.post("/grok_imagine/key", json={"key": TEST_KEY}, headers=PANEL) as response:
        stored = await response.text()
    answers = [stored]
    for path in ("/grok_imagine/key", "/grok_imagine/spend", "/grok_imagine/pricing"):
        async with pack_routes.get(path) as response:
            answers.append(await response.text())
    assert not [text for text in answers if state in text or str(Path.home()) in text]


async def test_a_key_set_in_the_settings_is_stored_privately_and_the_environment_wins(
    pack_routes: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored_key = "stored-id:stored-secret-99887766"
    async with pack_routes.post("/grok_imagine/key", json={"key": stored_key}, headers=PANEL) as response:
        body = await response.text()
    assert response.status == 200 and "stored-secret" not in body
    assert key_file().read_text().strip() == stored_key
    assert stat.S_IMODE(key_file().stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file().parent.stat().st_mode) == 0o700
    async with pack_routes.get("/grok_imagine/key") as response:
        status = await response.json()
    assert status["environment_wins"] is True and "FAL_KEY" in status["source"]

    monkeypatch.delenv("FAL_KEY")
    async with pack_routes.get("/grok_imagine/key") as response:
        status = await response.json()
    assert status["source"].startswith("the key file") and status["last4"] == "7766"

    async with pack_routes.delete("/grok_imagine/key", json={}, headers=PANEL) as response:
        status = await response.json()
    assert status["configured"] is False and not key_file().exists()


async def test_a_key_stored_in_the_settings_is_used_when_no_variable_is_set(
    fake_fal: FakeFal, pack_routes: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pack_routes.post("/grok_imagine/key", json={"key": TEST_KEY}, headers=PANEL) as response:
        assert response.status == 200
    monkeypatch.delenv("FAL_KEY")
    images, _, _ = await run_node(Node, prompt="a quiet harbour")
    assert images.shape[0] == 1


@pytest.mark.parametrize(("bad", "reason"), [
    ("", "empty"), ("   ", "empty"), ("two words", "space"), ("one\nkey:two", "line break"),
    ("caf\u00e9-key-1234567", "ASCII"), ("\u201ckey-1234567\u201d", "ASCII"), (None, "text"), (42, "text"),
])
async def test_a_malformed_key_is_refused_with_a_reason_and_never_stored(
    pack_routes: aiohttp.ClientSession, bad: object, reason: str
) -> None:
    async with pack_routes.post("/grok_imagine/key", json={"key": bad}, headers=PANEL) as response:
        body = await response.json()
    assert response.status == 400 and reason in body["error"] and "fal.ai/dashboard/keys" in body["error"]
    assert not key_file().exists()
    if isinstance(bad, str) and len(bad.strip()) > 4:
        assert bad.strip() not in body["error"]


CROSS_SITE = [
    ("another site", {"Origin": "http://evil.example", **PANEL}, "json", 403),
    ("a sandboxed frame or a local file", {"Origin": "null", **PANEL}, "json", 403),
    ("a rebound DNS name", {"Host": "evil.example:8188", "Origin": "http://evil.example:8188", **PANEL}, "json", 403),
    ("a form post", PANEL, "form", 415),
    ("a page without the panel's header", {}, "json", 403),
]


@pytest.mark.parametrize(("who", "headers", "body", "status"), CROSS_SITE, ids=[c[0] for c in CROSS_SITE])
@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_no_other_page_can_replace_or_delete_the_stored_key(
    pack_routes: aiohttp.ClientSession, who: str, headers: dict[str, str], body: str, status: int, method: str
) -> None:
    key_file().parent.mkdir(parents=True, exist_ok=True)
    key_file().write_text("owner-id:owner-secret-11223344\n")
    payload = {"json": {"key": "attacker-id:attacker-secret-55667788"}} if body == "json" else {
        "data": "key=attacker-id:attacker-secret-55667788"}
    async with pack_routes.request(method, "/grok_imagine/key", headers=headers, **payload) as response:
        answer = await response.json()
    assert response.status == status and answer["error"]
    assert key_file().read_text().strip() == "owner-id:owner-secret-11223344"


async def test_the_panel_on_comfyuis_own_origin_may_change_the_key(pack_routes: aiohttp.ClientSession) -> None:
    origin = str(pack_routes._base_url).rstrip("/")  # type: ignore[attr-defined]
    async with pack_routes.post("/grok_imagine/key", json={"key": TEST_KEY}, headers={"Origin": origin, **PANEL}) as r:
        assert r.status == 200


def test_the_state_directory_is_outside_anything_comfyui_serves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = pack_module("fal_transport.config")
    home = tmp_path / "home"
    comfy = home / "ComfyUI"  # where users usually have it
    served = [comfy, comfy / "output", comfy / "input", comfy / "temp", comfy / "user", ROOT, ROOT / "web"]
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GROK_IMAGINE_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    state = config.state_dir()
    assert state == home / ".local" / "state" / "grok-imagine-fal"
    assert not [folder for folder in served if state.is_relative_to(folder)]


async def spend_of(session: aiohttp.ClientSession) -> tuple[dict, str]:
    async with session.get("/grok_imagine/spend") as response:
        assert response.status == 200
        text = await response.text()
    return json.loads(text), text


async def test_the_spend_panel_shows_the_fal_balance_read_when_it_asks(
    fake_fal: FakeFal, pack_routes: aiohttp.ClientSession
) -> None:
    fake_fal.balance_usd = 12.5
    before = time.time()
    spend, _ = await spend_of(pack_routes)
    assert (spend["fal_balance_usd"], spend["fal_balance_status"], spend["fal_balance_error"]) == (12.5, "known", None)
    assert before <= spend["fal_balance_read_at"] <= time.time()
    assert spend["today_usd"] == 0 and spend["balance_floor_usd"] is None and spend["floor_source"] is None
    await run_node(Node, prompt="a quiet harbour")  # judged on the panel's reading, a few moments old
    fake_fal.balance_usd = 12.48
    spend, _ = await spend_of(pack_routes)  # after a run the panel asks again: read afresh
    assert spend["fal_balance_usd"] == 12.48 and spend["today_usd"] == 0.02
    assert [r.headers["authorization"] for r in fake_fal.requests_of("balance")] == [f"Key {TEST_KEY}"] * 2


async def test_without_a_key_the_panel_shows_no_balance(
    fake_fal: FakeFal, pack_routes: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAL_KEY")
    spend, _ = await spend_of(pack_routes)
    assert (spend["fal_balance_usd"], spend["fal_balance_status"], spend["fal_balance_error"]) == (None, "no_key", None)
    assert fake_fal.requests_of("balance") == []


async def test_a_key_fal_refuses_says_so_in_the_panel(
    fake_fal: FakeFal, pack_routes: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAL_KEY", "other-id:other-secret-98765432")
    spend, text = await spend_of(pack_routes)
    assert spend["fal_balance_usd"] is None and spend["fal_balance_status"] == "key_refused"
    assert "fal rejected the API key (HTTP 401) during reading the fal balance" in spend["fal_balance_error"]
    assert "other-secret" not in text


BALANCE_FAILURES = {
    "an answer that is not a number": {"balance_body": "{\"balance\": \"lots\"}"},
    "server errors": {"balance_status": [500] * 20},
    "no answer in time": {"balance_delay": 3.0},
}


@pytest.mark.parametrize("faults", BALANCE_FAILURES.values(), ids=BALANCE_FAILURES.keys())
async def test_a_balance_fal_does_not_give_shows_as_unavailable_in_bounded_time(
    fake_fal: FakeFal, pack_routes: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, faults: dict
) -> None:
    monkeypatch.setattr(pack_module("fal_transport.billing"), "READ_TIMEOUT_S", 0.5)
    fake_fal.faults.update(faults)
    started = time.monotonic()
    spend, text = await spend_of(pack_routes)
    assert time.monotonic() - started < 2.5
    assert spend["fal_balance_usd"] is None and spend["fal_balance_status"] == "unavailable"
    assert spend["fal_balance_error"] and TEST_KEY.split(":")[1] not in text
    assert spend["today_usd"] == 0  # the rest of the panel is there


async def test_the_balance_floor_is_stored_from_the_panel_like_the_daily_limit(
    pack_routes: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pack_routes.post("/grok_imagine/spend/limit", json={"daily_limit_usd": 5}, headers=PANEL) as r:
        assert r.status == 200
    async with pack_routes.post("/grok_imagine/spend/floor", json={"balance_floor_usd": 2.5}, headers=PANEL) as r:
        answer = await r.json()
    assert r.status == 200 and answer["balance_floor_usd"] == 2.5 and answer["floor_source"] == "Settings > Grok " \
        "Imagine (fal)" and answer["daily_limit_usd"] == 5
    settings = pack_module("fal_transport.state").Settings(Path(os.environ["GROK_IMAGINE_STATE_DIR"]))
    assert (settings.get("daily_limit_usd"), settings.get("balance_floor_usd")) == (5, 2.5)
    for headers, body, status in (({}, {"balance_floor_usd": 9}, 403), (PANEL, {"balance_floor_usd": -1}, 400),
                                  (PANEL, {"balance_floor_usd": "lots"}, 400), (PANEL, {}, 400)):
        async with pack_routes.post("/grok_imagine/spend/floor", json=body, headers=headers) as r:
            assert r.status == status and (await r.json())["error"]
    monkeypatch.setenv("GROK_IMAGINE_BALANCE_FLOOR_USD", "1")
    spend, _ = await spend_of(pack_routes)
    assert spend["balance_floor_usd"] == 1 and spend["floor_source"] == "the environment variable " \
        "GROK_IMAGINE_BALANCE_FLOOR_USD"
    monkeypatch.delenv("GROK_IMAGINE_BALANCE_FLOOR_USD")
    async with pack_routes.post("/grok_imagine/spend/floor", json={"balance_floor_usd": None}, headers=PANEL) as r:
        assert (await r.json())["balance_floor_usd"] is None
async def post_limit(session: aiohttp.ClientSession, raw_body: str) -> tuple[int, dict]:
    """POST /grok_imagine/spend/limit with this JSON text as the body, as the panel (or a script) sends it."""
    headers = {"Content-Type": "application/json", **PANEL}
    async with session.post("/grok_imagine/spend/limit", data=raw_body, headers=headers) as response:
        return response.status, await response.json()


async def stored_limit(session: aiohttp.ClientSession) -> object:
    async with session.get("/grok_imagine/spend") as response:
        return (await response.json())["daily_limit_usd"]


REFUSED_LIMITS = [
    ("a 400-digit integer", "1" + "0" * 400, "too large"),
    ("an integer past what JSON reads (4,300 digits)", "9" * 5000, "a number of US dollars"),
    ("1e309, which JSON reads as infinity", "1e309", "a number of US dollars"),
    ("Infinity", "Infinity", "a number of US dollars"),
    ("-Infinity", "-Infinity", "a number of US dollars"),
    ("NaN", "NaN", "a number of US dollars"),
    ("true", "true", "a number of US dollars"),
    ("a negative amount", "-0.01", "0 or more"),
    ("text", '"5"', "a number of US dollars"),
    ("a list", "[5]", "a number of US dollars"),
]


@pytest.mark.parametrize(("what", "raw", "reason"), REFUSED_LIMITS, ids=[r[0] for r in REFUSED_LIMITS])
async def test_a_daily_limit_that_is_no_amount_of_dollars_is_refused_and_the_old_one_stays(
    pack_routes: aiohttp.ClientSession, what: str, raw: str, reason: str
) -> None:
    assert (await post_limit(pack_routes, '{"daily_limit_usd": 5}'))[0] == 200
    status, answer = await post_limit(pack_routes, '{"daily_limit_usd": ' + raw + "}")
    assert status == 400, (what, answer)
    assert "daily_limit_usd" in answer["error"] and reason in answer["error"], answer
    assert "null to clear" in answer["error"] and len(answer["error"]) < 200, answer
    assert await stored_limit(pack_routes) == 5


@pytest.mark.parametrize("raw", ["-0", "-0.0", "-0e5"])
async def test_a_daily_limit_of_minus_zero_is_a_limit_of_zero(pack_routes: aiohttp.ClientSession, raw: str) -> None:
    status, answer = await post_limit(pack_routes, '{"daily_limit_usd": ' + raw + "}")
    assert status == 200 and answer["daily_limit_usd"] == 0
    assert math.copysign(1, answer["daily_limit_usd"]) == 1, "shown as -$0.00"
    assert math.copysign(1, await stored_limit(pack_routes)) == 1


@pytest.mark.parametrize("path", ["/grok_imagine/spend/limit", "/grok_imagine/key"])
async def test_a_body_nested_too_deep_to_read_is_refused_like_any_unreadable_body(
    pack_routes: aiohttp.ClientSession, path: str
) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    async with pack_routes.post(path, data=nested, headers={"Content-Type": "application/json", **PANEL}) as response:
        answer = await response.json()
    assert response.status == 400 and answer["error"], answer
    assert await stored_limit(pack_routes) is None and not key_file().exists()
