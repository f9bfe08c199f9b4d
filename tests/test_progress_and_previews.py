"""What the node shows in ComfyUI while it runs and after: its queue position, running time, fal's logs and the
download in its progress text (which reads as written in every frontend), a bar that only moves forward and ends
full, and previews from ComfyUI's temp folder (none, and no failure, without ComfyUI).

ComfyUI's modules are replaced by small stand-ins (tests/fake_comfy.py) exposing only the surface
the pack uses; the real host is exercised in tests/e2e/.
"""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from comfy_like import pack_module, run_node, run_node_raw
from fake_comfy import FakeHost, fake_comfy
from fake_fal import FakeFal

text_to_image = pack_module("nodes.text_to_image")
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


class _AsHtml(HTMLParser):
    """What frontend 1.27 makes of progress text: it renders it as HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text += data


async def test_progress_text_reads_as_written_in_every_frontend(fake_fal: FakeFal, comfy: FakeHost) -> None:
    prompt = "<img src=x onerror=alert(1)> <b>bold</b> &amp; Tom & Jerry [[a link|https://example.com]]"
    await run_node(Node, **{**INPUTS, "prompt": prompt})
    sent = comfy.progress_texts[-1][1]
    visible = sent.replace("\u2060", "")  # the word joiners it carries are invisible
    # frontend 1.5x escapes the text itself and shows every character sent (its [[label|url]] links excepted)
    assert f"Revised prompt: Revised: {prompt}" in visible and "[[" not in sent
    # frontend 1.27 renders it as HTML: no tag, no entity, the same text
    as_html = _AsHtml()
    as_html.feed(sent)
    as_html.close()
    assert as_html.tags == [] and as_html.text.replace("\u2060", "") == visible


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
