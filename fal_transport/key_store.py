"""The key file that Settings > Grok Imagine (fal) writes, and what may be shown about the key.

No function here returns the key, and no answer names an absolute path (the state directory's
path holds the user name).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .credentials import KEY_FILE_SOURCE, checked_key, read_key_file, resolve_credentials
from .errors import FalConfigError, MissingCredentialsError
from .private_files import write_private


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
    write_private(key_file, checked_key(key, "the key you pasted") + "\n")


def remove_key_file(key_file: Path) -> bool:
    try:
        key_file.unlink()
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        key_file.rmdir()
    return True
