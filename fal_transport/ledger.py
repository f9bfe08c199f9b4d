"""The spend ledger: what every request fal accepted cost, and the daily limit.

`spend.jsonl` in the pack's state directory holds one line per accepted request: request id,
endpoint, image and reference counts, price in US dollars and time. Never the prompt, never the
key. Requests collected from the journal or by the Result node cost nothing and are not recorded.

A daily limit (`GROK_IMAGINE_DAILY_LIMIT_USD`, else the one stored from Settings in
`settings.json`) is enforced by reserving a run's price before anything is sent: a run that would
take today's spend (recorded plus reserved) past the limit is refused with `SpendLimitError`.
"Today" and "this month" are the machine's local calendar.

The balance floor (`GROK_IMAGINE_BALANCE_FLOOR_USD`, else the one stored from Settings beside the
daily limit) is the part of the fal balance runs must leave alone; `billing` enforces it.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config
from .errors import FalConfigError, SpendLimitError
from .jsonl import JsonlFile
from .private_files import write_private
from .process_state import current

FILE_NAME = "spend.jsonl"
SETTINGS_FILE = "settings.json"
RECENT_KEPT = 20
COMPACT_ABOVE_LINES = 20000
KEEP_DAYS = 62
SETTINGS_HELP = "Settings > Grok Imagine (fal)"


@dataclass
class _Sums:
    days: dict[str, float] = field(default_factory=dict)  # local "YYYY-MM-DD" -> USD
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_KEPT))


def _day(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(at))


def _valid(record: dict[str, Any]) -> bool:
    price, at = record.get("price_usd"), record.get("at")
    return (isinstance(record.get("request_id"), str) and isinstance(at, (int, float)) and not isinstance(at, bool)
            and math.isfinite(at) and (price is None or (isinstance(price, (int, float)) and not isinstance(price, bool)
                                                         and math.isfinite(price) and price >= 0)))


def _fold(sums: _Sums, record: dict[str, Any]) -> None:
    day = _day(record["at"])
    sums.days[day] = sums.days.get(day, 0.0) + float(record.get("price_usd") or 0.0)
    if not record.get("summary"):
        sums.recent.append(record)


def _compacted(sums: _Sums) -> list[dict[str, Any]]:
    """The same totals in fewer lines: one summary line a day (of the last `KEEP_DAYS`), then the recent
    requests themselves (their prices taken out of their day's summary)."""
    days = dict(sums.days)
    for record in sums.recent:
        day = _day(record["at"])
        days[day] = days.get(day, 0.0) - float(record.get("price_usd") or 0.0)
    oldest = _day(time.time() - KEEP_DAYS * 86400)
    summaries = [
        {"request_id": f"summary-{day}", "summary": True, "price_usd": round(max(0.0, total), 9),
         "at": time.mktime(time.strptime(f"{day} 12:00", "%Y-%m-%d %H:%M"))}
        for day, total in sorted(days.items()) if day >= oldest
    ]
    return [*summaries, *sums.recent]


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


class Ledger:
    def __init__(self, directory: Path) -> None:
        self.file: JsonlFile[_Sums] = JsonlFile(directory / FILE_NAME, new_view=_Sums, fold=_fold, valid=_valid)
        self.settings_path = directory / SETTINGS_FILE

    # ---- the daily limit
    def _settings(self) -> dict[str, Any]:
        try:
            data = json.loads(self.settings_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise FalConfigError(f"The pack's settings.json cannot be read ({exc}). Set the daily limit again in "
                                 f"{SETTINGS_HELP}.") from None
        return data if isinstance(data, dict) else {}

    def daily_limit(self) -> tuple[float | None, str | None]:
        """(limit in USD or None, where it comes from): the environment variable wins."""
        from_env = config.daily_limit_from_env()
        if from_env is not None:
            return from_env, f"the environment variable {config.DAILY_LIMIT_ENV}"
        stored = self._settings().get("daily_limit_usd")
        if isinstance(stored, (int, float)) and not isinstance(stored, bool) and math.isfinite(stored) and stored >= 0:
            return float(stored), SETTINGS_HELP
        return None, None

    def set_daily_limit(self, value: float | None) -> None:
        if value is not None and (not math.isfinite(value) or value < 0):
            raise FalConfigError("The daily limit must be a number of US dollars, 0 or more.")
        settings = self._settings()
        settings["daily_limit_usd"] = value
        write_private(self.settings_path, json.dumps(settings, indent=1) + "\n")

    # ---- the balance floor
    def balance_floor(self) -> tuple[float | None, str | None]:
        """(floor in USD or None, where it comes from): the environment variable wins."""
        from_env = config.balance_floor_from_env()
        if from_env is not None:
            return from_env, f"the environment variable {config.BALANCE_FLOOR_ENV}"
        stored = self._settings().get("balance_floor_usd")
        if isinstance(stored, (int, float)) and not isinstance(stored, bool) and math.isfinite(stored) and stored >= 0:
            return float(stored), SETTINGS_HELP
        return None, None

    def set_balance_floor(self, value: float | None) -> None:
        if value is not None and (not math.isfinite(value) or value < 0):
            raise FalConfigError("The balance floor must be a number of US dollars, 0 or more.")
        settings = self._settings()
        settings["balance_floor_usd"] = value
        write_private(self.settings_path, json.dumps(settings, indent=1) + "\n")

    # ---- what was spent
    def totals(self) -> SpendTotals:
        now = time.time()
        today, month = _day(now), _day(now)[:7]

        def read(sums: _Sums, _lines: int) -> tuple[float, float, list[dict[str, Any]]]:
            return (sums.days.get(today, 0.0), sum(v for d, v in sums.days.items() if d.startswith(month)),
                    list(reversed(sums.recent)))

        today_usd, month_usd, recent = self.file.query(read)
        limit, source = self.daily_limit()
        return SpendTotals(today_usd, month_usd, current().session_spend_usd, limit, source, recent)

    def record(self, request_id: str, endpoint: str, *, images: int, references: int, price_usd: float | None) -> None:
        self.file.append({"request_id": request_id, "endpoint": endpoint, "images": images, "references": references,
                          "price_usd": price_usd, "at": time.time()})
        with current().lock:
            current().session_spend_usd += price_usd or 0.0
        if self.file.query(lambda _sums, lines: lines) > COMPACT_ABOVE_LINES:
            self.file.compact(_compacted)

    def reserve(self, price_usd: float) -> Reservation:
        """Set `price_usd` aside for a run, or refuse the run if it would pass today's limit."""
        limit, source = self.daily_limit()
        state = current()
        with state.spend_lock:  # no charge is between its record and its give-back meanwhile
            return self._reserve(price_usd, limit, source)

    def _reserve(self, price_usd: float, limit: float | None, source: str | None) -> Reservation:
        totals = self.totals() if limit is not None else None
        state = current()
        with state.lock:
            if limit is not None and totals is not None:
                spent = totals.today_usd + state.reserved_usd
                if spent + price_usd > limit + 1e-9:
                    raise SpendLimitError(
                        f"This run costs {format_usd(price_usd)}, and today's spend is {format_usd(spent)} of the "
                        f"daily limit of {format_usd(limit)} (set by {source}), so nothing was sent. Raise or clear "
                        f"the limit in {SETTINGS_HELP} (or {config.DAILY_LIMIT_ENV}), or queue again tomorrow."
                    )
            state.reserved_usd += price_usd
        return Reservation(self, price_usd)


def spent_and_reserved() -> tuple[float, float]:
    """What this process has spent on accepted requests, and what runs under way have set aside (USD)."""
    state = current()
    with state.lock:
        return state.session_spend_usd, state.reserved_usd


@dataclass
class Reservation:
    """A run's price set aside until its requests are accepted (`charge`) or it ends (`release`)."""

    ledger: Ledger
    left_usd: float

    def charge(self, request_id: str, endpoint: str, *, images: int, references: int, price_usd: float | None) -> None:
        """The request was accepted: its price moves from reserved to recorded, never absent from both."""
        with current().spend_lock:
            self.ledger.record(request_id, endpoint, images=images, references=references, price_usd=price_usd)
            self._give_back(min(self.left_usd, price_usd or 0.0))

    def release(self) -> None:
        self._give_back(self.left_usd)

    def _give_back(self, amount: float) -> None:
        with current().lock:
            self.left_usd -= amount
            current().reserved_usd = max(0.0, current().reserved_usd - amount)
