"""What a Grok node hands back to ComfyUI: its outputs in contract order, what the node shows (previews,
the revised prompt, the video), and the provenance that Save Image writes into the PNG (Save Video into the MP4).

Previews are fal's own image files written to ComfyUI's temp directory as they are (no re-encoding), so a
preview costs a file write.

Provenance goes into the workflow JSON that ComfyUI embeds in every saved PNG (`EXTRA_PNGINFO`): the
Grok node's `properties.grok_imagine` lists its runs in this prompt, each with the fal request id(s),
the endpoint and the revised prompt. ComfyUI shares that dict between the nodes of a prompt (and the
items of a list), so Save Image, which runs after the Grok node, writes it. Fed a list, the node has
one entry per item, in list order, each with its `list_index` and only its own requests: Save Image
writes the whole list into every PNG, and saves the items in list order, so the PNGs of item k find
their entry at `list_index` k. A prompt sent without a workflow gets `grok_imagine` at the top level.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..media.output_batch import FetchedImage
from . import host
from .list_batch import BatchMember

if TYPE_CHECKING:
    from .run import Generation
    from .video import Clip

log = logging.getLogger("grok_imagine_fal")

PROPERTY = "grok_imagine"

BROWSER_FORMATS = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif"}
SUBFOLDER = "grok_imagine"


def save_previews(files: list[FetchedImage], request_id: str) -> list[dict[str, str]]:
    """ComfyUI `ui.images` entries for `files`; empty outside ComfyUI or if the temp dir is unusable."""
    folder_paths = host.folder_paths()
    if folder_paths is None:
        return []
    try:
        folder = Path(folder_paths.get_temp_directory()) / SUBFOLDER
        folder.mkdir(parents=True, exist_ok=True)
        previews = []
        for index, image in enumerate(files):
            extension = BROWSER_FORMATS.get(image.file_format)
            if extension is None:
                continue
            name = f"{re.sub(r'[^A-Za-z0-9_-]', '_', request_id)}_{index + 1}.{extension}"
            (folder / name).write_bytes(image.data)
            previews.append({"filename": name, "subfolder": SUBFOLDER, "type": "temp"})
        return previews
    except OSError:
        log.warning("could not write previews for request %s", request_id, exc_info=True)
        return []


def node_output(generation: Generation, *, endpoint: str, node_id: str | None, member: BatchMember,
                extra_pnginfo: Any = None) -> dict[str, Any]:
    """Outputs in contract order, plus what ComfyUI shows on the node: previews and the revised prompt."""
    record_provenance(extra_pnginfo, node_id, member.provenance({
        "endpoint": endpoint,
        "request_ids": generation.request_ids,
        "revised_prompt": generation.revised_prompt,
        **({"refusals": generation.refusals} if generation.refusals else {}),
    }))
    return {
        "ui": {
            "images": save_previews([f for f in generation.files if not f.placeholder], generation.request_id),
            "text": [generation.revised_prompt],
            "request_id": [generation.request_id],
        },
        "result": (generation.images, generation.revised_prompt, "\n".join(generation.image_urls)),
    }


def video_output(clip: Clip, *, endpoint: str, node_id: str | None, member: BatchMember,
                 extra_pnginfo: Any = None) -> dict[str, Any]:
    """A video node's outputs in contract order, and the video playing on the node as Save Video's preview does
    (the file is already in ComfyUI's temp folder). Its provenance goes where an image node's does, so Save
    Video writes it into the MP4's metadata."""
    record_provenance(extra_pnginfo, node_id, member.provenance({
        "endpoint": endpoint, "request_ids": [clip.request_id], "video_url": clip.url}))
    return {
        "ui": {"images": [{"filename": clip.path.name, "subfolder": SUBFOLDER, "type": "temp"}], "animated": (True,),
               "request_id": [clip.request_id]},
        "result": (clip.video, clip.url, clip.last_frame),
    }


def _workflow_nodes(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The workflow's nodes, those inside subgraph definitions included."""
    nodes = [n for n in workflow.get("nodes") or [] if isinstance(n, dict)]
    for subgraph in (workflow.get("definitions") or {}).get("subgraphs") or []:
        if isinstance(subgraph, dict):
            nodes += [n for n in subgraph.get("nodes") or [] if isinstance(n, dict)]
    return nodes


def record_provenance(extra_pnginfo: Any, node_id: str | None, entries: list[dict[str, Any]]) -> None:
    """Make `entries` (the node's runs in this prompt) its provenance in `extra_pnginfo` (a no-op without one).
    They replace what the workflow brought along (a workflow loaded from a PNG carries that PNG's runs)."""
    if not isinstance(extra_pnginfo, dict) or node_id is None:
        return
    try:
        workflow = extra_pnginfo.get("workflow")
        own_id = str(node_id).rsplit(":", 1)[-1]  # a node inside a subgraph runs as "outer:inner"
        target = None
        if isinstance(workflow, dict):
            target = next((n for n in _workflow_nodes(workflow) if str(n.get("id")) in (str(node_id), own_id)), None)
        if target is None:
            extra_pnginfo.setdefault(PROPERTY, {})[str(node_id)] = entries
            return
        properties = target.setdefault("properties", {})
        kept: list[Any] = []
        if own_id != str(node_id):  # every instance of a subgraph shares its nodes: each names itself
            entries = [{"node_id": str(node_id), **entry} for entry in entries]
            before = properties.get(PROPERTY)
            kept = [e for e in before if isinstance(e, dict) and e.get("node_id") not in (None, str(node_id))] \
                if isinstance(before, list) else []
        properties[PROPERTY] = kept + entries
    except (AttributeError, TypeError):  # a workflow of another shape: provenance is a bonus, never a failure
        log.debug("no provenance recorded for node %s", node_id, exc_info=True)
