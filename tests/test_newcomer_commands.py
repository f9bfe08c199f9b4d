"""README's two commands for a fresh clone (`dev/try_example.py`, `dev/run_tests.py`), on any platform:
where they look for ComfyUI and its Python (Windows layouts forced here on any OS), what they say when
there is none, and that a run on fal never starts without consent. Running the example for real is in
tests/e2e/test_newcomer_example.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import run_tests
import try_example
from comfy_like import ROOT

# A Windows user's folders: spaces and letters beyond ASCII in the path.
USER = "Zoë Müller's PC"


def make_comfyui(folder: Path) -> Path:
    (folder / "custom_nodes").mkdir(parents=True)
    (folder / "main.py").write_text("", encoding="utf-8")
    return folder


def make_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("", encoding="utf-8")
    return path


def script_env(tmp_path: Path, **more: str) -> dict[str, str]:
    """This environment without any fal key, with a home that holds no ComfyUI."""
    env = {name: value for name, value in os.environ.items() if name not in try_example.FAL_KEY_VARIABLES}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**env, "HOME": str(home), "USERPROFILE": str(home), "COMFY_HOST_HOME": "", **more}


def run_try_example(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our own argv)
        [sys.executable, str(ROOT / "dev" / "try_example.py"), *args],
        env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
    )


def test_without_a_comfyui_the_example_says_in_one_line_how_to_get_one(tmp_path: Path) -> None:
    result = run_try_example(script_env(tmp_path, COMFYUI_DIR=str(tmp_path / "no ComfyUI here")))
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "No ComfyUI found" in lines[0] and str(tmp_path / "no ComfyUI here") in lines[0]
    assert "git clone https://github.com/comfyanonymous/ComfyUI" in lines[0] and "COMFYUI_DIR" in lines[0]


def test_a_comfyui_that_cannot_start_is_reported_with_its_log_even_where_the_console_cannot_print_its_path(
    tmp_path: Path,
) -> None:
    """Its path is printed escaped where the console cannot encode it: Windows with the output redirected
    (a code page, not UTF-8), forced here with an ASCII console."""
    comfy = make_comfyui(tmp_path / USER / "ComfyUI")
    (comfy / "main.py").write_text("raise SystemExit('ComfyUI cannot start: no torch here')\n", encoding="utf-8")
    result = run_try_example(script_env(tmp_path, COMFYUI_DIR=str(comfy), PYTHONIOENCODING="ascii"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "Starting ComfyUI from " in result.stdout and "Zo\\xeb M\\xfcller's PC" in result.stdout
    assert "ComfyUI exited while starting" in result.stdout
    assert "ComfyUI cannot start: no torch here" in result.stdout


def test_a_pack_inside_comfyui_custom_nodes_runs_in_that_comfyui(tmp_path: Path) -> None:
    comfy = make_comfyui(tmp_path / USER / "ComfyUI_windows_portable" / "ComfyUI")
    pack = comfy / "custom_nodes" / "ComfyUI-Grok-Imagine-fal"
    places = try_example.comfyui_candidates({}, pack, tmp_path / "home")
    assert try_example.find_comfyui(places) == comfy


def test_comfyui_dir_names_the_only_place_looked_at(tmp_path: Path) -> None:
    make_comfyui(tmp_path / "home" / "ComfyUI")
    chosen = tmp_path / "elsewhere"
    places = try_example.comfyui_candidates({"COMFYUI_DIR": str(chosen)}, ROOT, tmp_path / "home")
    assert places == [chosen] and try_example.find_comfyui(places) is None


def test_without_comfyui_dir_the_host_kit_and_the_home_folder_are_looked_at(tmp_path: Path) -> None:
    home = tmp_path / "home"
    in_home = make_comfyui(home / "ComfyUI")
    places = try_example.comfyui_candidates({}, tmp_path / "clone", home)
    assert places == [home / "comfy-host" / "ComfyUI", in_home]
    assert try_example.find_comfyui(places) == in_home
    host_kit = make_comfyui(home / "comfy-host" / "ComfyUI")
    assert try_example.find_comfyui(places) == host_kit


def test_the_portable_build_runs_its_python_embeded(tmp_path: Path) -> None:
    portable = tmp_path / USER / "ComfyUI_windows_portable"
    comfy = make_comfyui(portable / "ComfyUI")
    python = make_file(portable / "python_embeded" / "python.exe")
    assert try_example.find_python(comfy, {}) == python


@pytest.mark.parametrize("layout", [("bin", "python"), ("Scripts", "python.exe")], ids=["posix", "windows"])
@pytest.mark.parametrize("venv", ["venv", ".venv", "../venv"])
def test_comfyui_runs_in_its_virtual_environment_in_either_layout(
    tmp_path: Path, layout: tuple[str, str], venv: str
) -> None:
    comfy = make_comfyui(tmp_path / USER / "ComfyUI")
    python = make_file(comfy / venv / layout[0] / layout[1])
    assert try_example.find_python(comfy, {}).resolve() == python.resolve()


def test_comfyui_venv_names_the_environment(tmp_path: Path) -> None:
    comfy = make_comfyui(tmp_path / "ComfyUI")
    make_file(comfy / "venv" / "bin" / "python")
    python = make_file(tmp_path / USER / "desktop venv" / "Scripts" / "python.exe")
    assert try_example.find_python(comfy, {"COMFYUI_VENV": str(python.parents[1])}) == python


def test_a_comfyui_without_an_environment_runs_in_this_python(tmp_path: Path) -> None:
    assert try_example.find_python(make_comfyui(tmp_path / "ComfyUI"), {}) == Path(sys.executable)


def test_with_fal_key_set_nothing_starts_without_consent(tmp_path: Path) -> None:
    comfy = make_comfyui(tmp_path / "ComfyUI")
    env = script_env(tmp_path, COMFYUI_DIR=str(comfy), FAL_KEY="not-a-key:at-all",
                     FAL_QUEUE_BASE_URL="http://127.0.0.1:9", FAL_REST_BASE_URL="http://127.0.0.1:9")
    result = run_try_example(env)
    assert result.returncode != 0
    assert "costs money" in result.stdout and try_example.EXAMPLE_COST in result.stdout
    assert "--yes" in result.stdout and "Starting ComfyUI" not in result.stdout


def test_the_stated_cost_is_the_examples_request() -> None:
    """EXAMPLE_COST says one 1k image of xai/grok-imagine-image: what the example workflow asks for."""
    workflow = json.loads(try_example.EXAMPLE.read_text(encoding="utf-8"))
    grok = [node for node in workflow["nodes"] if node["type"].startswith("FalGrokImagine")]
    assert [node["type"] for node in grok] == [try_example.NODE]
    _prompt, num_images, _aspect, resolution, *_ = grok[0]["widgets_values"]
    assert (num_images, resolution) == (1, "1k")


def test_the_test_dependencies_are_the_test_extra_also_where_python_has_no_tomllib(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python 3.11+ reads pyproject.toml with tomllib; 3.10 (forced here) with the reader pip carries."""
    with_tomllib = run_tests.test_requirements(ROOT / "pyproject.toml")
    assert "pytest>=8" in with_tomllib and "torch" in with_tomllib
    monkeypatch.setitem(sys.modules, "tomllib", None)  # `import tomllib` fails as on Python 3.10
    assert run_tests.test_requirements(ROOT / "pyproject.toml") == with_tomllib
