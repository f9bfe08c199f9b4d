"""Install the test dependencies into this Python and run the whole test suite.

    python dev/run_tests.py [pytest arguments]

Into the environment of the Python that runs it (use a virtual environment): the torch CI pins first
(`TORCH_PIN`; on Linux add PyTorch's CPU index, see README: Development), then `requirements.txt` and the `[test]` extra
of pyproject.toml, then the web extension's test tools (`npm ci`) where npm is installed and
`GROK_IMAGINE_SKIP_JS` is not 1. Then `python -m pytest` with the arguments given, from the clone's root:
ruff, vitest, the Python tests and, when `COMFYUI_DIR` names a ComfyUI, the e2e tests. Its exit status is
pytest's. A Python script, so that it runs alike on Windows, macOS and Linux (no bash needed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_PIN = "torch==2.13.0"
PIP = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q"]


def say(message: str) -> None:
    print(f"== {message}", flush=True)


def test_requirements(pyproject: Path) -> list[str]:
    """The `[test]` extra of pyproject.toml (the pack is no installable package, so no `pip install .[test]`)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the TOML reader pip carries
        from pip._vendor import tomli as tomllib
    with pyproject.open("rb") as file:
        return tomllib.load(file)["project"]["optional-dependencies"]["test"]


def install() -> None:
    say(f"pip install {TORCH_PIN} into {sys.executable}")
    subprocess.run([*PIP, TORCH_PIN], check=True)  # noqa: S603 (our own argv)
    say("pip install -r requirements.txt and the [test] extra of pyproject.toml")
    with tempfile.TemporaryDirectory() as temporary:
        listed = Path(temporary, "test-requirements.txt")
        listed.write_text("\n".join(test_requirements(ROOT / "pyproject.toml")) + "\n", encoding="utf-8")
        subprocess.run([*PIP, "-r", str(ROOT / "requirements.txt"), "-r", str(listed)], check=True)  # noqa: S603
    if os.environ.get("GROK_IMAGINE_SKIP_JS") == "1":
        return
    npm = shutil.which("npm")
    if npm is None:
        say("npm not found: the web extension's tests will be skipped (install Node.js to run them)")
        return
    say("npm ci (the web extension's test tools)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT, check=True)  # noqa: S603


def main(pytest_args: list[str]) -> int:
    install()
    say(f"python -m pytest {' '.join(pytest_args)}".rstrip())
    return subprocess.run([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT).returncode  # noqa: S603


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
