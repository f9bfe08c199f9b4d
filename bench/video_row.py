"""Row v: the video node against the fake fal in this process, on a 15 s 720p result of a realistic size (about
2 MB a second, as fal's H.264 with sound; the fake's own flat videos are a few hundred kB).

- Overhead past fal's job: the Grok Imagine Video node (download to a file, probe, last frame, ComfyUI's VIDEO)
  vs a minimal client (a fresh httpx client; submit, one status stream, the result, the MP4 streamed to a file;
  nothing else), each prompt in its own `asyncio.run`, alternating. Overhead = prompt wall - the fake's queue +
  run time.
- Peak memory of the same node run, in a fresh process, against the size of the file it downloads: the video is
  streamed to disk, never held whole in memory.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import time
import types
from fractions import Fraction
from pathlib import Path
from typing import Any

import harness as h

SECONDS, WIDTH, HEIGHT, FPS = 15, 1280, 720, 24
BITRATE = 16_000_000  # bits a second: about 30 MB for 15 s
OVERHEAD_SLACK_MS, MEMORY_TARGET = 50.0, 1.0
ENDPOINT = "xai/grok-imagine-video/text-to-video"
_numbers = itertools.count(1)


def realistic_mp4(path: Path) -> None:
    """An H.264 MP4 of SECONDS s at WIDTH x HEIGHT with a silent AAC track, at about BITRATE: grain that moves
    every frame keeps the encoder from making it small."""
    import av
    import numpy as np

    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("h264", rate=FPS)
        video.width, video.height, video.pix_fmt, video.bit_rate = WIDTH, HEIGHT, "yuv420p", BITRATE
        video.options = {"preset": "ultrafast"}
        audio = container.add_stream("aac", rate=48000, layout="stereo")
        for index in range(SECONDS * FPS):
            grain = rng.integers(0, 24, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(np.roll(base, index * 4, axis=1) + grain, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        silence = np.zeros((2, 1024), np.float32)
        for start in range(0, SECONDS * 48000, 1024):
            chunk = av.AudioFrame.from_ndarray(silence, format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts, chunk.time_base = 48000, start, Fraction(1, 48000)
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))


def serve_realistic_video(path: Path) -> int:
    """Make the fake serve the realistic MP4 at `path` (made first if missing) for every 15 s 720p result; its size
    in bytes."""
    from fake_fal import video as fake_fal_video

    if not path.exists():
        realistic_mp4(path)
    data = path.read_bytes()
    fake_fal_video._mp4_cache[(WIDTH, HEIGHT, SECONDS * FPS, FPS)] = data
    return len(data)


def install_video_types() -> None:
    """ComfyUI's VIDEO types (`comfy_api.latest.InputImpl`), stood in as the tests stand them in."""
    from fake_comfy_video import VideoFromComponents, VideoFromFile

    sys.modules["comfy_api.latest"].InputImpl = types.SimpleNamespace(  # type: ignore[attr-defined]
        VideoFromFile=VideoFromFile, VideoFromComponents=VideoFromComponents)


def video_prompt() -> str:
    return f"benchmark video {next(_numbers)}: a lighthouse at dusk, waves below"


async def pack_video() -> str:
    node = h.pack_module("nodes.video").FalGrokImagineVideo
    _, url, _ = await h.run_node(node, prompt=video_prompt(), duration=SECONDS, aspect_ratio="16:9",
                                 resolution="720p", model="grok-imagine-video", seed=0, unique_id="10",
                                 extra_pnginfo={"workflow": {"nodes": [{"id": 10}]}})
    return str(url).split("/files/")[1].split("/")[0]


async def minimal_video(folder: Path) -> str:
    """What a minimal fal video node does: submit, one status stream, the result, the MP4 streamed to a file."""
    arguments = {"prompt": video_prompt(), "duration": SECONDS, "aspect_ratio": "16:9", "resolution": "720p"}
    async with h.httpx.AsyncClient(timeout=60.0) as client:
        handle, result = await h.minimal_result(client, ENDPOINT, arguments)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".mp4", delete=False) as file:
            async with client.stream("GET", result["video"]["url"]) as response:
                async for chunk in response.aiter_bytes(256 * 1024):
                    file.write(chunk)
    return str(handle["request_id"])


