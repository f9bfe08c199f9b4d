"""HTTP routes the web extension uses, registered on ComfyUI's server when the pack loads.

    GET    /grok_imagine/pricing       the price table (one table, in Python: nodes/prices.py)
    GET    /grok_imagine/key           whether a fal key is configured and where from (last 4 chars at most)
    POST   /grok_imagine/key           {"key": "..."}: store a key in the pack's state directory
    DELETE /grok_imagine/key           remove the stored key
    GET    /grok_imagine/spend         today's, this month's and this session's spend, the daily limit, the
                                       balance floor, the last requests, and the fal balance read just now
    POST   /grok_imagine/spend/limit   {"daily_limit_usd": 5.0 | null}: set or clear the daily limit
    POST   /grok_imagine/spend/floor   {"balance_floor_usd": 2.0 | null}: set or clear the balance floor

No route returns the key or an absolute path. Writes are guarded (`write_refusal`):

Who may change the pack's settings through its routes: the pack's own Settings panel, and nobody else.

ComfyUI's own origin check lets `Origin: null` through (sandboxed frames, local files) and any request
whose Host is not a loopback name (DNS rebinding), so a page the user visits could otherwise replace
the stored fal key (their prompts and images would then go to someone else's fal account). A write
(`POST`, `DELETE`) must:
- come for a loopback name or an IP address (`Host`), not for a DNS name a page could rebind;
- carry no `Origin`, or one whose host and port are the request's `Host` (and never `null`);
- be `Content-Type: application/json` and carry `X-Grok-Imagine: 1`, which no cross-site page can send
  without a CORS preflight that ComfyUI does not grant.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ..fal_transport import config
from ..fal_transport.billing import read_balance
from ..fal_transport.credentials import key_status, remove_key_file, resolve_credentials, save_key_file
from ..fal_transport.errors import AuthenticationError, FalConfigError, FalError, MissingCredentialsError
from ..fal_transport.ledger import Ledger
from . import host, prices

log = logging.getLogger("grok_imagine_fal")

PREFIX = "/grok_imagine"
HEADER = "X-Grok-Imagine"
HEADER_VALUE = "1"


def _host_name(host: str) -> str:
    """The name part of a Host header value ("[::1]:8188" -> "::1", "localhost:8188" -> "localhost")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip_or_loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _authority(value: str) -> str:
    """`host:port` of a URL or Host value, lower case, the port spelled out."""
    parts = urlsplit(value if "//" in value else f"http://{value}")
    try:
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme, 0)
    except ValueError:
        return ""
    return f"{(parts.hostname or '').lower()}:{port}"


def write_refusal(headers: Mapping[str, str]) -> tuple[int, str] | None:
    """(HTTP status, reason) when a settings write must be refused; None when it may go ahead."""
    host = headers.get("Host", "")
    if not _is_ip_or_loopback(_host_name(host)):
        return 403, ("Settings of Grok Imagine (fal) can only be changed on ComfyUI opened by IP address or "
                     "localhost, not by a host name. Open ComfyUI that way, or set FAL_KEY before starting it.")
    origin = headers.get("Origin")
    if origin is not None and (origin.strip().lower() == "null" or _authority(origin) != _authority(host)):
        return 403, "This change did not come from ComfyUI's own page, so it was refused."
    content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return 415, "Send the change as JSON (Content-Type: application/json)."
    if headers.get(HEADER) != HEADER_VALUE:
        return 403, f"This change did not come from the pack's Settings panel (no {HEADER} header), so it was refused."
    return None


def key_status_payload() -> dict[str, Any]:
    return key_status(config.key_file()).as_dict()


def set_key(body: Any) -> tuple[int, dict[str, Any]]:
    """(HTTP status, payload) for a request to store a key."""
    key = body.get("key") if isinstance(body, dict) else None
    try:
        save_key_file(config.key_file(), key)
    except FalConfigError as exc:
        return 400, {"error": f"{exc} Paste the key from https://fal.ai/dashboard/keys."}
    except OSError as exc:
        return 500, {"error": f"Could not store the key in the pack's state directory: {exc.strerror}."}
    log.info("[Grok Imagine] a fal key was stored in the pack's key file")
    return 200, key_status_payload()


def remove_key() -> tuple[int, dict[str, Any]]:
    try:
        remove_key_file(config.key_file())
    except OSError as exc:
        return 500, {"error": f"Could not remove the stored key: {exc.strerror}."}
    return 200, key_status_payload()


def spend_payload() -> tuple[int, dict[str, Any]]:
    try:
        ledger = Ledger(config.state_dir())
        floor, floor_source = ledger.balance_floor()
        return 200, {**ledger.totals().as_dict(), "balance_floor_usd": floor, "floor_source": floor_source}
    except FalConfigError as exc:
        return 500, {"error": str(exc)}


