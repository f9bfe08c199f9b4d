"""Load and call the pack the way ComfyUI does, without ComfyUI."""

from __future__ import annotations

import asyncio
import importlib.util
import sqlite3
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACK_MODULE = "grok-imagine-fal"  # ComfyUI names the package after its folder, dashes and all
TEST_KEY = "test-key-id:test-key-secret-0123456789abcdef"


def load_pack(module_name: str = PACK_MODULE, root: Path = ROOT) -> ModuleType:
    """Import a custom node folder as ComfyUI does: a spec from its `__init__.py`, named after the folder."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(
        module_name, root / "__init__.py", submodule_search_locations=[str(root)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def pack_module(name: str) -> ModuleType:
    """A submodule of the loaded pack, e.g. pack_module("nodes.text_to_image")."""
    load_pack()
    return importlib.import_module(f"{PACK_MODULE}.{name}")


async def run_node_raw(node_class: type, **inputs: Any) -> Any:
    """Instantiate the node, look up FUNCTION and await it, as ComfyUI's executor does."""
    node = node_class()
    return await getattr(node, node_class.FUNCTION)(**inputs)


async def run_node(node_class: type, **inputs: Any) -> tuple[Any, ...]:
    """The node's outputs, in slot order (what links downstream receive)."""
    returned = await run_node_raw(node_class, **inputs)
    return tuple(returned["result"] if isinstance(returned, dict) else returned)


async def run_node_over_list(node_class: type, **inputs: Any) -> list[tuple[Any, ...]]:
    """Run the node once per list item, as ComfyUI does when a list feeds it (`_async_map_node_over_list`):
    every item's task is started at once in this loop (each gets a turn as it is created), all are
    awaited, and then the first failure is raised. List inputs are lists; the others repeat."""
    length = max(len(v) for v in inputs.values() if isinstance(v, list))
    node = node_class()
    function = getattr(node, node_class.FUNCTION)
    tasks = []
    for index in range(length):
        item = {k: (v[min(index, len(v) - 1)] if isinstance(v, list) else v) for k, v in inputs.items()}
        tasks.append(asyncio.create_task(function(**item)))
        await asyncio.sleep(0)
    await asyncio.wait(tasks)
    failures = [task.exception() for task in tasks if task.exception() is not None]
    if failures:
        raise failures[0]
    return [tuple(t.result()["result"]) for t in tasks]


def stored_state(directory: Path) -> str:
    """Everything the pack's state database in `directory` holds, as SQL text (to check what it never holds)."""
    connection = sqlite3.connect(directory / "state.sqlite3")
    try:
        return "\n".join(connection.iterdump())
    finally:
        connection.close()
