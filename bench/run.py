"""Benchmark of the Grok Imagine (fal) node pack against the project's fake fal server.

Everything runs in this one process: the fake fal queue (``tests/fake_fal.py``, a real HTTP
server on 127.0.0.1 in background threads) and the pack, loaded as ComfyUI loads it and called as
ComfyUI's executor calls it (``tests/comfy_like.py``). Each measurement group gets its own asyncio
event loop, and concurrent nodes are gathered in that loop with ``asyncio.gather``, as ComfyUI runs
independent async nodes. The fake shares the GIL with the pack, so a figure here is a little
pessimistic compared with a remote fal.

The fake "generates" for ``--gen-latency`` seconds (its ``run_time``; no queue time) and waits
``--cdn-latency`` seconds before answering each image file request. Statistics are over
``--repeats`` runs: the median, and p95 by nearest rank (with fewer than 20 runs that is the
maximum). Where two things are compared they are measured in the same run, alternately, and the
ratio is of their medians.

Figures
-------
1. Overhead: the node's wall time minus the fake's queue + run time, for 1 and 4 images x
   jpeg/png x 1k/2k (1:1). Target per config: one CDN round trip (``--cdn-latency``) + the time
   plain Pillow takes to decode the same images one after the other (bytes fetched once from the
   fake with httpx) + 50 ms. A second table splits the overhead by what the fake saw: submit
   arriving, completion noticed (first result request), first image request, the end of the node.
   Run i's generation is stretched by (i + 0.5) / repeats of the fake's 20 ms stream tick, so that
   completion falls at every phase of it (a fixed generation time would give each config one phase).
2. Completion noticed: from the job's completion on the fake's clock (submit time + queue time +
   run time) to the first result request for it, with the status stream (default) and with
   polling (``stream_unavailable`` fault). No target. The fake itself checks for status changes
   every 20 ms, which is the stream's floor; run i's generation is stretched by (i + 0.5) / repeats
   of the pack's poll interval so that completion falls at every phase of the polling cycle.
3. Concurrency: K = 1, 4, 8 independent one-image nodes gathered at once; wall time relative to one
   node. Target: within 1.2x. (The ratio shrinks as ``--gen-latency`` grows.)
4. Fan-out: one 16-image node (4 requests at once) relative to one 4-image node, jpeg 1k. No
   target. Also the peak memory of each whole node relative to its output tensor (fresh
   processes, ``--_memprobe fanout-N``, with a fake fal of their own). Skipped while the node
   takes at most 4 images.
5. Decode to tensor: the node's path (every image decoded at once on worker threads and written
   into its slot of the batch on the same thread, strip by strip, as ``fetch_images`` does) relative
   to plain Pillow (``Image.open`` -> ``convert("RGB")`` -> ``numpy.asarray``, one image after the
   other) on the same bytes, for 4 images at 1k and 2k, jpeg and png. Two variants of the pack:
   prepared (``BatchBuilder.prepare`` ran first, as when the node knows the image size while fal
   generates: xAI's documented size, the size the same settings gave before, or the size fal's
   result states; what it took is shown apart) and cold (the batch allocated when the first image
   is decoded: an edit with aspect ratio auto whose size nothing told ahead). The verdict is on
   prepared, the node's usual path; cold has no target (see the README for why). A reference
   shows what merely allocating and writing a new float32 batch of that size costs
   (``torch.empty`` + fill). Two more rows decode photograph-like JPEGs (``textured_jpeg``) at 1k
   and 2k, since the fake's flat images decode several times faster than real ones. Target: within 1.3x.
   Peak memory of that path relative to the output tensor (B*H*W*3*4 bytes), each config in a
   fresh subprocess (``--_memprobe CONFIG``): VmHWM from /proc/self/status after the decode minus
   a baseline taken after imports and a warm-up with a tiny image. Where the kernel allows it, the
   high-water mark is first reset (``5`` written to /proc/self/clear_refs), so the baseline is the
   resident size just before the decode; otherwise it is VmHWM after the warm-up and the figure is
   a lower bound (marked "masked" when the decode did not raise the mark at all). The full run
   also probes the node's real path (``load_images`` on data URIs: concurrent decodes, the bytes
   kept for the previews). Target: within 2x.

Run from the repository root (prints its tables; asserts nothing)::

    python bench/run.py --quick                       # < 60 s on 2 cores
    python bench/run.py                               # ~3-5 min
    python bench/run.py --json bench/results.json --plot docs/bench.png
    python bench/run.py --gen-latency 2 --cdn-latency 0.05 --repeats 11
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import dataclasses
import gc
import io
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import PIL
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from comfy_like import TEST_KEY, pack_module, run_node  # noqa: E402
from fake_fal import STREAM_TICK_S, FakeFal, fake_image_size, render_image  # noqa: E402

ASPECT_RATIO = "1:1"
SLACK_S = 0.050  # the overhead target's allowance on top of one CDN round trip and decoding
CONCURRENCY_TARGET = 1.2
DECODE_TIME_TARGET = 1.3
MEMORY_TARGET = 2.0
FANOUT_IMAGES = 4 * 4
DECODE_SAMPLE_S = 0.15  # each decode timing sample loops until it spans about this long
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
ENV_CLEARED = ("FAL_KEY_ID", "FAL_KEY_SECRET", "GROK_IMAGINE_QUEUE_TIMEOUT", "GROK_IMAGINE_TIMEOUT",
               "GROK_IMAGINE_DOWNLOAD_TIMEOUT")

OVERHEAD_CONFIGS: tuple[tuple[int, str, str], ...] = tuple(
    (n, fmt, res) for n in (1, 4) for fmt in ("jpeg", "png") for res in ("1k", "2k")
)
DECODE_CONFIGS: tuple[tuple[str, str], ...] = (("jpeg", "1k"), ("jpeg", "2k"), ("png", "1k"), ("png", "2k"))
TEXTURED_RESOLUTIONS = ("1k", "2k")  # figure 5a also decodes photograph-like JPEGs (`textured_jpeg`)


# --------------------------------------------------------------------------------------------
# Settings, statistics, printing
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    quick: bool
    gen_latency: float
    cdn_latency: float
    repeats: int


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p95(values: Sequence[float]) -> float:
    """Nearest-rank 95th percentile (the maximum for fewer than 20 values)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "FAIL"


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[object]], note: str = "") -> None:
    cells = [[str(c) for c in row] + [""] * (len(headers) - len(row)) for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  " + "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print("  " + "  ".join("-" * w for w in widths))
    for row in cells:
        print("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
    if note:
        for line in note.splitlines():
            print(f"  {line}")
    sys.stdout.flush()


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "httpx": httpx.__version__,
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


# --------------------------------------------------------------------------------------------
# Running the node against the fake
# --------------------------------------------------------------------------------------------

_prompt_numbers = itertools.count(1)


def node_class() -> type:
    return pack_module("nodes.text_to_image").FalGrokImagineImage  # type: ignore[no-any-return]


def max_images_per_node() -> int:
    return int(node_class().INPUT_TYPES()["required"]["num_images"][1]["max"])


def request_ids(image_urls: str) -> list[str]:
    """The fal request ids of a node's image_urls output, in order, without repeats."""
    ids: list[str] = []
    for url in image_urls.splitlines():
        request_id = url.split("/files/")[1].split("/")[0]
        if request_id not in ids:
            ids.append(request_id)
    return ids


@dataclasses.dataclass
class NodeRun:
    """One node call: monotonic start and end (the fake's clock) and what it returned."""

    start: float
    end: float
    num_images: int
    shape: tuple[int, ...]
    image_urls: list[str]
    request_ids: list[str]

    @property
    def wall(self) -> float:
        return self.end - self.start


async def call_node(num_images: int = 1, output_format: str = "jpeg", resolution: str = "1k") -> NodeRun:
    """Run the text-to-image node once, with a prompt never used before (so nothing is resumed)."""
    prompt = f"benchmark prompt {next(_prompt_numbers)}: a lighthouse at dusk"
    start = time.monotonic()
    images, _revised, urls = await run_node(
        node_class(), prompt=prompt, num_images=num_images, aspect_ratio=ASPECT_RATIO, resolution=resolution,
        output_format=output_format, sync_mode=False, seed=0,
    )
    end = time.monotonic()
    return NodeRun(start, end, num_images, tuple(images.shape), urls.splitlines(), request_ids(urls))


@dataclasses.dataclass(frozen=True)
class Timeline:
    """What the fake saw of one request, on its monotonic clock."""

    submit_at: float
    generation_s: float  # queue time + run time
    completed_at: float
    first_result_at: float
    first_file_at: float
    last_file_at: float
    status_requests: int
    stream_requests: int


def timeline(fake: FakeFal, request_id: str) -> Timeline:
    job = fake.jobs[request_id]
    mine = [r for r in list(fake.requests) if r.request_id == request_id]

    def times(kind: str) -> list[float]:
        return sorted(r.time for r in mine if r.kind == kind)

    submits, results, files = times("submit"), times("result"), times("file")
    generation = job.queue_time + job.run_time
    return Timeline(
        submit_at=submits[0] if submits else job.submitted_at,
        generation_s=generation,
        completed_at=job.submitted_at + generation,
        first_result_at=results[0],
        first_file_at=files[0] if files else math.nan,
        last_file_at=files[-1] if files else math.nan,
        status_requests=len(times("status")),
        stream_requests=len(times("stream")),
    )


async def close_pack_client() -> None:
    """Close the pack's shared httpx client of this event loop before the loop ends."""
    await pack_module("fal_transport.http").http_client().aclose()


def run_group(work: Callable[[], Any]) -> Any:
    """One measurement group: a fresh event loop, closed (with the pack's client) at the end."""

    async def group() -> Any:
        try:
            return await work()
        finally:
            await close_pack_client()

    return asyncio.run(group())


# --------------------------------------------------------------------------------------------
# Plain Pillow decoding (the reference)
# --------------------------------------------------------------------------------------------


def plain_decode(blobs: Sequence[bytes]) -> list[np.ndarray]:
    """What any Pillow user writes: open, convert to RGB, view as an array."""
    return [np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")) for blob in blobs]


def plain_decode_seconds(blobs: Sequence[bytes], repeats: int) -> float:
    """Median time to decode all `blobs` one after the other with plain Pillow."""
    samples = []
    for _ in range(max(5, repeats)):
        start = time.perf_counter()
        plain_decode(blobs)
        samples.append(time.perf_counter() - start)
    return median(samples)


async def fetch_bytes(urls: Sequence[str]) -> list[bytes]:
    async with httpx.AsyncClient() as client:
        responses = await asyncio.gather(*(client.get(url) for url in urls))
    for response in responses:
        response.raise_for_status()
    return [response.content for response in responses]


# --------------------------------------------------------------------------------------------
# 1. Overhead beyond the generation time
# --------------------------------------------------------------------------------------------


def config_name(num_images: int, output_format: str, resolution: str) -> str:
    return f"{num_images} x {output_format} {resolution}"


async def measure_overhead(fake: FakeFal, settings: Settings) -> tuple[list[dict[str, Any]], dict[str, list[bytes]]]:
    """Figure 1. Also returns the image bytes of each config (reused by figure 5)."""
    blobs: dict[str, list[bytes]] = {}
    for num_images, fmt, res in OVERHEAD_CONFIGS:  # warm-up, and the bytes for plain decoding
        run = await call_node(num_images, fmt, res)
        blobs[config_name(num_images, fmt, res)] = await fetch_bytes(run.image_urls)

    samples: dict[str, list[tuple[NodeRun, Timeline]]] = {config_name(*c): [] for c in OVERHEAD_CONFIGS}
    try:
        for repeat in range(settings.repeats):
            # Spread completion over the fake's stream tick, so no config sits at one lucky or unlucky phase.
            fake.faults.run_time = settings.gen_latency + STREAM_TICK_S * (repeat + 0.5) / settings.repeats
            order = OVERHEAD_CONFIGS if repeat % 2 == 0 else tuple(reversed(OVERHEAD_CONFIGS))
            for num_images, fmt, res in order:
                run = await call_node(num_images, fmt, res)
                samples[config_name(num_images, fmt, res)].append((run, timeline(fake, run.request_ids[0])))
    finally:
        fake.faults.run_time = None

    rows: list[dict[str, Any]] = []
    for num_images, fmt, res in OVERHEAD_CONFIGS:
        name = config_name(num_images, fmt, res)
        runs = samples[name]
        overheads = [run.wall - line.generation_s for run, line in runs]
        decode_s = plain_decode_seconds(blobs[name], settings.repeats)
        target = settings.cdn_latency + decode_s + SLACK_S
        width, height = fake_image_size(ASPECT_RATIO, res)
        rows.append({
            "config": name,
            "num_images": num_images,
            "output_format": fmt,
            "resolution": res,
            "size": f"{width}x{height}",
            "bytes_per_image": round(statistics.mean(len(b) for b in blobs[name])),
            "overhead_median_s": median(overheads),
            "overhead_p95_s": p95(overheads),
            "plain_decode_s": decode_s,
            "target_s": target,
            "verdict": verdict(median(overheads), target),
            "phases_median_s": {
                "to_submit": median([line.submit_at - run.start for run, line in runs]),
                "notice": median([line.first_result_at - line.completed_at for run, line in runs]),
                "result_to_first_file": median([line.first_file_at - line.first_result_at for run, line in runs]),
                "files_spread": median([line.last_file_at - line.first_file_at for run, line in runs]),
                "last_file_to_end": median([run.end - line.last_file_at for run, line in runs]),
            },
            "samples_s": overheads,
        })
    return rows, blobs


def print_overhead(rows: list[dict[str, Any]], settings: Settings) -> None:
    print_table(
        f"1. Overhead beyond generation (node wall - queue - run), ms; {settings.repeats} runs each",
        ["config", "size", "KB/img", "median", "p95", "plain decode", "target", "verdict"],
        [
            [r["config"], r["size"], f"{r['bytes_per_image'] / 1024:.0f}", ms(r["overhead_median_s"]),
             ms(r["overhead_p95_s"]), ms(r["plain_decode_s"]), ms(r["target_s"]), r["verdict"]]
            for r in rows
        ],
        note=f"target = cdn latency ({ms(settings.cdn_latency)} ms) + plain Pillow decode of all the images, "
             f"one after the other + {ms(SLACK_S)} ms; verdict on the median",
    )
    print_table(
        "1b. Where the overhead goes (medians, ms, from the fake's request log)",
        ["config", "to submit", "notice", "result->file", "files spread", "last file->end"],
        [
            [r["config"], *(ms(v) for v in r["phases_median_s"].values())]
            for r in rows
        ],
        note="to submit: node start -> submit arrives; notice: completion -> first result request;\n"
             "result->file: first result request -> first image request; files spread: first -> last image\n"
             "request; last file->end: last image request -> node returns (cdn latency, transfer, decode, batch)",
    )


# --------------------------------------------------------------------------------------------
# 2. How soon completion is noticed: stream vs polling
# --------------------------------------------------------------------------------------------


async def measure_notice(fake: FakeFal, settings: Settings) -> dict[str, Any]:
    """Figure 2. The generation time of run i is stretched by (i + 0.5) / repeats of the pack's poll
    interval (the same for both modes), so completion falls at every phase of the polling cycle instead
    of at one fixed phase that would decide the polling figure alone."""
    poll_interval: float = pack_module("fal_transport.queue").POLL_INTERVAL_S
    modes = {"stream": False, "polling": True}  # mode -> stream_unavailable
    for unavailable in modes.values():  # warm-up
        fake.faults.stream_unavailable = unavailable
        await call_node()
    samples: dict[str, list[Timeline]] = {mode: [] for mode in modes}
    try:
        for repeat in range(settings.repeats):
            fake.faults.run_time = settings.gen_latency + poll_interval * (repeat + 0.5) / settings.repeats
            order = list(modes.items()) if repeat % 2 == 0 else list(reversed(modes.items()))
            for mode, unavailable in order:
                fake.faults.stream_unavailable = unavailable
                run = await call_node()
                samples[mode].append(timeline(fake, run.request_ids[0]))
    finally:
        fake.faults.stream_unavailable = False
        fake.faults.run_time = None
    result: dict[str, Any] = {}
    for mode, lines in samples.items():
        delays = [line.first_result_at - line.completed_at for line in lines]
        result[mode] = {
            "median_s": median(delays),
            "p95_s": p95(delays),
            "status_requests_median": median([line.status_requests for line in lines]),
            "samples_s": delays,
        }
    result["fake_stream_tick_s"] = STREAM_TICK_S
    result["pack_poll_interval_s"] = poll_interval
    return result


def print_notice(result: dict[str, Any], settings: Settings) -> None:
    print_table(
        f"2. Completion at fal -> node asks for the result, ms; {settings.repeats} runs each (1 x jpeg 1k)",
        ["mode", "median", "p95", "status polls/run"],
        [
            [mode, ms(result[mode]["median_s"]), ms(result[mode]["p95_s"]),
             f"{result[mode]['status_requests_median']:.0f}"]
            for mode in ("stream", "polling")
        ],
        note=f"the fake checks for status changes every {ms(result['fake_stream_tick_s'])} ms (the stream's floor); "
             f"the pack polls every {ms(result['pack_poll_interval_s'])} ms when the stream is unavailable.\n"
             "Generation times are spread over one poll interval so completion lands at every polling phase.",
    )


# --------------------------------------------------------------------------------------------
# 3. K independent nodes at once
# --------------------------------------------------------------------------------------------


async def gather_nodes(count: int) -> float:
    start = time.monotonic()
    await asyncio.gather(*(call_node() for _ in range(count)))
    return time.monotonic() - start


async def measure_concurrency(settings: Settings) -> list[dict[str, Any]]:
    counts = (1, 4, 8)
    await gather_nodes(max(counts))  # warm-up: opens the connections a gather of 8 needs
    walls: dict[int, list[float]] = {k: [] for k in counts}
    for repeat in range(settings.repeats):
        shift = repeat % len(counts)
        for count in counts[shift:] + counts[:shift]:
            walls[count].append(await gather_nodes(count))
    base = median(walls[1])
    return [
        {
            "nodes": count,
            "wall_median_s": median(walls[count]),
            "wall_p95_s": p95(walls[count]),
            "ratio": median(walls[count]) / base,
            "target": CONCURRENCY_TARGET if count > 1 else None,
            "verdict": verdict(median(walls[count]) / base, CONCURRENCY_TARGET) if count > 1 else "",
            "samples_s": walls[count],
        }
        for count in counts
    ]


def print_concurrency(rows: list[dict[str, Any]], settings: Settings) -> None:
    print_table(
        f"3. K one-image nodes gathered at once (jpeg 1k), wall ms; {settings.repeats} runs each",
        ["K", "median", "p95", "vs one node", "target", "verdict"],
        [
            [r["nodes"], ms(r["wall_median_s"]), ms(r["wall_p95_s"]), f"{r['ratio']:.3f}x",
             f"{r['target']}x" if r["target"] else "", r["verdict"]]
            for r in rows
        ],
    )


# --------------------------------------------------------------------------------------------
# 4. Fan-out: a 16-image node vs one 4-image request
# --------------------------------------------------------------------------------------------


async def measure_fanout(fake: FakeFal, settings: Settings) -> dict[str, Any]:
    if max_images_per_node() < FANOUT_IMAGES:
        return {"skipped": "num_images > 4 not supported yet"}
    await call_node(4)
    await call_node(FANOUT_IMAGES)
    walls: dict[int, list[float]] = {4: [], FANOUT_IMAGES: []}
    requests_per_node: list[int] = []
    spreads: list[float] = []
    for repeat in range(settings.repeats):
        order = (4, FANOUT_IMAGES) if repeat % 2 == 0 else (FANOUT_IMAGES, 4)
        for count in order:
            run = await call_node(count)
            walls[count].append(run.wall)
            if count == FANOUT_IMAGES:
                requests_per_node.append(len(run.request_ids))
                submits = [timeline(fake, rid).submit_at for rid in run.request_ids]
                spreads.append(max(submits) - min(submits))
    return {
        "four_median_s": median(walls[4]),
        "four_p95_s": p95(walls[4]),
        "sixteen_median_s": median(walls[FANOUT_IMAGES]),
        "sixteen_p95_s": p95(walls[FANOUT_IMAGES]),
        "ratio": median(walls[FANOUT_IMAGES]) / median(walls[4]),
        "requests_per_node": median(requests_per_node),
        "submit_spread_median_s": median(spreads),
        "samples_s": {str(k): v for k, v in walls.items()},
    }


def measure_fanout_all(fake: FakeFal, settings: Settings) -> dict[str, Any]:
    """Figure 4: the timing group, then (when supported) the memory probes."""
    result: dict[str, Any] = run_group(lambda: measure_fanout(fake, settings))
    if "skipped" not in result:
        result["memory"] = measure_fanout_memory()
    return result


def print_fanout(result: dict[str, Any], settings: Settings) -> None:
    title = f"4. Fan-out: one {FANOUT_IMAGES}-image node vs one 4-image node (jpeg 1k), wall ms"
    if "skipped" in result:
        print(f"\n{title}\n  skipped ({result['skipped']})")
        return
    print_table(
        f"{title}; {settings.repeats} runs each",
        ["node", "median", "p95", "requests"],
        [
            ["4 images", ms(result["four_median_s"]), ms(result["four_p95_s"]), 1],
            [f"{FANOUT_IMAGES} images", ms(result["sixteen_median_s"]), ms(result["sixteen_p95_s"]),
             f"{result['requests_per_node']:.0f}"],
        ],
        note=f"ratio {result['ratio']:.3f}x (no target); the {FANOUT_IMAGES}-image node's submits spread over "
             f"{ms(result['submit_spread_median_s'])} ms (median)",
    )
    print("  peak memory growth of a whole node / its output tensor (fresh process each; the 4-image decode\n"
          f"  path's target in figure 5b is {MEMORY_TARGET}x):")
    for row in result.get("memory", []):
        if "error" in row:
            print(f"    {row['config']}: error: {row['error']}")
        else:
            print(f"    {row['config']}: tensor {row['tensor_bytes'] / 2**20:.0f} MiB, growth "
                  f"{(row['peak_hwm'] - row['baseline_hwm']) / 2**20:.0f} MiB = {row['ratio']:.2f}x")


# --------------------------------------------------------------------------------------------
# 5. Decoding to a tensor: time, and peak memory in a subprocess
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DecodeSample:
    """Mean seconds per call over one sample's loops."""

    total: float
    decode: float = 0.0  # the pack: decode_image + BatchBuilder.put of every image
    batch: float = 0.0  # the pack: BatchBuilder.finish
    prepare: float = 0.0  # the pack, prepared: BatchBuilder.prepare, before the images (not in `total`)


# asyncio.to_thread's default executor size: the node decodes every image on it as soon as it arrives.
_DECODE_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=min(32, (os.cpu_count() or 1) + 4))


def sample_pack(blobs: Sequence[bytes], loops: int, *, prepared: bool = False) -> DecodeSample:
    """The node's decode path: every image decoded at once on worker threads (as `fetch_images` does
    with `asyncio.to_thread`) and written into its slot of the output batch on the same thread
    (`BatchBuilder.put`), then `BatchBuilder.finish` (the float32 tensor).

    Cold: the batch is allocated when the first image is decoded (a node whose image size is not
    known ahead). Prepared: `BatchBuilder.prepare` ran first, as when the node knows the size while fal
    generates (the same settings ran before, or fal's result states it); its time is reported apart."""
    decode = pack_module("image_io.decode")
    batch_module = pack_module("image_io.batch")
    decoding = batching = preparing = 0.0
    for _ in range(loops):
        builder = batch_module.BatchBuilder(len(blobs))
        if prepared:
            before = time.perf_counter()
            size = Image.open(io.BytesIO(blobs[0])).size
            builder.prepare(*size)
            preparing += time.perf_counter() - before
        start = time.perf_counter()

        def decode_and_place(item: tuple[int, bytes], builder: Any = builder) -> Any:
            decoded = decode.decode_image(item[1], index=item[0])
            builder.put(item[0], decoded.image)
            return batch_module.FetchedImage(item[1], decoded.file_format, decoded.width, decoded.height, item[0])

        files = list(_DECODE_POOL.map(decode_and_place, enumerate(blobs)))
        middle = time.perf_counter()
        builder.finish(files)
        batching += time.perf_counter() - middle
        decoding += middle - start
    return DecodeSample((decoding + batching) / loops, decoding / loops, batching / loops, preparing / loops)


def sample_plain(blobs: Sequence[bytes], loops: int) -> DecodeSample:
    start = time.perf_counter()
    for _ in range(loops):
        plain_decode(blobs)
    return DecodeSample((time.perf_counter() - start) / loops)


def sample_fresh_tensor(shape: tuple[int, ...], loops: int) -> DecodeSample:
    """A reference, not a pack figure: allocating and writing once a new float32 tensor of the output's size.

    Any path that returns a new float32 batch from torch.empty pays at least this (on a VM mostly
    first-touch page faults); the cold path pays it, the prepared path paid it before the images."""
    start = time.perf_counter()
    for _ in range(loops):
        torch.empty(shape, dtype=torch.float32).fill_(0.0)
    return DecodeSample((time.perf_counter() - start) / loops)


def measure_decode(blobs: dict[str, list[bytes]], settings: Settings) -> list[dict[str, Any]]:
    """Figure 5a. Objects alive now are frozen out of the garbage collector, so that no sample pays for
    a full collection of torch's and the pack's objects (about 0.1 s each here)."""
    gc.collect()
    gc.freeze()
    try:
        rows = [decode_row(blobs[config_name(4, fmt, res)], fmt, res, settings) for fmt, res in DECODE_CONFIGS]
        for res in TEXTURED_RESOLUTIONS:
            width, height = fake_image_size(ASPECT_RATIO, res)
            textured = [textured_jpeg(width, height, index) for index in range(4)]
            rows.append(decode_row(textured, "jpeg", res, settings, label="textured"))
        return rows
    finally:
        gc.unfreeze()


def textured_jpeg(width: int, height: int, index: int) -> bytes:
    """A JPEG (quality 90) with the detail of a photograph, unlike the fake's flat images: smooth colour
    fields plus grain, seeded by `index`. A 1k one is about 300 KB, like Grok's 1k JPEGs."""
    rng = np.random.default_rng(index)
    fields = Image.fromarray(rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8))
    grain = Image.fromarray(rng.integers(0, 40, (height, width, 3), dtype=np.uint8))
    image = Image.blend(fields.resize((width, height), Image.Resampling.BICUBIC), grain, 0.15)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def decode_row(images: list[bytes], fmt: str, res: str, settings: Settings, label: str = "") -> dict[str, Any]:
    """One config of figure 5a: cold pack, prepared pack and plain samples in rotating order; a
    fresh-tensor reference follows each round."""
    width, height = fake_image_size(ASPECT_RATIO, res)
    shape = (len(images), height, width, 3)
    sample_plain(images, 1)  # warm-up
    sample_pack(images, 1, prepared=True)
    span = DECODE_SAMPLE_S / 2 if settings.quick else DECODE_SAMPLE_S
    loops = max(1, min(20, round(span / sample_pack(images, 1).total)))
    samplers: dict[str, Callable[[], DecodeSample]] = {
        "cold": lambda: sample_pack(images, loops),
        "prepared": lambda: sample_pack(images, loops, prepared=True),
        "plain": lambda: sample_plain(images, loops),
    }
    samples: dict[str, list[DecodeSample]] = {name: [] for name in samplers}
    fresh: list[DecodeSample] = []
    names = list(samplers)
    for repeat in range(settings.repeats):
        for name in names[repeat % 3:] + names[:repeat % 3]:
            samples[name].append(samplers[name]())
        fresh.append(sample_fresh_tensor(shape, loops))

    def med(name: str, part: str = "total") -> float:
        return median([getattr(s, part) for s in samples[name]])

    ratio = med("prepared") / med("plain")
    return {
        "config": f"4 x {fmt} {res}" + (f" {label}" if label else ""),
        "output_format": fmt,
        "resolution": res,
        "bytes_per_image": round(statistics.mean(len(b) for b in images)),
        "pack_median_s": med("cold"),
        "pack_p95_s": p95([s.total for s in samples["cold"]]),
        "pack_decode_median_s": med("cold", "decode"),
        "pack_batch_median_s": med("cold", "batch"),
        "prepared_median_s": med("prepared"),
        "prepared_p95_s": p95([s.total for s in samples["prepared"]]),
        "prepare_median_s": med("prepared", "prepare"),
        "plain_median_s": med("plain"),
        "plain_p95_s": p95([s.total for s in samples["plain"]]),
        "fresh_tensor_median_s": median([s.total for s in fresh]),
        "loops_per_sample": loops,
        "ratio": ratio,
        "cold_ratio": med("cold") / med("plain"),
        "target": DECODE_TIME_TARGET,
        "verdict": verdict(ratio, DECODE_TIME_TARGET),
    }


def print_decode(rows: list[dict[str, Any]], settings: Settings) -> None:
    print_table(
        f"5a. Decode to tensor: pack vs plain Pillow, ms per 4 images; {settings.repeats} samples each",
        ["config", "plain", "p95", "prepared", "p95", "ratio", "target", "verdict", "(prepare)", "cold", "p95",
         "= decode+place", "+ finish", "ratio", "fresh tensor"],
        [
            [r["config"], ms(r["plain_median_s"]), ms(r["plain_p95_s"]), ms(r["prepared_median_s"]),
             ms(r["prepared_p95_s"]), f"{r['ratio']:.2f}x", f"{r['target']}x", r["verdict"],
             ms(r["prepare_median_s"]), ms(r["pack_median_s"]), ms(r["pack_p95_s"]), ms(r["pack_decode_median_s"]),
             ms(r["pack_batch_median_s"]), f"{r['cold_ratio']:.2f}x", ms(r["fresh_tensor_median_s"])]
            for r in rows
        ],
        note="plain = Image.open -> convert('RGB') -> numpy.asarray (uint8 arrays), one image after the other.\n"
             "prepared = the node's path when it knows the image size ahead (xAI's documented size, the size the\n"
             "same settings gave before, or fal's result): BatchBuilder.prepare ran while fal generated, then\n"
             "decode_image + BatchBuilder.put per image on worker threads, then finish (the float32 tensor);\n"
             "(prepare) = what prepare took, before the images arrived (not counted); the verdict is on prepared.\n"
             "cold = the same with no size known ahead (an edit with aspect ratio auto, first time, when fal's\n"
             "result states no size): the batch is allocated when the first image is decoded; no target.\n"
             "textured = photograph-like JPEGs (~300 KB at 1k, like Grok's) instead of the fake's flat images,\n"
             "which decode 3-4x faster than real ones and so make every fixed per-pixel cost look larger.\n"
             "Each sample averages enough loops to span ~150 ms (quick: ~75).\n"
             "fresh tensor (a reference, not the pack): torch.empty of the output's shape + one fill, the cost\n"
             "of a new float32 batch (mostly first-touch page faults).",
    )


def _proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    values: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def _reset_high_water_mark() -> bool:
    """Reset VmHWM to the current VmRSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    status = _proc_status()
    return status["VmHWM"] <= status["VmRSS"] + 1024 * 1024


@dataclasses.dataclass(frozen=True)
class PeakWindow:
    """The memory state just before the measured work (see `open_peak_window`)."""

    reset: bool
    before: dict[str, int]

    def close(self, config: str, path: str, tensor: torch.Tensor) -> dict[str, Any]:
        """The figures of the work done since the window opened; `tensor` is its output."""
        after = _proc_status()
        tensor_bytes = tensor.numel() * tensor.element_size()
        baseline = self.before["VmHWM"]
        return {
            "config": config,
            "path": path,
            "hwm_reset": self.reset,
            "rss_before": self.before["VmRSS"],
            "baseline_hwm": baseline,
            "peak_hwm": after["VmHWM"],
            "rss_after": after["VmRSS"],
            "tensor_bytes": tensor_bytes,
            "ratio": (after["VmHWM"] - baseline) / tensor_bytes,
            "masked": not self.reset and after["VmHWM"] <= baseline,
        }


def open_peak_window() -> PeakWindow:
    gc.collect()
    reset = _reset_high_water_mark()
    return PeakWindow(reset, _proc_status())


def memprobe(config: str, directory: Path | None) -> dict[str, Any]:
    """In a fresh process: peak memory of one way of producing a batch, relative to the batch.

    FORMAT-RES: `decode_image` + `BatchBuilder.put` per image, then `finish`, on the images in `directory`.
    FORMAT-RES:node: the node's own path, `load_images` on data URIs of them (concurrent decodes in
    threads; the bytes kept for the previews).
    fanout-N: a whole N-image node (jpeg 1k) against a fake fal in this process.
    """
    if config.startswith("fanout-"):
        return memprobe_node(int(config.partition("-")[2]))
    assert directory is not None
    blobs = [p.read_bytes() for p in sorted(directory.iterdir())]
    decode = pack_module("image_io.decode")
    batch_module = pack_module("image_io.batch")
    load_images = batch_module.load_images
    mime = "image/png" if config.startswith("png") else "image/jpeg"
    uris = [f"data:{mime};base64,{base64.b64encode(b).decode()}" for b in blobs]

    tiny = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(tiny, "PNG")
    decode.write_into(np.empty((8, 8, 3), np.float32), decode.decode_image(tiny.getvalue()).image)  # warm-up
    asyncio.run(load_images([f"data:image/png;base64,{base64.b64encode(tiny.getvalue()).decode()}"], timeout_s=60.0))

    window = open_peak_window()
    if config.endswith(":node"):
        loaded = asyncio.run(load_images(uris, timeout_s=60.0))
        return window.close(config, "node", loaded.images)
    builder = batch_module.BatchBuilder(len(blobs))
    files = []
    for index, blob in enumerate(blobs):
        decoded = decode.decode_image(blob, index=index)
        builder.put(index, decoded.image)
        files.append(batch_module.FetchedImage(blob, decoded.file_format, decoded.width, decoded.height, index))
        del decoded
    return window.close(config, "decode", builder.finish(files))


def memprobe_node(num_images: int) -> dict[str, Any]:
    width, height = fake_image_size(ASPECT_RATIO, "1k")
    for index in range(4):  # the fake's image cache, filled before the window opens
        render_image(width, height, "jpeg", index)
    with tempfile.TemporaryDirectory(prefix="grok-bench-probe-") as state, FakeFal(run_time=0.05) as fake:
        os.environ.update(FAL_KEY=TEST_KEY, FAL_QUEUE_BASE_URL=fake.url, FAL_REST_BASE_URL=fake.url,
                          GROK_IMAGINE_STATE_DIR=state)

        async def probe() -> dict[str, Any]:
            try:
                await call_node(1)  # warm-up
                window = open_peak_window()
                images, _revised, _urls = await run_node(
                    node_class(), prompt="memory probe", num_images=num_images, aspect_ratio=ASPECT_RATIO,
                    resolution="1k", output_format="jpeg", sync_mode=False, seed=0,
                )
                return window.close(f"fanout-{num_images}", "node", images)
            finally:
                await close_pack_client()

        return asyncio.run(probe())


def run_probes(probes: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    """Run `--_memprobe` subprocesses, as many at once as there are cores (memory is not timing: probes
    may share the CPU without changing what they measure). One result row per probe, in order."""
    rows: list[dict[str, Any]] = []
    width = max(1, os.cpu_count() or 1)
    for first in range(0, len(probes), width):
        batch = probes[first:first + width]
        running = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _, command in batch]
        for (config, _), process in zip(batch, running):
            out, err = process.communicate(timeout=180)
            if process.returncode != 0:
                rows.append({"config": config, "error": err.strip()[-500:]})
                continue
            rows.append(json.loads(out.strip().splitlines()[-1]) | {"config": config})
    return rows


def probe_command(config: str, directory: Path | None = None) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--_memprobe", config]
    return command + (["--_memprobe-dir", str(directory)] if directory is not None else [])


def measure_memory(blobs: dict[str, list[bytes]], settings: Settings) -> list[dict[str, Any]]:
    """Figure 5b: one fresh process per config (and, in the full run, per path)."""
    probes: list[tuple[str, list[str]]] = []
    paths = ("",) if settings.quick else ("", ":node")
    with tempfile.TemporaryDirectory(prefix="grok-bench-mem-") as tmp:
        for fmt, res in DECODE_CONFIGS:
            folder = Path(tmp) / f"{fmt}-{res}"
            folder.mkdir()
            for i, blob in enumerate(blobs[config_name(4, fmt, res)]):
                (folder / f"{i}.{EXTENSIONS[fmt]}").write_bytes(blob)
            probes += [(f"4 x {fmt} {res}", probe_command(f"{fmt}-{res}{suffix}", folder)) for suffix in paths]
        rows = run_probes(probes)
    for row in rows:
        if "error" not in row:
            row |= {"target": MEMORY_TARGET, "verdict": verdict(row["ratio"], MEMORY_TARGET)}
    return rows


def measure_fanout_memory() -> list[dict[str, Any]]:
    """Figure 4's memory: peak growth of a whole 4-image and 16-image node, each in a fresh process."""
    return run_probes([(f"{n} x jpeg 1k", probe_command(f"fanout-{n}")) for n in (4, FANOUT_IMAGES)])


