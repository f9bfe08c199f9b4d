"""Who may change the pack's settings through its routes: the pack's own Settings panel, and nobody else.

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
from collections.abc import Mapping
from urllib.parse import urlsplit

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
