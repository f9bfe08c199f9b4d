"""The pack's state on disk: one SQLite database in the private state directory, shared by every ComfyUI
process that uses that directory (two instances on one user folder, one per GPU).

`state.sqlite3` holds
- `requests`: the request journal (`journal`), one row per request, and which process follows it now;
- `spend` and `reservations`: the spend ledger (`ledger`): what each accepted request cost, and what runs
  under way have set aside against the daily limit;
- `settings`: what Settings > Grok Imagine (fal) stores, by name (`Settings`; the daily limit is one);
- `owners`: the processes that may hold claims and reservations.

Every change is one transaction (`write`), which SQLite serialises across processes (WAL, a busy timeout), so
checking the daily limit and setting a price aside, or finding an unfinished request and claiming it, is one
step for all processes together.

A process that ends, however it ends (killed, crashed, the machine restarted), gives back its claims and
reservations: it holds an exclusive lock on a small file of its own, `processes/<owner>`, for as long as it
runs, and the operating system drops that lock with the process. Whoever finds an owner's file unlocked
releases what that owner held (`_reap`). The lock is SQLite's own, the same on every platform.

Old rows go by age (`_prune`, when the database is opened and then hourly): journal entries untouched for a
week (a request is collectable for an hour), and spend from before the previous month (the panel shows today's
and this month's). The files of earlier versions are imported when the database is opened (`state_import`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import config, state_import
from .errors import StateError
from .process_state import current

log = logging.getLogger("grok_imagine_fal")

FILE_NAME = "state.sqlite3"
OWNERS_DIR = "processes"
BUSY_TIMEOUT_S = 15.0  # how long a transaction waits for another process's (each takes milliseconds)
KEEP_REQUESTS_S = 7 * 86400
PRUNE_EVERY_S = 3600.0
DIR_MODE = 0o700
FILE_MODE = 0o600
WINDOWS = os.name == "nt"  # NTFS permissions keep %LOCALAPPDATA% private; POSIX modes are set here

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS requests (
        request_id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, fingerprint TEXT NOT NULL,
        submitted_at REAL NOT NULL, updated_at REAL NOT NULL, state TEXT NOT NULL,
        sync_mode INTEGER NOT NULL DEFAULT 0, claimed_by TEXT)""",
    "CREATE INDEX IF NOT EXISTS requests_by_inputs ON requests (fingerprint, endpoint, submitted_at)",
    "CREATE INDEX IF NOT EXISTS requests_by_age ON requests (updated_at)",
    "CREATE INDEX IF NOT EXISTS requests_by_owner ON requests (claimed_by) WHERE claimed_by IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS spend (
        request_id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, images INTEGER NOT NULL, refs INTEGER NOT NULL,
        price_usd REAL, at REAL NOT NULL, day TEXT NOT NULL, summary INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS spend_by_day ON spend (day, price_usd)",
    "CREATE INDEX IF NOT EXISTS spend_by_time ON spend (at)",
    "CREATE TABLE IF NOT EXISTS reservations (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, usd REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS owners (id TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def private_directory(directory: Path) -> Path:
    """`directory`, created if needed, that only the user can enter (group and other permissions taken off)."""
    directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    info = directory.stat()
    if not WINDOWS and info.st_mode & 0o077 and info.st_uid == os.getuid():
        os.chmod(directory, stat.S_IMODE(info.st_mode) & ~0o077)
    return directory


