"""Everything the pack keeps for the life of the ComfyUI process, in one place.

Nothing else in the pack holds module-level state that changes while it runs: every cache, connection
pool and database connection is a field here, reached through `current()` (what several processes
share, claims and reservations among it, is in the state database: `state`). `reset()` starts afresh (the
test suite does it before every test, so no test sees what another left behind).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class ProcessState:
    """The pack's per-process state. Fields are touched only by the module that owns them."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    # fal_transport.http: the SSL context (built once), and one client per running event loop
    ssl_context: ssl.SSLContext | None = None
    loops: dict[asyncio.AbstractEventLoop, Any] = field(default_factory=dict)
    # fal_transport.aio: the watch on the user's Cancel of each event loop that has waits
    cancel_watches: dict[asyncio.AbstractEventLoop, Any] = field(default_factory=dict)
    # fal_transport.storage: CDN tokens by a hash of the key, the last hour's uploads by content hash (a cap)
    cdn_tokens: dict[str, Any] = field(default_factory=dict)
    uploads: dict[str, tuple[str, float]] = field(default_factory=dict)
    # fal_transport.http: the loop thread that submits and cancels run on
    worker: Any = None
    # fal_transport.state: this process's connection to the state database of each state directory, by path
    databases: dict[str, Any] = field(default_factory=dict)
    databases_lock: threading.Lock = field(default_factory=threading.Lock)
    # fal_transport.cancels: the line of cancels on that loop, and the cancels not yet answered, by request id
    canceller: Any = None
    cancelling: dict[str, Any] = field(default_factory=dict)
    # fal_transport.ledger: what this process spent
    session_spend_usd: float = 0.0
    # fal_transport.billing: the last balance reading (or failed read) of each key, by a hash of the key
    balances: dict[str, tuple[float, Any]] = field(default_factory=dict)
    # the layers above the transport (media, nodes): what each module keeps, under the module's name
    layers: dict[str, Any] = field(default_factory=dict)

    def of(self, owner: str, new: Callable[[], T]) -> T:
        """What the module `owner` keeps for the process (made by `new()` on first use)."""
        with self.lock:
            if owner not in self.layers:
                self.layers[owner] = new()
            return self.layers[owner]  # type: ignore[no-any-return]


_current = ProcessState()


def current() -> ProcessState:
    return _current


def reset() -> ProcessState:
    """Forget everything (a fresh process, as far as the pack can tell); the background loop of the
    old state finishes what it has under way and ends."""
    global _current
    old, _current = _current, ProcessState()
    if old.worker is not None:
        old.worker.stop()
    for database in old.databases.values():
        database.close()  # its claims and reservations go back, as a process's do when it ends
    return _current
