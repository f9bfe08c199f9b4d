"""What every e2e test stands on: a ComfyUI checkout to run, the fake fal, and the real ComfyUI with the pack.

Every test here skips, with the reason, unless COMFYUI_DIR names a ComfyUI checkout with its venv beside it (or
COMFYUI_VENV); see README: e2e tests.

`fal` and `comfy` are one per module, shaped by two module-level settings the fixtures read:

- ``FAL``: `FakeFal`'s keyword arguments (the defaults: the test key, 0.3 s per job);
- ``COMFY``: ``key`` (ComfyUI's FAL_KEY; the test key unless given, "" for none), ``env`` (more variables for
  ComfyUI, or overrides of `pack_env`'s), ``open_files_limit`` (ComfyUI's RLIMIT_NOFILE), ``never_logged``
  (keys besides those the fake accepts that must never reach ComfyUI's log).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from comfy_host import ComfyServer, comfy_paths, pack_env, start_comfy
from comfy_like import TEST_KEY
from fake_fal import FakeFal

NO_COMFYUI = "COMFYUI_DIR is not set to a ComfyUI checkout with its venv (see README: e2e tests)"


@pytest.fixture(scope="session", autouse=True)
def comfyui() -> tuple[Path, Path]:
    """(ComfyUI's folder, its venv's python); every e2e test skips without them."""
    paths = comfy_paths()
    if paths is None:
        pytest.skip(NO_COMFYUI)
    return paths


@pytest.fixture(scope="module")
def fal(request: pytest.FixtureRequest) -> Iterator[FakeFal]:
    """The fake fal of this module, started with its ``FAL`` settings."""
    settings: dict[str, Any] = {"accepted_keys": {TEST_KEY}, "run_time": 0.3, **getattr(request.module, "FAL", {})}
    server = FakeFal(**settings).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def comfy(comfyui: tuple[Path, Path], fal: FakeFal, request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyServer]:
    """The real ComfyUI of this module (its ``COMFY`` settings), the pack linked in and pointed at `fal`. Once it
    has stopped, no key may be in its log."""
    settings: dict[str, Any] = getattr(request.module, "COMFY", {})
    base = tmp_path_factory.mktemp(f"comfy-{request.module.__name__.rpartition('.')[2]}")
    env = pack_env(fal.url, base, settings.get("key", TEST_KEY), **settings.get("env", {}))
    server = start_comfy(*comfyui, base, env, open_files_limit=settings.get("open_files_limit"))
    yield server
    server.stop()
    log = server.log()
    for key in {*(fal.accepted_keys or ()), *settings.get("never_logged", ())}:
        assert key.split(":")[1] not in log, "a fal key appeared in ComfyUI's log"


@pytest.fixture(scope="module")
def object_info(comfy: ComfyServer) -> dict[str, Any]:
    """What ComfyUI says of every node (`/object_info`), as the frontend reads it."""
    return comfy.get("/object_info")
