"""The files of earlier versions, imported into the state database when it is opened, then kept beside it
renamed `<name>.imported`: `requests.jsonl` (the journal), `spend.jsonl` (the ledger), `settings.json`.

Nothing recoverable is lost on the way: the journal's lines are folded per request as the old journal read
them (a later line updating an earlier one), every spend line becomes a spend row (the old compaction's daily
summaries too), and every stored setting is copied. A line that is not a well-formed record is skipped with a
warning; a `settings.json` that cannot be read is skipped with a warning (set the limit again in Settings).
Importing twice changes nothing, so a file that could not be renamed (on Windows, while another process holds
it open) is simply imported again by the next process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("grok_imagine_fal")

JOURNAL_FILE = "requests.jsonl"
SPEND_FILE = "spend.jsonl"
SETTINGS_FILE = "settings.json"
SUFFIX = ".imported"
# the old journal's states; `resolved` was a pending id superseded by the request's real id
OLD_STATES = frozenset({"submitting", "submitted", "completed", "collected", "failed", "cancelled", "lost",
                        "uncertain", "not_sent", "resolved"})
_JOURNAL_TYPES: dict[str, tuple[type, ...]] = {
    "request_id": (str,), "endpoint": (str,), "fingerprint": (str,), "submitted_at": (int, float),
    "updated_at": (int, float), "state": (str,), "sync_mode": (bool,),
}


def import_old_files(db: sqlite3.Connection, directory: Path) -> list[Path]:
    """Import what the old files of `directory` hold (in the caller's transaction); the files imported."""
    imported = []
    for name, importer in ((JOURNAL_FILE, _import_journal), (SPEND_FILE, _import_spend),
                           (SETTINGS_FILE, _import_settings)):
        path = directory / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        importer(db, data, name)
        imported.append(path)
    return imported


def keep_imported(paths: list[Path]) -> None:
    """Rename the imported files `<name>.imported` (`.imported.2`, … when that exists)."""
    for path in paths:
        target = path.with_name(path.name + SUFFIX)
        number = 1
        while target.exists():
            number += 1
            target = path.with_name(f"{path.name}{SUFFIX}.{number}")
        try:
            os.rename(path, target)
        except FileNotFoundError:  # another process imported and renamed it meanwhile
            pass
        except OSError as exc:
            log.warning("[Grok Imagine] imported %s into the state database but could not rename it (%s); the next "
                        "start imports it again, which changes nothing", path.name, exc.strerror)


def _records(data: bytes, name: str, valid: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The records of a JSON-lines file: each line a JSON object that is `valid`; the other lines are skipped
    with a warning."""
    records, skipped = [], 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and valid(record):
            records.append(record)
        elif line.strip():
            skipped += 1
    if skipped:
        log.warning("[Grok Imagine] skipped %d malformed line(s) of %s while importing it", skipped, name)
    return records


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _journal_line(record: dict[str, Any]) -> bool:
    if not isinstance(record.get("request_id"), str) or not record["request_id"]:
        return False
    for name, types in _JOURNAL_TYPES.items():
        value = record.get(name)
        if name in record and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            return False
    return record.get("state", "submitted") in OLD_STATES


def _import_journal(db: sqlite3.Connection, data: bytes, name: str) -> None:
    requests: dict[str, dict[str, Any]] = {}
    for record in _records(data, name, _journal_line):
        requests.setdefault(record["request_id"], {}).update(record)
    rows = [(rid, r["endpoint"], r["fingerprint"], float(r["submitted_at"]),
             max(float(r.get("updated_at", 0.0)), float(r["submitted_at"])), r["state"], bool(r.get("sync_mode")))
            for rid, r in requests.items()
            if all(k in r for k in ("endpoint", "fingerprint", "submitted_at", "state")) and r["state"] != "resolved"]
    db.executemany("INSERT OR IGNORE INTO requests (request_id, endpoint, fingerprint, submitted_at, updated_at, "
                   "state, sync_mode) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def _spend_line(record: dict[str, Any]) -> bool:
    price = record.get("price_usd")
    return (isinstance(record.get("request_id"), str) and _number(record.get("at"))
            and (price is None or (_number(price) and price >= 0)))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _import_spend(db: sqlite3.Connection, data: bytes, name: str) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO spend (request_id, endpoint, images, refs, price_usd, at, day, summary) "
        "VALUES (?, ?, ?, ?, ?, ?, date(?, 'unixepoch', 'localtime'), ?)",
        [(r["request_id"], r["endpoint"] if isinstance(r.get("endpoint"), str) else "", _count(r.get("images")),
          _count(r.get("references")), r.get("price_usd"), float(r["at"]), float(r["at"]), bool(r.get("summary")))
         for r in _records(data, name, _spend_line)])


def _import_settings(db: sqlite3.Connection, data: bytes, name: str) -> None:
    try:
        settings = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        settings = exc
    if not isinstance(settings, dict):
        log.warning("[Grok Imagine] %s could not be read (%s), so the settings stored in it (the daily limit) are "
                    "ignored: set them again in Settings > Grok Imagine (fal)", name,
                    settings if isinstance(settings, ValueError) else "not a JSON object")
        return
    db.executemany("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)",
                   [(key, json.dumps(value)) for key, value in settings.items() if value is not None])
