"""The fal key: checked from every source before anything is sent, never quoted, never replaced
by accident, stored so only the user can read it, and sent only to fal."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest
from comfy_like import TEST_KEY, pack_module, run_node
from fake_fal import FakeFal

errors = pack_module("fal_transport.errors")
credentials = pack_module("fal_transport.credentials")
key_store = pack_module("fal_transport.credentials")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage
SECRET = TEST_KEY.split(":")[1]


def state_dir() -> Path:
    return Path(os.environ["GROK_IMAGINE_STATE_DIR"])


def store_raw(data: bytes) -> None:
    state_dir().mkdir(parents=True, exist_ok=True)
    (state_dir() / "fal_key").write_bytes(data)


BAD_KEYS = [
    ("a key pasted with a line break", f"{TEST_KEY}\n{TEST_KEY}", "line break"),
    ("a key with a space inside", TEST_KEY.replace(":", ": "), "space"),
    ("a typographic quote", f"\u201c{TEST_KEY}\u201d", "ASCII"),
    ("an accent", TEST_KEY.replace("e", "\u00e9"), "ASCII"),
    ("a control character", TEST_KEY[:5] + "\x07" + TEST_KEY[5:], "control character"),
]


def assert_never_quoted(message: str) -> None:
    for piece in (TEST_KEY, SECRET, SECRET[:12], SECRET[-12:]):
        assert piece not in message


@pytest.mark.parametrize(("what", "key", "reason"), BAD_KEYS, ids=[b[0] for b in BAD_KEYS])
async def test_a_bad_fal_key_variable_is_refused_before_any_request_naming_its_source(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch, what: str, key: str, reason: str
) -> None:
    monkeypatch.setenv("FAL_KEY", key)
    with pytest.raises(errors.InvalidKeyError) as caught:
        await run_node(Node, prompt="a lighthouse")
    message = str(caught.value)
    assert "FAL_KEY" in message and reason in message and "Nothing was sent" in message
    assert "may have accepted" not in message
    assert_never_quoted(message)
    assert fake_fal.requests == []


async def test_a_bad_key_id_or_secret_variable_is_refused_naming_which(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAL_KEY")
    monkeypatch.setenv("FAL_KEY_ID", "test-key-id")
    monkeypatch.setenv("FAL_KEY_SECRET", SECRET + "\nsecond-line")
    with pytest.raises(errors.InvalidKeyError, match="FAL_KEY_SECRET") as caught:
        await run_node(Node, prompt="a lighthouse")
    assert_never_quoted(str(caught.value))
    assert fake_fal.requests == []


@pytest.mark.parametrize(("what", "data", "reason"), [
    ("two keys, one appended", f"{TEST_KEY}\n{TEST_KEY}\n".encode(), "line break"),
    ("a key with a typographic quote", f"{TEST_KEY}\u2019\n".encode(), "ASCII"),
    ("bytes that are not text", b"\xff\xfe\x00k\x00e\x00y", "not text"),
])
async def test_a_bad_key_file_is_refused_with_a_clear_error(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch, what: str, data: bytes, reason: str
) -> None:
    monkeypatch.delenv("FAL_KEY")
    store_raw(data)
    with pytest.raises(errors.InvalidKeyError) as caught:
        await run_node(Node, prompt="a lighthouse")
    message = str(caught.value)
    assert "key file" in message and reason in message and str(state_dir()) not in message
    assert_never_quoted(message)
    assert fake_fal.requests == []
    status = key_store.key_status(state_dir() / "fal_key")  # what the Settings panel shows
    assert not status.configured and reason in (status.problem or "")


async def test_a_key_file_that_is_a_folder_gives_a_clear_error(
    fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAL_KEY")
    (state_dir() / "fal_key").mkdir(parents=True)
    with pytest.raises(errors.InvalidKeyError, match="is a folder"):
        await run_node(Node, prompt="a lighthouse")
    assert "folder" in (key_store.key_status(state_dir() / "fal_key").problem or "")


def test_saving_the_key_never_follows_a_leftover_or_planted_temp_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    target = tmp_path / "elsewhere.txt"
    target.write_text("untouched")
    (state / "fal_key.tmp").symlink_to(target)  # what an old version's temp name would have followed
    leftover = state / ".fal_key.leftover.tmp"
    leftover.write_text("old")
    os.chmod(leftover, 0o644)
    key_store.save_key_file(state / "fal_key", TEST_KEY)
    assert target.read_text() == "untouched"
    assert (state / "fal_key").read_text().strip() == TEST_KEY
    assert stat.S_IMODE((state / "fal_key").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert not [p for p in state.iterdir() if p.name.endswith(".tmp") and p.name.startswith(".fal_key.")
                and p != leftover]


def test_fal_error_text_is_scrubbed_of_the_key_before_it_is_cut_to_length() -> None:
    creds = credentials.FalCredentials(TEST_KEY, "the environment variable FAL_KEY")
    for offset in (280, 290, 295, 299):  # the key straddles the 300-character cut
        body = "x" * offset + TEST_KEY + " trailing words"
        response = httpx.Response(500, text=body, request=httpx.Request("POST", "https://queue.fal.run/x"))
        error = errors.error_from_response(response, what="the submit", key_source=creds.source, scrub=creds.scrub)
        message = str(error)
        for size in (6, 8, 12):
            assert not [SECRET[i:i + size] for i in range(len(SECRET) - size + 1) if SECRET[i:i + size] in message]


async def test_the_key_goes_only_to_the_queue_base_url_even_when_fal_answers_other_urls(
    fake_fal: FakeFal,
) -> None:
    fake_fal.faults.foreign_urls = True
    images, _, _ = await run_node(Node, prompt="a lighthouse", num_images=2)
    assert images.shape[0] == 2
    assert fake_fal.foreign_requests == []
    assert [r for r in fake_fal.requests if r.kind in ("status", "stream")]  # followed on the queue itself
