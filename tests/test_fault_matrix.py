"""The fault matrix: what the node does when fal, the network or the images misbehave.

For every fault: success where the fault is transient, otherwise a clear error within the configured
limit; never a hang; never more than the one submit that reached fal; the key never leaked into an
exception, a log record, an output, the journal or a request to anything but fal's queue.
README's "What happens when ..." table is built from these cases.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from comfy_like import TEST_KEY, pack_module, run_node
from fake_comfy import fake_comfy
from fake_fal import FakeFal
from PIL import Image

errors = pack_module("fal_transport.errors")
download = pack_module("image_io.download")
decode = pack_module("image_io.decode")
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
    match: str = ""
    env: dict[str, str] = field(default_factory=dict)
    accepted_submits: int = 1
    cancelled_at_fal: bool = False
    images: int = 2
    within_s: float = 8.0


CASES = [
    # --- submit: retried only where fal cannot have accepted it
    Case("submit answered 429 twice", {"submit_status": [429, 429]}),
    Case("submit front door 502 then 503 then 504", {"submit_status": [502, 503, 504]}),
    Case("submit answered 500 by fal", {"submit_status": [500]}, errors.FalError, "HTTP 500", accepted_submits=0),
    Case("submit accepted but the answer lost (503 with request id)", {"submit_accept_then_status": 503},
         errors.SubmitUncertainError, "not sent again"),
    Case("submit connection dropped after sending", {"submit_drop_connection": 1},
         errors.SubmitUncertainError, "may have accepted", accepted_submits=0),
    # --- following the request
    Case("status answered 429 three times", {"status_status": [429, 429, 429], "stream_unavailable": True}),
    Case("status 500/502/503/504", {"status_status": [500, 502, 503, 504], "stream_unavailable": True}),
    Case("status connection dropped three times", {"status_drop_connection": 3}),
    Case("status stream cut mid-way twice", {"stream_cut": 2, "run_time": 0.5}),
    Case("status stream not available", {"stream_unavailable": True}),
    Case("status never completing", {"never_complete": True}, errors.FalTimeoutError, "GROK_IMAGINE_TIMEOUT",
         env={"GROK_IMAGINE_TIMEOUT": "1"}, cancelled_at_fal=True),
    Case("job stuck in fal's queue", {"stuck_in_queue": True}, errors.FalTimeoutError, "GROK_IMAGINE_QUEUE_TIMEOUT",
         env={"GROK_IMAGINE_QUEUE_TIMEOUT": "1"}, cancelled_at_fal=True),
    # --- the result
    Case("COMPLETED with an error", {"complete_with_error": "runner crashed"}, errors.FalError, "fal request id"),
    Case("content-policy rejection", {"content_policy": True}, errors.ContentPolicyError, "content policy"),
    Case("HTML result body", {"result_body": b"<html><body>Bad gateway</body></html>"}, errors.ResultError,
         "not JSON"),
    Case("garbage result body", {"result_body": b"\x00\x01 not json"}, errors.ResultError, "not JSON"),
    Case("result answered 500 then 503", {"result_status": [500, 503]}),
    Case("empty images list", {"result_images_override": []}, errors.ResultError, "no images"),
    Case("short images list (1 of 2)", {"result_images_override": [{"url": data_uri_image()}]}, images=1),
    # --- the images
    Case("image 503 then 429", {"image_status": [503, 429]}),
    Case("image 404", {"image_404": True}, download.ImageFetchError, "HTTP 404"),
    Case("image redirect loop", {"image_redirect_loop": True}, download.ImageFetchError, "redirects in a loop"),
    Case("image slow trickle", {"image_trickle": 0.3}, download.ImageFetchError, "GROK_IMAGINE_DOWNLOAD_TIMEOUT",
         env={"GROK_IMAGINE_DOWNLOAD_TIMEOUT": "1"}),
    Case("image truncated", {"image_truncate": True}, download.ImageFetchError, "GROK_IMAGINE_DOWNLOAD_TIMEOUT",
         env={"GROK_IMAGINE_DOWNLOAD_TIMEOUT": "2"}),
    Case("image corrupt", {"image_corrupt": True}, decode.ImageDecodeError, "not an image"),
    Case("image decompression bomb", {"image_bomb": True}, decode.ImageDecodeError, "MP limit"),
    Case("image with the wrong content type", {"image_wrong_content_type": True}),
    Case("images of mixed sizes", {"mixed_sizes": True}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_fault(
    case: Case, fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx included
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    fake_fal.faults.update(case.faults)
    seen: list[str] = []
    started = time.monotonic()
    with fake_comfy(tmp_path / "temp") as host:
        if case.expect is None:
            images, revised, urls = await run_node(Node, prompt="a lighthouse", num_images=2, unique_id="3")
            assert images.shape[0] == case.images
            seen += [revised, urls]
        else:
            with pytest.raises(case.expect) as caught:
                await run_node(Node, prompt="a lighthouse", num_images=2, unique_id="3")
            message = str(caught.value)
            assert case.match in message
            if fake_fal.submits:
                assert fake_fal.submits[0].request_id in message, "the error must name the request id"
            seen.append(message)
        seen += [text for _, text in host.progress_texts]
    elapsed = time.monotonic() - started

    assert elapsed < case.within_s, f"took {elapsed:.1f}s"
    assert len(fake_fal.submits) == case.accepted_submits
    assert bool(fake_fal.cancels) == case.cancelled_at_fal
    journal = Path(os.environ["GROK_IMAGINE_STATE_DIR"]) / "requests.jsonl"
    seen += [caplog.text, journal.read_text() if journal.exists() else ""]
    for secret in SECRETS:
        assert not [text for text in seen if secret in text], "the key leaked"
    assert not [r for r in fake_fal.requests if r.kind == "file" and r.has_authorization]


def test_the_matrix_covers_every_fault_the_fake_can_inject() -> None:
    from fake_fal import Faults

    used = {name for case in CASES for name in case.faults}
    injectable = set(Faults().to_json()) - {"run_time", "queue_time", "cdn_latency", "complete_error_type",
                                            "cancel_status", "upload_status"}
    assert injectable <= used, f"faults without a case: {sorted(injectable - used)}"
