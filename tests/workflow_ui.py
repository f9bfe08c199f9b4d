"""Read UI-format workflow files as ComfyUI's frontend does: widget values by position, links by slot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def node_info(node_class: type) -> dict[str, Any]:
    """The parts of /object_info the conversion needs, built from a node class."""
    types = node_class.INPUT_TYPES()
    return {
        "input": {key: types.get(key, {}) for key in ("required", "optional")},
        "input_order": {key: list(types.get(key, {})) for key in ("required", "optional")},
    }


def is_widget(spec: Any) -> bool:
    """Does this input show as a widget (a value stored in `widgets_values`), not a link-only slot?"""
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _has_control_widget(name: str, spec: Any) -> bool:
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if spec[0] not in ("INT", "FLOAT"):
        return False
    return bool(options.get("control_after_generate")) or name in ("seed", "noise_seed")


def widget_inputs(info: dict[str, Any], widgets_values: list[Any], linked: set[str] = frozenset()) -> dict[str, Any]:
    """Map a node's positional widget values to input names. A widget input fed by a link keeps its
    value (and position) in `widgets_values`; the link supplies the input instead."""
    values = list(widgets_values)
    inputs: dict[str, Any] = {}
    for section in ("required", "optional"):
        for name in info["input_order"].get(section, []):
            spec = info["input"][section][name]
            if not is_widget(spec):
                continue
            if not values:
                return inputs
            value = values.pop(0)
            if name not in linked:
                inputs[name] = value
            if _has_control_widget(name, spec) and values:
                values.pop(0)  # "randomize" / "fixed": frontend-only
    return inputs


def load_workflow(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def to_api_prompt(workflow: dict[str, Any], object_info: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The API-format prompt the frontend would queue for a UI-format workflow."""
    links = {link[0]: link for link in workflow["links"]}
    prompt: dict[str, Any] = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) != 0:
            continue
        linked_inputs = {i["name"]: i["link"] for i in node.get("inputs", []) if i.get("link") is not None}
        inputs = widget_inputs(object_info[node["type"]], node.get("widgets_values") or [], set(linked_inputs))
        for name, link_id in linked_inputs.items():
            _, origin_id, origin_slot, *_ = links[link_id]
            inputs[name] = [str(origin_id), origin_slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
