"""The runs of one node in one prompt, taken together: one run, or one per item when a list feeds it.

ComfyUI runs an async node once per list item, all at once in one event loop, under one node id.
Each run `join`s its node's batch before its first await (so the batch knows every item before any
of them reaches fal, and the order they join in is their order in the list) and leaves it when it
ends. The batch holds the node's progress, the requests it collected, each item's provenance, and the
daily spend limit's verdict: once one run is refused for the limit, the runs
after it are refused too (nothing more is sent), and each refusal, raised once every run of the
batch has been decided, says how many prompts did not run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ..fal_transport.errors import SpendLimitError
from ..fal_transport.journal import Journal
from ..fal_transport.lifecycle import settle
from ..fal_transport.process_state import current
from .progress import NodeProgress


@dataclass
class NodeBatch:
    key: tuple[int, str]
    progress: NodeProgress
    members: int = 0  # runs of the batch under way now
    joined: int = 0  # runs the batch has had
    undecided: int = 0  # runs that have not yet been sent or refused
    refused: int = 0
    limit_error: SpendLimitError | None = None
    collected: list[str] = field(default_factory=list)  # request ids whose images this batch holds
    provenance: dict[int, dict[str, Any]] = field(default_factory=dict)  # list index -> that item's entry
    failed: bool = False
    journal: Journal | None = None
    _decided: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def join(cls, node_id: str | None) -> BatchMember:
        """This run, counted into the batch of `node_id` in the running event loop. Call it before the
        run's first await."""
        if node_id is None:
            batch = cls((0, ""), NodeProgress(None))
        else:
            key = (id(asyncio.get_running_loop()), str(node_id))
            batch = current().batches.get(key) or cls(key, NodeProgress(node_id))
            current().batches[key] = batch
        batch.members += 1
        batch.joined += 1
        batch.undecided += 1
        batch.progress.prompts = batch.joined
        batch._decided.clear()
        return BatchMember(batch, index=batch.joined - 1)

    def _decide(self) -> None:
        self.undecided -= 1
        if self.undecided <= 0:
            self._decided.set()

    def _end(self, ok: bool) -> None:
        self.failed = self.failed or not ok
        self.members -= 1
        if self.members > 0:
            return
        if current().batches.get(self.key) is self:
            del current().batches[self.key]
        if self.journal is not None:
            settle(self.journal, self.collected, used=not self.failed)


@dataclass
class BatchMember:
    """One run's place in its node's batch."""

    batch: NodeBatch
    index: int = 0  # the item's place in the list
    decided: bool = False

    @property
    def progress(self) -> NodeProgress:
        return self.batch.progress

    def decide(self) -> None:
        """This run was sent (or found its images elsewhere), or was refused."""
        if not self.decided:
            self.decided = True
            self.batch._decide()

    def check_limit(self) -> None:
        """Refuse this run if an earlier run of the batch met the daily limit."""
        if self.batch.limit_error is not None:
            raise self.batch.limit_error

    async def refuse(self, error: SpendLimitError) -> SpendLimitError:
        """This run meets the daily limit: stop the batch's submits; once every run of the batch has been
        decided, the error to raise (with the count of prompts that did not run)."""
        batch = self.batch
        batch.limit_error = batch.limit_error or error
        batch.refused += 1
        self.decide()
        await batch._decided.wait()
        if batch.joined <= 1:
            return error
        return SpendLimitError(
            f"{error.reason} The daily limit stopped this batch: {batch.refused} of its {batch.joined} prompts did "
            "not run (nothing was sent for them); the others ran, and what they made stays in the request journal "
            "for the next run of the same list to collect without paying again.")

    def provenance(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """Add this item's provenance `entry`; every item's entry so far, in list order, each naming its
        `list_index` when the node runs over a list."""
        batch = self.batch
        batch.provenance[self.index] = entry
        if batch.joined <= 1:
            return [entry]
        return [{"list_index": index, **batch.provenance[index]} for index in sorted(batch.provenance)]

    def collected(self, request_id: str, journal: Journal) -> None:
        self.batch.journal = journal
        self.batch.collected.append(request_id)

    def leave(self, *, ok: bool) -> None:
        """This run ended (`ok`: it returned its images). When the last run of the batch ends, its
        collected requests are settled: `collected` if every run returned (ComfyUI uses the outputs), else
        left for the next run of the same inputs to collect free (ComfyUI drops a failed node's outputs)."""
        self.decide()
        self.batch._end(ok)
