"""Rows on whole prompts against the fake fal in this process: overhead beyond generation (1), batch
pre-allocation on and off (4), per-prompt cost against a minimal client (2), concurrency (5).

Every prompt runs in its own `asyncio.run`, as ComfyUI runs each prompt. Round i of a row stretches
the fake's generation by (i + 0.5) / rounds of its 20 ms stream tick, and what a row compares shares
each round, so that nothing sits at a lucky or unlucky phase of the tick.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import harness as h

SLACK_S, PER_PROMPT_SLACK_MS, PREALLOCATION_SLACK_MS, CONCURRENCY_TARGET = 0.050, 5.0, 10.0, 1.2
CONFIGS = [(n, fmt, res) for n in (1, 4) for fmt in ("jpeg", "png") for res in ("1k", "2k")]


def stretch(fake: h.FakeFal, base: float, round_: int, rounds: int) -> None:
    fake.faults.run_time = base + h.STREAM_TICK_S * (round_ + 0.5) / rounds


def alternate(items: list[Any], round_: int) -> list[Any]:
    """A different order each round: rotated by the round."""
    return items[round_ % len(items):] + items[:round_ % len(items)]


@contextlib.contextmanager
def preallocation(enabled: bool) -> Iterator[None]:
    """The node as it is, or with `OutputBatch._prepare` doing nothing (no batch made ahead of the images)."""
    cls = h.pack_module("media.output_batch").OutputBatch
    original = cls._prepare
    if not enabled:
        cls._prepare = lambda self, size, why: None
    try:
        yield
    finally:
        cls._prepare = original


def node_prompt(fake: h.FakeFal, n: int, fmt: str, res: str, prepared: bool = True) -> dict[str, float]:
    with preallocation(prepared):
        start, end, outputs = h.run_prompt(h.call_node, n, fmt, res)
    seen = h.seen_by_fake(fake, h.request_id_of(outputs[2]))
    return {"overhead": end - start - seen["generation"], "to_submit": seen["submit_at"] - start,
            "after_result": end - seen["result_at"]}


def measure_overhead(fake: h.FakeFal, s: Any, report: h.Report) -> None:
    """Rows 1 and 4; each 4-image prompt runs back to back with its twin without pre-allocation."""
    for n, fmt, res in CONFIGS[4:]:  # warm-up: the fake renders its images, the node learns their sizes
        node_prompt(fake, n, fmt, res)
    runs: dict[tuple[Any, ...], list[dict[str, float]]] = {}
    for round_ in range(s.repeats):
        stretch(fake, s.gen, round_, s.repeats)
        for config in alternate(CONFIGS, round_):
            for prepared in alternate([True, False], round_) if config[0] == 4 else [True]:
                runs.setdefault((*config, prepared), []).append(node_prompt(fake, *config, prepared))
    overhead, preallocated = [], []
    for n, fmt, res in CONFIGS:
        name, mine = f"{n} x {fmt} {res}", runs[(n, fmt, res, True)]
        decode_ms = h.median([h.timed(h.plain_decode, h.fake_images(n, fmt, res)) for _ in range(9)]) * 1e3
        target = s.cdn * 1e3 + decode_ms + SLACK_S * 1e3
        seconds = [r["overhead"] for r in mine]
        overhead.append({"config": name, **h.in_ms("overhead", seconds),
                         "to submit ms": h.median([r["to_submit"] for r in mine]) * 1e3,
                         "result->end ms": h.median([r["after_result"] for r in mine]) * 1e3,
                         "plain decode ms": decode_ms, "target ms": target,
                         "met": report.check(f"1 overhead {name}", h.median(seconds) * 1e3, target, "ms"),
                         "samples s": seconds})
        if n == 4:
            simple = runs[(n, fmt, res, False)]
            paired = [b["overhead"] - a["overhead"] for a, b in zip(mine, simple)]
            window = [b["after_result"] - a["after_result"] for a, b in zip(mine, simple)]
            preallocated.append({
                "config": name, "prepared ms": h.median(seconds) * 1e3,
                "simple ms": h.median([r["overhead"] for r in simple]) * 1e3, **h.in_ms("simple - prepared", paired),
                "(result->end) ms": h.median(window) * 1e3,
                "verdict": "keep it" if h.median(paired) * 1e3 > PREALLOCATION_SLACK_MS else "simple path is as fast",
                "paired differences s": paired})
    report.table("overhead", f"1. Overhead beyond generation: prompt wall - the fake's queue + run time, ms; "
                 f"{s.repeats} prompts each", overhead, OVERHEAD_NOTE.format(cdn=s.cdn * 1e3, slack=SLACK_S * 1e3))
    report.table("preallocation", "4. Batch pre-allocation: the node as it is (prepared) vs OutputBatch._prepare "
                 "disabled (simple), ms", preallocated, PREALLOCATION_NOTE)


OVERHEAD_NOTE = """\
target = the CDN round trip ({cdn:.0f} ms) + plain Pillow decoding the same images one after the other + {slack:.0f} ms.
to submit: prompt start -> the submit at the fake; result->end: the first result request -> prompt end (the
result, CDN, decode, batch, previews, loop teardown)."""
PREALLOCATION_NOTE = """\
prepared / simple: median overhead (row 1); simple - prepared: median and p95 of the paired differences, each
pair back to back with the same generation time, order alternating; (result->end): the same for the window
after completion only. A decision, not a target: pre-allocation is kept only where the simple path is more
than 10 ms slower (verdict)."""



async def pack_prompt(n: int) -> str:
    return h.request_id_of((await h.call_node(n))[2])


async def minimal_prompt(n: int, verify: Any = True) -> str:
    return (await h.minimal_node(h.minimal_arguments(n), verify))[1]


CLIENTS = {"pack": pack_prompt, "minimal": minimal_prompt,
           "strict": lambda n: minimal_prompt(n, h.shared_ssl_context())}


def measure_per_prompt(fake: h.FakeFal, s: Any, report: h.Report) -> None:
    rounds, gen = (2 if s.quick else 3) * s.repeats, 0.1

    def timed(client: str, n: int) -> dict[str, float]:
        start, end, request_id = h.run_prompt(CLIENTS[client], n)
        return {"to submit": fake.jobs[request_id].submitted_at - start, "total": end - start}

    stretch(fake, gen, 0, rounds)
    first = {client: timed(client, 1) for client in CLIENTS}  # the first prompt of each since the reset
    samples: dict[tuple[str, int], list[dict[str, float]]] = {(c, n): [] for c in CLIENTS for n in (1, 4)}
    for round_ in range(rounds):
        stretch(fake, gen, round_, rounds)
        for n in (1, 4):
            for client in alternate(list(CLIENTS), round_):
                samples[(client, n)].append(timed(client, n))
    rows = []
    for n in (1, 4):
        for part in ("to submit", "total"):
            m = {c: h.median([x[part] for x in samples[(c, n)]]) * 1e3 for c in CLIENTS}
            rows.append({"images": n, "part": part, **h.in_ms("pack", [x[part] for x in samples[("pack", n)]]),
                         **h.in_ms("minimal", [x[part] for x in samples[("minimal", n)]]),
                         "pack behind ms": m["pack"] - m["minimal"],
                         "met": report.check(f"2 pack vs minimal client, 1 image, {part}", m["pack"],
                                             m["minimal"] + PER_PROMPT_SLACK_MS, "ms") if n == 1 else None,
                         "strict ms": m["strict"], "behind strict ms": m["pack"] - m["strict"]})
    report.table("per_prompt", f"2. Per prompt, each in its own asyncio.run: the pack vs a minimal client, ms; "
                 f"{rounds} prompts each", rows, PER_PROMPT_NOTE.format(gen=gen * 1e3, slack=PER_PROMPT_SLACK_MS)
                 + ", ".join(f"{c} {v['to submit'] * 1e3:.1f} / {v['total'] * 1e3:.1f}" for c, v in first.items()))


PER_PROMPT_NOTE = """\
to submit: prompt start (before asyncio.run) -> the submit arrives at the fake; total: the whole asyncio.run,
generation ({gen:.0f} ms + stretch) included. minimal: a fresh httpx.AsyncClient per prompt (its SSL context with
it), submit, one stream, result, parallel GETs, Pillow -> float32. Target on 1 image: the pack at most {slack:.0f} ms
behind. strict (no target): the same minimal client with one SSL context for the process.
First prompt after the pack's state was reset (one sample; to submit / total): """