def _balance(status: str, error: str | None = None, usd: float | None = None,
             read_at: float | None = None) -> dict[str, Any]:
    return {"fal_balance_usd": usd, "fal_balance_read_at": read_at, "fal_balance_status": status,
            "fal_balance_error": error}


async def balance_payload() -> dict[str, Any]:
    """The fal balance, read now: `fal_balance_usd` (None when unknown), the unix time it was read, and
    `fal_balance_status`: "known", "no_key", "key_refused" or "unavailable" (with `fal_balance_error`)."""
    try:
        credentials = resolve_credentials(config.key_file())
    except MissingCredentialsError:
        return _balance("no_key")
    except FalConfigError as exc:
        return _balance("unavailable", exc.reason)
    try:
        reading = await read_balance(credentials)
    except AuthenticationError as exc:
        return _balance("key_refused", exc.reason)
    except FalError as exc:
        return _balance("unavailable", exc.reason)
    return _balance("known", usd=round(reading.usd, 6), read_at=reading.read_at)


async def spend_and_balance_payload() -> tuple[int, dict[str, Any]]:
    status, payload = spend_payload()
    return status, ({**payload, **await balance_payload()} if status == 200 else payload)
def dollars(value: object, name: str) -> float:
    """A JSON number as a finite amount of US dollars, 0 or more (-0 as 0); ValueError naming `name` and saying
    what is wrong. JSON reads 1e309 as infinity and a 400-digit integer as an int too large for a float."""
    help_text = f"{name} must be a number of US dollars (0 or more), or null to clear it."
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(help_text)
    try:
        amount = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large to be an amount of US dollars: type one such as 5 or 12.50, or null "
                         "to clear it.") from None
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(help_text)
    return amount + 0.0  # -0.0 + 0.0 is 0.0


def _set_amount(body: Any, name: str, what: str,
                store: Callable[[Ledger, float | None], None]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, payload) for a request to set (a number) or clear (null) the amount `name` of the body."""
    value = body.get(name, "missing") if isinstance(body, dict) else "missing"
    try:
        amount = None if value is None else dollars(value, name)
    except ValueError as exc:
        return 400, {"error": str(exc)}
    try:
        store(Ledger(config.state_dir()), amount)
    except (FalConfigError, OSError) as exc:
        return 500, {"error": f"Could not store the {what}: {exc}"}
    return spend_payload()


def set_daily_limit(body: Any) -> tuple[int, dict[str, Any]]:
    return _set_amount(body, "daily_limit_usd", "daily limit", Ledger.set_daily_limit)


def set_balance_floor(body: Any) -> tuple[int, dict[str, Any]]:
    return _set_amount(body, "balance_floor_usd", "balance floor", Ledger.set_balance_floor)


def add_routes(routes: Any) -> None:
    """Add the pack's routes to an aiohttp `RouteTableDef` (ComfyUI's `PromptServer.instance.routes`)."""
    from aiohttp import web

    def answer(status_payload: tuple[int, dict[str, Any]]) -> web.Response:
        status, payload = status_payload
        return web.json_response(payload, status=status)

    async def guarded_json(request: web.Request) -> tuple[web.Response | None, Any]:
        refusal = write_refusal(request.headers)
        if refusal is not None:
            return answer((refusal[0], {"error": refusal[1]})), None
        try:
            return None, await request.json()
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's JSON reader goes
            return None, None

    @routes.get(f"{PREFIX}/pricing")
    async def get_pricing(request: web.Request) -> web.Response:
        return web.json_response(prices.pricing_table())

    @routes.get(f"{PREFIX}/key")
    async def get_key_status(request: web.Request) -> web.Response:
        return web.json_response(key_status_payload())

    @routes.post(f"{PREFIX}/key")
    async def post_key(request: web.Request) -> web.Response:
        refused, body = await guarded_json(request)
        return refused or answer(set_key(body))

    @routes.delete(f"{PREFIX}/key")
    async def delete_key(request: web.Request) -> web.Response:
        refused, _ = await guarded_json(request)
        return refused or answer(remove_key())

    @routes.get(f"{PREFIX}/spend")
    async def get_spend(request: web.Request) -> web.Response:
        return answer(await spend_and_balance_payload())

    @routes.post(f"{PREFIX}/spend/limit")
    async def post_limit(request: web.Request) -> web.Response:
        refused, body = await guarded_json(request)
        return refused or answer(set_daily_limit(body))

    @routes.post(f"{PREFIX}/spend/floor")
    async def post_floor(request: web.Request) -> web.Response:
        refused, body = await guarded_json(request)
        return refused or answer(set_balance_floor(body))


def register() -> bool:
    """Register on the running ComfyUI server; False (and nothing done) outside ComfyUI."""
    server = host.prompt_server()
    if server is None:
        return False
    add_routes(server.routes)
    return True
