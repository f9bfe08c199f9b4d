"""Row c: a chain of Grok nodes, generate -> edit, with one and with three references, at 1k and 2k, against the
fake fal in this process serving photo-like JPEGs (a photograph's detail, as Grok makes them).

Measured for the edit, from its start (its prompt's) to its submit reaching fal, and the bytes it uploads: the
pack as it is (the references are images a Grok node made, unchanged, so they go by fal's URL) against the same
edit with nothing held at fal (every reference encoded as PNG and uploaded: the path before, and every other
pack's), alternating in one run. The uploads the pack remembers are forgotten before each upload run, so that
each one uploads as a new picture would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import harness as h

CONFIGS = [(1, "1k"), (3, "1k"), (1, "2k"), (3, "2k")]
SPEEDUP_TARGET = 5.0


@contextlib.contextmanager
def nothing_held(enabled: bool) -> Iterator[None]:
    """With `enabled`: fal holds none of the images (`fal_images.url_of` finds nothing), and no upload is
    remembered, so every reference is encoded and uploaded."""
    fal_images = h.pack_module("media.fal_images")
    original = fal_images.url_of
    if enabled:
        fal_images.url_of = lambda digest: None
        h.pack_module("fal_transport.process_state").current().uploads.clear()
    try:
        yield
    finally:
        fal_images.url_of = original


async def edit(images: Any) -> tuple[Any, ...]:
    inputs = h.node_inputs("2", image=images, prompt=h.new_prompt(), aspect_ratio="1:1")
    return await h.run_node(h.pack_module("nodes.edit").FalGrokImagineEdit, **inputs)


def one_edit(fake: h.FakeFal, images: Any, upload: bool) -> dict[str, float]:
    uploads_before = len(fake.uploads)
    with nothing_held(upload):
        start, _, outputs = h.run_prompt(edit, images)
    submitted = fake.jobs[h.request_id_of(outputs[2])].submitted_at
    return {"to_submit": submitted - start, "bytes": sum(u["size"] for u in fake.uploads[uploads_before:])}


def measure_chains(fake: h.FakeFal, s: Any, report: h.Report) -> None:
    fake.faults.update({"photo_like_images": True})
    rows = []
    for count, resolution in CONFIGS:
        _, _, (made, _, _) = h.run_prompt(h.call_node, count, "jpeg", resolution)
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for round_ in range(s.repeats):
            for upload in (False, True) if round_ % 2 == 0 else (True, False):
                runs[upload].append(one_edit(fake, made, upload))
        name = f"{count} reference{'s' if count > 1 else ''} {resolution}"
        pack, uploading = (h.median([r["to_submit"] for r in runs[u]]) * 1e3 for u in (False, True))
        pack_bytes, uploading_bytes = (int(h.median([r["bytes"] for r in runs[u]])) for u in (False, True))
        ratio = pack / uploading
        met = report.check(f"c chain {name}: pack / uploading, to submit", ratio, 1 / SPEEDUP_TARGET, "x")
        rows.append({"chain": name, "pack ms": pack, "uploading ms": uploading, "pack / uploading x": ratio,
                     "pack bytes": pack_bytes, "uploading bytes": uploading_bytes,
                     "met": met if pack_bytes == 0 else "MISSED (uploaded)"})
    report.table("chains", f"c. generate -> edit: the edit's start to its submit, and the bytes it uploads; the pack "
                 f"(fal's URLs) vs every reference encoded and uploaded; median of {s.repeats}", rows,
                 f"target: pack / uploading at most {1 / SPEEDUP_TARGET:.2f}x (at least {SPEEDUP_TARGET:g}x faster to "
                 "submit), and 0 bytes uploaded")
