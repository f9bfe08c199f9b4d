"""Rows on the images alone: decoding to the node's tensor vs plain Pillow on the same bytes (3), and the
peak memory of the node path vs its output tensor, each config in a fresh process (6)."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness as h

DECODE_TARGET, MEMORY_TARGET, SAMPLE_S = 1.3, 2.0, 0.1
DECODE_CONFIGS = [("jpeg", "1k", "flat"), ("jpeg", "2k", "flat"), ("png", "1k", "flat"), ("png", "2k", "flat"),
                  ("jpeg", "1k", "photo-like"), ("jpeg", "2k", "photo-like")]
QUICK_DECODE_CONFIGS = [DECODE_CONFIGS[i] for i in (0, 3, 4, 5)]


def data_uris(blobs: list[bytes], fmt: str) -> list[str]:
    return [f"data:image/{fmt};base64,{base64.b64encode(b).decode()}" for b in blobs]


async def node_decode(uris: list[str], size: tuple[int, int] | None) -> tuple[Any, float, float]:
    """The node's path: an `OutputBatch` prepared for `size` as while fal generates (None: not prepared),
    then `fetch` + `finish`. The tensor, the seconds of fetch + finish, and of the preparation before."""
    start = time.perf_counter()
    out = h.pack_module("media.output_batch").OutputBatch(len(uris), key=None, expected=size)
    if size is not None:
        out.prepare_ahead()  # what the node does once fal starts running the request
    await out.close()
    prepared = time.perf_counter()
    images = await out.finish(await out.fetch(uris, first_slot=0, timeout_s=60.0, request_id=None))
    return images, time.perf_counter() - prepared, prepared - start


async def decode_config(fmt: str, res: str, kind: str, s: Any) -> dict[str, float]:
    blobs = h.fake_images(4, fmt, res) if kind == "flat" else [h.textured_jpeg(res, i) for i in range(4)]
    uris, size = data_uris(blobs, fmt), h.fake_image_size(h.ASPECT_RATIO, res)

    async def reference(decode: Callable[[list[bytes]], Any]) -> float:
        return h.timed(decode, blobs)

    async def pack(prepare: tuple[int, int] | None) -> float:
        _, seconds, before = await node_decode(uris, prepare)
        if prepare:
            preparing.append(before)
        return seconds

    preparing: list[float] = []
    variants = {"plain": lambda: reference(h.plain_decode), "prepared": lambda: pack(size),
                "unprepared": lambda: pack(None), "minimal": lambda: reference(h.to_tensor)}
    for work in variants.values():  # warm-up
        await work()
    loops = max(1, min(20, round(SAMPLE_S / (2 if s.quick else 1) / await pack(None))))
    samples: dict[str, list[float]] = {v: [] for v in variants}
    for round_ in range(s.repeats):
        for v in list(variants)[round_ % 4:] + list(variants)[:round_ % 4]:
            samples[v].append(sum([await variants[v]() for _ in range(loops)]) / loops)
    return {v: h.median(x) * 1e3 for v, x in samples.items()} | {"kb": sum(map(len, blobs)) / 4096, "loops": loops,
                                                                "prepare": h.median(preparing) * 1e3}


def measure_decode(s: Any, report: h.Report) -> None:
    """Objects alive now are frozen out of the collector, so that no sample pays a full collection."""
    gc.collect()
    gc.freeze()
    rows = []
    try:
        for fmt, res, kind in QUICK_DECODE_CONFIGS if s.quick else DECODE_CONFIGS:
            m, name = asyncio.run(decode_config(fmt, res, kind, s)), f"4 x {fmt} {res} {kind}"
            row: dict[str, Any] = {"config": name, "KB/img": f"{m['kb']:.0f}", "plain ms": m["plain"]}
            row |= {"prep ms": m["prepared"], "prep x": m["prepared"] / m["plain"],
                    "prep met": report.check(f"3 decode {name}, prepared", m["prepared"] / m["plain"], DECODE_TARGET,
                                             "x"),
                    "unprep ms": m["unprepared"], "unprep x": m["unprepared"] / m["plain"]}
            rows.append(row | {"(prepare) ms": m["prepare"], "minimal ms": m["minimal"], "loops": m["loops"]})
    finally:
        gc.unfreeze()
    report.table("decode", f"3. Decoding 4 images to the node's tensor vs plain Pillow on the same bytes, ms; "
                 f"{s.repeats} samples each", rows, DECODE_NOTE.format(target=DECODE_TARGET))


DECODE_NOTE = """\
target <= {target}x plain (Image.open -> convert('RGB') -> numpy.asarray (uint8), one after the other) on the
node's usual path, its batch prepared while fal runs the request; unprepared (no size known ahead: the first
`auto` edit whose result states no size) is shown for information, with no target.
prep / unprep: OutputBatch.fetch + finish on base64 data URIs (the node's sync-mode path, base64 decoding
included), its batch prepared beforehand as while fal generates (not timed; what it took: (prepare)) or not at
all. minimal: plain Pillow + np.stack -> float32 (the minimal client's decode). flat: the fake's images;
photo-like: JPEGs with a photograph's detail. Each sample is the mean of `loops` runs."""


MEMORY_CONFIGS = ["batch:jpeg:1k", "batch:jpeg:2k", "batch:png:1k", "batch:png:2k", "node:4", "node:16"]
QUICK_MEMORY_CONFIGS = ["batch:jpeg:2k", "node:4"]


def high_water_mark() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))


