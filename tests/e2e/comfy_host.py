"""Start the real ComfyUI (from COMFYUI_DIR) on the CPU with this pack linked in, and drive it over HTTP.

ComfyUI runs with `--base-directory` in a temporary folder, so its custom_nodes, output and temp
folders are the test's own and the ComfyUI checkout is never modified.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACK_ROOT = Path(__file__).resolve().parents[2]
PACK_FOLDER = "grok-imagine-fal"


def comfy_paths() -> tuple[Path, Path] | None:
    """(ComfyUI dir, its venv python), or None when COMFYUI_DIR is not set up."""
    raw = os.environ.get("COMFYUI_DIR", "").strip()
    if not raw:
        return None
    comfy_dir = Path(raw)
    venv = Path(os.environ.get("COMFYUI_VENV", "") or comfy_dir.parent / "venv")
    python = venv / "bin" / "python"
    if not (comfy_dir / "main.py").is_file() or not python.is_file():
        return None
    return comfy_dir, python


def pack_env(fal_url: str, base: Path, key: str, **more: str) -> dict[str, str]:
    """ComfyUI's environment for the pack: its fal key, fal (the fake) at `fal_url` for the queue and
    for uploads, and the pack's state under `base`; `more` adds or overrides variables."""
    return {"FAL_KEY": key, "FAL_QUEUE_BASE_URL": fal_url, "FAL_REST_BASE_URL": fal_url,
            "GROK_IMAGINE_STATE_DIR": str(base / "grok-state"), **more}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ComfyServer:
    url: str
    base_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str, timeout: float = 30) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout) as response:  # noqa: S310 (loopback)
            return json.loads(response.read() or b"null")

    def post(self, path: str, body: Any, timeout: float = 30) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback)
            return json.loads(response.read() or b"null")

    def queue(self, prompt: dict[str, Any]) -> str:
        return self.post("/prompt", {"prompt": prompt, "client_id": f"e2e-{uuid.uuid4()}"})["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout}s\n{self.log()[-3000:]}")

    def run(self, prompt: dict[str, Any], timeout: float = 120) -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        entry = self.wait(self.queue(prompt), timeout)
        return entry, time.monotonic() - started

    def open_descriptors(self) -> int:
        """How many files and sockets ComfyUI's process holds open now (Linux: /proc/<pid>/fd)."""
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def rss_bytes(self) -> int:
        """ComfyUI's resident memory now (Linux: VmRSS of /proc/<pid>/status)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/<pid>/status")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _limit_open_files(limit: int):  # noqa: ANN202 (a preexec_fn)
    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


def start_comfy(
    comfy_dir: Path, python: Path, base_dir: Path, env: dict[str, str], timeout: float = 180, *,
    open_files_limit: int | None = None, pack_root: Path | None = None, front_end_root: Path | None = None,
) -> ComfyServer:
    """Start ComfyUI with the pack linked in; answers once the pack's node is registered.

    `open_files_limit`: ComfyUI's RLIMIT_NOFILE (soft and hard), e.g. 256 as macOS's default.
    `pack_root`: link another checkout of the pack (e.g. an old commit in a git worktree) instead of this one.
    `front_end_root`: serve this frontend (`--front-end-root`) instead of the one in ComfyUI's venv.
    """
    pack_root = pack_root or PACK_ROOT
    # as a user does after cloning: the pack's requirements into ComfyUI's environment
    subprocess.run(  # noqa: S603 (our own argv)
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r",
         str(pack_root / "requirements.txt")],
        check=True, capture_output=True,
    )
    (base_dir / "custom_nodes").mkdir(parents=True, exist_ok=True)
    link = base_dir / "custom_nodes" / PACK_FOLDER
    if not link.exists():
        link.symlink_to(pack_root, target_is_directory=True)
    port = free_port()
    log_path = base_dir / "comfyui.log"
    argv = [str(python), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
            "--disable-auto-launch", "--base-directory", str(base_dir)]
    if front_end_root is not None:
        argv += ["--front-end-root", str(front_end_root)]
    process = subprocess.Popen(  # noqa: S603 (our own argv)
        argv,
        cwd=comfy_dir,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=None if open_files_limit is None else _limit_open_files(open_files_limit),  # noqa: PLW1509
    )
    server = ComfyServer(f"http://127.0.0.1:{port}", base_dir, process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited early:\n{server.log()[-3000:]}")
        try:
            server.get("/object_info/FalGrokImagineImage")
            return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"ComfyUI did not answer within {timeout}s:\n{server.log()[-3000:]}")
