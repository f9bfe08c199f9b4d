"""The fault matrix: what the node does when fal, the network or the images misbehave.

For every fault: success where the fault is transient, otherwise a clear error within the configured
limit that says what happened, what to do and (once fal has one) the request id; never a hang; never
more than the submits that reached fal; the key never leaked into an exception, a log record, an
output, the journal or a request to anything but fal. README's "What happens when ..." table is
built from these cases.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from comfy_like import TEST_KEY, pack_module, run_node, stored_state
from fake_comfy import InterruptProcessingException, fake_comfy
from fake_fal import CONTENT_POLICY_MESSAGE, FakeFal
from PIL import Image

errors = pack_module("fal_transport.errors")
download = pack_module("media.download")
decode = pack_module("media.codec")
journal_module = pack_module("fal_transport.journal")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage

SECRETS = (TEST_KEY, TEST_KEY.split(":")[1])


def data_uri_image() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (1024, 1024), (20, 40, 60)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@dataclass(frozen=True)
class Case:
    name: str
    faults: dict[str, Any]
    expect: type[BaseException] | None = None  # None: the node succeeds
    says: tuple[str, ...] = ()  # every one of these is in the message the user reads
    env: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    interrupt_when: Callable[[FakeFal], bool] | None = None  # the user presses Cancel once fal has seen this
    accepted_submits: int = 1
    cancelled_at_fal: bool = False
    journal_state: str | None = None  # the state the journal ends with for the (first) accepted request
    images: int = 2
    within_s: float = 8.0  # from the start, or from the Cancel when there is one
    never_fetched: str = ""  # no request whose path holds this reached the fake (nor anything through it)


def submit_accepted(fake: FakeFal) -> bool:
    """fal has accepted the submit (with ``submit_delay``, its answer is still on its way)."""
    return bool(fake.submits)


def node_waits_at_fal(fake: FakeFal) -> bool:
    """The node has fal's answer and follows its request there."""
    return bool(fake.followed())


RETRY_AFTER_DATE = "date"  # stands for an HTTP date two seconds ahead, computed when the case runs
FAKE_URL = "fake"  # stands for the fake's URL, known when the case runs
# fal's base URL public (a .test name never resolves), reached through the fake as the HTTP proxy
PUBLIC_BASE = {"FAL_QUEUE_BASE_URL": "http://queue.fal.test", "HTTP_PROXY": FAKE_URL}

