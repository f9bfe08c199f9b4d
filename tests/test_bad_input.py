"""Bad input gets a clear error naming the input and the fix, before anything is sent or allocated."""

from __future__ import annotations

import asyncio
import base64
import io
import threading

import pytest
import torch
from comfy_like import pack_module, run_node
from fake_comfy import InterruptProcessingException, fake_comfy
from fake_fal import FakeFal
from PIL import EpsImagePlugin, Image

errors = pack_module("fal_transport.errors")
decode = pack_module("media.codec")
output_batch = pack_module("media.output_batch")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage
Node2 = pack_module("nodes.text_to_image").FalGrokImagine2Image
Edit = pack_module("nodes.edit").FalGrokImagineEdit


async def test_a_prompt_with_a_lone_surrogate_names_the_prompt_and_sends_nothing(fake_fal: FakeFal) -> None:
    with pytest.raises(errors.InvalidInputError) as caught:
        await run_node(Node, prompt="a fox \ud83e in the snow")
    assert caught.value.field == "prompt" and "broken character at position 7" in str(caught.value)
    assert fake_fal.requests == []


async def test_an_empty_image_on_the_edit_node_names_the_input(fake_fal: FakeFal) -> None:
    with pytest.raises(errors.InvalidInputError) as caught:
        await run_node(Edit, image=torch.zeros((1, 0, 0, 3)), prompt="make it night")
    assert caught.value.field == "image" and "empty image (0x0 pixels)" in str(caught.value)
    assert fake_fal.requests == []


@pytest.mark.parametrize("node", ["FalGrokImagineImage", "FalGrokImagine2Image", "FalGrokImagineEdit",
                                  "FalGrokImagine2Edit"])
async def test_a_prompt_over_8000_characters_is_refused_before_anything_is_sent_on_every_node(
    fake_fal: FakeFal, node: str
) -> None:
    node_class = pack_module("nodes.registry").NODE_CLASS_MAPPINGS[node]
    image = {"image": torch.full((1, 32, 32, 3), 0.5)} if "Edit" in node else {}
    with pytest.raises(errors.InvalidInputError, match="8,001 characters long; fal takes at most 8,000") as caught:
        await run_node(node_class, prompt="x" * 8001, **image)
    assert caught.value.field == "prompt" and fake_fal.requests == []
    images, _, _ = await run_node(node_class, prompt="x" * 8000, **image)
    assert images.shape[0] == 1


def png_data_uri(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 7).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def test_a_result_that_would_need_gigabytes_is_refused_before_the_batch_is_allocated(fake_fal: FakeFal) -> None:
    big = png_data_uri(6000, 6000)  # 36 MP each: under the per-image limit, 144 MP for four of them
    fake_fal.faults.result_images_override = [{"url": big, "width": 6000, "height": 6000}] * 4
    with pytest.raises(errors.ResultError) as caught:
        await run_node(Node, prompt="a lighthouse", num_images=4)
    message = str(caught.value)
    assert "4 x 6000x6000" in message and "over the node's limit of 100 MP" in message
    assert fake_fal.submits[0].request_id in message


def test_only_the_formats_fal_returns_are_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[bytes] = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(b"eps"))
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(decode.ImageDecodeError, match="not an image fal makes"):
        decode.decode_image(eps)
    assert opened == []  # Pillow's EPS plugin (which runs Ghostscript) never saw the bytes
    gif = io.BytesIO()
    Image.new("P", (4, 4)).save(gif, "GIF")
    assert decode.decode_image(gif.getvalue()).file_format == "gif"


async def test_a_cancelled_node_leaves_no_decode_running_behind_it(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    running: list[int] = []
    lock = threading.Lock()
    gate = threading.Event()  # every decode holds until the test opens it
    real_decode = output_batch.decode_image

    def held_decode(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        with lock:
            running.append(1)
        try:
            gate.wait(10)
            return real_decode(*args, **kwargs)
        finally:
            with lock:
                running.pop()

    monkeypatch.setattr(output_batch, "decode_image", held_decode)
    with fake_comfy(tmp_path) as host:
        task = asyncio.ensure_future(run_node(Node, prompt="a lighthouse", num_images=4, unique_id="4"))
        left_running: list[int] = []  # decodes still running the moment the node returned
        task.add_done_callback(lambda _: left_running.append(len(running)))
        while not running:  # a decode has started, and cannot end before the gate opens
            await asyncio.sleep(0.01)
        host.interrupted = True  # the user's Cancel, while that decode runs
        while not host.cancels_seen:  # the node has seen the Cancel
            await asyncio.sleep(0.01)
        await asyncio.wait([task], timeout=1.0)  # a node that does not wait for its decodes returns at once
        assert not task.done(), "the node returned while a decode was still running"
        gate.set()
        with pytest.raises(InterruptProcessingException):
            await task
    assert left_running == [0]  # every decode had ended by the time the node returned
