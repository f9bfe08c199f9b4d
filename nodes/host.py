"""ComfyUI host hooks, imported lazily so everything below the nodes runs (and tests) without ComfyUI.

Only ComfyUI's long-stable surface is touched: `comfy.model_management` interrupt calls,
`comfy.utils.ProgressBar` (or 0.38's `comfy_api.latest.ComfyAPI().execution.set_progress`),
`folder_paths` and `server.PromptServer.instance`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, TypeVar

from ..fal_transport.errors import ContentPolicyError, FalError, RequestCancelledError

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
    """Await a node's work; the user's Cancel ends it as *interrupted* in ComfyUI, not as failed, and any
    other error reads in ComfyUI's words (`in_comfyui_words`). (The one place where the pack's
    `RequestCancelledError` becomes ComfyUI's interrupt.)"""
    try:
        return await work
    except RequestCancelledError as exc:
        mm = _module("comfy.model_management")
        if mm is None:
            raise
        log.info("[Grok Imagine] %s", exc)
        raise mm.InterruptProcessingException() from exc
    except FalError as exc:
        in_comfyui_words(exc)
        raise


def in_comfyui_words(error: FalError) -> None:
    """Add to the error's message what the transport and media layers do not know: where in ComfyUI the user
    acts on it (the Result node that loads a request by its id; a node's `on_refusal`)."""
    text = str(error)
    hints = []
    if "by its request id" in text or "by request id" in text:
        hints.append("The Grok Imagine Result node loads a request by its id (and costs nothing).")
    if isinstance(error, ContentPolicyError):
        hints.append("To let a batch of images go on past a refusal, set the image node's on_refusal to "
                     "placeholder.")
    if hints and error.args:
        error.args = (" ".join([text, *hints]), *error.args[1:])


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


class ProgressBar:
    """A node's progress bar in ComfyUI; updates are a no-op outside ComfyUI.

    Where ComfyUI offers `ComfyAPI().execution.set_progress` (0.38 and later), the bar moves through it.
    Otherwise it is `comfy.utils.ProgressBar`, whose hook raises ComfyUI's interrupt when the user
    pressed Cancel AND clears ComfyUI's interrupt flag: every other list item of the node, and every
    other request, would then never see the Cancel. So the interrupt is caught and the flag set again
    (as ComfyUI's own API nodes do): each waiting request sees the Cancel at its next look and stops.
    """

    def __init__(self, total: int, node_id: str | None) -> None:
        self.total, self.node_id = total, node_id
        self._bar: Any = None
        self._updates: set[asyncio.Task[None]] = set()

    def update(self, value: int) -> None:
        set_progress = _set_progress()
        if set_progress is not None and self.node_id is not None:
            try:
                update = asyncio.get_running_loop().create_task(
                    set_progress(value, self.total, node_id=self.node_id))
            except RuntimeError:  # no running loop: progress is cosmetic
                return
            self._updates.add(update)
            update.add_done_callback(self._updated)
            return
        mm = _module("comfy.model_management")
        utils = _module("comfy.utils")
        if mm is None or utils is None:
            return
        if self._bar is None:
            try:
                self._bar = utils.ProgressBar(self.total, node_id=self.node_id)
            except TypeError:  # older ComfyUI without node_id
                self._bar = utils.ProgressBar(self.total)
        try:
            self._bar.update_absolute(value, self.total)
        except mm.InterruptProcessingException:  # the hook took the user's Cancel: give it back to everyone
            mm.interrupt_current_processing()

    def _updated(self, update: asyncio.Task[None]) -> None:
        self._updates.discard(update)
        if not update.cancelled() and update.exception() is not None:
            log.debug("progress not shown", exc_info=update.exception())


def _set_progress() -> Callable[..., Awaitable[None]] | None:
    """ComfyUI 0.38's `ComfyAPI().execution.set_progress`, or None where it does not exist (0.3.x)."""
    latest = _module("comfy_api.latest")
    api = getattr(latest, "ComfyAPI", None)
    if api is None:
        return None
    try:
        return getattr(getattr(api(), "execution", None), "set_progress", None)
    except Exception:  # an API this pack does not know: fall back to the progress bar
        log.debug("ComfyAPI not usable for progress", exc_info=True)
        return None


def folder_paths() -> ModuleType | None:
    """ComfyUI's `folder_paths` module, or None outside ComfyUI."""
    return _module("folder_paths")


def prompt_server() -> Any | None:
    """ComfyUI's running `PromptServer`, or None outside ComfyUI."""
    server = _module("server")
    return getattr(getattr(server, "PromptServer", None), "instance", None)
