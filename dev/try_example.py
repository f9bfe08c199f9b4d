"""Run an example workflow in a real ComfyUI against the project's fake fal, and print where its images went.

    python dev/try_example.py                  # the fake fal on 127.0.0.1: no key, no cost
    FAL_KEY=... python dev/try_example.py      # fal itself: asks first, as it costs money (--yes: don't ask)

A Python script, so that the one command works alike on Windows, macOS and Linux (no bash needed).
It finds a ComfyUI (`COMFYUI_DIR`; else the ComfyUI this clone sits in, as `ComfyUI/custom_nodes/<pack>`;
else `~/comfy-host/ComfyUI` or `~/ComfyUI`) and its Python (`COMFYUI_VENV`; else a `venv`/`.venv` in or
beside it; else the portable build's `python_embeded`; else this interpreter). It installs the pack's
requirements into that Python when they are missing, starts ComfyUI headless on a free port in a temporary
`--base-directory` holding a copy of the pack (your ComfyUI folder is left as it was: none of its custom
nodes load, nothing is written into it), queues `example_workflows/grok_imagine_text_to_image.json` as the
frontend would, waits for it, prints the saved images' paths and stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PACK_ROOT = Path(__file__).resolve().parents[1]
TESTS = PACK_ROOT / "tests"
EXAMPLE = PACK_ROOT / "example_workflows" / "grok_imagine_text_to_image.json"
EXAMPLE_COST = "one 1k image of xai/grok-imagine-image: $0.02"
NODE = "FalGrokImagineImage"
PACK_FOLDER = "grok-imagine-fal"
FAKE_KEY = "fake-key-id:fake-key-secret"
FAL_KEY_VARIABLES = ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET")
COMFYUI_NEEDS = ("torch", "aiohttp")  # present in any set-up ComfyUI environment
# What the copy of the pack leaves out: only developers need it (see .comfyignore).
NOT_SHIPPED = shutil.ignore_patterns(".git", "node_modules", "__pycache__", "*.pyc", "tests", "bench", "docs", "dev",
                                     ".ci", ".pytest_cache", ".ruff_cache", ".venv")
GET_COMFYUI = (
    "No ComfyUI found (looked at {places}). Get one: `git clone https://github.com/comfyanonymous/ComfyUI` and "
    "`pip install -r ComfyUI/requirements.txt` (or the Windows portable build from its Releases page), then set "
    "COMFYUI_DIR to that ComfyUI folder."
)
# The fake fal (tests/fake_fal), run by ComfyUI's Python, which has Pillow; it stops when its stdin closes.
FAKE_FAL = (
    "import sys; sys.path.insert(0, sys.argv[1]); from fake_fal import FakeFal; "
    "fake = FakeFal(run_time=1.0).start(); print(fake.url, flush=True); sys.stdin.read(); fake.stop()"
)


def say(message: str) -> None:
    print(f"[try_example] {message}", flush=True)


def comfyui_candidates(env: Mapping[str, str], pack_root: Path, home: Path) -> list[Path]:
    """Where a ComfyUI may be: `COMFYUI_DIR` alone when set, else the usual places."""
    configured = env.get("COMFYUI_DIR", "").strip()
    if configured:
        return [Path(configured).expanduser()]
    places = []
    if pack_root.parent.name == "custom_nodes":
        places.append(pack_root.parent.parent)
    places.append(Path(env.get("COMFY_HOST_HOME", "").strip() or home / "comfy-host") / "ComfyUI")
    places.append(home / "ComfyUI")
    return places


def find_comfyui(places: list[Path]) -> Path | None:
    return next((place for place in places if (place / "main.py").is_file()), None)


def find_python(comfy_dir: Path, env: Mapping[str, str]) -> Path:
    """The Python that runs this ComfyUI: its venv's (POSIX `bin/python` or Windows `Scripts\\python.exe`),
    the portable build's `python_embeded\\python.exe` beside it, else the interpreter running this script."""
    configured = env.get("COMFYUI_VENV", "").strip()
    venvs = [Path(configured).expanduser()] if configured else [
        comfy_dir / "venv", comfy_dir / ".venv", comfy_dir.parent / "venv", comfy_dir.parent / ".venv"]
    candidates = [venv / part for venv in venvs for part in (Path("bin", "python"), Path("Scripts", "python.exe"))]
    candidates.append(comfy_dir.parent / "python_embeded" / "python.exe")
    return next((python for python in candidates if python.is_file()), Path(sys.executable))


def missing_modules(python: Path, names: tuple[str, ...]) -> list[str]:
    code = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))"
    found = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, check=True)  # noqa: S603
    return found.stdout.split()


