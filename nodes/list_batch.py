"""The runs of one node in one prompt, taken together: one run, or one per item when a list feeds it.

ComfyUI runs an async node once per list item, all at once in one event loop, under one node id.
Each run `join`s its node's batch before its first await (so the batch knows every item before any
of them reaches fal, and the order they join in is their order in the list) and leaves it when it
ends. The batch holds the node's progress, the requests it collected, each item's provenance, and the
daily spend limit's verdict: once one run is refused for the limit, the runs
after it are refused too (nothing more is sent), and each refusal, raised once every run of the
batch has been decided, says how many prompts did not run.

Before any run sends anything, the batch's whole price (every run's, once each has put it in or
ended) is judged once against the fal balance (`pay_together`): a batch the balance cannot pay does
not start. What its runs set aside against the daily limit and did not spend goes back together
(`give_back`): a list that ends at once, at a Cancel, makes one write for it, not one per prompt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..fal_transport.errors import BalanceError, SpendLimitError
from ..fal_transport.journal import Journal
from ..fal_transport.ledger import Reservation, release_all
from ..fal_transport.lifecycle import FalRequest, settle
from ..fal_transport.process_state import current
from .progress import NodeProgress, RequestProgress

# Turns of the event loop without a new run before a batch counts as whole (ComfyUI starts a list item a turn).
SETTLE_TURNS = 3


@dataclass
class _PriceRound:
    """Runs of a batch priced together, and the verdict on their whole price (a refusal, or None)."""

    price_usd: float = 0.0
    runs: int = 0
    verdict: asyncio.Future[str | None] | None = None


async def _judge(check: Callable[[float, int], Awaitable[None]], price_usd: float, runs: int) -> str | None:
    try:
        await check(price_usd, runs)
    except BalanceError as exc:
        return exc.reason
    return None


def _running() -> dict[tuple[int, str], NodeBatch]:
    """The list batches running now in this process, by (event loop, node id)."""
    return current().of(__name__, dict)


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
    unpriced: int = 0  # runs under way that have not yet put their price in
    price_round: _PriceRound = field(default_factory=_PriceRound)
    ended_reservations: list[Reservation] = field(default_factory=list)  # of runs that ended, to give back
    _decided: asyncio.Event = field(default_factory=asyncio.Event)
    _priced: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def join(cls, node_id: str | None) -> BatchMember:
        """This run, counted into the batch of `node_id` in the running event loop. Call it before the
        run's first await."""
        if node_id is None:
            batch = cls((0, ""), NodeProgress(None))
        else:
            key = (id(asyncio.get_running_loop()), str(node_id))
            running = _running()
            batch = running.get(key) or cls(key, NodeProgress(node_id))
            running[key] = batch
        batch.members += 1
        batch.joined += 1
        batch.undecided += 1
        batch.unpriced += 1
        batch.progress.prompts = batch.joined
        batch._decided.clear()
        batch._priced.clear()
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
        if _running().get(self.key) is self:
            del _running()[self.key]
        self._give_back()
        if self.journal is not None:
            settle(self.journal, self.collected, used=not self.failed)

    def _give_back(self) -> None:
        ended, self.ended_reservations = self.ended_reservations, []
        release_all(ended)


@dataclass
class BatchMember:
    """One run's place in its node's batch."""

    batch: NodeBatch
    index: int = 0  # the item's place in the list
    decided: bool = False
    priced: bool = False
    requests: list[RequestProgress] = field(default_factory=list)  # the progress of this run's requests

    @property
    def progress(self) -> NodeProgress:
        return self.batch.progress

    def request_progress(self, label: str = "") -> RequestProgress:
        """The progress of one more request of this run, on the node."""
        progress = self.progress.request(label)
        self.requests.append(progress)
        return progress

    def send_again(self) -> None:
        """This run sends its requests again (fal refused an input file): those so far leave the node's count."""
        self.progress.drop(self.requests)
        self.requests = []

    def decide(self) -> None:
        """This run was sent (or found its images elsewhere), or was refused."""
        if not self.decided:
            self.decided = True
            self.batch._decide()

    def _price_counted(self) -> None:
        if not self.priced:
            self.priced = True
            self.batch.unpriced -= 1
            if self.batch.unpriced <= 0:
                self.batch._priced.set()

    async def pay_together(self, price_usd: float, check: Callable[[float, int], Awaitable[None]]) -> None:
        """Put this run's price into its batch's; once every run of the batch has put in its own (or ended),
        `check(their whole price, how many runs)` runs once for them all, and its `BalanceError` is raised in
        every one of them."""
        batch = self.batch
        price_round = batch.price_round
        price_round.price_usd += price_usd
        price_round.runs += 1
        self._price_counted()
        while True:
            await batch._priced.wait()
            joined = batch.joined
            for _ in range(SETTLE_TURNS):  # a list still being started joins meanwhile
                await asyncio.sleep(0)
            if batch._priced.is_set() and batch.joined == joined:
                break
        if price_round.verdict is None:
            batch.price_round = _PriceRound()  # runs priced after this verdict are judged apart
            price_round.verdict = asyncio.ensure_future(_judge(check, price_round.price_usd, price_round.runs))
        refusal = await asyncio.shield(price_round.verdict)
        if refusal is not None:
            raise BalanceError(refusal)

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

    def give_back(self, reservation: Reservation) -> None:
        """This run is done with its spend reservation: what it did not spend is given back with what the batch's
        other runs ending in the same turn of the event loop did not (a list that ends at once, at a Cancel, makes
        one write, not one per prompt on the prompt's thread), and at the latest when the batch ends."""
        batch = self.batch
        batch.ended_reservations.append(reservation)
        if len(batch.ended_reservations) == 1:
            asyncio.get_running_loop().call_soon(batch._give_back)

    def provenance(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """Add this item's provenance `entry`; every item's entry so far, in list order, each naming its
        `list_index` when the node runs over a list."""
        batch = self.batch
        batch.provenance[self.index] = entry
        if batch.joined <= 1:
            return [entry]
        return [{"list_index": index, **batch.provenance[index]} for index in sorted(batch.provenance)]

    def collected(self, request: FalRequest) -> None:
        """The run holds this request's images: the batch takes its claim on, and settles it when it ends."""
        request.hand_on()
        self.batch.journal = request.journal
        self.batch.collected.append(request.request_id)

    def leave(self, *, ok: bool) -> None:
        """This run ended (`ok`: it returned its images). When the last run of the batch ends, its
        collected requests are settled: `collected` if every run returned (ComfyUI uses the outputs), else
        left for the next run of the same inputs to collect free (ComfyUI drops a failed node's outputs)."""
        self.decide()
        self._price_counted()
        self.batch._end(ok)
