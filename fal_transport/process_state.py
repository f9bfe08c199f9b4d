"""Everything the pack keeps for the life of the ComfyUI process, in one place.

Nothing else in the pack holds module-level state that changes while it runs: every cache, claim
and connection pool is a field here, reached through `current()`. `reset()` starts afresh (the
test suite does it before every test, so no test sees what another left behind).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProcessState:
    """The pack's per-process state. Fields are touched only by the module that owns them."""

    started_at: float = field(default_factory=time.time)  # unix time: the start of "this session"
    lock: threading.Lock = field(default_factory=threading.Lock)
    # fal_transport.client: the SSL context (built once), and one client per running event loop
    ssl_context: ssl.SSLContext | None = None
    loops: dict[asyncio.AbstractEventLoop, Any] = field(default_factory=dict)
    # fal_transport.storage: CDN tokens by a hash of the key, the last hour's uploads by content hash (a cap)
    cdn_tokens: dict[str, Any] = field(default_factory=dict)
    uploads: dict[str, tuple[str, float]] = field(default_factory=dict)
    # fal_transport.journal: request ids a node of this process is following now
    following: set[str] = field(default_factory=set)
    # fal_transport.background: the loop thread that submits and cancels run on
    worker: Any = None
    # fal_transport.jsonl: the folded view of each journal-like file, by path, and the lock of the views
    # (its own: reading a file under it must never hold up the event loop's short critical sections)
    jsonl_views: dict[str, Any] = field(default_factory=dict)
    jsonl_lock: threading.Lock = field(default_factory=threading.Lock)
    # fal_transport.ledger: what this process spent, and what is reserved for submits under way
    # (spend_lock: a reserve's check and a charge's record-then-give-back never interleave)
    session_spend_usd: float = 0.0
    reserved_usd: float = 0.0
    spend_lock: threading.Lock = field(default_factory=threading.Lock)
    # image_io.sizes: the image size each combination of settings gave last
    output_sizes: OrderedDict[str, tuple[int, int]] = field(default_factory=OrderedDict)
    # nodes.batches: the list batches running now, by (event loop, node id)
    batches: dict[tuple[int, str], Any] = field(default_factory=dict)


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
    return _current