def _private_file(path: Path) -> None:
    """Create `path`, empty and readable by the owner only, unless it exists (O_EXCL: never through a link).
    SQLite gives its `-wal` and `-shm` files the same permissions."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)


def _failure(exc: Exception) -> StateError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)  # never a path
    return StateError(
        f"The pack's state database ({FILE_NAME} in its state directory) cannot be used: {reason}. Check that the "
        f"state directory ({config.STATE_DIR_ENV}) is writable, that its disk has room and that no other program "
        "keeps the database locked.")


class Database:
    """This process's connection to the state database of one directory, and its place among the owners."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME
        self.owner = uuid.uuid4().hex
        self._lock = threading.Lock()  # one transaction at a time on this connection
        self._pruned_at = 0.0
        private_directory(directory)
        _private_file(self.path)
        self._connection = _connect(self.path, BUSY_TIMEOUT_S)
        self._alive: sqlite3.Connection | None = None
        try:
            self._connection.execute("PRAGMA synchronous=NORMAL")  # durable across crashes; fsync at checkpoints
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._alive = self._hold_own_lock()
            with self.write() as db:
                for statement in SCHEMA:
                    db.execute(statement)
                imported = state_import.import_old_files(db, directory)
                db.execute("INSERT OR IGNORE INTO owners (id) VALUES (?)", (self.owner,))
                self._prune(db)
            if imported:  # on disk for good before the old files are renamed, power cut or not
                self._connection.execute("PRAGMA wal_checkpoint(FULL)")
        except BaseException:
            self.close()
            raise
        state_import.keep_imported(imported)

    def _hold_own_lock(self) -> sqlite3.Connection:
        path = private_directory(self.directory / OWNERS_DIR) / self.owner
        _private_file(path)
        alive = _connect(path, 0)
        alive.execute("BEGIN EXCLUSIVE")  # held until this process closes it or ends
        return alive

    def _is_alive(self, owner: str) -> bool:
        path = self.directory / OWNERS_DIR / owner
        if not path.exists():
            return False
        probe = _connect(path, 0)
        try:
            probe.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError:  # locked: its process runs
            return True
        finally:
            probe.close()
        with contextlib.suppress(OSError):
            path.unlink()
        return False

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction that changes the database, serialised with every other process's."""
        with self._lock:
            try:
                self._connection.execute("BEGIN IMMEDIATE")
                try:
                    yield self._connection
                except BaseException:
                    if self._connection.in_transaction:
                        self._connection.execute("ROLLBACK")
                    raise
                self._connection.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _failure(exc) from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """One consistent view of the database (WAL: it never waits for writers)."""
        with self._lock:
            try:
                self._connection.execute("BEGIN")
                try:
                    yield self._connection
                finally:
                    self._connection.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _failure(exc) from exc

    @contextlib.contextmanager
    def owning(self) -> Iterator[sqlite3.Connection]:
        """A `write` that takes a claim or a reservation: what ended processes held is given back first."""
        with self.write() as db:
            self._reap(db)
            db.execute("INSERT OR IGNORE INTO owners (id) VALUES (?)", (self.owner,))
            if time.time() - self._pruned_at > PRUNE_EVERY_S:
                self._prune(db)
            yield db

    def _reap(self, db: sqlite3.Connection) -> None:
        for (owner,) in db.execute("SELECT id FROM owners WHERE id != ?", (self.owner,)).fetchall():
            if not self._is_alive(owner):
                _give_back(db, owner)

    def _prune(self, db: sqlite3.Connection) -> None:
        self._pruned_at = time.time()
        db.execute("DELETE FROM requests WHERE updated_at < ?", (self._pruned_at - KEEP_REQUESTS_S,))
        db.execute("DELETE FROM spend WHERE day < date('now', 'localtime', 'start of month', '-1 month')")

    def close(self) -> None:
        """This process is done with the database: its claims and reservations go back now."""
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._connection.execute("BEGIN IMMEDIATE")
                _give_back(self._connection, self.owner)
                self._connection.execute("COMMIT")
            self._connection.close()
            if self._alive is not None:
                self._alive.close()
                with contextlib.suppress(OSError):
                    (self.directory / OWNERS_DIR / self.owner).unlink()


def _give_back(db: sqlite3.Connection, owner: str) -> None:
    db.execute("DELETE FROM reservations WHERE owner = ?", (owner,))
    db.execute("UPDATE requests SET claimed_by = NULL WHERE claimed_by = ?", (owner,))
    db.execute("DELETE FROM owners WHERE id = ?", (owner,))


def database(directory: Path) -> Database:
    """This process's database of `directory`, opened (created, old files imported) on first use."""
    state = current()
    with state.databases_lock:
        opened = state.databases.get(str(directory))
        if opened is None:
            try:
                opened = _open(directory)
            except (OSError, sqlite3.Error) as exc:
                raise _failure(exc) from exc
            state.databases[str(directory)] = opened
        return opened


def _open(directory: Path) -> Database:
    try:
        return Database(directory)
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError):  # busy, read-only, disk full: nothing to repair
            raise
        damaged = directory / f"{FILE_NAME}.damaged"
        log.warning("[Grok Imagine] the state database is damaged (%s); it is kept as %s and a new one started: "
                    "the journal and the spend of earlier runs start empty", exc, damaged.name)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(directory / (FILE_NAME + suffix), directory / (damaged.name + suffix))
        return Database(directory)


class Settings:
    """What Settings > Grok Imagine (fal) stores, by name: any JSON value; None when unset."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, name: str) -> Any:
        with database(self.directory).read() as db:
            row = db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set(self, name: str, value: Any) -> None:
        """Store `value` under `name` (None clears it)."""
        with database(self.directory).write() as db:
            if value is None:
                db.execute("DELETE FROM settings WHERE name = ?", (name,))
            else:
                db.execute("INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)",
                           (name, json.dumps(value)))
