"""The state database (journal, spend, settings) is private to the user and never stops a run: a damaged one
is kept aside and a new one started."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from comfy_like import pack_module, run_node
from fake_fal import FakeFal

errors = pack_module("fal_transport.errors")
journal_module = pack_module("fal_transport.journal")
state_module = pack_module("fal_transport.state")
Node = pack_module("nodes.text_to_image").FalGrokImagineImage


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_state_database_is_readable_by_the_user_only(fake_fal: FakeFal) -> None:
    await run_node(Node, prompt="a lighthouse")
    state = Path(os.environ["GROK_IMAGINE_STATE_DIR"])
    files = [p for p in state.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"}
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert {mode(state), mode(state / "processes")} == {0o700}


@pytest.mark.parametrize("windows", [False, True])
def test_a_state_directory_open_to_others_is_closed_to_them_where_permissions_are_posix_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, windows: bool
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    monkeypatch.setattr(state_module, "WINDOWS", windows)  # on Windows, %LOCALAPPDATA%'s own permissions hold
    journal_module.Journal(state).record_submitted("req-1", "xai/grok-imagine-image", "f" * 64, sync_mode=False)
    assert mode(state) == (0o755 if windows else 0o700)
    assert journal_module.Journal(state).entries()["req-1"].state == "submitted"


async def test_a_damaged_state_database_is_kept_aside_and_a_new_one_started(
    fake_fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    state = Path(os.environ["GROK_IMAGINE_STATE_DIR"])
    state.mkdir(parents=True)
    damaged = b"this was a database until the disk failed\n" * 200
    (state / "state.sqlite3").write_bytes(damaged)
    images, _, _ = await run_node(Node, prompt="a lighthouse")
    assert images.shape[0] == 1
    assert (state / "state.sqlite3.damaged").read_bytes() == damaged
    assert "the state database is damaged" in caplog.text
    assert fake_fal.submits[0].request_id in journal_module.Journal(state).entries()


async def test_a_state_directory_that_cannot_be_used_refuses_the_run_before_anything_is_paid(
    fake_fal: FakeFal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a file").write_text("not a folder")
    monkeypatch.setenv("GROK_IMAGINE_STATE_DIR", str(tmp_path / "a file" / "state"))
    with pytest.raises(errors.StateError) as caught:
        await run_node(Node, prompt="a lighthouse")
    message = str(caught.value)
    assert "state database" in message and "GROK_IMAGINE_STATE_DIR" in message and str(tmp_path) not in message
    assert fake_fal.submits == []
