"""The fal API key: where it comes from, and how it leaves this process (only to fal's queue).

The key is read at call time from `FAL_KEY` (or `FAL_KEY_ID` + `FAL_KEY_SECRET`), falling back
to an optional key file. It is never part of `repr`, of a message or of a log line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MissingCredentialsError

KEY_ENV = "FAL_KEY"
KEY_ID_ENV = "FAL_KEY_ID"
KEY_SECRET_ENV = "FAL_KEY_SECRET"

MISSING_KEY_HELP = (
    "No fal API key is configured. Create a key at https://fal.ai/dashboard/keys, then set the "
    "FAL_KEY environment variable before starting ComfyUI (Linux/macOS: export FAL_KEY=...; "
    "Windows: set FAL_KEY=...) and restart ComfyUI."
)


@dataclass(frozen=True)
class FalCredentials:
    """A fal key and a human description of where it came from."""

    key: str = field(repr=False)
    source: str

    @property
    def authorization(self) -> str:
        """Value of the `Authorization` header for fal's queue and REST API."""
        return f"Key {self.key}"

    @property
    def last4(self) -> str:
        return self.key[-4:] if len(self.key) >= 8 else ""

    def scrub(self, text: str) -> str:
        """Remove the key (and its secret half) from text that came from elsewhere."""
        for secret in {self.key, self.key.rpartition(":")[2]}:
            if len(secret) >= 4:
                text = text.replace(secret, "[redacted]")
        return text


def read_key_file(path: Path) -> str | None:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return key or None


def resolve_credentials(key_file: Path | None = None) -> FalCredentials:
    """The key to use now: environment first, then `key_file`; raises when there is none."""
    key = os.environ.get(KEY_ENV, "").strip()
    if key:
        return FalCredentials(key, f"environment variable {KEY_ENV}")
    key_id = os.environ.get(KEY_ID_ENV, "").strip()
    secret = os.environ.get(KEY_SECRET_ENV, "").strip()
    if key_id and secret:
        return FalCredentials(f"{key_id}:{secret}", f"environment variables {KEY_ID_ENV} + {KEY_SECRET_ENV}")
    if key_file is not None:
        key = read_key_file(key_file)
        if key:
            return FalCredentials(key, f"key file {key_file}")
    raise MissingCredentialsError(MISSING_KEY_HELP)


@dataclass(frozen=True)
class KeyStatus:
    """What may be shown about the configured key: never the key itself, at most its last 4 characters."""

    configured: bool
    source: str | None
    last4: str
    key_file_present: bool
    environment_wins: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "configured": self.configured,
            "source": self.source,
            "last4": self.last4,
            "key_file_present": self.key_file_present,
            "environment_wins": self.environment_wins,
        }


def key_status(key_file: Path) -> KeyStatus:
    file_present = read_key_file(key_file) is not None
    try:
        credentials = resolve_credentials(key_file)
    except MissingCredentialsError:
        return KeyStatus(False, None, "", file_present, False)
    from_env = credentials.source.startswith("environment")
    return KeyStatus(True, credentials.source, credentials.last4, file_present, from_env and file_present)


def validate_key(key: object) -> str:
    """The key, stripped, if it looks like a fal key; raises ValueError with a reason otherwise."""
    if not isinstance(key, str) or not key.strip():
        raise ValueError("The key is empty.")
    key = key.strip()
    if len(key) > 256 or any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ValueError("That does not look like a fal key (one line, no spaces).")
    return key


def save_key_file(key_file: Path, key: str) -> None:
    """Store a key for this machine, readable by the owner only."""
    key = validate_key(key)
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = key_file.with_name(key_file.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    os.replace(tmp, key_file)


def remove_key_file(key_file: Path) -> bool:
    try:
        key_file.unlink()
    except FileNotFoundError:
        return False
    return True