def measure_video(root: Path, s: Any, report: h.Report) -> None:
    work = root / "video"
    work.mkdir(exist_ok=True)
    install_video_types()
    size = serve_realistic_video(work / "realistic.mp4")
    with h.FakeFal(accepted_keys={h.TEST_KEY}, run_time=s.gen, cdn_latency=s.cdn) as fake:
        h.fresh_pack(fake.url, root, "video")
        clients = {"pack": pack_video, "minimal": lambda: minimal_video(work)}
        for client in clients.values():  # warm-up
            h.run_prompt(client)
        samples: dict[str, list[dict[str, float]]] = {c: [] for c in clients}
        for round_ in range(s.repeats):
            fake.faults.run_time = s.gen + h.STREAM_TICK_S * (round_ + 0.5) / s.repeats
            for client in list(clients)[round_ % 2:] + list(clients)[:round_ % 2]:
                start, end, request_id = h.run_prompt(clients[client])
                seen = h.seen_by_fake(fake, request_id)
                samples[client].append({"overhead": end - start - seen["generation"],
                                        "after_result": end - seen["result_at"]})
    pack, minimal = ([r["overhead"] for r in samples[c]] for c in ("pack", "minimal"))
    video = h.pack_module("media.video")
    last_frame_ms = h.median([h.timed(video.read_video, work / "realistic.mp4") for _ in range(3)]) * 1e3
    decode_all_ms = h.timed(decode_all, work / "realistic.mp4") * 1e3
    target = h.median(minimal) * 1e3 + last_frame_ms + OVERHEAD_SLACK_MS
    rows = [{"client": c, **h.in_ms("overhead", [r["overhead"] for r in samples[c]]),
             "result->end ms": h.median([r["after_result"] for r in samples[c]]) * 1e3,
             "samples s": [r["overhead"] for r in samples[c]]} for c in samples]
    rows[0] |= {"last frame ms": last_frame_ms, "decode all ms": decode_all_ms, "target ms": target,
                "met": report.check("v video overhead past fal's job, 15 s 720p",
                                                         h.median(pack) * 1e3, target, "ms")}
    memory = memory_row(work / "realistic.mp4")
    if "ratio x" in memory:
        memory["met"] = report.check("v video peak memory vs its file, 15 s 720p", memory["ratio x"], MEMORY_TARGET,
                                     "x")
    report.table("video", f"v. The video node: overhead past fal's job vs a minimal client, ms ({s.repeats} prompts "
                 f"each), and peak memory vs the file ({size / 1e6:.1f} MB, {SECONDS} s {WIDTH}x{HEIGHT})",
                 [*rows, memory], VIDEO_NOTE.format(slack=OVERHEAD_SLACK_MS))


def decode_all(path: Path) -> Any:
    """The last frame as a plain PyAV user reads it: every frame decoded, the last kept."""
    import av

    with av.open(str(path)) as container:
        last = None
        for last in container.decode(video=0):  # noqa: B007 (the loop keeps the last one)
            pass
        return last.to_ndarray(format="rgb24")


def memory_row(video: Path) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).with_name("run.py")), "--_memprobe", f"video:{video}"]
    process = subprocess.run(command, capture_output=True, text=True, timeout=600)  # noqa: S603 (our own argv)
    if process.returncode != 0:
        return {"client": "pack, memory", "error": process.stderr.strip()[-300:]}
    m = json.loads(process.stdout.strip().splitlines()[-1])
    return {"client": "pack, memory", "file MB": m["file"] / 1e6, "growth MB": m["growth"] / 1e6,
            "ratio x": m["growth"] / m["file"], "target x": MEMORY_TARGET,
            "mark reset": "yes" if m["reset"] else "NO: lower bound"}


def memprobe(config: str) -> dict[str, Any]:
    """`run.py --_memprobe video:PATH`, in a fresh process: the peak memory growth of one video node run whose
    result is the MP4 at PATH (15 s 720p)."""
    from image_rows import peak_growth

    with h.host_and_state() as root, h.FakeFal(accepted_keys={h.TEST_KEY}, run_time=0.05) as fake:
        install_video_types()
        size = serve_realistic_video(Path(config.partition(":")[2]))
        h.fresh_pack(fake.url, root, "video-memory")
        h.run_prompt(pack_video)  # warm-up: the pack's clients, PyAV's decoder
        time.sleep(0.1)
        growth, _, reset = peak_growth(lambda: h.run_prompt(pack_video))
    return {"file": size, "growth": growth, "reset": reset}


VIDEO_NOTE = """\
target: the minimal client's median overhead + reading the file's size, length and last frame alone
(`media.video.read_video`: the last frame decoded from the key frame before the last second; this file, like
x264's default, has a key frame every 10.4 s) + {slack:.0f} ms.
decode all (no target): a plain PyAV user's last frame, every frame decoded. result->end: the first result
request -> the prompt's end. Memory: VmHWM growth of a whole node run in a fresh process (the mark
first reset to the resident size), against the size of the MP4 it downloads; target at most 1x (never held whole
in memory)."""
