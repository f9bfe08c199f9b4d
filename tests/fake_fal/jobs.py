"""The fake fal's jobs and its account queue: what a job goes through from submit to COMPLETED.

A job is IN_QUEUE for `queue_time` seconds after its submit (queue_position = remaining
seconds * 2), IN_PROGRESS for `run_time` seconds (logs "Generating image i/N" as it goes), then
COMPLETED.

Account concurrency (``FakeFal(account_concurrency=N)``, ``--account-concurrency N``, or the
``account_concurrency`` fault, which overrides it when not None; None or 0: no limit, the
default): at most N jobs are IN_PROGRESS at once across the whole server. A job is eligible to
start `queue_time` after its submit; jobs then start strictly in submit order (FIFO) as slots
free, a slot freeing when a running job completes, is cancelled or is completed by
`FakeFal.complete_job`; each then runs its `run_time`. While waiting a job is IN_QUEUE with
``queue_position`` = the number of queued jobs submitted before it (0: next to run), so positions
count down as jobs finish; a cancelled queued job leaves the queue and the positions behind it
drop. ``never_complete`` jobs hold their slot until cancelled; ``stuck_in_queue`` jobs stay out of
the account queue (no slot, not counted in others' positions; their position never changes). A
change of the limit takes effect when the fake next looks at the queue (any request). States are
worked out lazily from the clock under the lock (no thread per job; O(1) per status between
events), so 400+ jobs and 400 open streams are cheap. Every job records `Job.started_at` and
`Job.completed_at` (monotonic; None until then), and `FakeFal.max_running_seen` is the most
jobs ever IN_PROGRESS at once (limit or not) since the last reset.

A cancelled job completes at once with error "Request cancelled" (`CANCELLED_MESSAGE`); a content-policy
refusal completes with ``error_type`` ``content_policy_violation`` (`CONTENT_POLICY_MESSAGE`); a job given an
input file the fake does not hold (expired: `FakeFal.expire_files`) completes with ``error_type``
``file_download_error`` naming that input (`Job.error_field`), and is not billed.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .images import render_image
from .video import VideoSpec

__all__ = ["CONTENT_POLICY_MESSAGE", "FILE_DOWNLOAD_ERROR", "FILE_DOWNLOAD_MESSAGE", "AccountQueue", "Job"]

IN_QUEUE, IN_PROGRESS, COMPLETED = "IN_QUEUE", "IN_PROGRESS", "COMPLETED"
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "mp4": "video/mp4"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "mp4": "mp4"}
CONTENT_POLICY_TYPES = frozenset({"content_policy_violation", "content_moderation", "nsfw"})
CONTENT_POLICY_MESSAGE = (
    "The content could not be processed because it contained material flagged by a content checker."
)
CANCELLED_MESSAGE = "Request cancelled"
FILE_DOWNLOAD_ERROR = "file_download_error"
FILE_DOWNLOAD_MESSAGE = "Failed to download the file. Please check if the URL is accessible."


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat()


@dataclass
class Job:
    """One accepted request. Times are `time.monotonic()` seconds; fields may be edited by tests
    (the timing fields before the job starts).

    `started_at` / `completed_at` are when it went IN_PROGRESS / COMPLETED (None until then; a job
    cancelled while queued never starts). They are worked out lazily from the clock: any status,
    stream or result request, `FakeFal.state_of`, `FakeFal.log_json` or
    `FakeFal.max_running_seen` brings them up to date.
    """

    request_id: str
    endpoint: str
    app: str
    arguments: dict[str, Any]
    prompt: str
    num_images: int
    aspect_ratio: str
    resolution: str
    output_format: str
    sync_mode: bool
    image_urls: list[str]
    size: tuple[int, int]
    submitted_at: float
    submitted_wall: float
    queue_time: float
    run_time: float
    never_complete: bool = False
    stuck_in_queue: bool = False
    mixed_sizes: bool = False
    extra_images: int = 0  # images listed beyond num_images (the extra_images fault)
    error: str | None = None
    error_type: str | None = None
    error_field: str | None = None  # the input a file_download_error names
    cancelled: bool = False
    completed_at: float | None = None
    base_url: str = ""
    quality: str | None = None  # Grok Imagine 2.0 endpoints only
    video: VideoSpec | None = None  # video endpoints only: what the job returns
    started_at: float | None = None
    seq: int = field(default=0, repr=False)  # submit order (FIFO rank in the account queue)
    generation: int = field(default=0, repr=False)  # FakeFal.reset() count when submitted

    @property
    def eligible_at(self) -> float:
        """When the job may start running: submit time + queue time."""
        return self.submitted_at + self.queue_time

    def result(self, image_host: str | None = None) -> dict[str, Any]:
        """The result JSON of a successful job (before any `result_images_override`); its image URLs on
        `image_host` when given, else on the fake."""
        if self.video is not None:
            return self.video.result(f"{self.base_url}/files/{self.request_id}/0.mp4", "0.mp4")
        images: list[dict[str, Any]] = []
        for index in range(self.images_made):
            width, height = self.image_size(index)
            file_name = f"{index}.{self.extension}"
            if self.sync_mode:
                data = render_image(width, height, self.output_format, index)
                url = f"data:{self.content_type};base64,{base64.b64encode(data).decode()}"
            else:
                url = f"{image_host or self.base_url}/files/{self.request_id}/{file_name}"
            images.append(
                {
                    "url": url,
                    "content_type": self.content_type,
                    "file_name": file_name,
                    "width": width,
                    "height": height,
                }
            )
        return {"images": images, "revised_prompt": f"Revised: {self.prompt}"}

    @property
    def images_made(self) -> int:
        """How many images the result lists (and the file route serves)."""
        return self.num_images + self.extra_images

    def image_size(self, index: int) -> tuple[int, int]:
        width, height = self.size
        if self.mixed_sizes and index > 0:
            return max(64, width - 64 * index), height
        return width, height

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.output_format]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.output_format]

    @property
    def failed(self) -> bool:
        return bool(self.error or self.error_type)

    def log_script(self) -> list[tuple[float, str, str]]:
        """(offset from submit, level, message) of every log line the job can emit (offsets count
        from when it started, or from its queue time while it has not)."""
        q = self.queue_time if self.started_at is None else self.started_at - self.submitted_at
        r, n = self.run_time, self.num_images
        if self.video is not None:
            lines = [(q, "INFO", f"Starting Grok Imagine Video: {self.video.duration:g} s, {self.video.width}x"
                                 f"{self.video.height}"), (q, "INFO", "Generating video")]
        else:
            lines = [(q, "INFO", f"Starting Grok Imagine: {n} image(s), {self.aspect_ratio}, {self.resolution}")]
            lines += [(q + r * i / n, "INFO", f"Generating image {i + 1}/{n}") for i in range(n)]
        if self.failed:
            lines.append((q + r, "ERROR", f"Generation failed: {self.error or self.error_type}"))
        else:
            lines.append((q + r, "INFO", "Generated the video" if self.video else f"Generated {n} image(s)"))
        return lines

    def logs(self, now: float) -> list[dict[str, str]]:
        """The log lines the job has emitted by `now`, as fal's status lists them."""
        if self.started_at is None:  # queued (or cancelled while queued): nothing logged yet
            return []
        natural = self.completed_at is not None and not self.cancelled
        end = self.completed_at if self.completed_at is not None else now
        elapsed = end - self.submitted_at
        script = self.log_script()
        if not natural:
            script = [line for line in script[:-1] if line[0] <= elapsed]
        return [
            {
                "message": message,
                "level": level,
                "source": "USER",
                "timestamp": _iso(self.submitted_wall + offset),
            }
            for offset, level, message in script
        ]