def print_memory(rows: list[dict[str, Any]]) -> None:
    mib = 1024 * 1024
    print_table(
        "5b. Peak memory of decoding 4 images to a tensor, relative to the tensor (fresh process per row)",
        ["config", "path", "tensor MiB", "rss before", "peak", "growth", "ratio", "target", "verdict"],
        [
            [r["config"], "error", r["error"]] if "error" in r else
            [r["config"], r["path"], f"{r['tensor_bytes'] / mib:.0f}", f"{r['rss_before'] / mib:.0f}",
             f"{r['peak_hwm'] / mib:.0f}", f"{(r['peak_hwm'] - r['baseline_hwm']) / mib:.0f}",
             f"{r['ratio']:.2f}x" + (" (masked)" if r["masked"] else ""), f"{r['target']}x", r["verdict"]]
            for r in rows
        ],
        note="growth = VmHWM after - baseline; baseline = VmHWM "
             + ("after a reset via /proc/self/clear_refs (= VmRSS just before)"
                if all(r.get("hwm_reset") for r in rows if "error" not in r)
                else "after imports and a warm-up (no reset possible: a lower bound)")
             + ".\npath decode = decode_image + BatchBuilder.put per image, then finish; node = load_images on "
               "data URIs (concurrent decodes, bytes kept for previews)",
    )


