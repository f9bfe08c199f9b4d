"""A plain client of the fake fal (httpx and bare sockets, nothing of the pack), for the fake's own self-checks
(`tests/test_fake_fal_*.py`) and for tests that need a finished job on the fake without running a node."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from .images import APP

__all__ = ["raw_sse", "sse_events", "submit", "wait_completed"]


def submit(client: httpx.Client, endpoint: str = APP, **body: object) -> httpx.Response:
    """POST a submit to `endpoint` (the prompt "a red fox" unless given)."""
    body.setdefault("prompt", "a red fox")
    return client.post(f"/{endpoint}", json=body)


def wait_completed(client: httpx.Client, status_url: str, timeout: float = 3.0) -> dict:
    """Poll the job's status, as a client without streams does, until COMPLETED (its status, logs included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(status_url, params={"logs": "1"}).json()
        if status["status"] == "COMPLETED":
            return status
        time.sleep(0.02)
    raise AssertionError("job did not complete")


def sse_events(client: httpx.Client, url: str) -> list[dict]:
    """Every event of a status stream (logs included), until the fake closes it."""
    events = []
    with client.stream("GET", url, params={"logs": "1"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    return events


async def raw_sse(port: int, path: str, key: str, events: list[dict]) -> list[dict]:
    """Follow a status stream over a bare socket (cheap enough for hundreds at once), appending to `events`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Key {key}\r\n\r\n".encode())
        await writer.drain()
        assert b" 200 " in await reader.readline()
        async for line in reader:
            if line.startswith(b"data:"):
                events.append(json.loads(line[5:]))
    finally:
        writer.close()
    return events