def confirm_cost(assume_yes: bool) -> bool:
    say(f"FAL_KEY is set: this runs the example on fal.ai and costs money ({EXAMPLE_COST}). "
        "--fake runs it against the fake fal instead.")
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        say("Not run: pass --yes to confirm the cost.")
        return False
    if input("Run it on fal.ai? [y/N] ").strip().lower() in ("y", "yes"):
        return True
    say("Not run.")
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(url: str, body: Any = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (ComfyUI on 127.0.0.1)
        return json.loads(response.read() or b"null")


def stop(process: subprocess.Popen[Any] | None) -> None:
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()


def tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return "\n".join(text.splitlines()[-lines:])


def wait_for_comfyui(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> dict[str, Any]:
    """ComfyUI's /object_info once it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited while starting; the end of its log:\n{tail(log)}")
        try:
            return http_json(f"{url}/object_info")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s; the end of its log:\n{tail(log)}")


def wait_for_prompt(url: str, prompt_id: str, timeout: float) -> dict[str, Any]:
    """The prompt's /history entry once it succeeded or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = http_json(f"{url}/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
            return entry
        time.sleep(0.25)
    raise TimeoutError(f"the prompt did not finish within {timeout:.0f} s")


def api_prompt(object_info: dict[str, Any]) -> dict[str, Any]:
    """The prompt the frontend queues for the example (tests/workflow_ui.py reads UI workflows as it does)."""
    sys.path.insert(0, str(TESTS))
    from workflow_ui import load_workflow, to_api_prompt

    return to_api_prompt(load_workflow(EXAMPLE), object_info)


def report(entry: dict[str, Any], output_dir: Path) -> int:
    status = entry["status"]
    if status.get("status_str") != "success":
        for kind, data in status.get("messages", []):
            if kind == "execution_error":
                say(f"The workflow failed in {data.get('node_type')}: {data.get('exception_message')}")
        return 1
    saved = [output_dir / image.get("subfolder", "") / image["filename"]
             for output in entry["outputs"].values() for image in output.get("images", [])
             if image.get("type") == "output"]
    texts = dict.fromkeys(text for output in entry["outputs"].values() for text in output.get("text", []))
    for text in texts:  # the node shows fal's revised prompt, and so does the Preview Any it feeds
        say(f"Shown on the nodes: {text}")
    say(f"The images went to {output_dir}:")
    for path in saved:
        print(f"  {path}", flush=True)
    return 0 if saved else 1


def run(comfy_dir: Path, python: Path, real_fal: bool, output_dir: Path, timeout: float) -> int:
    missing = missing_modules(python, (*COMFYUI_NEEDS, "httpx"))
    if any(name in COMFYUI_NEEDS for name in missing):
        say(f"{python} lacks ComfyUI's requirements ({', '.join(missing)}): run "
            f"`\"{python}\" -m pip install -r \"{comfy_dir / 'requirements.txt'}\"`, or set COMFYUI_VENV to "
            "the virtual environment ComfyUI runs in.")
        return 2
    if missing:
        say(f"Installing the pack's requirements into {python}")
        subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",  # noqa: S603
                        "-r", str(PACK_ROOT / "requirements.txt")], check=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    fake_fal = comfy = None
    with tempfile.TemporaryDirectory(prefix="grok-imagine-comfyui-", ignore_cleanup_errors=True) as temporary:
        base = Path(temporary)
        try:
            if not real_fal:
                fake_fal = subprocess.Popen([str(python), "-c", FAKE_FAL, str(TESTS)],  # noqa: S603
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                fal_url = fake_fal.stdout.readline().strip()
                if not fal_url:
                    say("The fake fal did not start (see the lines above).")
                    return 1
                say(f"The fake fal answers at {fal_url} (no key, no cost)")
                for name in FAL_KEY_VARIABLES:
                    env.pop(name, None)
                env.update(FAL_KEY=FAKE_KEY, FAL_QUEUE_BASE_URL=fal_url, FAL_REST_BASE_URL=fal_url,
                           GROK_IMAGINE_STATE_DIR=str(base / "grok-state"))
            shutil.copytree(PACK_ROOT, base / "custom_nodes" / PACK_FOLDER, ignore=NOT_SHIPPED)
            url = f"http://127.0.0.1:{free_port()}"
            log = base / "comfyui.log"
            say(f"Starting ComfyUI from {comfy_dir} with {python} ...")
            with log.open("wb") as log_file:
                comfy = subprocess.Popen(  # noqa: S603 (our own argv)
                    [str(python), str(comfy_dir / "main.py"), "--cpu", "--listen", "127.0.0.1",
                     "--port", url.rsplit(":", 1)[1], "--disable-auto-launch", "--base-directory", str(base),
                     "--output-directory", str(output_dir)],
                    cwd=comfy_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
            object_info = wait_for_comfyui(url, comfy, log, timeout)
            if NODE not in object_info:
                say(f"ComfyUI started without the pack's nodes; the end of its log:\n{tail(log)}")
                return 1
            prompt_id = http_json(f"{url}/prompt", {"prompt": api_prompt(object_info),
                                                    "client_id": f"try-example-{uuid.uuid4()}"})["prompt_id"]
            say(f"Queued {EXAMPLE.relative_to(PACK_ROOT).as_posix()} at {url} ...")
            return report(wait_for_prompt(url, prompt_id, timeout), output_dir)
        except (RuntimeError, TimeoutError) as error:
            say(str(error))
            return 1
        except KeyboardInterrupt:
            say("Stopped.")
            return 130
        finally:
            stop(comfy)
            stop(fake_fal)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--yes", action="store_true", help="with FAL_KEY set: run on fal.ai without asking")
    parser.add_argument("--fake", action="store_true", help="use the fake fal even when FAL_KEY is set")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="where ComfyUI saves the images (default: a new folder in the temporary folder)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for ComfyUI, then for the run")
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a path the console cannot encode (Windows, redirected) prints escaped
        stream.reconfigure(errors="backslashreplace")

    places = comfyui_candidates(os.environ, PACK_ROOT, Path.home())
    comfy_dir = find_comfyui(places)
    if comfy_dir is None:
        print(GET_COMFYUI.format(places=", ".join(str(place) for place in places)), file=sys.stderr)
        return 2
    python = find_python(comfy_dir, os.environ)
    real_fal = bool(os.environ.get("FAL_KEY", "").strip()) and not args.fake
    if real_fal and not confirm_cost(args.yes):
        return 2
    output_dir = (args.output_dir or Path(tempfile.mkdtemp(prefix="grok-imagine-example-"))).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    return run(comfy_dir, python, real_fal, output_dir, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
