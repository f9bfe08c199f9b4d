"""A journal of submitted requests, so that nothing paid for is lost.

Every submit is recorded in `requests.jsonl` in the pack's state directory, one JSON object per
line: request id, endpoint, a fingerprint of the inputs, time and state. Later lines update earlier
ones. Never the key, never the prompt itself (only a hash of the inputs).

States: `submitting` (sent, no answer yet: the id is a local `pending-…` one), `submitted`,
`completed` (fal finished; images not yet collected), `collected`, `failed` (ended with an error at
fal), `cancelled`, `lost` (fal no longer knows it), `uncertain` (a submit cut off before its
answer: fal may have the request, under an id nobody learnt), `not_sent` and `resolved` (a pending
submit that got its answer, recorded under its real id).

A request left `submitted` or `completed` by a run that ended early can be collected by the next run
with the same inputs instead of paying again. Requests this process is following now are never
handed to a second node.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from .jsonl import JsonlFile
from .process_state import current

log = logging.getLogger("grok_imagine_fal")

JournalState = Literal["submitting", "submitted", "completed", "collected", "failed", "cancelled", "lost",
                       "uncertain", "not_sent", "resolved"]
STATES: frozenset[str] = frozenset(JournalState.__args__)  # type: ignore[attr-defined]
RESUMABLE: frozenset[str] = frozenset({"submitted", "completed"})
FILE_NAME = "requests.jsonl"
RESUME_WINDOW_S = 3600.0  # fal keeps a result for an hour after completion (less for large inline results)
COMPACT_ABOVE_LINES = 2000
KEEP_ENTRIES = 500
PENDING_PREFIX = "pending-"


def fingerprint(endpoint: str, arguments: dict[str, Any]) -> str:
    """A stable hash of what was asked of fal (the same inputs give the same fingerprint)."""
    canonical = json.dumps({"endpoint": endpoint, "arguments": arguments}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class JournalEntry:
    request_id: str
    endpoint: str
    fingerprint: str
    submitted_at: float  # unix time
    state: JournalState
    sync_mode: bool = False
    updated_at: float = 0.0


_TYPES: dict[str, tuple[type, ...]] = {
    "request_id": (str,), "endpoint": (str,), "fingerprint": (str,), "submitted_at": (int, float),
    "updated_at": (int, float), "state": (str,), "sync_mode": (bool,),
}


def _valid(record: dict[str, Any]) -> bool:
    """A line this journal can use: a request id, and every known field of its own type."""
    if not isinstance(record.get("request_id"), str) or not record["request_id"]:
        return False
    for name, types in _TYPES.items():
        value = record.get(name)
        if name in record and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            return False
    return record.get("state", "submitted") in STATES


def _fold(view: dict[str, dict[str, Any]], record: dict[str, Any]) -> None:
    view.setdefault(record["request_id"], {}).update(record)


def _entries(view: dict[str, dict[str, Any]], endpoint: str | None = None,
             fingerprint: str | None = None) -> dict[str, JournalEntry]:
    """The complete entries of the view (only those of `endpoint` and `fingerprint`, when given)."""
    entries = {}
    for request_id, record in view.items():
        if fingerprint is not None and (record.get("fingerprint") != fingerprint or record.get("endpoint") != endpoint):
            continue
        if all(name in record for name in ("endpoint", "fingerprint", "submitted_at", "state")):
            fields = {name: record[name] for name in JournalEntry.__dataclass_fields__ if name in record}
            entries[request_id] = JournalEntry(**fields)
    return entries


class Journal:
    """The journal file of one state directory. Safe for concurrent nodes, threads and processes."""

    def __init__(self, directory: Path) -> None:
        self.file: JsonlFile[dict[str, dict[str, Any]]] = JsonlFile(
            directory / FILE_NAME, new_view=dict, fold=_fold, valid=_valid)

    @property
    def path(self) -> Path:
        return self.file.path

    def entries(self) -> dict[str, JournalEntry]:
        """Every journalled request, newest state per request id."""
        return self.file.query(lambda view, _lines: _entries(view))

    def _append(self, record: dict[str, Any]) -> None:
        try:
            self.file.append(record)
        except OSError:
            log.warning("could not write the request journal %s", self.path, exc_info=True)

    def record_submitting(self, endpoint: str, fingerprint: str, *, sync_mode: bool) -> str:
        """A submit is about to leave: journal it under a local pending id (returned)."""
        pending = f"{PENDING_PREFIX}{uuid.uuid4()}"
        now = time.time()
        self._append(asdict(JournalEntry(pending, endpoint, fingerprint, now, "submitting", sync_mode, now)))
        return pending

    def record_submitted(self, request_id: str, endpoint: str, fingerprint: str, *, sync_mode: bool,
                         pending: str | None = None, follow: bool = True) -> None:
        """fal accepted a request. `follow`: this process follows it now (`release` it when done)."""
        now = time.time()
        if follow:
            with current().lock:
                current().following.add(request_id)
        self._append(asdict(JournalEntry(request_id, endpoint, fingerprint, now, "submitted", sync_mode, now)))
        if pending is not None:
            self.mark(pending, "resolved")

    def mark(self, request_id: str, state: JournalState) -> None:
        self._append({"request_id": request_id, "state": state, "updated_at": time.time()})

    def claim_resumable(self, endpoint: str, fingerprint: str) -> JournalEntry | None:
        """The newest unfinished request with these inputs that nobody follows now, claimed for the
        caller (who must `release` it when done)."""
        now = time.time()
        entries, lines, requests = self.file.query(
            lambda view, count: (_entries(view, endpoint, fingerprint), count, len(view)))
        if lines > COMPACT_ABOVE_LINES and lines > 2 * requests:  # mostly superseded lines: worth rewriting
            self.file.compact(_keep)
        state = current()
        with state.lock:
            candidates = [
                e for e in entries.values()
                if e.endpoint == endpoint and e.fingerprint == fingerprint and e.state in RESUMABLE
                and not e.sync_mode and e.request_id not in state.following and now - e.submitted_at < RESUME_WINDOW_S
            ]
            entry = max(candidates, key=lambda e: e.submitted_at, default=None)
            if entry is not None:
                state.following.add(entry.request_id)
        return entry

    def uncertain(self, endpoint: str, fingerprint: str) -> list[JournalEntry]:
        """Submits of these inputs, within the resume window, cut off before fal's answer."""
        now = time.time()
        matching = self.file.query(lambda view, _lines: _entries(view, endpoint, fingerprint))
        return [e for e in matching.values() if e.state == "uncertain" and now - e.submitted_at < RESUME_WINDOW_S]

    @staticmethod
    def release(request_id: str) -> None:
        """This process no longer follows the request (whatever its state)."""
        with current().lock:
            current().following.discard(request_id)


def _keep(view: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """What a compaction keeps: the newest entries, and every one that may still be collected."""
    entries = sorted(_entries(view).values(), key=lambda e: e.submitted_at)
    now = time.time()
    newest = {e.request_id for e in entries[-KEEP_ENTRIES:]}
    return [asdict(e) for e in entries
            if e.request_id in newest or (e.state in RESUMABLE and now - e.submitted_at < RESUME_WINDOW_S)]
