"""Shared fixtures: the pack loaded as ComfyUI loads it, the project's fake fal server, and ComfyUI's host modules
stood in (`host`)."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from comfy_like import TEST_KEY, load_pack, pack_module
from fake_comfy import FakeHost, fake_comfy
from fake_comfy_video import VideoFromComponents, VideoFromFile
from fake_fal import FakeFal


@pytest.fixture(scope="session")
def pack() -> ModuleType:
    return load_pack()


@pytest.fixture(scope="session")
def fake_fal_server() -> Iterator[FakeFal]:
    server = FakeFal(accepted_keys={TEST_KEY}).start()
    yield server
    server.stop()


@pytest.fixture
def fake_fal(fake_fal_server: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeFal]:
    """A clean fake fal, with the pack pointed at it and a valid key in FAL_KEY."""
    fake_fal_server.reset()
    for name in ("FAL_KEY_ID", "FAL_KEY_SECRET", "GROK_IMAGINE_QUEUE_TIMEOUT", "GROK_IMAGINE_TIMEOUT",
                 "GROK_IMAGINE_DOWNLOAD_TIMEOUT", "GROK_IMAGINE_DAILY_LIMIT_USD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FAL_KEY", TEST_KEY)
    monkeypatch.setenv("FAL_QUEUE_BASE_URL", fake_fal_server.url)
    monkeypatch.setenv("FAL_REST_BASE_URL", fake_fal_server.url)
    monkeypatch.setenv("GROK_IMAGINE_STATE_DIR", str(tmp_path / "state"))
    yield fake_fal_server


@pytest.fixture
def fal_http(fake_fal: FakeFal) -> Iterator[httpx.Client]:
    """A plain HTTP client on the clean fake fal, with the valid key: how the fake's self-checks talk to it."""
    with httpx.Client(base_url=fake_fal.url, headers={"Authorization": f"Key {TEST_KEY}"}, timeout=10) as client:
        yield client


@pytest.fixture(autouse=True)
def _capture_pack_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="grok_imagine_fal")


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    """Every test starts as a fresh ComfyUI process would: no cache, claim or client left by another."""
    process_state = pack_module("fal_transport.process_state")
    process_state.reset()
    yield
    process_state.reset()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[FakeHost]:
    """ComfyUI's host modules stood in (`fake_comfy`: progress, Cancel, the temp folder), with its VIDEO types
    (comfy_api.latest.InputImpl)."""
    with fake_comfy(tmp_path / "temp") as comfy:
        sys.modules["comfy_api.latest"].InputImpl = types.SimpleNamespace(  # type: ignore[attr-defined]
            VideoFromFile=VideoFromFile, VideoFromComponents=VideoFromComponents)
        yield comfy
