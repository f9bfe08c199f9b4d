"""What the rows share: statistics, the report, the pack against a fake fal, prompts run as ComfyUI runs
them (a fresh event loop each, the node awaited as its executor awaits it, ComfyUI's host modules stood
in by `tests/fake_comfy.py` so that progress and previews go out as in ComfyUI), the images, and the
minimal client the pack is compared with."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import io
import itertools
import json
import math
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from comfy_like import TEST_KEY, pack_module, run_node, run_node_over_list  # noqa: E402,F401
from fake_comfy import fake_comfy  # noqa: E402
from fake_fal import STREAM_TICK_S, FakeFal, fake_image_size, render_image  # noqa: E402,F401

T = TypeVar("T")
ASPECT_RATIO = "1:1"
ENDPOINT = "xai/grok-imagine-image"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p95(values: Sequence[float]) -> float:
    """Nearest rank: the maximum below 20 values."""
    return sorted(values)[max(0, math.ceil(0.95 * len(values)) - 1)]


def timed(work: Callable[..., Any], *args: Any) -> float:
    start = time.perf_counter()
    work(*args)
    return time.perf_counter() - start


def in_ms(name: str, seconds: Sequence[float]) -> dict[str, float]:
    return {f"{name} ms": median(seconds) * 1e3, f"{name} p95": p95(seconds) * 1e3}


def _cell(value: Any, header: str) -> str:
    if isinstance(value, float):
        return f"{value:.2f}x" if header.endswith(" x") else f"{value:.1f}"
    return "-" if value is None else str(value)


class Report:
    """What a run found: one table per row of the benchmark (printed as it comes), and every figure that
    has a target (`check`), for the summary and the chart."""

    def __init__(self) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {}
        self.checks: list[dict[str, Any]] = []

    def check(self, row: str, value: float, target: float, unit: str) -> str:
        self.checks.append({"row": row, "value": value, "target": target, "unit": unit, "met": value <= target})
        return "met" if value <= target else "MISSED"

    def table(self, key: str, title: str, rows: list[dict[str, Any]], note: str = "") -> None:
        """Columns: the rows' keys, lists left out (they go to the JSON only). A header ending in " x"
        holds a ratio; other floats are milliseconds."""
        self.tables[key] = rows
        headers = list(dict.fromkeys(k for r in rows for k, v in r.items() if not isinstance(v, list)))
        cells = [headers] + [[_cell(r.get(h), h) for h in headers] for r in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
        print(f"\n{title}")
        for n, row in enumerate(cells):
            print("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
            if n == 0:
                print("  " + "  ".join("-" * w for w in widths))
        for line in note.splitlines():
            print(f"  {line}")
        sys.stdout.flush()


def fresh_pack(url: str, state_root: Path, group: str) -> None:
    """Point the pack at the fake at `url`, with a state folder of the group's own, and forget all the
    pack kept (`process_state.reset`): each group of measurements starts as a fresh ComfyUI process."""
    for name in ("FAL_KEY_ID", "FAL_KEY_SECRET", "GROK_IMAGINE_QUEUE_TIMEOUT", "GROK_IMAGINE_TIMEOUT",
                 "GROK_IMAGINE_DOWNLOAD_TIMEOUT", "GROK_IMAGINE_DAILY_LIMIT_USD"):
        os.environ.pop(name, None)
    (state_root / group).mkdir(parents=True, exist_ok=True)
    os.environ.update(FAL_KEY=TEST_KEY, FAL_QUEUE_BASE_URL=url, FAL_REST_BASE_URL=url,
                      GROK_IMAGINE_STATE_DIR=str(state_root / group))
    pack_module("fal_transport.process_state").reset()


@contextlib.contextmanager
def host_and_state() -> Iterator[Path]:
    """A temporary state root, and ComfyUI's host modules stood in. The pack is loaded first, as
    ComfyUI loads it at start (the stand-in `server` has no routes for it to register)."""
    pack_module("fal_transport.process_state")
    with tempfile.TemporaryDirectory(prefix="grok-bench-") as tmp, fake_comfy(Path(tmp) / "comfy-temp"):
        yield Path(tmp)
    pack_module("fal_transport.process_state").reset()


_PROMPT_WORKER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prompt_worker")


def run_prompt(work: Callable[..., Awaitable[T]], *args: Any) -> tuple[float, float, T]:
    """One ComfyUI prompt: `work(*args)` in a fresh event loop, on a thread of its own as ComfyUI's
    `prompt_worker` runs them (in the main thread, `asyncio.run` would also install a SIGINT handler,
    and restoring it costs a `repr` of the result, some 20 ms for a 4-image tensor). Monotonic start
    and end, and what it returned."""

    def prompt() -> tuple[float, float, T]:
        start = time.monotonic()
        value = asyncio.run(work(*args))  # type: ignore[arg-type]
        return start, time.monotonic(), value

    return _PROMPT_WORKER.submit(prompt).result()


_numbers = itertools.count(1)


def new_prompt() -> str:
    """A prompt never sent before (nothing is resumed from the journal)."""
    return f"benchmark prompt {next(_numbers)}: a lighthouse at dusk"


def node_class() -> type:
    return pack_module("nodes.text_to_image").FalGrokImagineImage  # type: ignore[no-any-return]


def node_inputs(node_id: str, **inputs: Any) -> dict[str, Any]:
    """What ComfyUI passes the node: its widgets, and the hidden node id and workflow."""
    return {"prompt": new_prompt(), "num_images": 1, "aspect_ratio": ASPECT_RATIO, "resolution": "1k",
            "output_format": "jpeg", "sync_mode": False, "seed": 0, "unique_id": node_id,
            "extra_pnginfo": {"workflow": {"nodes": [{"id": int(node_id)}]}}, **inputs}


async def call_node(num_images: int = 1, output_format: str = "jpeg", resolution: str = "1k",
                    node_id: str = "1") -> tuple[Any, ...]:
    """The text-to-image node's outputs: images, revised_prompt, image_urls."""
    return await run_node(node_class(), **node_inputs(node_id, num_images=num_images, output_format=output_format,
                                                      resolution=resolution))