# --------------------------------------------------------------------------------------------
# Summary, JSON, plot
# --------------------------------------------------------------------------------------------


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for r in results["overhead"]:
        rows.append({"figure": f"1 overhead {r['config']}", "target": f"<= {ms(r['target_s'])} ms",
                     "measured": f"{ms(r['overhead_median_s'])} ms", "value": r["overhead_median_s"],
                     "limit": r["target_s"], "verdict": r["verdict"]})
    for mode in ("stream", "polling"):
        n = results["notice"][mode]
        rows.append({"figure": f"2 notice ({mode})", "target": "(none)",
                     "measured": f"{ms(n['median_s'])} ms (p95 {ms(n['p95_s'])})", "value": n["median_s"],
                     "limit": None, "verdict": "info"})
    for r in results["concurrency"]:
        if r["nodes"] > 1:
            rows.append({"figure": f"3 {r['nodes']} nodes vs 1", "target": f"<= {CONCURRENCY_TARGET}x",
                         "measured": f"{r['ratio']:.3f}x", "value": r["ratio"], "limit": CONCURRENCY_TARGET,
                         "verdict": r["verdict"]})
    fanout = results["fanout"]
    if "skipped" in fanout:
        rows.append({"figure": f"4 {FANOUT_IMAGES} images vs 4", "target": "(none)",
                     "measured": f"skipped ({fanout['skipped']})", "value": None, "limit": None, "verdict": "skip"})
    else:
        rows.append({"figure": f"4 {FANOUT_IMAGES} images vs 4", "target": "(none)",
                     "measured": f"{fanout['ratio']:.3f}x", "value": fanout["ratio"], "limit": None,
                     "verdict": "info"})
        for row in fanout.get("memory", []):
            rows.append({"figure": f"4 peak memory, {row['config']} node", "target": "(none)",
                         "measured": "error" if "error" in row else f"{row['ratio']:.2f}x of its tensor",
                         "value": None, "limit": None, "verdict": "info"})
    for r in results["decode"]:
        rows.append({"figure": f"5 decode time {r['config']}", "target": f"<= {DECODE_TIME_TARGET}x",
                     "measured": f"{r['ratio']:.2f}x", "value": r["ratio"], "limit": DECODE_TIME_TARGET,
                     "verdict": r["verdict"]})
    for r in results["decode"]:
        rows.append({"figure": f"5 decode time {r['config']}, cold", "target": "(none)",
                     "measured": f"{r['cold_ratio']:.2f}x", "value": None, "limit": None, "verdict": "info"})
    for r in results["memory"]:
        label = f"5 peak memory {r['config']}" + (" (node path)" if r.get("path") == "node" else "")
        if "error" in r:
            rows.append({"figure": label, "target": f"<= {MEMORY_TARGET}x", "measured": "error", "value": None,
                         "limit": MEMORY_TARGET, "verdict": "error"})
        else:
            rows.append({"figure": label, "target": f"<= {MEMORY_TARGET}x", "measured": f"{r['ratio']:.2f}x",
                         "value": r["ratio"], "limit": MEMORY_TARGET, "verdict": r["verdict"]})
    return rows


