"""ComfyUI host hooks, imported lazily so everything below the nodes runs (and tests) without ComfyUI.

Only ComfyUI's long-stable surface is touched: `comfy.model_management` interrupt calls,
`comfy.utils.ProgressBar`, `folder_paths` and `server.PromptServer.instance`.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Awaitable
from types import ModuleType
from typing import Any, TypeVar

from ..fal_transport.errors import RequestCancelledError

T = TypeVar("T")

log = logging.getLogger("grok_imagine_fal")


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def interrupted() -> bool:
    """True once the user pressed Cancel in ComfyUI (the flag stays set for concurrent nodes)."""
    mm = _module("comfy.model_management")
    return bool(mm is not None and mm.processing_interrupted())


async def run_as_node(work: Awaitable[T]) -> T:
    """Await a node's work; the user's Cancel ends it as *interrupted* in ComfyUI, not as failed.
    (The one place where the pack's `RequestCancelledError` becomes ComfyUI's interrupt.)"""
    try:
        return await work
    except RequestCancelledError as exc:
        mm = _module("comfy.model_management")
        if mm is None:
            raise
        log.info("[Grok Imagine] %s", exc)
        raise mm.InterruptProcessingException() from exc


_WORD_JOINER = "\u2060"  # invisible; neither HTML nor the frontend's link syntax gives it a meaning
_MARKUP_START = re.compile(r"[<&]|\[(?=\[)")


def as_plain_text(text: str) -> str:
    """`text` as every frontend shows it as written. Frontend 1.27 renders progress text as HTML; 1.5x escapes
    it itself and turns `[[label|url]]` into a link. An invisible word joiner after each `<`, `&` and `[[`'s
    first `[` keeps them from starting a tag, an entity or a link in either (and escaping would show
    `&amp;` in 1.5x)."""
    return _MARKUP_START.sub(lambda match: match.group() + _WORD_JOINER, text)


def send_progress_text(node_id: str | None, text: str) -> None:
    """Show `text` on the node (ComfyUI's progress-text message) as written; a no-op outside ComfyUI."""
    if node_id is None:
        return
    sender = getattr(prompt_server(), "send_progress_text", None)
    if sender is None:
        return
    try:
        sender(as_plain_text(text), node_id)
    except Exception:  # progress is cosmetic: never fail a paid request over it
        log.debug("progress text not sent", exc_info=True)


def progress_bar(total: int, node_id: str | None) -> Any | None:
    """A `comfy.utils.ProgressBar` for the node, or None outside ComfyUI."""
    utils = _module("comfy.utils")
    if utils is None:
        return None
    try:
        return utils.ProgressBar(total, node_id=node_id)
    except TypeError:  # older ComfyUI without node_id
        return utils.ProgressBar(total)


def folder_paths() -> ModuleType | None:
    """ComfyUI's `folder_paths` module, or None outside ComfyUI."""
    return _module("folder_paths")


def prompt_server() -> Any | None:
    """ComfyUI's running `PromptServer`, or None outside ComfyUI."""
    server = _module("server")
    return getattr(getattr(server, "PromptServer", None), "instance", None)
