"""Stand-ins for the ComfyUI modules the pack touches (only their long-stable surface), so the host
hooks can be tested without ComfyUI: `comfy.model_management`, `comfy.utils`, `comfy_api.latest`,
`server`, `folder_paths`.

Where it matters they behave like the real host:
- the interrupt flag (`processing_interrupted`, `interrupt_current_processing`) and
  `throw_exception_if_processing_interrupted`, which raises `InterruptProcessingException` AND
  clears the flag (comfy/model_management.py);
- `comfy.utils.ProgressBar.update_absolute` calls the global progress hook, which ComfyUI's
  `main.hijack_progress` installs: it first calls `throw_exception_if_processing_interrupted()`, so
  the first progress update after the user's Cancel raises and takes the flag away from everything
  else that polls it;
- `InterruptProcessingException` derives from `BaseException`, as in ComfyUI 0.38 (an `Exception`
  in 0.3.x): `except Exception` never catches it;
- `comfy_api.latest.ComfyAPI()` has no `execution` in 0.3.64 (`api="0.3"`, the default); with
  `api="0.38"` it has `execution.set_progress(value, max_value, node_id=None, preview_image=None,
  ignore_size_limit=False)`, a coroutine that moves the bar without going through the hook.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class InterruptProcessingException(BaseException):
    pass


@dataclass
class FakeHost:
    temp_dir: Path
    api: Literal["0.3", "0.38"] = "0.3"
    interrupted: bool = False  # ComfyUI's interrupt flag: `host.interrupted = True` is the user's Cancel
    progress_texts: list[tuple[str, str]] = field(default_factory=list)  # (node_id, text)
    bar_updates: list[tuple[int, int, str | None]] = field(default_factory=list)  # (value, total, node_id)
    interrupts_raised: int = 0  # how often a progress update raised the interrupt (and cleared the flag)
    cancels_seen: int = 0  # how often processing_interrupted() answered True: the pack looked and saw the Cancel
    lock: threading.RLock = field(default_factory=threading.RLock)

    def texts_for(self, node_id: str) -> list[str]:
        return [text for nid, text in self.progress_texts if nid == node_id]

    def throw_exception_if_processing_interrupted(self) -> None:
        with self.lock:
            if self.interrupted:
                self.interrupted = False
                self.interrupts_raised += 1
                raise InterruptProcessingException()


MODULES = ("comfy", "comfy.model_management", "comfy.utils", "comfy_api", "comfy_api.latest", "server",
           "folder_paths")


@contextmanager
def fake_comfy(temp_dir: Path, api: Literal["0.3", "0.38"] = "0.3") -> Iterator[FakeHost]:
    host = FakeHost(temp_dir, api)
    saved = {name: sys.modules.get(name) for name in MODULES}

    model_management = types.ModuleType("comfy.model_management")
    model_management.InterruptProcessingException = InterruptProcessingException  # type: ignore[attr-defined]

    def interrupt_current_processing(value: bool = True) -> None:
        with host.lock:
            host.interrupted = value

    def processing_interrupted() -> bool:
        with host.lock:
            host.cancels_seen += host.interrupted
            return host.interrupted

    model_management.interrupt_current_processing = interrupt_current_processing  # type: ignore[attr-defined]
    model_management.processing_interrupted = processing_interrupted  # type: ignore[attr-defined]
    model_management.throw_exception_if_processing_interrupted = (  # type: ignore[attr-defined]
        host.throw_exception_if_processing_interrupted)

    utils = types.ModuleType("comfy.utils")
    utils.PROGRESS_BAR_HOOK = None  # type: ignore[attr-defined]

    def set_progress_bar_global_hook(function: Any) -> None:
        utils.PROGRESS_BAR_HOOK = function  # type: ignore[attr-defined]

    class ProgressBar:
        def __init__(self, total: int, node_id: str | None = None) -> None:
            self.total, self.current, self.node_id = total, 0, node_id
            self.hook = utils.PROGRESS_BAR_HOOK  # type: ignore[attr-defined]

        def update_absolute(self, value: int, total: int | None = None, preview: object = None) -> None:
            if total is not None:
                self.total = total
            self.current = min(value, self.total)
            if self.hook is not None:
                self.hook(self.current, self.total, preview, node_id=self.node_id)

    def hook(value: int, total: int, preview: object, prompt_id: str | None = None,
             node_id: str | None = None) -> None:  # main.hijack_progress
        host.throw_exception_if_processing_interrupted()
        host.bar_updates.append((value, total, node_id))

    utils.ProgressBar = ProgressBar  # type: ignore[attr-defined]
    utils.set_progress_bar_global_hook = set_progress_bar_global_hook  # type: ignore[attr-defined]
    set_progress_bar_global_hook(hook)

    comfy = types.ModuleType("comfy")
    comfy.model_management = model_management  # type: ignore[attr-defined]
    comfy.utils = utils  # type: ignore[attr-defined]

    latest = types.ModuleType("comfy_api.latest")

    class Execution:
        async def set_progress(self, value: float, max_value: float, node_id: str | None = None,
                               preview_image: object = None, ignore_size_limit: bool = False) -> None:
            if node_id is None:
                raise ValueError("node_id must be provided if not in executing context")
            host.bar_updates.append((int(value), int(max_value), node_id))

    class ComfyAPI:
        def __init__(self) -> None:
            if host.api == "0.38":
                self.execution = Execution()

    latest.ComfyAPI = ComfyAPI  # type: ignore[attr-defined]
    comfy_api = types.ModuleType("comfy_api")
    comfy_api.latest = latest  # type: ignore[attr-defined]

    server = types.ModuleType("server")

    class PromptServer:
        instance: PromptServer

        def send_progress_text(self, text: str, node_id: str, sid: object = None) -> None:
            host.progress_texts.append((node_id, text))

    PromptServer.instance = PromptServer()
    server.PromptServer = PromptServer  # type: ignore[attr-defined]

    folder_paths = types.ModuleType("folder_paths")
    folder_paths.get_temp_directory = lambda: str(temp_dir)  # type: ignore[attr-defined]

    sys.modules.update({"comfy": comfy, "comfy.model_management": model_management, "comfy.utils": utils,
                        "comfy_api": comfy_api, "comfy_api.latest": latest, "server": server,
                        "folder_paths": folder_paths})
    try:
        yield host
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
