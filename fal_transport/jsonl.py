"""An append-only JSON-lines file shared by several ComfyUI processes, read incrementally.

Appends and compactions hold the file's lock (`private_files.locked`), so two processes sharing
the state directory never lose each other's lines. Readers need no lock: every line is written in
one `write`, only complete lines are read, and a compaction replaces the file by a rename, which
a reader notices by the file's identity and answers by reading it anew.

Each reader folds the lines it has not seen yet into its own view (`fold`), kept in the process
state, so reading a file of thousands of lines on every request costs only the new lines.
A line that is not a JSON object accepted by `valid` is skipped, and kept by compactions.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from .private_files import append_private, locked, write_private
from .process_state import current

log = logging.getLogger("grok_imagine_fal")

V = TypeVar("V")
R = TypeVar("R")
MALFORMED_KEPT = 100


@dataclass
class _View(Generic[V]):
    identity: tuple[int, int]
    offset: int
    view: V
    lines: int = 0
    malformed: list[str] = field(default_factory=list)


class JsonlFile(Generic[V]):
    def __init__(self, path: Path, *, new_view: Callable[[], V], fold: Callable[[V, dict[str, Any]], None],
                 valid: Callable[[dict[str, Any]], bool]) -> None:
        self.path = path
        self._new_view = new_view
        self._fold = fold
        self._valid = valid

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")
        with locked(self.path):
            append_private(self.path, line)

    def _identity(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (stat.st_dev, stat.st_ino)

    def _read(self, cached: _View[V] | None) -> _View[V]:
        identity = self._identity()
        if identity is None:
            return _View((0, 0), 0, self._new_view())
        if cached is None or cached.identity != identity or os.path.getsize(self.path) < cached.offset:
            cached = _View(identity, 0, self._new_view())
        with open(self.path, "rb") as handle:
            handle.seek(cached.offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n") + 1  # a torn last line waits for its end
        for raw in chunk[:end].splitlines():
            cached.lines += 1
            text = raw.decode("utf-8", errors="replace")
            try:
                record = json.loads(text)
                ok = isinstance(record, dict) and self._valid(record)
            except ValueError:
                ok = False
            if ok:
                self._fold(cached.view, record)
            elif text.strip():
                cached.malformed = [*cached.malformed[-(MALFORMED_KEPT - 1):], text]
        cached.offset += end
        return cached

    def query(self, read: Callable[[V, int], R]) -> R:
        """`read(view of every line so far, number of lines)`, run while nobody else folds into the view."""
        state = current()
        key = str(self.path)
        with state.jsonl_lock:
            try:
                cached = self._read(state.jsonl_views.get(key))
            except OSError:
                log.warning("could not read %s", self.path, exc_info=True)
                return read(self._new_view(), 0)
            state.jsonl_views[key] = cached
            return read(cached.view, cached.lines)

    def compact(self, keep: Callable[[V], list[dict[str, Any]]]) -> None:
        """Rewrite the file as `keep(view)` (plus the malformed lines), holding the lock, from a fresh read."""
        try:
            with locked(self.path):
                fresh = self._read(None)
                lines = [*fresh.malformed, *(json.dumps(r, separators=(",", ":")) for r in keep(fresh.view))]
                write_private(self.path, "".join(line + "\n" for line in lines))
        except OSError:
            log.warning("could not compact %s", self.path, exc_info=True)
        with current().jsonl_lock:
            current().jsonl_views.pop(str(self.path), None)