def _loads(loads: Sequence[float]) -> str:
    return "/".join(f"{value:.2f}" for value in loads)


def print_summary(rows: list[dict[str, Any]], results: dict[str, Any]) -> None:
    m = results["machine"]
    s = results["settings"]
    print_table(
        "SUMMARY",
        ["figure", "target", "measured", "verdict"],
        [[r["figure"], r["target"], r["measured"], r["verdict"]] for r in rows],
        note=f"machine: {m['cores']} cores, Python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads), "
             f"numpy {m['numpy']}, Pillow {m['pillow']}, httpx {m['httpx']}, {m['platform']}\n"
             f"load average (1/5/15 min) at start {_loads(m['load_average_at_start'])}, "
             f"at end {_loads(m['load_average_at_end'])} (other processes skew the timings)\n"
             f"settings: gen latency {s['gen_latency']} s, cdn latency {s['cdn_latency']} s, "
             f"{s['repeats']} repeats{' (quick)' if s['quick'] else ''}; p95 = nearest rank "
             f"(= max below 20 repeats); total {results['elapsed_s']:.0f} s",
    )
    passed = sum(r["verdict"] == "PASS" for r in rows)
    failed = sum(r["verdict"] == "FAIL" for r in rows)
    print(f"  {passed} PASS, {failed} FAIL")