def peak_growth(work: Callable[[], Any]) -> tuple[int, Any, bool]:
    """How far the resident set's high-water mark rose during `work`, what `work` returned, and whether
    the mark could first be reset to the resident size (if not, the figure is a lower bound)."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        reset = True
    except OSError:
        reset = False
    before = high_water_mark()
    value = work()
    return high_water_mark() - before, value, reset


def memprobe(config: str) -> dict[str, Any]:
    """`run.py --_memprobe CONFIG`, in a fresh process. batch:FMT:RES: an OutputBatch prepared as the node
    prepares it, fetch + finish of 4 data URIs; node:N: a whole N-image node against a fake fal here."""
    kind, _, rest = config.partition(":")
    if kind == "batch":
        fmt, res = rest.split(":")
        uris, size = data_uris(h.fake_images(4, fmt, res), fmt), h.fake_image_size(h.ASPECT_RATIO, res)
        asyncio.run(node_decode(data_uris(h.fake_images(1, "png", "1k"), "png"), None))  # warm-up
        growth, (_, _, (images, _, _)), reset = peak_growth(lambda: h.run_prompt(node_decode, uris, size))
    else:
        with h.host_and_state() as root, h.FakeFal(accepted_keys={h.TEST_KEY}, run_time=0.05) as fake:
            h.fresh_pack(fake.url, root, "memory")
            h.fake_images(4, "jpeg", "1k")  # the fake's image cache, filled before the window opens
            h.run_prompt(h.call_node, 1)  # warm-up
            growth, (_, _, outputs), reset = peak_growth(lambda: h.run_prompt(h.call_node, int(rest)))
            images = outputs[0]
    return {"tensor": images.numel() * images.element_size(), "growth": growth, "reset": reset}


def measure_memory(s: Any, report: h.Report) -> None:
    """One process per config, as many at once as there are cores (memory is not timing)."""
    command = [sys.executable, str(Path(__file__).with_name("run.py")), "--_memprobe"]
    configs = QUICK_MEMORY_CONFIGS if s.quick else MEMORY_CONFIGS
    rows: list[dict[str, Any]] = []
    for first in range(0, len(configs), os.cpu_count() or 1):
        batch = configs[first:first + (os.cpu_count() or 1)]
        running = [subprocess.Popen(command + [c], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for c in batch]
        for config, process in zip(batch, running):
            out, err = process.communicate(timeout=300)
            if process.returncode != 0:
                rows.append({"config": config, "error": err.strip()[-300:]})
                continue
            m = json.loads(out.strip().splitlines()[-1])
            rows.append({"config": config, "tensor MiB": f"{m['tensor'] / 2**20:.0f}",
                         "growth MiB": f"{m['growth'] / 2**20:.0f}", "ratio x": m["growth"] / m["tensor"],
                         "target x": MEMORY_TARGET, "mark reset": "yes" if m["reset"] else "NO: lower bound",
                         "met": report.check(f"6 peak memory {config}", m["growth"] / m["tensor"], MEMORY_TARGET, "x")})
    report.table("memory", "6. Peak memory growth of the node path vs its output tensor (a fresh process each)", rows,
                 MEMORY_NOTE)


MEMORY_NOTE = """\
growth: VmHWM after - VmHWM before, the mark first reset to the resident size (/proc/self/clear_refs).
batch: an OutputBatch prepared as the node prepares it, fetch + finish of 4 data URIs; node: a whole N-image
node (jpeg 1k) against a fake fal in that process."""
