"""Stand-ins for the ComfyUI modules the pack touches (only their long-stable surface), so the host
hooks can be tested without ComfyUI: `comfy.model_management`, `comfy.utils`, `server`, `folder_paths`."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


class InterruptProcessingException(Exception):
    pass


@dataclass
class FakeHost:
    temp_dir: Path
    interrupted: bool = False
    progress_texts: list[tuple[str, str]] = field(default_factory=list)  # (node_id, text)
    bar_updates: list[tuple[int, int, str | None]] = field(default_factory=list)  # (value, total, node_id)

    def texts_for(self, node_id: str) -> list[str]:
        return [text for nid, text in self.progress_texts if nid == node_id]


@contextmanager
def fake_comfy(temp_dir: Path) -> Iterator[FakeHost]:
    host = FakeHost(temp_dir)
    saved = {name: sys.modules.get(name) for name in ("comfy", "comfy.model_management", "comfy.utils", "server",
                                                       "folder_paths")}

    model_management = types.ModuleType("comfy.model_management")
    model_management.InterruptProcessingException = InterruptProcessingException  # type: ignore[attr-defined]
    model_management.processing_interrupted = lambda: host.interrupted  # type: ignore[attr-defined]

    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total: int, node_id: str | None = None) -> None:
            self.total, self.node_id = total, node_id

        def update_absolute(self, value: int, total: int | None = None, preview: object = None) -> None:
            host.bar_updates.append((value, total or self.total, self.node_id))

    utils.ProgressBar = ProgressBar  # type: ignore[attr-defined]

    comfy = types.ModuleType("comfy")
    comfy.model_management = model_management  # type: ignore[attr-defined]
    comfy.utils = utils  # type: ignore[attr-defined]

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
                        "server": server, "folder_paths": folder_paths})
    try:
        yield host
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