CASES = [
    # --- submit: retried only where fal cannot have accepted it; every wait ends
    Case("submit answered 429 twice", {"submit_status": [429, 429]}),
    Case("submit 429 with Retry-After inf", {"submit_status": [429], "retry_after": "inf"}, within_s=4),
    Case("submit 429 with Retry-After 1e12", {"submit_status": [429], "retry_after": "1e12"}, within_s=12),
    Case("submit 429 with Retry-After an HTTP date", {"submit_status": [429], "retry_after": RETRY_AFTER_DATE},
         within_s=6),
    Case("submit front door 502 then 503 then 504", {"submit_status": [502, 503, 504]}),
    Case("submit answered 500 by fal", {"submit_status": [500]}, errors.ServerError,
         ("fal had a server error (HTTP 500)", "Internal Server Error (injected fault)", "queue again"),
         accepted_submits=0),
    Case("submit accepted but the answer lost (503 with request id)", {"submit_accept_then_status": 503},
         errors.SubmitUncertainError, ("not sent again", "to avoid paying twice", "Result node"),
         journal_state="submitted"),
    Case("submit connection dropped after sending", {"submit_drop_connection": 1}, errors.SubmitUncertainError,
         ("may have accepted", "not sent again", "request history"), accepted_submits=0),
    Case("slow submit interrupted by Cancel", {"submit_delay": 2.0, "run_time": 5.0}, InterruptProcessingException,
         ("Cancelled by the user while the submit was on its way", "cancelled there"), interrupt_when=submit_accepted,
         cancelled_at_fal=True, journal_state="cancelled", within_s=1.2),
    Case("foreign URLs in the submit answer", {"foreign_urls": True}),
    Case("an account that runs one request at a time", {"account_concurrency": 1}, inputs={"num_images": 8},
         accepted_submits=2, images=8),
    # --- the fal balance: when fal does not tell it, the run goes on and fal decides
    Case("balance answered with something that is not a number", {"balance_body": "<html>maintenance</html>"}),
    Case("balance answered 500 until the read gives up", {"balance_status": [500] * 20}, within_s=9),
    Case("balance not answered in time", {"balance_delay": 6.0}, within_s=9),
    # --- following the request
    Case("status answered 429 three times", {"status_status": [429, 429, 429], "stream_unavailable": True}),
    Case("status 500/502/503/504", {"status_status": [500, 502, 503, 504], "stream_unavailable": True}),
    Case("status connection dropped three times", {"status_drop_connection": 3}),
    Case("status stream cut mid-way twice", {"stream_cut": 2, "run_time": 0.5}),
    Case("status stream not available", {"stream_unavailable": True}),
    Case("status stream silent but for pings", {"stream_pings_only": True, "run_time": 0.3},
         env={"GROK_IMAGINE_TIMEOUT": "30", "GROK_IMAGINE_QUEUE_TIMEOUT": "30"}, within_s=6.0),
    Case("a status-stream line of 64 MiB", {"stream_huge_line": 64 * 2**20, "run_time": 0.5}),
    Case("status never completing", {"never_complete": True}, errors.FalTimeoutError,
         ("ran at fal for longer than 1 s", "GROK_IMAGINE_TIMEOUT", "was cancelled at fal", "raise"),
         env={"GROK_IMAGINE_TIMEOUT": "1"}, cancelled_at_fal=True, journal_state="cancelled"),
    Case("job stuck in fal's queue", {"stuck_in_queue": True}, errors.FalTimeoutError,
         ("no progress in fal's queue for 1 s", "GROK_IMAGINE_QUEUE_TIMEOUT", "was cancelled at fal"),
         env={"GROK_IMAGINE_QUEUE_TIMEOUT": "1"}, cancelled_at_fal=True, journal_state="cancelled"),
    Case("cancel answered 503 with Retry-After nan, asked again until fal takes it",
         {"never_complete": True, "cancel_status": [503] * 3, "retry_after": "nan"}, InterruptProcessingException,
         ("Cancelled by the user", "asked to stop"), interrupt_when=node_waits_at_fal, within_s=1.2,
         cancelled_at_fal=True, journal_state="cancelled"),
    # --- the result
    Case("COMPLETED with an error", {"complete_with_error": "runner crashed"}, errors.JobFailedError,
         ("fal finished the request with an error", "runner crashed"), journal_state="failed"),
    Case("content-policy rejection", {"content_policy": True}, errors.ContentPolicyError,
         ("refused the request under its content policy", CONTENT_POLICY_MESSAGE[:50], "Change the prompt",
          "on_refusal"), journal_state="failed"),
    Case("photo-like images (a photograph's detail)", {"photo_like_images": True}),
    Case("content-policy rejection with on_refusal placeholder", {"content_policy": True},
         inputs={"on_refusal": "placeholder"}),
    Case("one request of two refused, with on_refusal placeholder", {"content_policy_every": 2},
         inputs={"num_images": 8, "on_refusal": "placeholder"}, accepted_submits=2, images=8),
    Case("a refused prompt, with on_refusal fail", {"content_policy_prompts": ["lighthouse"]},
         errors.ContentPolicyError, ("content policy", "Change the prompt")),
    Case("HTML result body", {"result_body": b"<html><body>Bad gateway</body></html>"}, errors.ResultError,
         ("not JSON", "Result node"), journal_state="completed"),
    Case("garbage result body", {"result_body": b"\x00\x01 not json"}, errors.ResultError, ("not JSON",)),
    Case("result answered 500 then 503", {"result_status": [500, 503]}),
    Case("a result of 256 MiB", {"result_huge": 256 * 2**20}, errors.ResultError,
         ("larger than 128 MiB", "turn sync_mode off"), journal_state="completed"),
    Case("result trickling in a byte at a time", {"result_trickle": 0.5}, errors.ResultError,
         ("did not arrive whole within 2 s", "GROK_IMAGINE_TIMEOUT", "collectable"),
         env={"GROK_IMAGINE_TIMEOUT": "2"}, journal_state="completed", within_s=4),
    Case("empty images list", {"result_images_override": []}, errors.ResultError, ("no images", "another prompt")),
    Case("short images list (1 of 2)", {"result_images_override": [{"url": data_uri_image()}]}, images=1),
    Case("one image more than asked by each request", {"extra_images": 1}, inputs={"num_images": 6},
         accepted_submits=2, images=6),
    # --- the images
    Case("image 503 then 429", {"image_status": [503, 429]}),
    Case("image 404", {"image_404": True}, download.ImageFetchError, ("could not be downloaded", "HTTP 404"),
         journal_state="completed"),
    Case("image redirect loop", {"image_redirect_loop": True}, download.ImageFetchError,
         ("redirects in a loop", "Result node")),
    Case("image slow trickle", {"image_trickle": 0.3}, download.ImageFetchError,
         ("took longer than 1 s", "GROK_IMAGINE_DOWNLOAD_TIMEOUT"), env={"GROK_IMAGINE_DOWNLOAD_TIMEOUT": "1"}),
    Case("image truncated", {"image_truncate": True}, download.ImageFetchError,
         ("GROK_IMAGINE_DOWNLOAD_TIMEOUT", "closed before the whole image arrived"),
         env={"GROK_IMAGINE_DOWNLOAD_TIMEOUT": "2"}),
    Case("image corrupt", {"image_corrupt": True}, decode.ImageDecodeError, ("not an image", "Result node")),
    Case("image decompression bomb", {"image_bomb": True}, decode.ImageDecodeError, ("MP limit",)),
    Case("image with the wrong content type", {"image_wrong_content_type": True}),
    Case("images sent in chunks with no declared length", {"file_chunked": True}),
    Case("images of mixed sizes", {"mixed_sizes": True}),
    Case("image URLs on a loopback address, fal's base URL public", {}, download.ImageFetchError,
         ("loopback address (127.0.0.1)", "nothing was fetched"), env=PUBLIC_BASE, journal_state="completed",
         never_fetched="/files/"),
    Case("images on a host that resolves only past a proxy", {"image_host": "http://cdn.fal.test"}, env=PUBLIC_BASE),
    Case("an image redirected to a link-local address", {"image_host": "http://cdn.fal.test",
                                                         "image_redirect_to": "http://169.254.169.254/meta-data"},
         download.ImageFetchError, ("link-local address (169.254.169.254)", "nothing was fetched"), env=PUBLIC_BASE,
         never_fetched="meta-data"),
]


