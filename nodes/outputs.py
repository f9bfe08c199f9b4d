"""What a Grok node hands back to ComfyUI: its outputs in contract order, what the node shows (previews,
the revised prompt), and the provenance that Save Image writes into the PNG.

Provenance goes into the workflow JSON that ComfyUI embeds in every saved PNG (`EXTRA_PNGINFO`): the
Grok node's `properties.grok_imagine` lists, run by run, the fal request id(s), the endpoint and the
revised prompt. ComfyUI shares that dict between the nodes of a prompt, so Save Image, which runs
after the Grok node, writes it. A prompt sent without a workflow gets `grok_imagine` at the top level.
"""

from __future__ import annotations

import logging
from typing import Any

from .generate import Generation
from .previews import save_previews

log = logging.getLogger("grok_imagine_fal")

PROPERTY = "grok_imagine"


def node_output(generation: Generation, *, endpoint: str, node_id: str | None,
                extra_pnginfo: Any = None) -> dict[str, Any]:
    """Outputs in contract order, plus what ComfyUI shows on the node: previews and the revised prompt."""
    record_provenance(extra_pnginfo, node_id, {
        "endpoint": endpoint,
        "request_ids": generation.request_ids,
        "revised_prompt": generation.revised_prompt,
        **({"refusals": generation.refusals} if generation.refusals else {}),
    })
    return {
        "ui": {
            "images": save_previews([f for f in generation.files if not f.placeholder], generation.request_id),
            "text": [generation.revised_prompt],
            "request_id": [generation.request_id],
        },
        "result": (generation.images, generation.revised_prompt, "\n".join(generation.image_urls)),
    }


def _workflow_nodes(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The workflow's nodes, those inside subgraph definitions included."""
    nodes = [n for n in workflow.get("nodes") or [] if isinstance(n, dict)]
    for subgraph in (workflow.get("definitions") or {}).get("subgraphs") or []:
        if isinstance(subgraph, dict):
            nodes += [n for n in subgraph.get("nodes") or [] if isinstance(n, dict)]
    return nodes


def record_provenance(extra_pnginfo: Any, node_id: str | None, entry: dict[str, Any]) -> None:
    """Add this run's `entry` to the node's provenance in `extra_pnginfo` (a no-op without one)."""
    if not isinstance(extra_pnginfo, dict) or node_id is None:
        return
    try:
        workflow = extra_pnginfo.get("workflow")
        own_id = str(node_id).rsplit(":", 1)[-1]  # a node inside a subgraph runs as "outer:inner"
        target = None
        if isinstance(workflow, dict):
            target = next((n for n in _workflow_nodes(workflow) if str(n.get("id")) in (str(node_id), own_id)), None)
        if target is not None:
            properties = target.setdefault("properties", {})
            properties.setdefault(PROPERTY, []).append(entry)
        else:
            extra_pnginfo.setdefault(PROPERTY, {}).setdefault(str(node_id), []).append(entry)
    except (AttributeError, TypeError):  # a workflow of another shape: provenance is a bonus, never a failure
        log.debug("no provenance recorded for node %s", node_id, exc_info=True)
