"""The fake fal's balance: what ``GET /billing/user_balance`` answers, and what an accepted submit costs.

``GET /billing/user_balance`` (Key auth) answers the account's balance in US dollars as a bare JSON number
(``12.5``): `FakeFal.balance_usd` (``FakeFal(balance_usd=...)``, 100.0 unless given; tests may set it at any
time). With `FakeFal.charge_balance` (``FakeFal(charge_balance=True)``, off by default) the balance pays: every
accepted submit takes its price (`billed_price`: xAI's rates per image at the requested resolution, and per
reference image; a video's `video.billed_video_price`, per second) off it (`charge`), and a submit that arrives
while the balance is 0 or less is refused with fal's 403 ``{"detail": EXHAUSTED_BALANCE_MESSAGE}`` ("User is
locked. Reason: Exhausted balance. ...") and creates no job. Like fal, the last request accepted may take the
balance below zero. The faults ``balance_status``, ``balance_body`` and ``balance_delay`` act on the balance
read.
"""

from __future__ import annotations

from typing import Any

from .images import APP, DEFAULT_QUALITY, V2_ENDPOINTS

__all__ = ["DEFAULT_BALANCE_USD", "EXHAUSTED_BALANCE_MESSAGE", "billed_price", "charge"]

EXHAUSTED_BALANCE_MESSAGE = (
    "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
)
DEFAULT_BALANCE_USD = 100.0
# What fal bills (xAI's rates): endpoint (and quality on 2.0) -> (per image at 1k, at 2k, per reference image)
BILLING_RATES: dict[tuple[str, str | None], tuple[float, float, float]] = {
    (APP, None): (0.02, 0.02, 0.002),
    (f"{APP}/edit", None): (0.02, 0.02, 0.002),
    (f"{APP}/quality/text-to-image", None): (0.05, 0.07, 0.01),
    (f"{APP}/quality/edit", None): (0.05, 0.07, 0.01),
    **{(endpoint, "low"): (0.04, 0.06, 0.01) for endpoint in V2_ENDPOINTS},
    **{(endpoint, "medium"): (0.06, 0.08, 0.01) for endpoint in V2_ENDPOINTS},
}


def billed_price(endpoint: str, args: dict[str, Any]) -> float:
    """What the fake bills for an accepted submit of these (validated) arguments, in US dollars."""
    quality = (args.get("quality") or DEFAULT_QUALITY) if endpoint in V2_ENDPOINTS else None
    per_1k, per_2k, per_reference = BILLING_RATES[(endpoint, quality)]
    per_image = per_2k if args["resolution"] == "2k" else per_1k
    return round(args["num_images"] * per_image + len(args.get("image_urls") or ()) * per_reference, 6)


def charge(balance_usd: float, price: float) -> float | None:
    """The balance after paying `price`, or None when it is used up (0 or less) and fal refuses the submit."""
    if balance_usd <= 0:
        return None
    return round(balance_usd - price, 6)
