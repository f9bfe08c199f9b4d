"""The checks CI runs besides the Python tests, so that one `python -m pytest` runs every test:
ruff (with the Comfy registry's security rules) and the web extension's vitest suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from comfy_like import ROOT


def test_the_code_passes_ruff() -> None:
    if shutil.which("ruff") is None and subprocess.run([sys.executable, "-m", "ruff", "--version"],  # noqa: S603
                                                       capture_output=True).returncode != 0:
        pytest.skip("ruff is not installed (it is in the [test] extra of pyproject.toml)")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True,  # noqa: S603
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(os.environ.get("GROK_IMAGINE_SKIP_JS") == "1", reason="GROK_IMAGINE_SKIP_JS=1")
def test_the_web_extension_passes_its_vitest_suite() -> None:
    npm = shutil.which("npm")
    if npm is None or not (ROOT / "node_modules" / ".bin" / "vitest").exists():
        pytest.skip("the web extension's tests need `npm ci` first (README: Development)")
    result = subprocess.run([npm, "test", "--silent"], cwd=ROOT, capture_output=True, text=True,  # noqa: S603
                            timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