class AccountQueue:
    """The account's queue: which jobs run and which wait, in what place, worked out lazily from the clock.

    Every job of the current generation is in `_waiting` (FIFO by `seq`) until it starts, then in
    `_running` until it completes. `schedule(now)` replays the events (completions, starts) up to
    `now` in time order, so `started_at` / `completed_at` are exact whenever they are looked at,
    with no thread per job. Between events it costs O(1): nothing can change before `next_event`
    unless a cancel, `FakeFal.complete_job` or a change of the limit says so. With no limit every job
    starts at its own `eligible_at`; with a limit of N the head of the queue starts when it is eligible
    and fewer than N are running. Every method runs with the fake's lock held.
    """

    def __init__(self, limit: Callable[[], int | None], changed: Callable[[], None]) -> None:
        self._limit = limit  # the account's concurrency now (None: no limit)
        self._changed = changed  # told when a change of the limit may change what a stream shows
        self._seq = itertools.count(1)
        self.generation = 0  # FakeFal.reset() count
        self.reset()

    def reset(self) -> None:
        """Forget every job (a new generation: jobs from before follow their own clock, outside the queue)."""
        self.generation += 1
        self._waiting: list[Job] = []  # not started yet, in submit order
        self._waiting_seqs: list[int] = []  # their `seq`, for bisect
        self._running: list[Job] = []
        self._sched_clock = -math.inf  # time of the last event processed
        self._sched_limit: int | None = None
        self.next_event = math.inf  # nothing can change before this time (unless notified)
        self.max_running = 0  # the most jobs ever IN_PROGRESS at once since the reset

    @property
    def limited(self) -> bool:
        """Is there an account limit now (so a queued job has a place in a queue)?"""
        return self._limit() is not None

    def admit(self, job: Job) -> None:
        """A job just submitted (call `schedule(now)` first): it waits for its turn unless it is stuck."""
        job.seq, job.generation = next(self._seq), self.generation
        if not job.stuck_in_queue:  # a stuck job never gets near the account queue
            self._waiting.append(job)
            self._waiting_seqs.append(job.seq)
            self.next_event = min(self.next_event, job.eligible_at)

    def schedule(self, now: float) -> None:
        limit = self._limit()
        if limit != self._sched_limit:
            self._run_until(now, self._sched_limit)  # up to now under the old limit, then switch
            self._sched_limit = limit
            self._sched_clock = max(self._sched_clock, now)
            self.next_event = -math.inf
            self._changed()
        if now >= self.next_event:
            self._run_until(now, limit)

    def _run_until(self, now: float, limit: int | None) -> None:
        while True:
            done_at = min(
                (
                    job.started_at + job.run_time
                    for job in self._running
                    if not job.never_complete and job.started_at is not None
                ),
                default=math.inf,
            )
            start_at = math.inf
            if self._waiting:
                if limit is None:
                    start_at = min(job.eligible_at for job in self._waiting)
                elif len(self._running) < limit:
                    start_at = self._waiting[0].eligible_at
            first = min(done_at, start_at)
            if first > now:
                self.next_event = first
                return
            at = max(first, self._sched_clock)
            self._sched_clock = at
            if done_at <= at:
                still = []
                for job in self._running:
                    assert job.started_at is not None
                    end = job.started_at + job.run_time
                    if not job.never_complete and end <= at:
                        job.completed_at = end
                    else:
                        still.append(job)
                self._running = still
            if limit is None:
                starting = [job for job in self._waiting if job.eligible_at <= at]
                if starting:
                    self._waiting = [job for job in self._waiting if job.eligible_at > at]
                    self._waiting_seqs = [job.seq for job in self._waiting]
            else:
                count = 0
                while (
                    len(self._running) + count < limit
                    and count < len(self._waiting)
                    and self._waiting[count].eligible_at <= at
                ):
                    count += 1
                starting = self._waiting[:count]
                del self._waiting[:count], self._waiting_seqs[:count]
            for job in starting:
                job.started_at = at
                self._running.append(job)
            self.max_running = max(self.max_running, len(self._running))

    def unschedule(self, job: Job, now: float) -> None:
        """Take a job that completes at `now` (by hand) out of the queue or its slot."""
        if job.generation != self.generation:
            return  # from before a reset: never in this queue
        self.schedule(now)  # every event before `now` first, at its own time
        if job in self._running:
            self._running.remove(job)
        else:
            index = bisect.bisect_left(self._waiting_seqs, job.seq)
            if index < len(self._waiting_seqs) and self._waiting_seqs[index] == job.seq:
                del self._waiting[index], self._waiting_seqs[index]
        self._sched_clock = max(self._sched_clock, now)
        self.next_event = -math.inf  # a slot may have freed, positions may have dropped

    def advance(self, job: Job, now: float | None = None) -> tuple[str, int | None]:
        """(state, queue position) of a job now; latches start and completion."""
        if job.completed_at is not None:
            return COMPLETED, None
        if job.stuck_in_queue:
            return IN_QUEUE, max(1, int(job.queue_time * 2))
        now = time.monotonic() if now is None else now
        if job.generation != self.generation:
            return self._advance_by_clock(job, now)
        self.schedule(now)
        if job.completed_at is not None:
            return COMPLETED, None
        if job.started_at is not None:
            return IN_PROGRESS, None
        if self._sched_limit is None:
            return IN_QUEUE, max(0, int((job.eligible_at - now) * 2))
        return IN_QUEUE, bisect.bisect_left(self._waiting_seqs, job.seq)

    def _advance_by_clock(self, job: Job, now: float) -> tuple[str, int | None]:
        """A job from before the last reset: no account queue, just its own times."""
        start = job.eligible_at if job.started_at is None else job.started_at
        if now < start:
            return IN_QUEUE, max(0, int((start - now) * 2))
        job.started_at = start
        if job.never_complete or now < start + job.run_time:
            return IN_PROGRESS, None
        job.completed_at = start + job.run_time
        return COMPLETED, None

    def next_change(self, job: Job, with_logs: bool, now: float) -> float:
        """A time before which the job's status body cannot change unless `FakeFal._changed` is notified
        (right after `advance(job, now)`)."""
        if job.completed_at is not None:
            return now
        if job.stuck_in_queue:
            return math.inf
        if job.generation != self.generation:
            return now  # next tick, as ever
        change = self.next_event
        if job.started_at is None:
            if self._sched_limit is None:  # the position counts down by the clock
                position = int((job.eligible_at - now) * 2)
                if position > 0:
                    change = min(change, job.eligible_at - position / 2 + 1e-6)
        elif with_logs:
            elapsed = now - job.submitted_at
            for offset, _, _ in job.log_script():
                if offset > elapsed:
                    change = min(change, job.submitted_at + offset)
                    break
        return change
