"""The fake fal run on its own (`python tests/fake_fal`, `fake_fal.__main__`): it prints its URL and takes its
keys, balance and account concurrency from the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from fake_fal.plain_client import submit

TEXT = "xai/grok-imagine-image"
SCRIPT = Path(__file__).with_name("fake_fal")  # `python tests/fake_fal` runs the fake on its own


def test_script_mode() -> None:
    script = SCRIPT
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--key", "k1"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("FAKE_FAL_URL=http://127.0.0.1:")
        url = line.partition("=")[2]
        for key, expected in (("k2", 401), ("k1", 200)):
            headers = {"Authorization": f"Key {key}"}
            assert httpx.post(f"{url}/{TEXT}", json={"prompt": "x"}, headers=headers).status_code == expected
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_script_mode_balance() -> None:
    script = SCRIPT
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--balance", "0.03", "--charge-balance"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().partition("=")[2]
        headers = {"Authorization": "Key any"}
        assert httpx.get(f"{url}/billing/user_balance", headers=headers).json() == 0.03
        codes = [httpx.post(f"{url}/{TEXT}", json={"prompt": "x", "num_images": 2}, headers=headers).status_code
                 for _ in range(2)]
        assert codes == [200, 403]
        assert httpx.get(f"{url}/billing/user_balance", headers=headers).json() == -0.01
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_script_mode_account_concurrency() -> None:
    script = SCRIPT
    proc = subprocess.Popen(
        [sys.executable, str(script), "--account-concurrency", "1", "--run-time", "30"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().partition("=")[2]
        with httpx.Client(base_url=url, headers={"Authorization": "Key k"}) as c:
            first, second = (submit(c).json() for _ in range(2))
            assert second["queue_position"] == 0
            assert c.get(second["status_url"]).json()["status"] == "IN_QUEUE"
            assert c.put(first["cancel_url"]).status_code == 202
            assert c.get(second["status_url"]).json()["status"] == "IN_PROGRESS"
            log = c.get("/_fake/log").json()
            assert log["max_running_seen"] == 1 and log["job_times"][second["request_id"]]["started_at"] is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
