"""HTTP routes the web extension uses, registered on ComfyUI's server when the pack loads.

    GET    /grok_imagine/pricing   the price table (one table, in Python)
    GET    /grok_imagine/key       whether a fal key is configured and where from (last 4 chars at most)
    POST   /grok_imagine/key       {"key": "..."}: store a key in the pack's state directory
    DELETE /grok_imagine/key       remove the stored key

No route ever returns the key.
"""

from __future__ import annotations

import logging
from typing import Any

from ..fal_transport import config
from ..fal_transport.credentials import key_status, remove_key_file, save_key_file
from . import grok_spec, host

log = logging.getLogger("grok_imagine_fal")

PREFIX = "/grok_imagine"


def key_status_payload() -> dict[str, Any]:
    return {**key_status(config.key_file()).as_dict(), "state_dir": str(config.state_dir())}


def set_key(body: Any) -> tuple[int, dict[str, Any]]:
    """(HTTP status, payload) for a request to store a key."""
    key = body.get("key") if isinstance(body, dict) else None
    try:
        save_key_file(config.key_file(), key)  # type: ignore[arg-type]
    except ValueError as exc:
        return 400, {"error": f"{exc} Paste the key from https://fal.ai/dashboard/keys."}
    except OSError as exc:
        return 500, {"error": f"Could not store the key in {config.state_dir()}: {exc.strerror}."}
    log.info("[Grok Imagine] a fal key was stored in the pack's key file")
    return 200, key_status_payload()


def remove_key() -> dict[str, Any]:
    remove_key_file(config.key_file())
    return key_status_payload()


def add_routes(routes: Any) -> None:
    """Add the pack's routes to an aiohttp `RouteTableDef` (ComfyUI's `PromptServer.instance.routes`)."""
    from aiohttp import web

    @routes.get(f"{PREFIX}/pricing")
    async def get_pricing(request: web.Request) -> web.Response:
        return web.json_response(grok_spec.pricing_table())

    @routes.get(f"{PREFIX}/key")
    async def get_key_status(request: web.Request) -> web.Response:
        return web.json_response(key_status_payload())

    @routes.post(f"{PREFIX}/key")
    async def post_key(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        status, payload = set_key(body)
        return web.json_response(payload, status=status)

    @routes.delete(f"{PREFIX}/key")
    async def delete_key(request: web.Request) -> web.Response:
        return web.json_response(remove_key())


def register() -> bool:
    """Register on the running ComfyUI server; False (and nothing done) outside ComfyUI."""
    server = host.prompt_server()
    if server is None:
        return False
    add_routes(server.routes)
    return True