def plot(rows: list[dict[str, Any]], path: Path, results: dict[str, Any]) -> None:
    from plot import Bar, draw_ratio_chart  # bench/plot.py, next to this file

    bars = []
    for r in rows:
        if r["value"] is None:
            continue
        if r["limit"] is not None:
            unit_ms = r["figure"].startswith("1 ")
            text = (f"{ms(r['value'])} / {ms(r['limit'])} ms" if unit_ms
                    else f"{r['value']:.2f}x / {r['limit']}x")
            bars.append(Bar(r["figure"], r["value"], r["limit"], text))
        elif r["figure"].startswith("4 "):
            bars.append(Bar(r["figure"] + " (no target)", r["value"], None, f"{r['value']:.2f}x"))
    m, s = results["machine"], results["settings"]
    draw_ratio_chart(
        bars, path, "grok-imagine-fal benchmark: measured / target",
        f"{m['cores']} cores, Python {m['python']}, torch {m['torch']}; gen {s['gen_latency']} s, "
        f"cdn {s['cdn_latency']} s, {s['repeats']} repeats; green = within target, grey = no target",
    )


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a shorter generation (< 60 s)")
    parser.add_argument("--gen-latency", type=float, default=None,
                        help="simulated generation time in s (fake run_time; default 1.0, quick 0.3)")
    parser.add_argument("--cdn-latency", type=float, default=0.02,
                        help="fake delay before each image file answer, s (default 0.02)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure (default 7, quick 3)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--plot", type=Path, help="draw the ratios vs their targets to this PNG")
    parser.add_argument("--_memprobe", dest="memprobe", help=argparse.SUPPRESS)
    parser.add_argument("--_memprobe-dir", dest="memprobe_dir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memprobe:
        print(json.dumps(memprobe(args.memprobe, args.memprobe_dir)))
        return 0

    settings = Settings(
        quick=args.quick,
        gen_latency=args.gen_latency if args.gen_latency is not None else (0.3 if args.quick else 1.0),
        cdn_latency=args.cdn_latency,
        repeats=args.repeats if args.repeats is not None else (3 if args.quick else 7),
    )
    began = time.monotonic()
    print(f"grok-imagine-fal benchmark: gen latency {settings.gen_latency} s, cdn latency {settings.cdn_latency} s, "
          f"{settings.repeats} repeats{' (quick)' if settings.quick else ''}")
    results: dict[str, Any] = {"settings": dataclasses.asdict(settings), "machine": machine()}

    def step(name: str, work: Callable[[], Any], show: Callable[[Any], None]) -> Any:
        """Run one figure's measurement, print its table and how long it took."""
        start = time.monotonic()
        value = work()
        results.setdefault("durations_s", {})[name] = time.monotonic() - start
        show(value)
        print(f"  ({name}: {time.monotonic() - start:.1f} s)")
        return value

    with tempfile.TemporaryDirectory(prefix="grok-bench-state-") as state, \
            FakeFal(accepted_keys={TEST_KEY}, run_time=settings.gen_latency, cdn_latency=settings.cdn_latency) as fake:
        for name in ENV_CLEARED:
            os.environ.pop(name, None)
        os.environ.update(FAL_KEY=TEST_KEY, FAL_QUEUE_BASE_URL=fake.url, FAL_REST_BASE_URL=fake.url,
                          GROK_IMAGINE_STATE_DIR=state)

        results["overhead"], blobs = step(
            "overhead", lambda: run_group(lambda: measure_overhead(fake, settings)),
            lambda value: print_overhead(value[0], settings))
        results["notice"] = step("notice", lambda: run_group(lambda: measure_notice(fake, settings)),
                                 lambda value: print_notice(value, settings))
        results["concurrency"] = step("concurrency", lambda: run_group(lambda: measure_concurrency(settings)),
                                      lambda value: print_concurrency(value, settings))
        results["fanout"] = step("fanout", lambda: measure_fanout_all(fake, settings),
                                 lambda value: print_fanout(value, settings))
        journal = Path(state) / "requests.jsonl"
        results["journal_lines"] = len(journal.read_text(encoding="utf-8").splitlines()) if journal.exists() else 0

    results["decode"] = step("decode", lambda: measure_decode(blobs, settings),
                             lambda value: print_decode(value, settings))
    results["memory"] = step("memory", lambda: measure_memory(blobs, settings), print_memory)

    results["elapsed_s"] = time.monotonic() - began
    results["machine"]["load_average_at_end"] = os.getloadavg()
    rows = summary_rows(results)
    results["summary"] = rows
    print_summary(rows, results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"  figures written to {args.json}")
    if args.plot:
        plot(rows, args.plot, results)
        print(f"  chart written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
