"""Run the fake fal on its own until SIGTERM / Ctrl-C; it prints ``FAKE_FAL_URL=http://127.0.0.1:PORT`` once
listening::

    python tests/fake_fal --port 8765 [--key K ...] [--queue-time S] [--run-time S] [--cdn-latency S]
                          [--account-concurrency N] [--balance USD] [--charge-balance]

(or ``python -m fake_fal ...`` with ``tests/`` on the path).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

if not __package__:  # run as `python tests/fake_fal`: import the package from the folder that holds it
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from fake_fal.billing import DEFAULT_BALANCE_USD  # noqa: E402
from fake_fal.server import FakeFal  # noqa: E402


def _iter_keys(values: list[str] | None) -> Iterator[str]:
    for value in values or ():
        yield from (part.strip() for part in value.split(",") if part.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fake fal.ai queue server until SIGTERM / Ctrl-C.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--key", action="append", help="accepted API key (repeatable; default: any key)")
    parser.add_argument("--queue-time", type=float, default=0.0, help="seconds each job stays IN_QUEUE")
    parser.add_argument("--run-time", type=float, default=0.05, help="seconds each job stays IN_PROGRESS")
    parser.add_argument("--cdn-latency", type=float, default=0.0, help="seconds before each image download")
    parser.add_argument(
        "--account-concurrency", type=int, default=None, metavar="N",
        help="at most N jobs IN_PROGRESS at once; the others wait IN_QUEUE in submit order (default: no limit)",
    )
    parser.add_argument("--balance", type=float, default=DEFAULT_BALANCE_USD, metavar="USD",
                        help=f"what GET /billing/user_balance answers (default {DEFAULT_BALANCE_USD:g})")
    parser.add_argument("--charge-balance", action="store_true",
                        help="accepted submits pay from the balance; an exhausted balance refuses submits (403)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if args.account_concurrency is not None and args.account_concurrency < 0:
        parser.error("--account-concurrency must be >= 0 (0: no limit)")

    keys = set(_iter_keys(args.key))
    fake = FakeFal(
        accepted_keys=keys or None,
        queue_time=args.queue_time,
        run_time=args.run_time,
        cdn_latency=args.cdn_latency,
        account_concurrency=args.account_concurrency,
        balance_usd=args.balance,
        charge_balance=args.charge_balance,
        port=args.port,
        verbose=args.verbose,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    fake.start()
    print(f"FAKE_FAL_URL={fake.url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
