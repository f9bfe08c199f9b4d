"""A journal of submitted requests, so that nothing paid for is lost.

Every submit is recorded in the state database (`state`), one row per request: request id, endpoint, a
fingerprint of the inputs, times and state. Never the key, never the prompt itself (only a hash of the inputs).

States: `submitting` (sent, no answer yet: the id is a local `pending-…` one, replaced by the real id once fal
answers), `submitted`, `completed` (fal finished; images not yet collected), `collected`, `failed` (ended with
an error at fal), `cancelled`, `lost` (fal no longer knows it), `uncertain` (a submit cut off before its
answer: fal may have the request, under an id nobody learnt), `not_sent`.

A request left `submitted` or `completed` by a run that ended early can be collected by the next run
with the same inputs instead of paying again. A request that a node follows now is claimed by its process
(`claim_resumable`, `record_submitted`), and never handed to a second node, in this process or another,
until it is released (`release`, or the end of a `following` block); a process that ends releases its claims.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import StateError
from .state import database

log = logging.getLogger("grok_imagine_fal")

JournalState = Literal["submitting", "submitted", "completed", "collected", "failed", "cancelled", "lost",
                       "uncertain", "not_sent"]
STATES: frozenset[str] = frozenset(JournalState.__args__)  # type: ignore[attr-defined]
RESUME_WINDOW_S = 3600.0  # fal keeps a result for an hour after completion (less for large inline results)
PENDING_PREFIX = "pending-"
_COLUMNS = "request_id, endpoint, fingerprint, submitted_at, state, sync_mode, updated_at"


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


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    request_id, endpoint, fingerprint_, submitted_at, state, sync_mode, updated_at = row
    return JournalEntry(request_id, endpoint, fingerprint_, submitted_at, state, bool(sync_mode), updated_at)


@dataclass
class Claim:
    """A request this process follows, inside a `Journal.following` block: released when the block ends,
    unless `keep()` hands it on to whoever releases it later (`lifecycle.settle`)."""

    request_id: str
    kept: bool = False

    def keep(self) -> None:
        self.kept = True


class Journal:
    """The request journal of one state directory, shared by every node, thread and process using it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _change(self, change: Callable[[sqlite3.Connection, str], None]) -> None:
        """`change(database, this process's owner id)` in one transaction; a journal that cannot be written
        is logged, never raised: the request it records was sent already."""
        try:
            db = database(self.directory)
            with db.write() as connection:
                change(connection, db.owner)
        except StateError:
            log.warning("[Grok Imagine] could not write the request journal", exc_info=True)

    def _rows(self, query: str, *parameters: Any) -> list[tuple[Any, ...]]:
        try:
            with database(self.directory).read() as db:
                return db.execute(f"SELECT {_COLUMNS} FROM requests {query}", parameters).fetchall()
        except StateError:
            log.warning("[Grok Imagine] could not read the request journal", exc_info=True)
            return []

    def entries(self) -> dict[str, JournalEntry]:
        """Every journalled request."""
        return {row[0]: _entry(row) for row in self._rows("")}

    def entry(self, request_id: str) -> JournalEntry | None:
        rows = self._rows("WHERE request_id = ?", request_id)
        return _entry(rows[0]) if rows else None

    def record_submitting(self, endpoint: str, fingerprint: str, *, sync_mode: bool) -> str:
        """A submit is about to leave: journal it under a local pending id (returned)."""
        pending = f"{PENDING_PREFIX}{uuid.uuid4()}"
        now = time.time()
        self._change(lambda db, _owner: db.execute(
            f"INSERT OR REPLACE INTO requests ({_COLUMNS}) VALUES (?, ?, ?, ?, 'submitting', ?, ?)",
            (pending, endpoint, fingerprint, now, sync_mode, now)))
        return pending

    def record_submitted(self, request_id: str, endpoint: str, fingerprint: str, *, sync_mode: bool,
                         pending: str | None = None, follow: bool = True) -> None:
        """fal accepted a request (the one journalled as `pending`). `follow`: this process follows it now
        (claimed: `release` it when done)."""
        now = time.time()

        def change(db: sqlite3.Connection, owner: str) -> None:
            if pending is not None:
                db.execute("DELETE FROM requests WHERE request_id = ?", (pending,))
            db.execute(f"INSERT OR REPLACE INTO requests ({_COLUMNS}, claimed_by) "
                       "VALUES (?, ?, ?, ?, 'submitted', ?, ?, ?)",
                       (request_id, endpoint, fingerprint, now, sync_mode, now, owner if follow else None))

        self._change(change)

    def mark(self, request_id: str, state: JournalState) -> None:
        self._change(lambda db, _owner: db.execute(
            "UPDATE requests SET state = ?, updated_at = ? WHERE request_id = ?", (state, time.time(), request_id)))

    def claim_resumable(self, endpoint: str, fingerprint: str) -> JournalEntry | None:
        """The newest unfinished request with these inputs that nobody follows now, claimed for the caller
        (who must `release` it when done), in one step for every process sharing the journal."""
        try:
            db = database(self.directory)
            with db.owning() as connection:
                row = connection.execute(
                    f"SELECT {_COLUMNS} FROM requests WHERE fingerprint = ? AND endpoint = ? AND submitted_at > ? "
                    "AND state IN ('submitted', 'completed') AND NOT sync_mode "
                    "AND (claimed_by IS NULL OR claimed_by NOT IN (SELECT id FROM owners)) "
                    "ORDER BY submitted_at DESC LIMIT 1",
                    (fingerprint, endpoint, time.time() - RESUME_WINDOW_S)).fetchone()
                if row is not None:
                    connection.execute("UPDATE requests SET claimed_by = ? WHERE request_id = ?", (db.owner, row[0]))
        except StateError:
            log.warning("[Grok Imagine] could not read the request journal", exc_info=True)
            return None
        return None if row is None else _entry(row)

    def uncertain(self, endpoint: str, fingerprint: str) -> list[JournalEntry]:
        """Submits of these inputs, within the resume window, cut off before fal's answer."""
        return [_entry(row) for row in self._rows(
            "WHERE fingerprint = ? AND endpoint = ? AND state = 'uncertain' AND submitted_at > ?",
            fingerprint, endpoint, time.time() - RESUME_WINDOW_S)]

    def release(self, *request_ids: str, state: JournalState | None = None) -> None:
        """This process no longer follows these requests (marked `state` first, when given)."""
        now = time.time()

        def change(db: sqlite3.Connection, owner: str) -> None:
            if state is not None:
                db.executemany("UPDATE requests SET state = ?, updated_at = ? WHERE request_id = ?",
                               [(state, now, rid) for rid in request_ids])
            db.executemany("UPDATE requests SET claimed_by = NULL WHERE request_id = ? AND claimed_by = ?",
                           [(rid, owner) for rid in request_ids])

        self._change(change)

    @contextlib.contextmanager
    def following(self, request_id: str) -> Iterator[Claim]:
        """The claim on `request_id` for the block: released when it ends, however, unless kept."""
        claim = Claim(request_id)
        try:
            yield claim
        finally:
            if not claim.kept:
                self.release(request_id)
