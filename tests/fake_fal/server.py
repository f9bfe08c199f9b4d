"""The fake fal server itself: `FakeFal`, the object a test starts, points the pack at, shapes and reads.

It is a real HTTP/1.1 server on 127.0.0.1 (stdlib `ThreadingHTTPServer`, keep-alive, one daemon
thread per connection; `fake_fal.handler` answers the requests) so the pack's real `httpx` client can
talk to it through `FAL_QUEUE_BASE_URL` / `FAL_REST_BASE_URL`.

What the fake records
---------------------
`FakeFal.requests` (every request but control ones; `requests_of("balance")`: the balance reads),
`submits` (accepted ones), `cancels`
(request ids), `uploads`, `jobs`, `foreign_requests`; `max_running_seen`; `open_streams` /
`max_open_streams` (status streams open now / at most at once); `open_connections` /
`max_open_connections` (TCP connections to the fake, not the foreign host, open now / at most at
once); `connections_opened` (TCP connections to the fake accepted since the last reset);
`job_times()` (per job ``submitted_at``/``started_at``/``completed_at`` in seconds since
`FakeFal.epoch`, None when not yet). `reset()` clears them; the high-water marks restart from what
is open now.

Files expire at fal: `expire_files()` makes every file served so far (results and uploads) gone, as an
expired fal URL is (404; a job given one as an input fails with ``file_download_error``, not billed).

`wait_for(condition, timeout)` blocks until a condition on what the fake records holds, looking again
whenever it records something and whenever a job starts or completes by the clock; `sees` is the same
for a test running in an event loop. Tests synchronise on them rather than sleep: a test that aims at
a moment (Cancel while the submit's answer is on its way, while the node follows the request...) waits
for the request that proves the moment came.

Control endpoints (no auth, never recorded): ``POST /_fake/faults`` (JSON object of fault
fields to set), ``GET /_fake/faults``, ``POST /_fake/reset``, ``GET /_fake/log`` (`log_json`:
``submits``, ``cancels``, ``requests``, ``uploads``, ``jobs`` (id: state), ``job_times``,
``max_running_seen``, ``open_streams``, ``max_open_streams``, ``open_connections``,
``max_open_connections``, ``foreign_requests``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import quote, unquote

from .billing import DEFAULT_BALANCE_USD, charge
from .faults import Faults
from .foreign import ForeignServer
from .handler import FILE_PATH, UPLOAD_PATH, RecordedRequest, Server
from .images import fake_image_size, image_shape, render_image, size_for_shape
from .jobs import (
    CANCELLED_MESSAGE,
    COMPLETED,
    CONTENT_POLICY_MESSAGE,
    FILE_DOWNLOAD_ERROR,
    FILE_DOWNLOAD_MESSAGE,
    IN_QUEUE,
    AccountQueue,
    Job,
)
from .video import data_uri_bytes, planned_video, probe_mp4

__all__ = ["FakeFal"]


class FakeFal:
    """A fake fal queue (and storage) server on 127.0.0.1; see the package and module docstrings."""

    def __init__(
        self,
        *,
        accepted_keys: set[str] | None = None,
        queue_time: float = 0.0,
        run_time: float = 0.05,
        cdn_latency: float = 0.0,
        account_concurrency: int | None = None,
        balance_usd: float = DEFAULT_BALANCE_USD,
        charge_balance: bool = False,
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.accepted_keys = set(accepted_keys) if accepted_keys is not None else None
        self.initial_balance_usd = balance_usd
        self.balance_usd = balance_usd  # what GET /billing/user_balance answers
        self.initial_charge_balance = charge_balance
        self.charge_balance = charge_balance  # accepted submits pay from the balance
        self.queue_time = queue_time
        self.run_time = run_time
        self.cdn_latency = cdn_latency
        self.account_concurrency = account_concurrency  # None or 0: no limit
        self.verbose = verbose
        self.heartbeat_interval = 1.0
        self.epoch = time.monotonic()  # the origin of the offsets in log_json()
        self.requests: list[RecordedRequest] = []
        self.submits: list[RecordedRequest] = []
        self.cancels: list[str] = []
        self.uploads: list[dict[str, Any]] = []
        self.foreign_requests: list[RecordedRequest] = []
        self.jobs: dict[str, Job] = {}
        self.faults = Faults()
        self.open_streams = 0
        self.max_open_streams = 0
        self.max_open_connections = 0
        self.connections_opened = 0
        self._port = port
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # notified on cancels, completions by hand, resets
        self._seen = threading.Condition(self._lock)  # notified whenever the fake records something (`wait_for`)
        self._version = 0  # bumped with every notification of `_changed`
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._files: dict[str, tuple[str, bytes]] = {}
        self._expired_jobs: set[str] = set()  # request ids whose files are gone (`expire_files`)
        self._tokens: set[str] = set()
        self._server: Server | None = None
        self._base_url: str | None = None
        self._thread: threading.Thread | None = None
        self._foreign: ForeignServer | None = None
        self._foreign_url: str | None = None
        self._foreign_lock = threading.Lock()
        self._accepted = 0  # accepted submits since the last reset (content_policy_every)
        self._queue = AccountQueue(self._account_limit, self._notify)  # worked out lazily from the clock

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeFal:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = Server(("127.0.0.1", self._port), self)
        self._port = self._server.server_address[1]
        self._base_url = f"http://127.0.0.1:{self._port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-fal", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        with self._lock:
            self._notify()
        server.shutdown()
        server.server_close()
        with self._foreign_lock:
            foreign, self._foreign, self._foreign_url = self._foreign, None, None
        if foreign is not None:
            foreign.shutdown()
            foreign.server_close()
        with self._lock:
            connections = list(self._connections) + (list(foreign.connections) if foreign else [])
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeFal:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL, for both `FAL_QUEUE_BASE_URL` and `FAL_REST_BASE_URL` (set by start())."""
        if self._base_url is None:
            raise RuntimeError("FakeFal has not been started; call start() first")
        return self._base_url

    @property
    def foreign_url(self) -> str:
        """Base URL of the "foreign host" (`Faults.foreign_urls`); started on first use."""
        if self._server is None or self._stopping.is_set():
            raise RuntimeError("FakeFal is not running; call start() first")
        with self._foreign_lock:
            if self._foreign_url is None:
                foreign = ForeignServer(self)
                threading.Thread(
                    target=foreign.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-fal-foreign", daemon=True
                ).start()
                self._foreign = foreign
                self._foreign_url = f"http://127.0.0.1:{foreign.server_address[1]}"
            return self._foreign_url

    @property
    def open_connections(self) -> int:
        """TCP connections to the fake (not the foreign host) open now."""
        with self._lock:
            return len(self._connections)

    @property
    def max_running_seen(self) -> int:
        """The most jobs ever IN_PROGRESS at once (since the last reset)."""
        with self._lock:
            self._queue.schedule(time.monotonic())
            return self._queue.max_running

    # ---- public helpers -------------------------------------------------------------------

    def reset(self) -> None:
        """Clear the logs, jobs, uploaded files, faults, the account queue and the high-water marks
        (those restart from what is open now; issued upload tokens stay valid), and give the balance
        and `charge_balance` back their constructor values. Jobs from before keep following the clock
        for anyone still holding them, outside the account queue."""
        with self._lock:
            self.balance_usd, self.charge_balance = self.initial_balance_usd, self.initial_charge_balance
            self.requests.clear()
            self.submits.clear()
            self.cancels.clear()
            self.uploads.clear()
            self.foreign_requests.clear()
            self.jobs.clear()
            self._files.clear()
            self._expired_jobs.clear()
            self.faults.clear()
            self._accepted = 0
            self._queue.reset()
            self.max_open_streams = self.open_streams
            self.max_open_connections = len(self._connections)
            self.connections_opened = 0
            self._notify()

    @property
    def accepted_submits(self) -> list[RecordedRequest]:
        """The submits that created a job (a copy of `submits`)."""
        with self._lock:
            return list(self.submits)

    @property
    def submit_attempts(self) -> list[RecordedRequest]:
        """Every POST that looked like a submit, accepted or not."""
        with self._lock:
            return [r for r in self.requests if r.kind == "submit"]

    def wait_for(self, condition: Callable[[FakeFal], bool], timeout: float) -> bool:
        """Block until `condition(self)` holds, or `timeout` seconds pass; answers whether it holds.

        The condition is looked at under the lock at once and again whenever the fake records something (a
        request arriving, an accepted submit, a cancel, a status stream or a connection opening or closing, a
        job completed by hand, a reset) and whenever a job starts or completes by the clock: a test waits for
        exactly the event it names, never polling and never sleeping. From an event loop, use `sees`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                now = time.monotonic()
                self._queue.schedule(now)  # the jobs due to start or complete by now do
                if condition(self):
                    return True
                if now >= deadline:
                    return False
                self._seen.wait(min(deadline, self._queue.next_event) - now)

    async def sees(self, condition: Callable[[FakeFal], bool], timeout: float = 10.0) -> bool:
        """`wait_for` from an event loop, which goes on running meanwhile (the wait has a thread of its own, so
        it takes no worker from the loop's executor): ``assert await fake.sees(lambda f: f.cancels, 5)``."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()

        def settle(held: bool | None, error: BaseException | None) -> None:
            if answer.done():
                return
            if error is None:
                answer.set_result(bool(held))
            else:
                answer.set_exception(error)

        def wait() -> None:
            try:
                held, error = self.wait_for(condition, timeout), None
            except BaseException as exc:  # e.g. a condition that raised: the test sees it
                held, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(settle, held, error)

        threading.Thread(target=wait, name="fake-fal-sees", daemon=True).start()
        return await answer

    def requests_of(self, kind: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.kind == kind]

    def followed(self) -> set[str]:
        """The ids of the requests whose status (or status stream) a client has asked for. A node asks once fal
        accepted its request and the answer reached it: it is then waiting on fal for that request."""
        with self._lock:
            return {r.request_id for r in self.requests if r.kind in ("status", "stream") and r.request_id}

    def state_of(self, request_id: str) -> str:
        """The job's current status (IN_QUEUE, IN_PROGRESS or COMPLETED)."""
        with self._lock:
            return self._queue.advance(self.jobs[request_id])[0]

    def queue_position_of(self, request_id: str) -> int | None:
        """The job's queue_position now (None unless IN_QUEUE)."""
        with self._lock:
            return self._queue.advance(self.jobs[request_id])[1]

    def complete_job(
        self, request_id: str, *, error: str | None = None, error_type: str | None = None
    ) -> None:
        """Complete a job now (e.g. one held by `never_complete`), optionally with an error. A running
        job frees its account slot; a queued one leaves the queue (and counts as started now)."""
        with self._lock:
            job = self.jobs[request_id]
            now = time.monotonic()
            if self._queue.advance(job, now)[0] != COMPLETED:
                self._queue.unschedule(job, now)
                job.error, job.error_type = error, error_type
                if job.started_at is None:
                    job.started_at = now
                job.completed_at = now
                self._notify()

    def job_times(self) -> dict[str, dict[str, float | None]]:
        """Per job: submitted_at, started_at, completed_at, as seconds since `epoch` (None: not yet)."""
        with self._lock:
            self._queue.schedule(time.monotonic())

            def offset(value: float | None) -> float | None:
                return None if value is None else round(value - self.epoch, 6)

            return {
                rid: {
                    "submitted_at": offset(job.submitted_at),
                    "started_at": offset(job.started_at),
                    "completed_at": offset(job.completed_at),
                }
                for rid, job in self.jobs.items()
            }

    def log_json(self) -> dict[str, Any]:
        """What `GET /_fake/log` answers."""
        with self._lock:
            return {
                "submits": [r.json for r in self.submits],
                "cancels": list(self.cancels),
                "requests": [
                    {
                        "method": r.method,
                        "path": r.path,
                        "has_authorization": r.has_authorization,
                        "kind": r.kind,
                        "status": r.status,
                        "outcome": r.outcome,
                    }
                    for r in self.requests
                ],
                "uploads": list(self.uploads),
                "jobs": {rid: self._queue.advance(job)[0] for rid, job in self.jobs.items()},
                "job_times": self.job_times(),
                "max_running_seen": self.max_running_seen,
                "open_streams": self.open_streams,
                "max_open_streams": self.max_open_streams,
                "open_connections": len(self._connections),
                "max_open_connections": self.max_open_connections,
                "foreign_requests": [
                    {"method": r.method, "path": r.path, "has_authorization": r.has_authorization}
                    for r in self.foreign_requests
                ],
            }

    # ---- internals used by the handler ------------------------------------------------------

    def _warn(self, message: str) -> None:
        sys.stderr.write(f"[fake_fal] {message}\n")
        sys.stderr.flush()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            self._seen.notify_all()
            if add:
                self._connections.add(conn)
                self.max_open_connections = max(self.max_open_connections, len(self._connections))
                self.connections_opened += 1
            else:
                self._connections.discard(conn)

    def _saw(self) -> None:
        """Wake every `wait_for`: something the fake records has changed (an answer given, say)."""
        with self._lock:
            self._seen.notify_all()

    def _notify(self) -> None:
        """Wake every waiting stream, and every `wait_for` (call with the lock held)."""
        self._version += 1
        self._changed.notify_all()
        self._seen.notify_all()

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes, *, store: bool, kind: str = "unknown",
                request_id: str | None = None) -> RecordedRequest:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        rec = RecordedRequest(
            method=handler.command,
            path=handler.path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            json=parsed,
            time=time.monotonic(),
            kind=kind,
            request_id=request_id,
            connection="{}:{}".format(*handler.client_address[:2]),
        )
        if store:
            with self._lock:
                self.requests.append(rec)
                self._seen.notify_all()
        return rec

    def _take_fault(self, counter: str | None, codes: str | None) -> tuple[bool, int | None]:
        """(consume one `counter` drop?, pop one code from `codes`), atomically."""
        with self._lock:
            if counter and getattr(self.faults, counter) > 0:
                setattr(self.faults, counter, getattr(self.faults, counter) - 1)
                return True, None
            queue = getattr(self.faults, codes) if codes else None
            if queue:
                return False, int(queue.pop(0))
            return False, None

    def _pay(self, price: float) -> bool:
        """With `charge_balance`: take `price` off the balance, or False when it is exhausted (fal's lock)."""
        with self._lock:
            if not self.charge_balance:
                return True
            left = charge(self.balance_usd, price)
            if left is None:
                return False
            self.balance_usd = left
            return True

    def _refund(self, price: float) -> None:
        """With `charge_balance`: give `price` back (a request fal refused for its input is not billed)."""
        with self._lock:
            if self.charge_balance:
                self.balance_usd = round(self.balance_usd + price, 6)

    def _response_url(self, job: Job) -> str:
        return f"{self.url}/{job.app}/requests/{job.request_id}"

    def _create_job(self, endpoint: str, args: dict[str, Any], rec: RecordedRequest) -> Job:
        aspect, resolution = args["aspect_ratio"], args["resolution"]
        size = fake_image_size(aspect, resolution)
        if aspect == "auto" and args["image_urls"]:
            shape = self._input_shape(args["image_urls"][0])
            if shape:
                size = size_for_shape(shape[0], shape[1], resolution)
        return self._add_job(endpoint, rec, args["prompt"], num_images=args["num_images"], aspect_ratio=aspect,
                             resolution=resolution, output_format=args["output_format"], sync_mode=args["sync_mode"],
                             image_urls=list(args.get("image_urls") or []), size=size, quality=args.get("quality"),
                             unreadable_input=self._unreadable_input(args, ("image_urls",)))

    def _create_video_job(self, endpoint: str, args: dict[str, Any], shape: tuple[int, int, float] | None,
                          rec: RecordedRequest) -> Job:
        """A job on a video endpoint (`shape`: its first input's width, height and seconds, if readable)."""
        spec = planned_video(endpoint, args, shape)
        urls = args.get("reference_image_urls") or [args[name] for name in ("image_url", "video_url") if name in args]
        return self._add_job(endpoint, rec, args["prompt"], num_images=1, aspect_ratio=args.get("aspect_ratio", "auto"),
                             resolution=args.get("resolution", "auto"), output_format="mp4", sync_mode=False,
                             image_urls=list(urls), size=(spec.width, spec.height), video=spec,
                             unreadable_input=self._unreadable_input(
                                 args, ("image_url", "reference_image_urls", "video_url")))

    def _unreadable_input(self, args: dict[str, Any], fields: tuple[str, ...]) -> str | None:
        """The first of `fields` naming a file of this fake that it no longer holds (`expire_files`, or never
        had): the job fails as fal's does when it cannot download an input (`file_download_error`)."""
        for name in fields:
            value = args.get(name)
            for url in value if isinstance(value, list) else [value]:
                if not isinstance(url, str) or url.startswith("data:"):
                    continue
                if self.faults.inputs_unreadable or (url.startswith(f"{self.url}/files/")
                                                     and self._stored_bytes(url) is None):
                    return name
        return None

    def expire_files(self) -> None:
        """Every file this fake serves now (results and uploads) is gone from now on, as fal's files expire: a GET
        gives 404, and a job given one as an input fails with 422 ``file_download_error`` (and is not billed)."""
        with self._lock:
            self._expired_jobs.update(self.jobs)
            self._files.clear()

    def _video_input_shape(self, args: dict[str, Any]) -> tuple[int, int, float] | None:
        """(width, height, seconds) of a video submit's first input image or video, when the fake can read it
        (seconds 0 for an image)."""
        urls = args.get("reference_image_urls") or [args.get("image_url")]
        if args.get("video_url"):
            data = self._stored_bytes(args["video_url"])
            return probe_mp4(data) if data is not None else None
        shape = self._input_shape(urls[0]) if isinstance(urls[0], str) else None
        return (shape[0], shape[1], 0.0) if shape else None

    def _stored_bytes(self, url: str) -> bytes | None:
        """The bytes behind a data URI, an upload to the fake or a video the fake serves; None otherwise."""
        data = data_uri_bytes(url)
        if data is not None:
            return data
        prefix = f"{self.url}/files/"
        if not url.startswith(prefix):
            return None
        path = unquote(url[len(self.url):])
        upload = UPLOAD_PATH.match(path)
        if upload:
            with self._lock:
                stored = self._files.get(upload["key"])
            return stored[1] if stored else None
        match = FILE_PATH.match(path)
        job = self.job_file_owner(match["rid"], int(match["index"]), match["ext"]) if match else None
        if job is None:
            return None
        if job.video is not None:
            return job.video.data()
        return render_image(*job.image_size(int(match["index"])), job.output_format, int(match["index"]))

    def job_file_owner(self, request_id: str, index: int, extension: str) -> Job | None:
        """The job whose file `index`.`extension` this is, while the fake still serves it."""
        with self._lock:
            job = self.jobs.get(request_id)
            if job is None or request_id in self._expired_jobs or index >= job.images_made \
                    or extension != job.extension:
                return None
            return job

    def _add_job(self, endpoint: str, rec: RecordedRequest, prompt: str, *, unreadable_input: str | None = None,
                 **fields: Any) -> Job:
        """Register an accepted submit as a job, shaped by the faults set now (`unreadable_input`: the input
        field whose file the job cannot download)."""
        with self._lock:
            faults = self.faults
            now = time.monotonic()
            self._queue.schedule(now)
            self._accepted += 1
            error, error_type = faults.complete_with_error, faults.complete_error_type
            every, words = faults.content_policy_every, faults.content_policy_prompts
            if unreadable_input is not None:
                error, error_type = FILE_DOWNLOAD_MESSAGE, FILE_DOWNLOAD_ERROR
                fields["error_field"] = unreadable_input
            elif (
                faults.content_policy
                or (every and self._accepted % every == 0)
                or (words and any(word in prompt for word in words))
            ):
                error, error_type = CONTENT_POLICY_MESSAGE, "content_policy_violation"
            rid = str(uuid.uuid4())
            job = Job(
                request_id=rid,
                endpoint=endpoint,
                app="/".join(endpoint.split("/")[:2]),
                arguments=dict(rec.json),
                prompt=prompt,
                submitted_at=now,
                submitted_wall=time.time(),
                queue_time=self.queue_time if faults.queue_time is None else float(faults.queue_time),
                run_time=self.run_time if faults.run_time is None else float(faults.run_time),
                never_complete=faults.never_complete,
                stuck_in_queue=faults.stuck_in_queue,
                mixed_sizes=faults.mixed_sizes,
                extra_images=faults.extra_images,
                error=error,
                error_type=error_type,
                base_url=self.url,
                **fields,
            )
            self.jobs[rid] = job
            self.submits.append(rec)
            rec.outcome, rec.request_id = "accepted", rid
            self._seen.notify_all()
            self._queue.admit(job)
        return job

    def _input_shape(self, url: str) -> tuple[int, int] | None:
        """(width, height) of an edit input the fake can read without the network."""
        data = self._stored_bytes(url)
        return None if data is None else image_shape(data)

    def _account_limit(self) -> int | None:
        """The account's concurrency now: the fault when set, else the constructor's (0: no limit)."""
        value = self.faults.account_concurrency
        if value is None:
            value = self.account_concurrency
        return value or None

    def _status_body(self, job: Job, *, with_logs: bool) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            state, position = self._queue.advance(job, now)
            base = self._response_url(job)
            body: dict[str, Any] = {
                "status": state,
                "request_id": job.request_id,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
                "logs": job.logs(now) if with_logs else None,
                "metrics": {},
            }
            if state == IN_QUEUE:
                body["queue_position"] = position
            elif state == COMPLETED:
                assert job.completed_at is not None
                ran = 0.0 if job.started_at is None else max(0.0, job.completed_at - job.started_at)
                body["metrics"] = {"inference_time": round(ran, 6)}
                if job.error:
                    body["error"] = job.error
                if job.error_type:
                    body["error_type"] = job.error_type
            return body

    def _result_body(self, job: Job) -> dict[str, Any]:
        body = job.result(self.faults.image_host)
        override = self.faults.result_images_override
        if override is not None:
            body["images"] = list(override)
        return body

    def _cancel_job(self, job: Job) -> bool:
        """Record a cancel; True when the job was still running (and is now cancelled)."""
        with self._lock:
            self.cancels.append(job.request_id)
            self._seen.notify_all()
            now = time.monotonic()
            if self._queue.advance(job, now)[0] == COMPLETED:
                return False
            self._queue.unschedule(job, now)
            job.cancelled = True
            job.error, job.error_type = CANCELLED_MESSAGE, "request_cancelled"
            job.completed_at = now
            self._notify()
            return True

    def _issue_token(self) -> str:
        token = f"tok-{uuid.uuid4().hex}"
        with self._lock:
            self._tokens.add(token)
        return token

    def _store_upload(self, name: str, content_type: str, data: bytes) -> str:
        folder = uuid.uuid4().hex
        key = f"{folder}/{name}"
        access_url = f"{self.url}/files/uploads/{folder}/{quote(name)}"
        with self._lock:
            self._files[key] = (content_type, data)
            self.uploads.append(
                {"file_name": name, "content_type": content_type, "size": len(data), "access_url": access_url}
            )
        return access_url
