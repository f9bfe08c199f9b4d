"""The spend ledger: what every request fal accepted cost, and the daily limit.

The state database (`state`) holds one spend row per accepted request: request id, endpoint, image and
reference counts, price in US dollars, time and local day. Never the prompt, never the key. Requests collected
from the journal or loaded by their id cost nothing and are not recorded.

A daily limit (`GROK_IMAGINE_DAILY_LIMIT_USD`, else the one stored from Settings) is enforced by reserving a
run's price before anything is sent: a run that would take today's spend (recorded, plus what runs under way
in every process sharing the state directory have reserved) past the limit is refused with `SpendLimitError`.
The check and the reservation are one transaction, and so are an accepted request's record and the give-back
of its reservation. "Today" and "this month" are the machine's local calendar.

The balance floor (`GROK_IMAGINE_BALANCE_FLOOR_USD`, else the one stored from Settings beside the daily
limit) is the part of the fal balance runs must leave alone; `billing` enforces it.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config
from .errors import FalConfigError, SpendLimitError, StateError
from .process_state import current
from .state import Settings, database

log = logging.getLogger("grok_imagine_fal")

DAILY_LIMIT_SETTING = "daily_limit_usd"
BALANCE_FLOOR_SETTING = "balance_floor_usd"
RECENT_KEPT = 20
SETTINGS_HELP = "Settings > Grok Imagine (fal)"
_TODAY = "date('now', 'localtime')"
_NOTHING_USD = 1e-9  # sums of prices in float: less than this is nothing


def format_usd(amount: float) -> str:
    return f"${amount:.3f}".rstrip("0").rstrip(".") if amount < 0.1 and amount != 0 else f"${amount:.2f}"


@dataclass(frozen=True)
class SpendTotals:
    today_usd: float
    month_usd: float
    session_usd: float
    daily_limit_usd: float | None
    limit_source: str | None
    recent: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"today_usd": round(self.today_usd, 6), "month_usd": round(self.month_usd, 6),
                "session_usd": round(self.session_usd, 6), "daily_limit_usd": self.daily_limit_usd,
                "limit_source": self.limit_source, "recent": self.recent}


@dataclass(frozen=True)
class Spend:
    """What one accepted request costs, as the ledger records it: its price, the images it makes (or, for a
    video, its seconds) and the input images it sends."""

    price_usd: float
    images: int
    references: int


def _record(db: sqlite3.Connection, request_id: str, endpoint: str, spend: Spend) -> None:
    now = time.time()
    db.execute("INSERT OR IGNORE INTO spend (request_id, endpoint, images, refs, price_usd, at, day) "
               "VALUES (?, ?, ?, ?, ?, ?, date(?, 'unixepoch', 'localtime'))",
               (request_id, endpoint, spend.images, spend.references, spend.price_usd, now, now))


class Ledger:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.settings = Settings(directory)

    def _amount(self, setting: str, from_env: float | None, env_name: str) -> tuple[float | None, str | None]:
        """(amount in USD or None, where it comes from): the environment variable wins over the stored setting."""
        if from_env is not None:
            return from_env, f"the environment variable {env_name}"
        stored = self.settings.get(setting)
        if isinstance(stored, (int, float)) and not isinstance(stored, bool) and math.isfinite(stored) and stored >= 0:
            return float(stored), SETTINGS_HELP
        return None, None

    def _set_amount(self, setting: str, value: float | None, what: str) -> None:
        if value is not None and (not math.isfinite(value) or value < 0):
            raise FalConfigError(f"The {what} must be a number of US dollars, 0 or more.")
        self.settings.set(setting, value)

    def daily_limit(self) -> tuple[float | None, str | None]:
        return self._amount(DAILY_LIMIT_SETTING, config.daily_limit_from_env(), config.DAILY_LIMIT_ENV)

    def set_daily_limit(self, value: float | None) -> None:
        self._set_amount(DAILY_LIMIT_SETTING, value, "daily limit")

    def balance_floor(self) -> tuple[float | None, str | None]:
        return self._amount(BALANCE_FLOOR_SETTING, config.balance_floor_from_env(), config.BALANCE_FLOOR_ENV)

    def set_balance_floor(self, value: float | None) -> None:
        self._set_amount(BALANCE_FLOOR_SETTING, value, "balance floor")

    def committed_since(self, at: float) -> float:
        """What every process sharing the state directory has spent since the unix time `at`, plus what runs
        under way have set aside (USD): what a balance read at `at` does not show yet."""
        with database(self.directory).read() as db:
            (committed,) = db.execute("SELECT (SELECT TOTAL(price_usd) FROM spend WHERE at >= ? AND NOT summary) "
                                      "+ (SELECT TOTAL(usd) FROM reservations)", (at,)).fetchone()
        return committed

    def unbilled(self, request_id: str) -> None:
        """fal refused the request's inputs after accepting it (an HTTP 4xx, which fal does not bill): it no
        longer counts against the daily limit or the totals."""
        with database(self.directory).write() as db:
            row = db.execute("SELECT price_usd FROM spend WHERE request_id = ? AND NOT summary",
                             (request_id,)).fetchone()
            db.execute("DELETE FROM spend WHERE request_id = ? AND NOT summary", (request_id,))
        if row is not None:
            _add_to_session(-row[0])

    # ---- what was spent
    def totals(self) -> SpendTotals:
        with database(self.directory).read() as db:
            today_usd, month_usd = db.execute(
                f"SELECT TOTAL(CASE WHEN day = {_TODAY} THEN price_usd END), TOTAL(price_usd) FROM spend "
                "WHERE day >= date('now', 'localtime', 'start of month')").fetchone()
            recent = [{"request_id": row[0], "endpoint": row[1], "images": row[2], "references": row[3],
                       "price_usd": row[4], "at": row[5]}
                      for row in db.execute("SELECT request_id, endpoint, images, refs, price_usd, at FROM spend "
                                            "WHERE NOT summary ORDER BY at DESC LIMIT ?", (RECENT_KEPT,))]
        limit, source = self.daily_limit()
        return SpendTotals(today_usd, month_usd, current().session_spend_usd, limit, source, recent)

    def reserve(self, price_usd: float) -> Reservation:
        """Set `price_usd` aside for a run, or refuse the run if it would pass today's limit (in one step for
        every process sharing the state directory)."""
        limit, source = self.daily_limit()
        db = database(self.directory)
        with db.owning() as connection:
            if limit is not None:
                (spent,) = connection.execute(
                    f"SELECT (SELECT TOTAL(price_usd) FROM spend WHERE day = {_TODAY}) "
                    "+ (SELECT TOTAL(usd) FROM reservations)").fetchone()
                if spent + price_usd > limit + _NOTHING_USD:
                    raise SpendLimitError(
                        f"This run costs {format_usd(price_usd)}, and today's spend is {format_usd(spent)} of the "
                        f"daily limit of {format_usd(limit)} (set by {source}), so nothing was sent. Raise or clear "
                        f"the limit in {SETTINGS_HELP} (or {config.DAILY_LIMIT_ENV}), or queue again tomorrow."
                    )
            reservation_id = connection.execute("INSERT INTO reservations (owner, usd) VALUES (?, ?)",
                                                (db.owner, price_usd)).lastrowid
        assert reservation_id is not None
        return Reservation(self, reservation_id, price_usd)


def _add_to_session(price_usd: float) -> None:
    with current().lock:
        current().session_spend_usd += price_usd


@dataclass
class Reservation:
    """A run's price set aside until its requests are accepted (`charge`) or it ends (`release_all`).

    The charge that takes the last of it also removes it, in the same transaction: a run whose requests were
    all accepted has nothing left to release, so the end of a list of 1,000 prompts costs no write per prompt
    (on the prompt's thread, each would wait its turn for the GIL behind the cancels going out meanwhile)."""

    ledger: Ledger
    reservation_id: int
    usd: float  # what is still set aside
    _held: bool = True  # the row is in the database (written after the transaction that removes it)

    def charge(self, request_id: str, endpoint: str, spend: Spend) -> None:
        """The request was accepted: its price moves from reserved to recorded in one transaction, never absent
        from both nor counted in both."""
        left = self.usd - spend.price_usd
        with database(self.ledger.directory).write() as db:
            _record(db, request_id, endpoint, spend)
            if left > _NOTHING_USD:
                db.execute("UPDATE reservations SET usd = MAX(0, usd - ?) WHERE id = ?",
                           (spend.price_usd, self.reservation_id))
            else:
                db.execute("DELETE FROM reservations WHERE id = ?", (self.reservation_id,))
        self.usd = max(0.0, left)
        if left <= _NOTHING_USD:
            self._held = False
        _add_to_session(spend.price_usd)


def release_all(reservations: Iterable[Reservation]) -> None:
    """Runs ended: what they did not spend is no longer set aside, in one transaction per state directory (a
    list of prompts that ends at once gives its reservations back in one write)."""
    by_directory: dict[Path, list[Reservation]] = {}
    for reservation in reservations:
        if reservation._held:
            by_directory.setdefault(reservation.ledger.directory, []).append(reservation)
    for directory, held in by_directory.items():
        try:
            with database(directory).write() as db:
                db.executemany("DELETE FROM reservations WHERE id = ?", [(r.reservation_id,) for r in held])
        except StateError:
            log.warning("[Grok Imagine] could not release %d spend reservation(s)", len(held), exc_info=True)
            continue
        for reservation in held:
            reservation._held = False
