"""The key file that Settings > Grok Imagine (fal) writes, and what may be shown about the key.

No function here returns the key, and no answer names an absolute path (the state directory's
path holds the user name).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .credentials import KEY_FILE_SOURCE, checked_key, read_key_file, resolve_credentials
from .errors import FalConfigError, MissingCredentialsError
from .state import private_directory


@dataclass(frozen=True)
class KeyStatus:
    """What may be shown about the configured key: never the key, at most its last 4 characters."""

    configured: bool
    source: str | None
    last4: str
    key_file_present: bool
    environment_wins: bool
    problem: str | None = None  # why the configured key cannot be used, if it cannot

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def key_status(key_file: Path) -> KeyStatus:
    try:
        file_present = read_key_file(key_file) is not None
    except FalConfigError:
        file_present = True
    try:
        credentials = resolve_credentials(key_file)
    except MissingCredentialsError:
        return KeyStatus(False, None, "", file_present, False)
    except FalConfigError as exc:
        return KeyStatus(False, None, "", file_present, False, problem=str(exc))
    from_env = credentials.source != KEY_FILE_SOURCE
    return KeyStatus(True, credentials.source, credentials.last4, file_present, from_env and file_present)


def save_key_file(key_file: Path, key: object) -> None:
    """Store a key for this machine, readable by the owner only; `FalConfigError` if it cannot be a key."""
    if not isinstance(key, str):
        raise FalConfigError("The key must be text: paste the key from https://fal.ai/dashboard/keys.")
    _write_private(key_file, checked_key(key, "the key you pasted") + "\n")


def _write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by the owner only, whole or not at all: a fresh temporary file of a
    unique name (never an old leftover, never a link; `mkstemp` makes it 0600), then renamed over `path`."""
    private_directory(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_key_file(key_file: Path) -> bool:
    try:
        key_file.unlink()
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        key_file.rmdir()
    return True
