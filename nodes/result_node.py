"""Grok Imagine Result (fal): load an earlier request's images by its request id, without paying again.

It collects through the same path as a run (`run.collect_images`); the request is never submitted and
Cancel only stops the waiting (it is not cancelled at fal)."""

from __future__ import annotations

import re
from typing import Any

from ..fal_transport.aio import until_cancelled
from ..fal_transport.errors import InvalidInputError, RequestNotFoundError
from ..media.output_batch import OutputBatch
from . import grok_api as api
from . import host, widgets
from .list_batch import BatchMember
from .outputs import node_output
from .progress import NodeProgress
from .run import Generation, Session, collect_images, run_node, stopped_by_user

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
    session = Session.open()
    progress = node_progress.request()
    request = session.earlier(endpoint, request_id, progress)
    try:
        data = await request.result()
    except RequestNotFoundError as exc:  # fal keeps videos under another app: their ids are not found here
        raise RequestNotFoundError(f"{exc.reason} The id of a video request is loaded by the Grok Imagine Video "
                                   "Result node.", request_id=exc.request_id) from exc
    grok = api.read_result(data, request.request_id)
    out = OutputBatch(len(grok.image_urls), key=None, expected=grok.stated_size)
    try:
        out.prepare_ahead()
        part = await until_cancelled(collect_images(request, data, out, progress), host.interrupted,
                                     stopped_by_user(request))
        images = await out.finish(part.files)
    finally:
        await out.close()
    request.settle(used=True)
    return Generation(images, part.revised_prompt, part.image_urls, [request.request_id], part.files)


class FalGrokImagineResult(widgets.GrokImagesNode):
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
                "endpoint": (list(api.ENDPOINTS), {
                    "default": api.TEXT_TO_IMAGE_ENDPOINT,
                    "tooltip": "The endpoint the request was sent to (any of them finds the request: they share "
                               "one queue at fal).",
                }),
            },
            "hidden": widgets.HIDDEN,
        }

    async def load(self, request_id: str, endpoint: str = api.TEXT_TO_IMAGE_ENDPOINT,
                   unique_id: str | None = None, extra_pnginfo: Any = None) -> dict[str, Any]:
        async def run(member: BatchMember) -> dict[str, Any]:
            widgets.check_choice("endpoint", endpoint, api.ENDPOINTS)
            generation = await recover(endpoint, clean_request_id(request_id), member.progress)
            return node_output(generation, endpoint=endpoint, node_id=unique_id, member=member,
                               extra_pnginfo=extra_pnginfo)

        return await run_node(unique_id, run)
