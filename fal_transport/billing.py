"""fal's account balance, and whether it can pay for a run before anything of the run is sent.

    GET {FAL_REST_BASE_URL}/billing/user_balance   (Authorization: Key ...)  -> a bare number, US dollars

The key goes only to fal's REST API and never into an error; a read takes at most `READ_TIMEOUT_S`.
Each key's last reading (or failed read) is kept: a run that fits may be judged on a reading up to
`FITS_MAX_AGE_S` old, less what every process sharing the state has spent since and what runs under way have set aside
(so a batch of hundreds, or a workflow queued again and again, does not read it every time); a
refusal is always decided on a reading taken just now. When the balance cannot be read, nothing is
refused: fal stays the judge. The balance floor (`Ledger.balance_floor`) is kept in reserve.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import dataclass

import httpx

from . import config
from .aio import Deadline
from .credentials import FalCredentials
from .errors import TOP_UP_HELP, BalanceError, FalError, UnexpectedAnswerError, error_from_response
from .http import send
from .ledger import SETTINGS_HELP, Ledger, format_usd
from .process_state import current

log = logging.getLogger("grok_imagine_fal")

READ_TIMEOUT_S = 5.0
FITS_MAX_AGE_S = 60.0
WHAT = "reading the fal balance"


@dataclass(frozen=True)
class BalanceReading:
    usd: float
    read_at: float  # unix time
    taken: float  # monotonic time
    asked_at: float  # unix time the read was sent: spend recorded since then may not show in `usd` yet


def _key_hash(credentials: FalCredentials) -> str:
    return hashlib.sha256(credentials.key.encode("utf-8")).hexdigest()


def _amount(response: httpx.Response) -> float:
    """The balance in fal's answer: a bare number (or a number in a string); raises when it is not one."""
    try:
        value = response.json()
        if isinstance(value, str):
            value = float(value)
    except ValueError:
        value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UnexpectedAnswerError("fal answered the balance with something that is not an amount of US dollars. "
                                    "If this keeps happening, update the pack.")
    return float(value)


async def _read(credentials: FalCredentials) -> BalanceReading:
    asked_at = time.time()
    response = await send("GET", f"{config.rest_base_url()}/billing/user_balance", what=WHAT,
                          deadline=Deadline(READ_TIMEOUT_S),
                          headers={"Authorization": credentials.authorization, "Accept": "application/json"})
    if response.status_code >= 400:
        raise error_from_response(response, what=WHAT, key_source=credentials.source, scrub=credentials.scrub)
    return BalanceReading(_amount(response), time.time(), time.monotonic(), asked_at)


async def read_balance(credentials: FalCredentials, *, max_age_s: float = 0.0) -> BalanceReading:
    """The balance of the key's account: the last reading if it is at most `max_age_s` old, else read now.
    Raises the `FalError` of a failed read (the last one, when that is recent enough): `AuthenticationError`
    when fal refuses the key, `NetworkError` when fal does not answer in time."""
    key = _key_hash(credentials)
    kept = current().balances.get(key)
    if kept is not None and time.monotonic() - kept[0] <= max_age_s:
        if isinstance(kept[1], FalError):
            raise kept[1].with_traceback(None)
        return kept[1]
    try:
        reading = await _read(credentials)
    except FalError as exc:
        current().balances[key] = (time.monotonic(), exc)
        raise
    current().balances[key] = (reading.taken, reading)
    return reading


def _usd(amount: float) -> str:
    return f"-{format_usd(-amount)}" if amount < 0 else format_usd(amount)


@dataclass(frozen=True)
class _Verdict:
    reading: BalanceReading
    committed: float  # spent since the reading, and set aside by runs under way
    floor: float | None
    floor_source: str | None

    @property
    def spendable(self) -> float:
        return self.reading.usd - self.committed - (self.floor or 0.0)


async def _verdict(reading: BalanceReading, ledger: Ledger, floor: tuple[float | None, str | None]) -> _Verdict:
    return _Verdict(reading, await asyncio.to_thread(ledger.committed_since, reading.asked_at), *floor)


async def check_can_pay(credentials: FalCredentials, price_usd: float, *, prompts: int = 1) -> None:
    """Refuse (`BalanceError`, nothing sent) a run of `price_usd` (`prompts`: how many list items it
    covers) that the fal balance cannot pay, or that would take it below the balance floor. A run whose
    balance cannot be read goes on."""
    if price_usd <= 0:
        return
    ledger = Ledger(config.state_dir())
    floor = await asyncio.to_thread(ledger.balance_floor)  # a bad setting is refused
    asked = time.monotonic()
    try:
        reading = await read_balance(credentials, max_age_s=FITS_MAX_AGE_S)
        verdict = await _verdict(reading, ledger, floor)
        if verdict.spendable + 1e-9 >= price_usd:
            return
        if reading.taken < asked:  # a refusal is decided on a reading taken just now
            verdict = await _verdict(await read_balance(credentials), ledger, floor)
    except FalError as exc:
        log.info("[Grok Imagine] the fal balance is unknown (%s); the run goes on and fal decides", exc.reason)
        return
    if verdict.spendable + 1e-9 >= price_usd:
        return
    raise BalanceError(_refusal(verdict, price_usd, prompts))


def _refusal(verdict: _Verdict, price_usd: float, prompts: int) -> str:
    what = f"This batch of {prompts} prompts" if prompts > 1 else "This run"
    text = f"{what} costs {format_usd(price_usd)}; your fal balance is {_usd(verdict.reading.usd)}"
    if verdict.committed >= 0.0005:
        text += f" ({format_usd(verdict.committed)} of it going to runs already sent or under way)"
    fixes = [TOP_UP_HELP]
    if verdict.floor:
        text += f", and the balance floor of {format_usd(verdict.floor)} (set by {verdict.floor_source}) is kept"
        from_env = config.BALANCE_FLOOR_ENV in (verdict.floor_source or "")
        fixes.append(f"lower {config.BALANCE_FLOOR_ENV}" if from_env else f"lower the floor in {SETTINGS_HELP}")
    fixes.append("run fewer prompts" if prompts > 1 else "ask for fewer images")
    return f"{text}. {', '.join(fixes[:-1])}, or {fixes[-1]}. Nothing was sent."
