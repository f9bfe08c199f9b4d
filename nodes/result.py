"""Grok Imagine Result (fal): load an earlier request's images by its request id, without paying again."""

from __future__ import annotations

import re
from typing import Any

from ..fal_transport import config
from ..fal_transport.config import Limits
from ..fal_transport.credentials import resolve_credentials
from ..fal_transport.errors import InvalidInputError
from ..fal_transport.journal import Journal
from ..fal_transport.lifecycle import RequestEvents, recover_request
from ..fal_transport.queue import FalQueue, RequestHandle
from ..image_io.output_batch import OutputBatch
from . import grok_spec as spec
from . import host, schema
from .batches import BatchMember
from .generate import Generation
from .generating import run_in_batch
from .grok_result import read_result
from .outputs import node_output
from .progress import NodeProgress

REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{7,127}$")


def clean_request_id(request_id: str) -> str:
    cleaned = (request_id or "").strip()
    if not REQUEST_ID.match(cleaned):
        raise InvalidInputError(
            "'request_id' must be a fal request id such as 0b5c3f2e-1a2b-4c3d-9e8f-123456789abc (shown on the "
            "Grok node, in ComfyUI's console, in every error message and in the PNGs Save Image writes).",
            field="request_id",
        )
    return cleaned


async def recover(endpoint: str, request_id: str, node_progress: NodeProgress) -> Generation:
    """Load an earlier request's images from fal by its id, without a new generation (nothing is billed)."""
    queue = FalQueue(resolve_credentials(config.key_file()))
    limits = Limits.from_env()
    progress = node_progress.request()
    events = RequestEvents(on_status=progress.status, on_tick=progress.tick, should_cancel=host.interrupted,
                           on_resumed=progress.resumed)
    out: OutputBatch | None = None

    async def collect(handle: RequestHandle, result: dict[str, Any]) -> Generation:
        nonlocal out
        grok = read_result(result, handle.request_id)
        out = OutputBatch(len(grok.image_urls), key=None, expected=grok.stated_size)
        out.prepare_ahead()
        progress.downloading(len(grok.image_urls))
        files = await out.fetch(grok.image_urls, first_slot=0, timeout_s=limits.download_timeout,
                                request_id=handle.request_id)
        images = await out.finish(files)
        progress.finished(len(files), grok.revised_prompt)
        return Generation(images, grok.revised_prompt, [u for u in grok.image_urls if not u.startswith("data:")],
                          [handle.request_id], files)

    try:
        return await recover_request(queue, Journal(config.state_dir()), queue.handle_for(endpoint, request_id),
                                     limits, events, collect)
    finally:
        if out is not None:
            await out.close()


class FalGrokImagineResult(schema.GrokImagesNode):
    """Load the images of an earlier Grok Imagine request from fal by its request id."""

    DESCRIPTION = (
        "Load the images, revised prompt and URLs of an earlier Grok Imagine request from fal by its request "
        "id, without a new generation (nothing is billed). Use it after a crash, a restart or a failure further "
        "down the graph; the id is also in the PNGs Save Image writes. fal keeps a result for about an hour after "
        "it completes; sync-mode requests are never kept."
    )
    FUNCTION = "load"
    OUTPUT_TOOLTIPS = (
        "The request's images as one batch.",
        "The prompt fal actually used for that request.",
        "The fal URLs of the images, one per line.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "request_id": ("STRING", {
                    "default": "",
                    "multiline": False,
                    "tooltip": "The fal request id to load, as shown on the Grok node, in the console, in error "
                               "messages and in the PNG metadata of saved images.",
                }),
                "endpoint": (list(spec.ENDPOINTS), {
                    "default": spec.TEXT_TO_IMAGE_ENDPOINT,
                    "tooltip": "The endpoint the request was sent to (any of them finds the request: they share "
                               "one queue at fal).",
                }),
            },
            "hidden": schema.HIDDEN,
        }

    async def load(self, request_id: str, endpoint: str = spec.TEXT_TO_IMAGE_ENDPOINT,
                   unique_id: str | None = None, extra_pnginfo: Any = None) -> dict[str, Any]:
        async def run(member: BatchMember) -> dict[str, Any]:
            schema.check_choice("endpoint", endpoint, spec.ENDPOINTS)
            generation = await recover(endpoint, clean_request_id(request_id), member.progress)
            return node_output(generation, endpoint=endpoint, node_id=unique_id, member=member,
                               extra_pnginfo=extra_pnginfo)

        return await run_in_batch(unique_id, run)
