"""What every Grok node that runs through fal does with its inputs once checked: join its batch, run, answer
ComfyUI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from . import host
from .batches import BatchMember, NodeBatch
from .generate import GrokCall, generate
from .outputs import node_output


async def run_in_batch(node_id: str | None, work: Callable[[BatchMember], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run one run of a node (one list item of it) as a member of its node's batch. The user's Cancel ends it
    as interrupted."""
    member = NodeBatch.join(node_id)  # before the first await: the batch knows every list item at once
    ok = False
    try:
        answer = await host.run_as_node(work(member))
        ok = True
        return answer
    finally:
        member.leave(ok=ok)


async def run_generating(node_id: str | None, extra_pnginfo: Any,
                         prepare: Callable[[BatchMember], Awaitable[GrokCall]]) -> dict[str, Any]:
    """Run one generating node (one list item of it): `prepare` checks the inputs (and, for edits, uploads
    the references) and says what to ask of fal."""

    async def run(member: BatchMember) -> dict[str, Any]:
        call = await prepare(member)
        generation = await generate(call, member)
        return node_output(generation, endpoint=call.endpoint, node_id=node_id, member=member,
                           extra_pnginfo=extra_pnginfo)

    return await run_in_batch(node_id, run)
