"""Progress on the node while fal works: text and bar, and one console line per request.

A node's progress (`NodeProgress`) gathers its requests (`RequestProgress`): one, several for a
batch beyond four images, or one per prompt when a list feeds the node. With one prompt the node
shows what its latest request is doing (queue position, running time, fal's log line, download);
with a list it shows the batch as a whole: how many done, running, queued, not yet sent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from ..fal_transport.queue import QueueStatus, RequestHandle
from . import host

log = logging.getLogger("grok_imagine_fal")

Stage = Literal["waiting", "queued", "running", "downloading", "done", "failed"]
_BAR_TOTAL = 100
_BAR_AT: dict[str, int] = {"waiting": 0, "queued": 5, "running": 15, "downloading": 80, "done": 100, "failed": 100}
_BATCH_RENDER_EVERY_S = 0.25
_BYTES_EVERY_S = 0.25


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class NodeProgress:
    """The progress of one node in one prompt (every list item and every request of it)."""

    def __init__(self, node_id: str | None) -> None:
        self.node_id = node_id
        self.prompts = 0  # list items of this node running now (1 without a list)
        self.requests: list[RequestProgress] = []
        self.stages: dict[Stage, int] = dict.fromkeys(_BAR_AT, 0)  # how many requests are at each stage
        self._bar: host.ProgressBar | None = None
        self._bar_value = -1
        self._rendered_at = 0.0

    def request(self, label: str = "") -> RequestProgress:
        progress = RequestProgress(self, label)
        self.requests.append(progress)
        self.stages[progress.stage] += 1
        return progress

    def drop(self, requests: list[RequestProgress]) -> None:
        """These requests no longer count (a run sends them again)."""
        dropped = {id(request) for request in requests}
        for request in self.requests:
            if id(request) in dropped:
                self.stages[request.stage] -= 1
        self.requests = [r for r in self.requests if id(r) not in dropped]

    def _moved(self, was: Stage, now: Stage) -> None:
        self.stages[was] -= 1
        self.stages[now] += 1

    def show(self, latest: RequestProgress, text: str) -> None:
        if self.prompts > 1:
            now = time.monotonic()
            final = self.stages["done"] + self.stages["failed"] == len(self.requests)
            if now - self._rendered_at < _BATCH_RENDER_EVERY_S and not final:
                return
            self._rendered_at = now
            text = f"{self.summary()}\n{text}"
        else:
            text = latest.label + text
        host.send_progress_text(self.node_id, text)
        self._update_bar()

    def summary(self) -> str:
        counts = self.stages
        parts = [f"{counts['done']} done", f"{counts['running'] + counts['downloading']} running",
                 f"{counts['queued']} queued at fal"]
        if counts["waiting"]:
            parts.append(f"{counts['waiting']} not sent yet")
        if counts["failed"]:
            parts.append(f"{counts['failed']} failed")
        return f"Batch of {_plural(self.prompts, 'prompt')}: " + ", ".join(parts)

    def _update_bar(self) -> None:
        if not self.requests:
            return
        value = sum(_BAR_AT[stage] * count for stage, count in self.stages.items()) // len(self.requests)
        if value <= self._bar_value:
            return
        if self._bar is None:
            self._bar = host.ProgressBar(_BAR_TOTAL, self.node_id)
        self._bar.update(value)
        self._bar_value = value


@dataclass
class RequestProgress:
    """One request's part: turns its events into text on the node and a console line."""

    node: NodeProgress
    label: str = ""  # "[2/3] " when the prompt needs several requests
    stage: Stage = "waiting"
    request_id: str = ""
    started: float = field(default_factory=time.monotonic)
    _seen_logs: set[tuple[str, str]] = field(default_factory=set)
    _last_status: QueueStatus | None = None
    _last_log: str = ""
    _shown_at: float = 0.0

    def _enter(self, stage: Stage) -> None:
        if stage != self.stage:
            self.node._moved(self.stage, stage)
            self.stage = stage

    def _show(self, text: str, stage: Stage | None = None) -> None:
        if stage is not None:
            self._enter(stage)
        self._shown_at = time.monotonic()
        self.node.show(self, text)

    def submitted(self, handle: RequestHandle) -> None:
        self.request_id = handle.request_id
        log.info("[Grok Imagine] submitted to %s, fal request id %s", handle.endpoint, handle.request_id)
        self._show(f"Submitted to fal\nrequest {handle.request_id}", "queued")

    def resumed(self, handle: RequestHandle, why: str) -> None:
        """Collecting a request submitted earlier (journal or the Result node): nothing new is billed."""
        self.request_id = handle.request_id
        log.info("[Grok Imagine] %s: fal request id %s (no new request, nothing billed again)", why, handle.request_id)
        self._show(f"{why}\nrequest {handle.request_id}", "queued")

    def status(self, status: QueueStatus) -> None:
        self._last_status = status
        new_lines = [line for line in status.logs if (line.timestamp, line.message) not in self._seen_logs]
        self._seen_logs.update((line.timestamp, line.message) for line in new_lines)
        self._last_log = next((line.message for line in reversed(new_lines) if line.message), self._last_log)
        self._render()

    def tick(self) -> None:
        """Keep the elapsed seconds moving between status reports."""
        if self._last_status is not None and time.monotonic() - self._shown_at >= 1.0:
            self._render()

    def _render(self) -> None:
        status = self._last_status
        assert status is not None
        elapsed = time.monotonic() - self.started
        if status.state == "IN_QUEUE":
            position = "" if status.queue_position is None else f", position {status.queue_position}"
            self._show(f"Queued at fal{position} ({elapsed:.0f}s)\nrequest {self.request_id}", "queued")
            return
        state = "Running" if status.state == "IN_PROGRESS" else "Completed"
        text = f"{state} at fal ({elapsed:.0f}s)\nrequest {self.request_id}"
        self._show(f"{text}\n{self._last_log}" if self._last_log else text, "running")

    def downloading(self, count: int) -> None:
        self._show(f"Downloading {_plural(count, 'image')}\nrequest {self.request_id}", "downloading")

    def downloading_bytes(self, received: int, total: int | None) -> None:
        """A video on its way to disk, chunk by chunk: shown at most four times a second, and when it is whole."""
        whole = total is not None and received >= total
        if self.stage == "downloading" and not whole and time.monotonic() - self._shown_at < _BYTES_EVERY_S:
            return
        of = f" of {total / 1e6:.1f}" if total else ""
        self._show(f"Downloading the video: {received / 1e6:.1f}{of} MB\nrequest {self.request_id}", "downloading")

    def finished_video(self, seconds: float, width: int, height: int) -> None:
        elapsed = time.monotonic() - self.started
        self._show(f"Done: a {seconds:.1f} s video, {width}x{height}, in {elapsed:.1f}s\nrequest {self.request_id}",
                   "done")

    def finished(self, count: int, revised_prompt: str) -> None:
        elapsed = time.monotonic() - self.started
        text = f"Done: {_plural(count, 'image')} in {elapsed:.1f}s\nrequest {self.request_id}"
        if revised_prompt:
            text += f"\nRevised prompt: {revised_prompt}"
        self._show(text, "done")

    def refused(self, reason: str) -> None:
        self._show(f"Refused by fal's content policy: a placeholder stands in\nrequest {self.request_id}\n{reason}",
                   "done")

    def failed(self) -> None:
        self._enter("failed")
        self.node._update_bar()
