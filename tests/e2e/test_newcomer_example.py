"""README's first command, `python dev/try_example.py`, run for real: the example workflow in the real
ComfyUI against the fake fal, the saved images' paths printed, and the user's ComfyUI folder left as it was.

Needs COMFYUI_DIR (a ComfyUI checkout) with its venv beside it (or COMFYUI_VENV); skips without them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from comfy_host import PACK_ROOT, comfy_paths
from PIL import Image

PATHS = comfy_paths()
pytestmark = pytest.mark.skipif(
    PATHS is None, reason="COMFYUI_DIR is not set to a ComfyUI checkout with its venv (see README: e2e tests)"
)


def tree(folder: Path) -> list[str]:
    """What a user sees in a ComfyUI folder (bytecode caches aside)."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if "__pycache__" not in path.parts)


@pytest.mark.timeout(600)
def test_the_example_runs_in_comfyui_against_the_fake_fal_and_says_where_the_images_went(tmp_path: Path) -> None:
    assert PATHS is not None
    comfy_dir, python = PATHS
    watched = [comfy_dir / "custom_nodes", comfy_dir / "output", comfy_dir / "user", comfy_dir / "temp"]
    before = {folder: tree(folder) for folder in watched}
    temporary = tmp_path / "temp"
    temporary.mkdir()
    output = tmp_path / "images for Zoë"
    env = {name: value for name, value in os.environ.items() if name not in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET")}
    env.update(COMFYUI_DIR=str(comfy_dir), COMFYUI_VENV=str(python.parents[1]),
               TMPDIR=str(temporary), TEMP=str(temporary), TMP=str(temporary))

    result = subprocess.run(  # noqa: S603 (our own argv)
        [sys.executable, str(PACK_ROOT / "dev" / "try_example.py"), "--output-dir", str(output)],
        env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=540,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no key, no cost" in result.stdout
    assert f"The images went to {output}:" in result.stdout
    printed = [Path(line.strip()) for line in result.stdout.splitlines() if line.startswith("  ")]
    assert printed and all(path.parent == output for path in printed)
    for path in printed:
        with Image.open(path) as image:
            assert image.format == "PNG" and "FalGrokImagineImage" in image.info["prompt"]
    assert sorted(output.iterdir()) == sorted(printed)
    assert {folder: tree(folder) for folder in watched} == before, "the user's ComfyUI folder changed"
    assert not list(temporary.glob("grok-imagine-*")), "the temporary ComfyUI folder was left behind"
