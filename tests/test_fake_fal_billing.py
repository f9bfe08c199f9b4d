"""The fake fal's balance (`fake_fal.billing`): a bare number for the key, its faults, and a balance that pays for
each accepted request until fal locks the account."""

from __future__ import annotations

import time

import httpx
import pytest
from fake_fal import EXHAUSTED_BALANCE_MESSAGE, FakeFal, billed_price
from fake_fal.plain_client import submit

TEXT = "xai/grok-imagine-image"
V2_TEXT = "xai/grok-imagine-image/v2.0/text-to-image"
V2_EDIT = "xai/grok-imagine-image/v2.0/edit"


def test_the_balance_is_a_bare_number_for_the_key(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    answer = fal_http.get("/billing/user_balance")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.text == "100.0" and answer.json() == 100.0
    fake_fal.balance_usd = 3.25
    assert fal_http.get("/billing/user_balance").json() == 3.25
    for headers in ({}, {"Authorization": "Key wrong"}):
        refused = httpx.get(f"{fake_fal.url}/billing/user_balance", headers=headers)
        assert refused.status_code == 401 and refused.json() == {"detail": "Invalid or missing API key"}
    assert fal_http.post("/billing/user_balance").status_code == 405
    assert [r.kind for r in fake_fal.requests_of("balance")] == ["balance"] * 5
    submit(fal_http, num_images=4)
    assert fal_http.get("/billing/user_balance").json() == 3.25  # nothing is charged unless asked
    fake_fal.reset()
    assert fal_http.get("/billing/user_balance").json() == 100.0


def test_balance_faults(fake_fal: FakeFal, fal_http: httpx.Client) -> None:
    fake_fal.faults.balance_status = [500, 403]
    assert fal_http.get("/billing/user_balance").status_code == 500
    assert fal_http.get("/billing/user_balance").status_code == 403
    fake_fal.faults.balance_body = "not a number"
    garbled = fal_http.get("/billing/user_balance")
    assert garbled.status_code == 200 and garbled.text == "not a number"
    fake_fal.faults.balance_body = None
    fake_fal.faults.balance_delay = 0.3
    started = time.monotonic()
    assert fal_http.get("/billing/user_balance").json() == 100.0 and time.monotonic() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        fal_http.get("/billing/user_balance", timeout=0.05)
    for bad in ({"balance_status": ["x"]}, {"balance_body": 3}, {"balance_delay": -1}):
        assert fal_http.post("/_fake/faults", json=bad).status_code == 400, bad


def test_a_charged_balance_pays_for_each_accepted_request_until_fal_locks_the_account(
    fake_fal: FakeFal, fal_http: httpx.Client
) -> None:
    assert billed_price(TEXT, {"num_images": 3, "resolution": "1k"}) == 0.06
    assert billed_price("xai/grok-imagine-image/quality/edit",
                        {"num_images": 2, "resolution": "2k", "image_urls": ["a", "b"]}) == 0.16
    assert billed_price(V2_TEXT, {"num_images": 1, "resolution": "1k", "quality": "low"}) == 0.04
    assert billed_price(V2_EDIT, {"num_images": 1, "resolution": "2k", "image_urls": ["a"]}) == 0.09
    fake_fal.balance_usd, fake_fal.charge_balance = 0.10, True
    assert submit(fal_http, num_images=4).status_code == 200  # $0.08
    assert submit(fal_http, num_images=4).status_code == 200  # $0.08 more: fal lets the last one go below zero
    assert fal_http.get("/billing/user_balance").json() == -0.06
    assert submit(fal_http, num_images=1, seed=1).status_code == 422  # validation comes first
    locked = submit(fal_http)
    assert locked.status_code == 403 and locked.json() == {"detail": EXHAUSTED_BALANCE_MESSAGE}
    assert "Exhausted balance" in EXHAUSTED_BALANCE_MESSAGE
    assert len(fake_fal.jobs) == 2 and len(fake_fal.submits) == 2
    fake_fal.balance_usd = 1.0  # a top-up unlocks it
    assert submit(fal_http).status_code == 200 and fal_http.get("/billing/user_balance").json() == 0.98
    fake_fal.reset()
    assert not fake_fal.charge_balance and fake_fal.balance_usd == 100.0
    with FakeFal(balance_usd=0.0, charge_balance=True) as broke:
        assert httpx.post(f"{broke.url}/{TEXT}", json={"prompt": "x"}, headers={"Authorization": "Key k"}
                          ).status_code == 403