def user_message(exc: BaseException) -> str:
    """What the user reads: ComfyUI shows an interruption's cause in the console."""
    return str(exc.__cause__ if isinstance(exc, InterruptProcessingException) else exc)


def journal_state(fake: FakeFal) -> str | None:
    entries = journal_module.Journal(Path(os.environ["GROK_IMAGINE_STATE_DIR"])).entries()
    entry = entries.get(fake.submits[0].request_id) if fake.submits else None
    return entry.state if entry is not None else None


async def settle(fake: FakeFal, case: Case) -> None:
    """Let the background loop finish what it does for a stopped node (a late submit answer, a cancel)."""
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and ((case.cancelled_at_fal and not fake.cancels) or (
            case.journal_state is not None and journal_state(fake) != case.journal_state)):
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_fault(
    case: Case, fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx included
    for name, value in case.env.items():
        monkeypatch.setenv(name, fake_fal.url if value == FAKE_URL else value)
    faults = dict(case.faults)
    if faults.get("retry_after") == RETRY_AFTER_DATE:
        faults["retry_after"] = formatdate(time.time() + 2, usegmt=True)
    fake_fal.faults.update(faults)
    seen: list[str] = []
    with fake_comfy(tmp_path / "temp") as host:
        started = time.monotonic()
        task = asyncio.ensure_future(run_node(Node, **{"prompt": "a lighthouse", "num_images": 2, "unique_id": "3",
                                                       **case.inputs}))
        if case.interrupt_when is not None:
            assert await fake_fal.sees(case.interrupt_when, 10)
            host.interrupted = True
            started = time.monotonic()
        if case.expect is None:
            images, revised, urls = await task
            assert images.shape[0] == case.images
            seen += [revised, urls]
        else:
            with pytest.raises(case.expect) as caught:
                await task
            message = user_message(caught.value)
            for words in case.says:
                assert words in message, f"{words!r} not in {message!r}"
            if fake_fal.submits and case.interrupt_when is None:
                assert fake_fal.submits[0].request_id in message, "the error must name the request id"
            seen.append(message)
        elapsed = time.monotonic() - started
        seen += [text for _, text in host.progress_texts]
    await settle(fake_fal, case)

    assert elapsed < case.within_s, f"took {elapsed:.1f}s"
    assert len(fake_fal.submits) == case.accepted_submits
    assert bool(fake_fal.cancels) == case.cancelled_at_fal
    state = Path(os.environ["GROK_IMAGINE_STATE_DIR"])
    if case.journal_state is not None:
        assert journal_state(fake_fal) == case.journal_state
    seen += [caplog.text, stored_state(state) if (state / "state.sqlite3").exists() else ""]
    for secret in SECRETS:
        assert not [text for text in seen if secret in text], "the key leaked"
    assert not [r for r in fake_fal.requests if r.kind == "file" and r.has_authorization]
    assert fake_fal.foreign_requests == []
    if case.never_fetched:
        assert not [r.path for r in fake_fal.requests if case.never_fetched in r.path]


def test_the_matrix_covers_every_fault_the_fake_can_inject() -> None:
    from fake_fal import Faults

    used = {name for case in CASES for name in case.faults}
    # Faults of input files (the upload, an input fal cannot read) have their cases in the tests of the nodes that
    # send files: test_edit.py, test_image_chains.py.
    injectable = set(Faults().to_json()) - {"run_time", "queue_time", "cdn_latency", "complete_error_type",
                                            "upload_status", "inputs_unreadable"}
    assert injectable <= used, f"faults without a case: {sorted(injectable - used)}"
