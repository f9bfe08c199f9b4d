"""What the lifecycle is asked to do (`RequestPlan`) and whom it tells as it goes (`RequestEvents`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .queue import RequestHandle
from .status_watch import WaitEvents


@dataclass(frozen=True)
class RequestPlan:
    """What to ask of fal: the endpoint, the body, and the fingerprint the journal knows it by."""

    endpoint: str
    arguments: dict[str, Any]
    fingerprint: str
    on_accepted: Callable[[str], None] | None = None  # fal accepted a new request (the ledger charges it)

    @property
    def sync_mode(self) -> bool:
        return bool(self.arguments.get("sync_mode"))


@dataclass
class RequestEvents(WaitEvents):
    """What the caller is told as the request moves on (all optional)."""

    on_submitted: Callable[[RequestHandle], None] | None = None
    on_resumed: Callable[[RequestHandle, str], None] | None = None
    on_fetching: Callable[[RequestHandle], None] | None = None
