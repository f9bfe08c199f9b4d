"""Your fal balance where you spend it: a run (a fan-out, a whole Prompt List) that the balance cannot pay,
or that would take it below the floor, is refused with both figures before anything is sent; a run that fits
does not read the balance each time; when the balance is unknown, fal stays the judge."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from comfy_like import TEST_KEY, pack_module, run_node, run_node_over_list
from fake_comfy import InterruptProcessingException, fake_comfy
from fake_fal import EXHAUSTED_BALANCE_MESSAGE, FakeFal

errors = pack_module("fal_transport.errors")
billing = pack_module("fal_transport.billing")
routes = pack_module("nodes.routes")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage
PromptList = pack_module("nodes.prompt_list").FalGrokImaginePromptList


def balance_reads(fake: FakeFal) -> int:
    return len(fake.requests_of("balance"))


def prompt_list(count: int, word: str = "lighthouse") -> list[str]:
    prompts, _ = PromptList().split("\n".join(f"{word} number {i}" for i in range(count)))
    return prompts


@pytest.mark.parametrize(("num_images", "balance", "costs", "has"), [
    (2, 0.03, "$0.04", "$0.03"),
    (12, 0.20, "$0.24", "$0.20"),  # three requests of four: the whole fan-out is priced
])
async def test_a_run_the_balance_cannot_pay_is_refused_with_both_figures_before_anything_is_sent(
    fake_fal: FakeFal, num_images: int, balance: float, costs: str, has: str
) -> None:
    fake_fal.balance_usd = balance
    with pytest.raises(errors.BalanceError) as caught:
        await run_node(Node, prompt="a harbour at dawn", num_images=num_images)
    assert str(caught.value) == (
        f"This run costs {costs}; your fal balance is {has}. Top up at fal's dashboard "
        "(https://fal.ai/dashboard/billing), or ask for fewer images. Nothing was sent.")
    assert fake_fal.submit_attempts == [] and balance_reads(fake_fal) == 1
    assert all(r.headers["authorization"] == f"Key {TEST_KEY}" for r in fake_fal.requests_of("balance"))


async def test_a_prompt_list_the_balance_cannot_pay_does_not_start(fake_fal: FakeFal) -> None:
    fake_fal.balance_usd = 0.15
    fake_fal.faults.run_time = 0.2
    with pytest.raises(errors.BalanceError) as caught:
        await run_node_over_list(Node, prompt=prompt_list(10), unique_id="5")
    assert str(caught.value) == (
        "This batch of 10 prompts costs $0.20; your fal balance is $0.15. Top up at fal's dashboard "
        "(https://fal.ai/dashboard/billing), or run fewer prompts. Nothing was sent.")
    assert fake_fal.submit_attempts == [] and balance_reads(fake_fal) == 1  # one verdict for the whole list


async def test_a_list_is_priced_as_a_whole_even_when_its_items_price_themselves_at_once() -> None:
    # ComfyUI starts one list item per turn of the event loop; an item that knows its price at once (no await
    # before it) must still wait for the items started after it.
    batches = pack_module("nodes.list_batch")
    judged: list[tuple[float, int]] = []

    async def check(price: float, runs: int) -> None:
        judged.append((round(price, 6), runs))

    async def item() -> None:
        member = batches.NodeBatch.join("21")
        try:
            await member.pay_together(0.02, check)
        finally:
            member.leave(ok=True)

    tasks = []
    for _ in range(10):  # as comfy_like.run_node_over_list and ComfyUI's _async_map_node_over_list do
        tasks.append(asyncio.create_task(item()))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert judged == [(0.2, 10)]


async def test_every_request_of_every_list_item_counts_in_the_price_of_the_batch(fake_fal: FakeFal) -> None:
    fake_fal.balance_usd = 0.33
    with pytest.raises(errors.BalanceError, match=r"This batch of 3 prompts costs \$0\.34; your fal balance is "):
        await run_node_over_list(Node, prompt=prompt_list(3), num_images=[1, 4, 12], unique_id="8")  # 17 images
    assert fake_fal.submit_attempts == []
    fake_fal.balance_usd = 0.34
    results = await run_node_over_list(Node, prompt=prompt_list(3), num_images=[1, 4, 12], unique_id="8")
    assert [images.shape[0] for images, _, _ in results] == [1, 4, 12] and len(fake_fal.submits) == 1 + 1 + 3


async def test_a_batch_that_fits_reads_the_balance_at_most_once_a_minute(fake_fal: FakeFal) -> None:
    results = await run_node_over_list(Node, prompt=prompt_list(50), unique_id="3")
    assert len(results) == 50 and len(fake_fal.submits) == 50
    assert balance_reads(fake_fal) == 1
    await run_node_over_list(Node, prompt=prompt_list(50, "meadow"), unique_id="3")  # queued again, a minute not out
    await run_node(Node, prompt="one more", num_images=4)
    assert balance_reads(fake_fal) == 1 and len(fake_fal.submits) == 101


async def test_a_refusal_is_always_decided_on_a_balance_read_just_now(fake_fal: FakeFal) -> None:
    fake_fal.balance_usd, fake_fal.charge_balance = 0.05, True  # each accepted request pays from the balance
    await run_node(Node, prompt="first", num_images=2)  # $0.04 of $0.05
    assert balance_reads(fake_fal) == 1 and fake_fal.balance_usd == pytest.approx(0.01)
    # the reading kept says $0.05, less the $0.04 spent since: too little, so the balance is read again
    with pytest.raises(errors.BalanceError, match=r"This run costs \$0\.04; your fal balance is \$0\.01\."):
        await run_node(Node, prompt="second", num_images=2)
    assert balance_reads(fake_fal) == 2 and len(fake_fal.submits) == 1
    fake_fal.balance_usd = 5.0  # topped up: the fresh reading lets the run go
    await run_node(Node, prompt="second", num_images=2)
    assert balance_reads(fake_fal) == 3 and len(fake_fal.submits) == 2


@pytest.mark.parametrize("where", ["environment", "settings"])
async def test_the_balance_floor_is_kept_in_reserve(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    fake_fal.balance_usd = 1.0
    if where == "environment":
        monkeypatch.setenv("GROK_IMAGINE_BALANCE_FLOOR_USD", "0.97")
        source, fix = "the environment variable GROK_IMAGINE_BALANCE_FLOOR_USD", "lower GROK_IMAGINE_BALANCE_FLOOR_USD"
    else:
        assert routes.set_balance_floor({"balance_floor_usd": 0.97})[0] == 200
        source, fix = "Settings > Grok Imagine (fal)", "lower the floor in Settings > Grok Imagine (fal)"
    with pytest.raises(errors.BalanceError) as caught:
        await run_node(Node, prompt="two", num_images=2)  # $0.04 would leave $0.96
    assert str(caught.value) == (
        f"This run costs $0.04; your fal balance is $1.00, and the balance floor of $0.97 (set by {source}) is "
        f"kept. Top up at fal's dashboard (https://fal.ai/dashboard/billing), {fix}, or ask for fewer images. "
        "Nothing was sent.")
    assert fake_fal.submit_attempts == []
    await run_node(Node, prompt="one", num_images=1)  # $0.02 leaves $0.98
    assert len(fake_fal.submits) == 1


async def test_the_floor_from_the_environment_wins_and_a_bad_one_is_named(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_fal.balance_usd = 1.0
    routes.set_balance_floor({"balance_floor_usd": 0.99})
    monkeypatch.setenv("GROK_IMAGINE_BALANCE_FLOOR_USD", "0")
    await run_node(Node, prompt="fits", num_images=2)
    monkeypatch.setenv("GROK_IMAGINE_BALANCE_FLOOR_USD", "lots")
    with pytest.raises(errors.FalConfigError, match="GROK_IMAGINE_BALANCE_FLOOR_USD must be a number of US dollars"):
        await run_node(Node, prompt="again", num_images=2)
    assert len(fake_fal.submits) == 1


UNKNOWN = {
    "fal answers something else": {"balance_body": "<html>maintenance</html>"},
    "fal refuses the key for billing": {"balance_status": [403]},
    "fal keeps failing": {"balance_status": [500] * 20},
    "fal does not answer in time": {"balance_delay": 3.0},
}


@pytest.mark.parametrize("faults", UNKNOWN.values(), ids=UNKNOWN.keys())
async def test_when_the_balance_is_unknown_runs_go_on_and_fal_decides(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch, faults: dict
) -> None:
    monkeypatch.setattr(billing, "READ_TIMEOUT_S", 0.5)
    fake_fal.balance_usd = 0.0  # were it known, nothing would run
    fake_fal.faults.update(faults)
    await run_node(Node, prompt="goes on", num_images=2)
    await run_node(Node, prompt="goes on too", num_images=2)
    assert len(fake_fal.submits) == 2 and balance_reads(fake_fal) >= 1
    # the failed read is kept for a minute: the second run did not wait on fal again
    assert all(r.time < fake_fal.submits[0].time for r in fake_fal.requests_of("balance"))


async def test_cancel_while_the_balance_is_read_stops_at_once_and_sends_nothing(
    fake_fal: FakeFal, tmp_path: Path
) -> None:
    fake_fal.faults.balance_delay = 3.0
    with fake_comfy(tmp_path) as host:
        task = asyncio.ensure_future(run_node_over_list(Node, prompt=prompt_list(4), unique_id="9"))
        assert await fake_fal.sees(lambda f: f.requests_of("balance"), 10)  # the read is on its way: 3 s to go
        host.interrupted = True
        cancelled = time.monotonic()
        with pytest.raises(InterruptProcessingException):
            await task
    assert time.monotonic() - cancelled < 1.0
    assert fake_fal.submit_attempts == []


async def test_an_exhausted_balance_at_fal_says_so_rather_than_blaming_the_key(fake_fal: FakeFal) -> None:
    fake_fal.balance_usd, fake_fal.charge_balance = 0.0, True
    fake_fal.faults.balance_body = "?"  # the balance is unknown, so fal's own 403 decides
    with pytest.raises(errors.BalanceError) as caught:
        await run_node(Node, prompt="locked out")
    message = str(caught.value)
    assert message == (
        f"fal refused the submit to xai/grok-imagine-image because your fal balance is used up (fal: "
        f"\"{EXHAUSTED_BALANCE_MESSAGE}\"). Top up at fal's dashboard (https://fal.ai/dashboard/billing), then "
        "queue again.")
    assert fake_fal.submits == []


@pytest.mark.parametrize(("detail", "kind", "words"), [
    ("User is locked. Reason: TOP_UP.", "BalanceError", "your fal balance is used up"),
    ("User is locked. Reason: Admin lock. Please contact support@fal.ai", "AuthenticationError",
     "fal has locked your fal account"),
    ("Invalid or missing API key", "AuthenticationError", "fal rejected the API key"),
])
def test_fals_403_is_read_for_what_it_says(detail: str, kind: str, words: str) -> None:
    response = httpx.Response(403, json={"detail": detail})
    error = errors.error_from_response(response, what="the submit to x", key_source="FAL_KEY", scrub=lambda t: t)
    assert type(error).__name__ == kind and words in str(error)


async def test_requests_collected_from_the_journal_need_no_balance(fake_fal: FakeFal) -> None:
    fake_fal.balance_usd, fake_fal.charge_balance = 0.04, True
    fake_fal.faults.image_404 = True
    with pytest.raises(errors.ResultError):
        await run_node(Node, prompt="paid once", num_images=2)  # paid: the balance is used up
    fake_fal.faults.image_404 = False
    assert fake_fal.balance_usd == 0
    reads = balance_reads(fake_fal)
    images, _, _ = await run_node(Node, prompt="paid once", num_images=2)
    assert images.shape[0] == 2 and len(fake_fal.submits) == 1 and balance_reads(fake_fal) == reads

