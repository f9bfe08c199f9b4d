"""Spend you can see and cap, and images that carry their provenance into the PNG Save Image writes."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest
import torch
from comfy_like import TEST_KEY, pack_module, run_node, run_node_over_list, run_node_raw, stored_state
from fake_fal import FakeFal

errors = pack_module("fal_transport.errors")
ledger_module = pack_module("fal_transport.ledger")
routes = pack_module("nodes.routes")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage
Image2 = pack_module("nodes.text_to_image").FalGrokImagine2Image
Edit = pack_module("nodes.edit").FalGrokImagineEdit
Result = pack_module("nodes.result_node").FalGrokImagineResult


def state() -> Path:
    return Path(os.environ["GROK_IMAGINE_STATE_DIR"])


def spend() -> dict:
    status, payload = routes.spend_payload()
    assert status == 200
    return payload


async def test_every_accepted_request_is_in_the_ledger_with_its_price_but_never_the_prompt_or_key(
    fake_fal: FakeFal,
) -> None:
    await run_node(Node, prompt="a secret garden", num_images=6, resolution="2k", tier="quality")
    await run_node(Edit, image=torch.full((2, 64, 64, 3), 0.3), prompt="at night", image_2=torch.zeros((1, 32, 32, 3)))
    text = stored_state(state())
    assert "secret garden" not in text and TEST_KEY not in text and TEST_KEY.split(":")[1] not in text
    totals = spend()
    assert sorted((r["images"], r["references"], r["price_usd"]) for r in totals["recent"]) == sorted([
        (4, 0, 0.28), (2, 0, 0.14),  # quality 2k: $0.07 an image
        (1, 3, 0.026),  # standard edit: $0.02 + 3 references x $0.002
    ])
    assert {r["request_id"] for r in totals["recent"]} == {s.request_id for s in fake_fal.submits}
    assert totals["today_usd"] == totals["month_usd"] == totals["session_usd"] == pytest.approx(0.446)
    assert totals["daily_limit_usd"] is None


async def test_grok_2_requests_are_priced_by_quality_and_resolution(fake_fal: FakeFal) -> None:
    await run_node(Image2, prompt="a", quality="low", num_images=2)
    await run_node(Image2, prompt="b", quality="medium", resolution="2k")
    assert spend()["today_usd"] == pytest.approx(2 * 0.04 + 0.08)


async def test_a_run_past_the_daily_limit_is_refused_before_anything_is_sent(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _ = routes.set_daily_limit({"daily_limit_usd": 0.1})
    assert status == 200 and spend()["daily_limit_usd"] == 0.1
    await run_node(Node, prompt="four", num_images=4)  # $0.08
    with pytest.raises(errors.SpendLimitError) as caught:
        await run_node(Node, prompt="two more", num_images=2)  # $0.04 would make $0.12
    message = str(caught.value)
    assert "This run costs $0.04" in message and "today's spend is $0.08" in message
    assert "daily limit of $0.10" in message and "Raise or clear the limit in Settings > Grok Imagine (fal)" in message
    assert len(fake_fal.submits) == 1
    monkeypatch.setenv("GROK_IMAGINE_DAILY_LIMIT_USD", "1")  # the environment wins over the stored limit
    await run_node(Node, prompt="two more", num_images=2)
    assert spend()["daily_limit_usd"] == 1 and "GROK_IMAGINE_DAILY_LIMIT_USD" in spend()["limit_source"]
    status, _ = routes.set_daily_limit({"daily_limit_usd": "lots"})
    assert status == 400


async def test_requests_recovered_from_the_journal_or_by_the_result_node_cost_nothing(fake_fal: FakeFal) -> None:
    fake_fal.faults.image_404 = True
    with pytest.raises(errors.ResultError):
        await run_node(Node, prompt="paid once", num_images=2)
    fake_fal.faults.image_404 = False
    await run_node(Node, prompt="paid once", num_images=2)  # collected from the journal
    await run_node(Result, request_id=fake_fal.submits[0].request_id, endpoint="xai/grok-imagine-image")
    assert len(fake_fal.submits) == 1 and spend()["today_usd"] == pytest.approx(0.04)


def workflow_with(node_id: str) -> dict:
    return {"workflow": {"nodes": [{"id": 1, "type": "LoadImage", "properties": {}},
                                   {"id": int(node_id), "type": "FalGrokImagineImage", "properties": {}}]}}


async def test_the_request_id_endpoint_and_revised_prompt_go_into_the_workflow_save_image_embeds(
    fake_fal: FakeFal,
) -> None:
    extra = workflow_with("7")
    await run_node_raw(Node, prompt="a lighthouse", num_images=6, unique_id="7", extra_pnginfo=extra)
    record = extra["workflow"]["nodes"][1]["properties"]["grok_imagine"]
    assert len(record) == 1 and record[0]["endpoint"] == "xai/grok-imagine-image"
    assert record[0]["revised_prompt"] == "Revised: a lighthouse"
    assert sorted(record[0]["request_ids"]) == sorted(s.request_id for s in fake_fal.submits)  # 4 + 2 images
    assert extra["workflow"]["nodes"][0]["properties"] == {}
    # the id in a saved PNG is enough to reload the images
    first = next(s for s in fake_fal.submits if s.json["num_images"] == 4).request_id
    assert record[0]["request_ids"][0] == first  # in request order
    again, revised, _ = await run_node(Result, request_id=first, endpoint=record[0]["endpoint"])
    assert again.shape[0] == 4 and revised == "Revised: a lighthouse" and len(fake_fal.submits) == 2


async def test_a_prompt_without_a_workflow_still_carries_its_provenance(fake_fal: FakeFal) -> None:
    extra: dict = {}
    await run_node_raw(Node, prompt="a lighthouse", unique_id="12:3", extra_pnginfo=extra)
    assert extra["grok_imagine"]["12:3"][0]["request_ids"] == [fake_fal.submits[0].request_id]


def test_runs_reserving_and_recording_at_once_never_pass_the_daily_limit_together(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("GROK_IMAGINE_DAILY_LIMIT_USD", "0.5")  # room for 25 images at $0.02
    ledger = ledger_module.Ledger(tmp_path)
    start = threading.Barrier(8)
    accepted: list[str] = []

    def run(name: str) -> None:  # one node's runs, one after the other: reserve, accepted, done
        start.wait()
        for i in range(10):
            try:
                reservation = ledger.reserve(0.02)
            except errors.SpendLimitError:
                continue
            reservation.charge(f"{name}-{i}", "xai/grok-imagine-image", ledger_module.Spend(0.02, 1, 0))
            ledger_module.release_all([reservation])
            accepted.append(f"{name}-{i}")

    threads = [threading.Thread(target=run, args=(f"node-{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == 25 and ledger.totals().today_usd == pytest.approx(0.5)


async def test_in_a_list_batch_each_item_has_its_own_entry_in_list_order_whatever_order_they_finish_in(
    fake_fal: FakeFal,
) -> None:
    # ComfyUI hands every list item the same workflow and Save Image writes it after the last item, into every
    # PNG: the PNG at place k of the batch finds its request(s) under list_index k
    fake_fal.faults.never_complete = True
    extra = workflow_with("5")
    prompts = [f"harbour number {i}" for i in range(4)]

    def requests_of(item: int) -> list[str]:  # in request order: the four-image request, then the two-image one
        submits = [s for s in fake_fal.submits if s.json["prompt"] == prompts[item]]
        return [s.request_id for s in sorted(submits, key=lambda s: -s.json["num_images"])]

    def recorded() -> list[dict]:
        return extra["workflow"]["nodes"][1]["properties"].get("grok_imagine", [])

    task = asyncio.ensure_future(run_node_over_list(Node, prompt=prompts, num_images=6, unique_id="5",
                                                    extra_pnginfo=extra))
    assert await fake_fal.sees(lambda f: len(f.submits) == 8, 10)
    for item in (3, 1, 0, 2):  # the last item finishes first
        for request_id in requests_of(item):
            fake_fal.complete_job(request_id)
        while not any(entry["revised_prompt"] == f"Revised: {prompts[item]}" for entry in recorded()):
            await asyncio.sleep(0.02)
    await task
    assert recorded() == [{"list_index": item, "endpoint": "xai/grok-imagine-image", "request_ids": requests_of(item),
                           "revised_prompt": f"Revised: {prompts[item]}"} for item in range(4)]


async def test_a_list_of_request_ids_into_the_result_node_records_one_entry_per_item_in_list_order(
    fake_fal: FakeFal,
) -> None:
    await run_node(Node, prompt="first")
    await run_node(Node, prompt="second")
    ids = [s.request_id for s in fake_fal.submits][::-1]
    extra = workflow_with("8")
    results = await run_node_over_list(Result, request_id=ids, endpoint="xai/grok-imagine-image", unique_id="8",
                                       extra_pnginfo=extra)
    assert [revised for _, revised, _ in results] == ["Revised: second", "Revised: first"]
    record = extra["workflow"]["nodes"][1]["properties"]["grok_imagine"]
    assert [(e["list_index"], e["request_ids"]) for e in record] == [(0, [ids[0]]), (1, [ids[1]])]
    assert len(fake_fal.submits) == 2  # nothing paid again


async def test_a_run_replaces_what_a_loaded_workflow_brought_and_each_subgraph_instance_keeps_its_own_entry(
    fake_fal: FakeFal,
) -> None:
    earlier = {"endpoint": "xai/grok-imagine-image", "request_ids": ["from-the-png-loaded"], "revised_prompt": "old"}
    extra = {"workflow": {
        "nodes": [{"id": 7, "type": "FalGrokImagineImage", "properties": {"grok_imagine": [earlier]}}],
        "definitions": {"subgraphs": [{"id": "sub", "nodes": [{"id": 3, "type": "FalGrokImagineImage"}]}]},
    }}
    await run_node_raw(Node, prompt="on top", unique_id="7", extra_pnginfo=extra)
    await run_node_raw(Node, prompt="in one", unique_id="12:3", extra_pnginfo=extra)  # two instances of the subgraph
    await run_node_raw(Node, prompt="in two", unique_id="13:3", extra_pnginfo=extra)
    top = extra["workflow"]["nodes"][0]["properties"]["grok_imagine"]
    assert [e["revised_prompt"] for e in top] == ["Revised: on top"]
    inner = extra["workflow"]["definitions"]["subgraphs"][0]["nodes"][0]["properties"]["grok_imagine"]
    assert [(e["node_id"], e["revised_prompt"]) for e in inner] == [("12:3", "Revised: in one"),
                                                                    ("13:3", "Revised: in two")]
