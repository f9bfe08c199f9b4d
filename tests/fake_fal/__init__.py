"""A fake fal.ai for the xAI Grok Imagine image and video endpoints: a real HTTP server on 127.0.0.1 that
speaks fal's queue protocol, so the pack's real `httpx` client talks to it through `FAL_QUEUE_BASE_URL` /
`FAL_REST_BASE_URL`. Used by the pytest suite, the benchmark and end-to-end runs.

Library use::

    with FakeFal(accepted_keys={"k"}, run_time=0.1) as fake:
        os.environ["FAL_QUEUE_BASE_URL"] = fake.url
        fake.faults.status_status = [503]
        ...
        assert len(fake.submits) == 1

Script use (`fake_fal.__main__`): ``python tests/fake_fal --port 8765 [--account-concurrency N] ...``.

Its parts, each documented where it lives:

- `fake_fal.server`: `FakeFal`, the server a test starts: what it records, `wait_for`, the control endpoints;
- `fake_fal.handler`: the HTTP side: every route of fal's queue protocol, storage uploads, and requests
  for a public-looking name through the fake as a proxy;
- `fake_fal.jobs`: a job from submit to COMPLETED, and the account queue (account concurrency);
- `fake_fal.images`: the image endpoints: what they accept, the sizes they make, the images they serve;
- `fake_fal.video`: the video endpoints and their real MP4 results;
- `fake_fal.billing`: the balance, and what an accepted submit costs;
- `fake_fal.faults`: the misbehaviour a test injects (`Faults`);
- `fake_fal.foreign`: the "foreign host" the ``foreign_urls`` fault points the answers at.
- `fake_fal.plain_client`: a plain HTTP client of the fake, for its self-checks.

Its own self-checks are the `tests/test_fake_fal_*.py` files.
"""

from .billing import DEFAULT_BALANCE_USD, EXHAUSTED_BALANCE_MESSAGE, billed_price
from .faults import Faults, http_date
from .handler import STREAM_TICK_S, RecordedRequest
from .images import (
    APP,
    ASPECT_RATIOS,
    EDIT_ENDPOINTS,
    ENDPOINTS,
    TEXT_ENDPOINTS,
    V2_ENDPOINTS,
    fake_image_size,
    index_colour,
    index_from_colour,
    render_image,
)
from .jobs import CONTENT_POLICY_MESSAGE, Job
from .server import FakeFal

__all__ = [
    "APP",
    "ASPECT_RATIOS",
    "CONTENT_POLICY_MESSAGE",
    "DEFAULT_BALANCE_USD",
    "EDIT_ENDPOINTS",
    "ENDPOINTS",
    "EXHAUSTED_BALANCE_MESSAGE",
    "STREAM_TICK_S",
    "TEXT_ENDPOINTS",
    "V2_ENDPOINTS",
    "FakeFal",
    "Faults",
    "Job",
    "RecordedRequest",
    "billed_price",
    "fake_image_size",
    "http_date",
    "index_colour",
    "index_from_colour",
    "render_image",
]
