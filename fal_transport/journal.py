"""A small journal of submitted requests, so that nothing paid for is lost.

Every submit is recorded (request id, endpoint, a fingerprint of the inputs, time, state) in
`requests.jsonl` in the pack's state directory, one JSON object per line, appended. Later lines
update earlier ones. Never the key, never the prompt itself (only a hash of the inputs).

A request left `submitted` or `completed` by a run that ended early (ComfyUI stopped, a download
failed) can be collected by the next run with the same inputs instead of paying again. Requests
being followed right now by this process are never handed to a second node.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("grok_imagine_fal")

JournalState = Literal["submitted", "completed", "collected", "failed", "cancelled", "lost"]
RESUMABLE: frozenset[str] = frozenset({"submitted", "completed"})
FILE_NAME = "requests.jsonl"
RESUME_WINDOW_S = 3600.0  # fal keeps a result for an hour after completion (less for large inline results)
COMPACT_ABOVE_LINES = 2000
KEEP_ENTRIES = 500

_lock = threading.Lock()
_active: set[str] = set()  # request ids a node of this process is following now


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


class Journal:
    """The journal file of one state directory. Safe for concurrent nodes in one process."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME

    def _append(self, record: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            line = json.dumps(record, separators=(",", ":")) + "\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)
        except OSError:
            log.warning("could not write the request journal %s", self.path, exc_info=True)

    def entries(self) -> dict[str, JournalEntry]:
        """Every journalled request, newest state per request id."""
        folded: dict[str, dict[str, Any]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return {}
        except OSError:
            log.warning("could not read the request journal %s", self.path, exc_info=True)
            return {}
        for line in lines:
            try:
                record = json.loads(line)
                folded.setdefault(record["request_id"], {}).update(record)
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line after a crash: skip it
        entries = {}
        for request_id, record in folded.items():
            try:
                fields = {k: record[k] for k in JournalEntry.__dataclass_fields__ if k in record}
                entries[request_id] = JournalEntry(**fields)
            except TypeError:
                continue
        if len(lines) > COMPACT_ABOVE_LINES:
            self._compact(entries)
        return entries

    def _compact(self, entries: dict[str, JournalEntry]) -> None:
        keep = sorted(entries.values(), key=lambda e: e.submitted_at)[-KEEP_ENTRIES:]
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(asdict(e), separators=(",", ":")) + "\n" for e in keep)
            os.replace(tmp, self.path)
        except OSError:
            log.warning("could not compact the request journal %s", self.path, exc_info=True)

    def record_submitted(self, request_id: str, endpoint: str, fingerprint: str, *, sync_mode: bool) -> None:
        now = time.time()
        with _lock:
            _active.add(request_id)
            self._append(asdict(JournalEntry(request_id, endpoint, fingerprint, now, "submitted", sync_mode, now)))

    def mark(self, request_id: str, state: JournalState) -> None:
        with _lock:
            self._append({"request_id": request_id, "state": state, "updated_at": time.time()})

    def claim_resumable(self, endpoint: str, fingerprint: str) -> JournalEntry | None:
        """The newest unfinished request with these inputs that nobody follows now, claimed for the caller
        (who must `release` it when done)."""
        with _lock:
            now = time.time()
            candidates = [
                e for e in self.entries().values()
                if e.endpoint == endpoint and e.fingerprint == fingerprint and e.state in RESUMABLE
                and not e.sync_mode and e.request_id not in _active and now - e.submitted_at < RESUME_WINDOW_S
            ]
            entry = max(candidates, key=lambda e: e.submitted_at, default=None)
            if entry is not None:
                _active.add(entry.request_id)
        return entry

    @staticmethod
    def release(request_id: str) -> None:
        """This process no longer follows the request (whatever its state)."""
        with _lock:
            _active.discard(request_id)