def request_id_of(image_urls: str) -> str:
    return image_urls.splitlines()[0].split("/files/")[1].split("/")[0]


def seen_by_fake(fake: FakeFal, request_id: str) -> dict[str, float]:
    """On the fake's clock (monotonic, this process): the submit's arrival, the generation (queue + run
    time) and the first result request, when the client had noticed completion."""
    job = fake.jobs[request_id]
    results = [r.time for r in list(fake.requests) if r.request_id == request_id and r.kind == "result"]
    return {"submit_at": job.submitted_at, "generation": job.queue_time + job.run_time, "result_at": min(results)}


def fake_images(count: int, output_format: str, resolution: str) -> list[bytes]:
    """The bytes the fake serves for a `count`-image request (flat colour fields and a ramp)."""
    width, height = fake_image_size(ASPECT_RATIO, resolution)
    return [render_image(width, height, output_format, i) for i in range(count)]


def textured_jpeg(resolution: str, index: int) -> bytes:
    """A JPEG (quality 90) with a photograph's detail, as the fake serves with `photo_like_images`: about 300 KB
    at 1k like Grok's 1k JPEGs, and several times slower to decode than the fake's flat images."""
    return render_image(*fake_image_size(ASPECT_RATIO, resolution), "jpeg", index, photo_like=True)


def plain_decode(blobs: Sequence[bytes]) -> list[np.ndarray]:
    """What any Pillow user writes, one image after the other: open, convert to RGB, view as an array."""
    return [np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")) for blob in blobs]


def to_tensor(blobs: Sequence[bytes]) -> torch.Tensor:
    """Plain Pillow, then one float32 batch, with ComfyUI's `LoadImage` arithmetic."""
    return torch.from_numpy(np.stack(plain_decode(blobs)).astype(np.float32) / 255.0)


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


async def minimal_result(client: httpx.AsyncClient, endpoint: str,
                         arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a minimal fal client does up to the result: submit to `endpoint`, follow one status stream until
    COMPLETED, fetch the result. fal's handle and the result."""
    base, headers = os.environ["FAL_QUEUE_BASE_URL"], {"Authorization": f"Key {os.environ['FAL_KEY']}"}
    handle = (await client.post(f"{base}/{endpoint}", json=arguments, headers=headers)).raise_for_status().json()
    async with client.stream("GET", f"{handle['status_url']}/stream", headers=headers) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:") and json.loads(line[5:])["status"] == "COMPLETED":
                break
    return handle, (await client.get(handle["response_url"], headers=headers)).raise_for_status().json()


async def minimal_node(arguments: dict[str, Any], verify: ssl.SSLContext | bool = True) -> tuple[torch.Tensor, str]:
    """What a minimal fal node does for one prompt: a fresh `httpx.AsyncClient` (and with it an SSL
    context, unless `verify` is one built once), submit, one status stream until COMPLETED, the
    result, every image at once, decoded inline. No retries, journal, caps, cancel or previews.
    The images and fal's request id."""
    async with httpx.AsyncClient(timeout=60.0, verify=verify) as client:
        handle, result = await minimal_result(client, ENDPOINT, arguments)
        files = await asyncio.gather(*(client.get(image["url"]) for image in result["images"]))
    return to_tensor([f.raise_for_status().content for f in files]), str(handle["request_id"])


def minimal_arguments(num_images: int = 1, prompt: str | None = None) -> dict[str, Any]:
    return {"prompt": prompt or new_prompt(), "num_images": num_images, "aspect_ratio": ASPECT_RATIO,
            "resolution": "1k", "output_format": "jpeg", "sync_mode": False}
