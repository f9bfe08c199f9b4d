"""Long runs: the pack holds nothing per prompt, so a ComfyUI that runs thousands of prompts stays flat.

What may grow is bounded by design and named here: the sizes remembered per combination of settings
(`SIZES_KEPT`), the uploads of the last hour (`UPLOADS_KEPT`), and, outside Python's heap, SQLite's page
cache of the state database (~2 MB at most). The figures measured in the real ComfyUI are in
tests/e2e/test_soak.py and README (Tests inside the real ComfyUI).
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter

import pytest
from comfy_like import PACK_MODULE, pack_module, run_node
from fake_fal import FakeFal

process_state = pack_module("fal_transport.process_state")
storage = pack_module("fal_transport.storage")
credentials = pack_module("fal_transport.credentials")
config = pack_module("fal_transport.config")
TextToImage = pack_module("nodes.text_to_image").FalGrokImagineImage


def run_prompt(number: int) -> None:
    """One prompt as ComfyUI runs it: the node in a fresh event loop, ended by `asyncio.run`."""
    asyncio.run(run_node(TextToImage, prompt=f"long run {number}", seed=number, unique_id="7"))


def live_objects() -> Counter[str]:
    """Objects alive now, by type: every type of the pack, and what a prompt opens (loops, clients, tasks,
    database cursors)."""
    gc.collect()
    watched = ("asyncio.", "httpx.", "httpcore.", "concurrent.futures.", "threading.", "sqlite3.")
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{getattr(kind, '__module__', '')}.{kind.__qualname__}"
        if name.startswith(PACK_MODULE) or name.startswith(watched):
            counts[name] += 1
    return counts


def test_prompt_after_prompt_nothing_of_a_prompt_stays_behind(fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.setattr(fake_fal, "run_time", 0.0)
    for number in range(5):  # the first prompts start what lives for the process (background loop, caches)
        run_prompt(number)
    before = live_objects()
    for number in range(5, 25):
        run_prompt(number)
    after = live_objects()
    assert len(fake_fal.submits) == 25
    grown = {name: f"{before[name]} -> {count}" for name, count in after.items() if count > before[name]}
    assert grown == {}, f"alive after 20 more prompts: {grown}"
    layers = process_state.current().layers
    assert layers[f"{PACK_MODULE}.nodes.list_batch"] == {}  # no list batch left running
    assert len(layers[f"{PACK_MODULE}.media.output_batch"]) == 1  # one size remembered for these settings
    assert open_clients() == 1  # the background loop's


def _upload(data: bytes) -> str:
    creds = credentials.resolve_credentials(config.key_file())
    return asyncio.run(storage.upload(creds, data, content_type="image/png", file_name="reference.png"))


def test_uploads_past_the_kept_count_are_forgotten_oldest_first(fake_fal: FakeFal,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "UPLOADS_KEPT", 3)
    urls = [_upload(bytes([number]) * 64) for number in range(5)]
    assert [url for url, _ in process_state.current().uploads.values()] == urls[2:]
    assert _upload(bytes([4]) * 64) == urls[4] and len(fake_fal.uploads) == 5  # still remembered: not sent again
    _upload(bytes([0]) * 64)
    assert len(fake_fal.uploads) == 6  # forgotten: uploaded again


def test_uploads_older_than_the_hour_they_are_kept_are_forgotten(fake_fal: FakeFal) -> None:
    first, second = _upload(b"first" * 20), _upload(b"second" * 20)
    uploads = process_state.current().uploads
    for digest, (url, at) in list(uploads.items()):  # both uploaded more than an hour ago
        uploads[digest] = (url, at - storage.UPLOAD_CACHE_S - 1)
    third = _upload(b"third" * 20)
    assert [url for url, _ in uploads.values()] == [third]
    assert len({first, second, third}) == 3


def open_clients() -> int:
    """How many of the pack's HTTP clients are open now (one per event loop that holds a lease)."""
    return sum(1 for entry in process_state.current().loops.values() if not entry.client.is_closed)