SHAPES = {"1 node": [1], "4 nodes": [1] * 4, "8 nodes": [1] * 8, "4-image node": [4], "16-image node": [16]}
BASES = {"4 nodes": "1 node", "8 nodes": "1 node", "16-image node": "4-image node"}


async def gathered(sizes: list[int]) -> None:
    await asyncio.gather(*(h.call_node(n, node_id=str(i + 1)) for i, n in enumerate(sizes)))


def measure_concurrency(fake: h.FakeFal, s: Any, report: h.Report) -> None:
    for sizes in SHAPES.values():
        h.run_prompt(gathered, sizes)  # warm-up
    walls: dict[str, list[float]] = {shape: [] for shape in SHAPES}
    for round_ in range(s.repeats):
        stretch(fake, s.gen, round_, s.repeats)
        for shape in alternate(list(SHAPES), round_):
            start, end, _ = h.run_prompt(gathered, SHAPES[shape])
            walls[shape].append(end - start)
    rows = []
    for shape, seconds in walls.items():
        row: dict[str, Any] = {"prompt": shape, **h.in_ms("wall", seconds), "samples s": seconds}
        if shape in BASES:
            ratio = h.median(seconds) / h.median(walls[BASES[shape]])
            row |= {"vs": BASES[shape], "ratio x": ratio}
            if shape != "16-image node":
                row |= {"target x": CONCURRENCY_TARGET,
                        "met": report.check(f"5 {shape} vs {BASES[shape]}", ratio, CONCURRENCY_TARGET, "x")}
        rows.append(row)
    report.table("concurrency", f"5. Nodes gathered in one prompt (jpeg 1k), prompt wall ms; {s.repeats} prompts "
                 "each", rows, "ratio: of the medians; the 16-image node (four requests at once) has no target.")
