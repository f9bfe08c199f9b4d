"""The pack as ComfyUI sees it: how it loads, and the public contract saved workflows rely on."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from comfy_like import ROOT, load_pack
from PIL import Image
from workflow_ui import is_widget, load_workflow, node_info, to_api_prompt, widget_inputs

WORKFLOWS = ROOT / "tests" / "workflows"
EXPECTED_REQUESTS = json.loads((WORKFLOWS / "expected_requests.json").read_text(encoding="utf-8"))


def test_the_pack_loads_as_comfyui_loads_a_folder_with_dashes_in_its_name() -> None:
    module = load_pack("grok-imagine-fal-loadcheck")
    try:
        assert module.NODE_CLASS_MAPPINGS["FalGrokImagineImage"].__name__ == "FalGrokImagineImage"
        assert module.NODE_DISPLAY_NAME_MAPPINGS["FalGrokImagineImage"] == "Grok Imagine Image (fal)"
        assert set(module.NODE_DISPLAY_NAME_MAPPINGS) == set(module.NODE_CLASS_MAPPINGS)
        web = (ROOT / module.WEB_DIRECTORY).resolve()
        assert web.is_dir() and any(web.glob("*.js"))
    finally:
        for name in [n for n in sys.modules if n.startswith("grok-imagine-fal-loadcheck")]:
            del sys.modules[name]


def test_the_pack_never_imports_comfyuis_own_nodes_module() -> None:
    # ComfyUI has a top-level module called `nodes`: an absolute import would get that one.
    offenders = [
        str(path.relative_to(ROOT))
        for path in ROOT.glob("*/**/*.py")
        if not path.is_relative_to(ROOT / "tests") and not path.is_relative_to(ROOT / "bench")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith(("import nodes", "from nodes", "import fal_transport", "from fal_transport",
                            "import media", "from media"))
    ]
    assert offenders == []


TEXT_TO_IMAGE_CONTRACT = [
    ("prompt", "STRING", ""),
    ("num_images", "INT", 1),
    ("aspect_ratio", ["2:1", "20:9", "19.5:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:19.5", "9:20",
                      "1:2"], "1:1"),
    ("resolution", ["1k", "2k"], "1k"),
    ("output_format", ["jpeg", "png", "webp"], "jpeg"),
    ("sync_mode", "BOOLEAN", False),
    ("seed", "INT", 0),
]


def test_text_to_image_inputs_keep_their_names_order_kinds_and_defaults(pack) -> None:
    node = pack.NODE_CLASS_MAPPINGS["FalGrokImagineImage"]
    required = node.INPUT_TYPES()["required"]
    assert [(name, kind, options["default"]) for name, (kind, options) in required.items()] == TEXT_TO_IMAGE_CONTRACT
    assert required["prompt"][1]["multiline"] is True
    assert (required["num_images"][1]["min"], required["num_images"][1]["max"]) == (1, 16)
    optional = node.INPUT_TYPES()["optional"]
    assert list(optional) == ["tier", "on_refusal"] and optional["tier"][0] == ["standard", "quality"]
    assert optional["tier"][1]["default"] == "standard"
    assert optional["on_refusal"][0] == ["fail", "placeholder"] and optional["on_refusal"][1]["default"] == "fail"
    assert required["seed"][1]["control_after_generate"] is True
    assert "not sent" in required["seed"][1]["tooltip"].lower()


def test_edit_node_inputs_and_outputs_keep_their_contract(pack) -> None:
    node = pack.NODE_CLASS_MAPPINGS["FalGrokImagineEdit"]
    types = node.INPUT_TYPES()
    assert list(types["required"]) == ["image", "prompt", "num_images", "aspect_ratio", "resolution",
                                       "output_format", "sync_mode", "seed"]
    assert list(types["optional"]) == ["image_2", "image_3", "tier", "on_refusal", "output_size"]
    assert types["optional"]["output_size"][0] == ["fal", "match first reference"]
    assert types["optional"]["output_size"][1]["default"] == "fal"
    ratios, options = types["required"]["aspect_ratio"]
    assert ratios[0] == "auto" and options["default"] == "auto"
    assert ratios[1:] == TEXT_TO_IMAGE_CONTRACT[2][1]
    assert node.RETURN_NAMES == ("images", "revised_prompt", "image_urls")
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["FalGrokImagineEdit"] == "Grok Imagine Edit (fal)"


def test_result_node_inputs_and_outputs_keep_their_contract(pack) -> None:
    node = pack.NODE_CLASS_MAPPINGS["FalGrokImagineResult"]
    required = node.INPUT_TYPES()["required"]
    assert list(required) == ["request_id", "endpoint"]
    assert required["request_id"][0] == "STRING" and required["endpoint"][1]["default"] == "xai/grok-imagine-image"
    assert node.RETURN_NAMES == ("images", "revised_prompt", "image_urls")
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["FalGrokImagineResult"] == "Grok Imagine Result (fal)"


def test_text_to_image_outputs_keep_their_order(pack) -> None:
    node = pack.NODE_CLASS_MAPPINGS["FalGrokImagineImage"]
    assert node.RETURN_TYPES == ("IMAGE", "STRING", "STRING")
    assert node.RETURN_NAMES == ("images", "revised_prompt", "image_urls")
    assert node.CATEGORY == "fal/Grok Imagine"


@pytest.mark.parametrize("node_id", ["FalGrokImagineImage", "FalGrokImagineEdit", "FalGrokImagineResult"])
def test_every_input_and_output_has_a_tooltip_and_the_node_a_description(pack, node_id: str) -> None:
    node = pack.NODE_CLASS_MAPPINGS[node_id]
    types = node.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, spec in types.get(section, {}).items():
            assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert len(node.OUTPUT_TOOLTIPS) == len(node.RETURN_TYPES) and all(node.OUTPUT_TOOLTIPS)
    assert len(node.DESCRIPTION) > 40
    assert node.CATEGORY.startswith("fal/")


def test_the_node_function_is_async_so_independent_nodes_run_concurrently(pack) -> None:
    import inspect

    node = pack.NODE_CLASS_MAPPINGS["FalGrokImagineImage"]
    assert inspect.iscoroutinefunction(getattr(node, node.FUNCTION))
    result = pack.NODE_CLASS_MAPPINGS["FalGrokImagineResult"]
    assert inspect.iscoroutinefunction(getattr(result, result.FUNCTION))


FROZEN_WORKFLOWS = sorted(p.name for p in WORKFLOWS.glob("*.v*.json"))


@pytest.mark.parametrize("workflow_file", FROZEN_WORKFLOWS)
def test_every_published_workflow_still_builds_the_same_fal_request(pack, workflow_file: str) -> None:
    workflow = load_workflow(WORKFLOWS / workflow_file)
    built = {}
    for node in workflow["nodes"]:
        node_class = pack.NODE_CLASS_MAPPINGS.get(node["type"])
        if node_class is None or not hasattr(node_class, "image_request") and not hasattr(node_class, "video_request"):
            continue
        info = node_info(node_class)
        values = widget_inputs(info, node["widgets_values"])
        values.pop("seed", None)
        if hasattr(node_class, "video_request"):  # its media (and an input video's length) come at run time
            connected = frozenset(i["name"] for i in node.get("inputs", []) if i.get("link") is not None)
            request = node_class.video_request(values, connected)
            built[str(node["id"])] = {"endpoint": request.endpoint, "arguments": request.arguments()}
            continue
        optional = {name: values.pop(name) for name in info["input_order"].get("optional", []) if name in values}
        request = node_class.image_request(values, optional)
        built[str(node["id"])] = {"endpoint": request.endpoint, "arguments": request.body()}
    assert built == EXPECTED_REQUESTS[workflow_file]


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "example_workflows").glob("*.json")))
def test_every_example_workflow_uses_registered_nodes_with_complete_widgets(pack, example: str) -> None:
    workflow = load_workflow(ROOT / "example_workflows" / example)
    for node in workflow["nodes"]:
        if node["type"] in pack.NODE_CLASS_MAPPINGS:
            node_class = pack.NODE_CLASS_MAPPINGS[node["type"]]
            info = node_info(node_class)
            values = widget_inputs(info, node["widgets_values"])
            widget_names = [n for section in ("required", "optional") for n in info["input_order"][section]
                            if is_widget(info["input"][section][n])]
            assert list(values) == widget_names[: len(values)], example
            prompt = to_api_prompt({"nodes": [node], "links": workflow["links"]}, {node["type"]: info})
            assert prompt[str(node["id"])]["class_type"] == node["type"]


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "example_workflows").glob("*.json")))
def test_every_example_workflow_has_a_thumbnail_that_comfyui_can_show(example: str) -> None:
    thumbnail = (ROOT / "example_workflows" / example).with_suffix(".jpg")
    with Image.open(thumbnail) as image:  # a missing, empty or broken thumbnail fails here
        assert image.format == "JPEG" and min(image.size) >= 200


def test_frozen_copies_exist_for_every_example_workflow() -> None:
    frozen = {p.name.split(".v")[0] for p in WORKFLOWS.glob("*.v*.json")}
    examples = {Path(p).stem for p in (ROOT / "example_workflows").glob("*.json")}
    assert examples and examples <= frozen
