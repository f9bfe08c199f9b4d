"""Benchmark of the Grok Imagine (fal) node pack against the project's fake fal server.

It measures the node's own code path: the pack is loaded as ComfyUI loads it, its node called as
ComfyUI's executor calls it (`tests/comfy_like.py`), each prompt in a fresh event loop. The fake fal
(`tests/fake_fal/`) runs in this process for rows 1-6 and 8 (sharing the GIL with the pack: a little
pessimistic) and in a process of its own for row 7. What a row compares is measured in the same run,
alternating; ratios are of medians; p95 is by nearest rank (the maximum below 20 samples). It
prints its figures and asserts nothing.

Rows: 1 overhead beyond generation; 2 per-prompt cost vs a minimal client; 3 decoding vs plain
Pillow; 4 batch pre-allocation on vs off; 5 concurrency; 6 peak memory; 7 a batch of 240 prompts; 8 what
1,000 prompts waiting in fal's queue cost; 9 Cancel of a list of 1,000 prompts; v the video node (its overhead
past fal's job vs a minimal client, its peak memory vs the file); c a chain generate -> edit (fal's URLs vs
uploads).

    python bench/run.py --quick                                            # about a minute
    python bench/run.py --json bench/results.json --plot docs/bench.png    # a few minutes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402  (it puts tests/ on sys.path)

ROWS = "123456789vc"


@dataclasses.dataclass(frozen=True)
class Settings:
    quick: bool
    gen: float  # the fake's generation time (run_time), s
    cdn: float  # the fake's delay before each image file, s
    repeats: int
    batch_runs: int
    batch_run_time: float


def machine() -> dict[str, Any]:
    import numpy
    import PIL

    return {"cores": os.cpu_count(), "python": platform.python_version(), "torch": h.torch.__version__,
            "torch threads": h.torch.get_num_threads(), "numpy": numpy.__version__, "pillow": PIL.__version__,
            "httpx": h.httpx.__version__, "platform": platform.platform(), "load at start": os.getloadavg()}


def shown(value: float, unit: str) -> str:
    return {"ms": f"{value:.1f} ms", "%": f"{value:.1f} %"}.get(unit, f"{value:.2f}x")


def loads(values: Any) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter generations (about two minutes)")
    parser.add_argument("--gen-latency", type=float, help="the fake's generation time, s (default 1.0, quick 0.2)")
    parser.add_argument("--cdn-latency", type=float, default=0.02, help="delay before each image file, s (0.02)")
    parser.add_argument("--repeats", type=int, help="samples per figure (default 7, quick 3)")
    parser.add_argument("--rows", default=ROWS, help="the rows to run, e.g. 27v (default: all)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--plot", type=Path, help="draw measured / target of every figure with a target to this PNG")
    parser.add_argument("--_memprobe", dest="memprobe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import batch_row
    import cancel_row
    import chain_row
    import image_rows
    import node_rows
    import video_row
    import wait_row

    if args.memprobe:
        probe = video_row.memprobe if args.memprobe.startswith("video:") else image_rows.memprobe
        print(json.dumps(probe(args.memprobe)))
        return 0
    q = args.quick
    s = Settings(q, args.gen_latency or (0.2 if q else 1.0), args.cdn_latency, args.repeats or (3 if q else 7),
                 3 if q else 5, 0.25 if q else 1.0)
    m, report, durations = machine(), h.Report(), {}
    print(f"grok-imagine-fal benchmark{' (quick)' if q else ''}: generation {s.gen} s, CDN {s.cdn * 1e3:.0f} ms, "
          f"{s.repeats} samples; batch row {s.batch_runs} runs of {s.batch_run_time} s jobs\n"
          f"machine: {m['cores']} cores, Python {m['python']}, torch {m['torch']}, Pillow {m['pillow']}, "
          f"httpx {m['httpx']}; load average {loads(m['load at start'])} (1/5/15 min)\n"
          "Other work may be running on this machine and skews every figure: compare the figures of one run.")
    began = time.monotonic()

    def step(rows: str, name: str, work: Any) -> None:
        if set(rows) & set(args.rows):
            start = time.monotonic()
            work()
            durations[name] = time.monotonic() - start
            print(f"  ({name}: {durations[name]:.1f} s)")

    with h.host_and_state() as root:
        with h.FakeFal(accepted_keys={h.TEST_KEY}, run_time=s.gen, cdn_latency=s.cdn) as fake:
            for rows, name, measure in (("14", "overhead", node_rows.measure_overhead),
                                        ("2", "per-prompt", node_rows.measure_per_prompt),
                                        ("5", "concurrency", node_rows.measure_concurrency),
                                        ("c", "chains", chain_row.measure_chains)):
                def group(name: str = name, measure: Any = measure) -> None:
                    fake.reset()
                    h.fresh_pack(fake.url, root, name)
                    measure(fake, s, report)
                step(rows, name, group)
        step("3", "decode", lambda: image_rows.measure_decode(s, report))
        step("6", "memory", lambda: image_rows.measure_memory(s, report))
        step("7", "batch", lambda: batch_row.measure_batch(root, s, report))
        step("8", "waiting", lambda: wait_row.measure_waiting(root, s, report))
        step("9", "cancel", lambda: cancel_row.measure_cancel(root, s, report))
        step("v", "video", lambda: video_row.measure_video(root, s, report))

    m["load at end"] = os.getloadavg()
    elapsed = time.monotonic() - began
    # by row, in the rows' order; in run order within a row
    checks = sorted(report.checks, key=lambda c: ROWS.index(c["row"][0]))
    report.table("summary", "SUMMARY: every figure with a target",
                 [{"row": c["row"], "measured": shown(c["value"], c["unit"]),
                   "target": "<= " + shown(c["target"], c["unit"]), "met": "met" if c["met"] else "MISSED"}
                  for c in checks],
                 f"{sum(c['met'] for c in checks)} met, {sum(not c['met'] for c in checks)} missed; load average "
                 f"{loads(m['load at start'])} at start, {loads(m['load at end'])} at end; {elapsed:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"settings": dataclasses.asdict(s), "machine": m, "durations_s": durations,
                                         "rows": report.tables, "checks": checks}, indent=1) + "\n", encoding="utf-8")
        print(f"  figures written to {args.json}")
    if args.plot:
        from plot import Bar, draw_ratio_chart

        draw_ratio_chart([Bar(c["row"], c["value"], c["target"], f"{shown(c['value'], c['unit'])} / "
                              f"{shown(c['target'], c['unit'])}") for c in checks], args.plot,
                         "grok-imagine-fal benchmark: measured / target",
                         f"{m['cores']} cores (load {loads(m['load at start'])} at start), Python {m['python']}, torch "
                         f"{m['torch']}; generation {s.gen} s, CDN {s.cdn * 1e3:.0f} ms, {s.repeats} samples; batch "
                         f"{s.batch_runs} runs of {s.batch_run_time} s jobs")
        print(f"  chart written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
