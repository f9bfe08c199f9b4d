"""The fal API key: where it comes from, whether it can be a key, and how it leaves this process.

The key is read at call time from `FAL_KEY` (or `FAL_KEY_ID` + `FAL_KEY_SECRET`), falling back to
the key file that Settings > Grok Imagine (fal) writes. Every source is checked the same way
before anything is sent: printable ASCII with no whitespace inside. A bad key is refused with a
message that names its source and never quotes it. The key is never part of a `repr`, a message
or a log line, and goes only to fal's queue, fal's storage-token endpoint and fal's balance endpoint.

The key file that Settings > Grok Imagine (fal) writes is kept here too (`save_key_file`,
`remove_key_file`), and what may be shown about the key (`key_status`): no function returns the
key, and no answer names an absolute path (the state directory's path holds the user name).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import FalConfigError, InvalidKeyError, MissingCredentialsError
from .state import private_directory

KEY_ENV = "FAL_KEY"
KEY_ID_ENV = "FAL_KEY_ID"
KEY_SECRET_ENV = "FAL_KEY_SECRET"
KEY_FILE_SOURCE = "the key file (fal_key in the pack's state directory, saved from Settings > Grok Imagine (fal))"
MAX_KEY_CHARS = 256
_THE_KEY_FILE = "The key file (fal_key in the pack's state directory)"

MISSING_KEY_HELP = (
    "No fal API key is configured. Create a key at https://fal.ai/dashboard/keys, then set the FAL_KEY "
    "environment variable before starting ComfyUI (Linux/macOS: export FAL_KEY=...; Windows: set "
    "FAL_KEY=...), or paste it into Settings > Grok Imagine (fal) and press Save key."
)


def key_problem(key: str) -> str | None:
    """Why `key` (already stripped of surrounding whitespace) cannot be a fal key; None if it can.
    Never quotes the key."""
    if not key:
        return "it is empty"
    if len(key) > MAX_KEY_CHARS:
        return f"it is longer than {MAX_KEY_CHARS} characters"
    if "\n" in key or "\r" in key:
        return "it holds a line break (two keys pasted one after the other, or a key split over lines)"
    if any(ch.isspace() for ch in key):
        return "it holds a space or a tab"
    if not key.isascii():
        return "it holds a character that is not plain ASCII (a typographic quote or an accent, pasted by an editor)"
    if not key.isprintable():
        return "it holds an invisible control character"
    return None


def checked_key(key: str, source: str) -> str:
    """`key` stripped, if it can be a fal key; raises `InvalidKeyError` naming `source` otherwise."""
    key = key.strip()
    problem = key_problem(key)
    if problem is not None:
        raise InvalidKeyError(
            f"The fal key from {source} is not usable: {problem}. Nothing was sent to fal. Copy the key "
            "again from https://fal.ai/dashboard/keys (one key, on one line) and set it again."
        )
    return key


@dataclass(frozen=True)
class FalCredentials:
    """A checked fal key and a description of where it came from."""

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
        """`text` (from elsewhere) with the key and its secret half removed."""
        return scrub_secrets(text, self.key)


def scrub_secrets(text: str, key: str) -> str:
    """`text` with `key`, and the secret half of an `id:secret` key, replaced by "[redacted]"."""
    for secret in sorted({key, key.rpartition(":")[2]}, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


def read_key_file(path: Path) -> str | None:
    """The key stored in `path`, None when there is none; `InvalidKeyError` when it is unreadable."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        raise InvalidKeyError(
            f"{_THE_KEY_FILE} is a folder, not a file. Remove that folder, "
            "then save the key again in Settings > Grok Imagine (fal)."
        ) from None
    except OSError as exc:
        raise InvalidKeyError(
            f"{_THE_KEY_FILE} cannot be read ({exc.strerror}). Check its "
            "permissions, or save the key again in Settings > Grok Imagine (fal)."
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKeyError(
            f"{_THE_KEY_FILE} is not text. Remove the key in Settings > Grok "
            "Imagine (fal) and save it again."
        ) from None
    text = text.strip()
    return checked_key(text, KEY_FILE_SOURCE) if text else None


def resolve_credentials(key_file: Path | None = None) -> FalCredentials:
    """The key to use now: environment first, then `key_file`; raises when there is none or it is bad."""
    key = os.environ.get(KEY_ENV, "")
    if key.strip():
        source = f"the environment variable {KEY_ENV}"
        return FalCredentials(checked_key(key, source), source)
    key_id = os.environ.get(KEY_ID_ENV, "")
    secret = os.environ.get(KEY_SECRET_ENV, "")
    if key_id.strip() and secret.strip():
        key_id = checked_key(key_id, f"the environment variable {KEY_ID_ENV}")
        secret = checked_key(secret, f"the environment variable {KEY_SECRET_ENV}")
        return FalCredentials(f"{key_id}:{secret}", f"the environment variables {KEY_ID_ENV} + {KEY_SECRET_ENV}")
    if key_file is not None:
        stored = read_key_file(key_file)
        if stored:
            return FalCredentials(stored, KEY_FILE_SOURCE)
    raise MissingCredentialsError(MISSING_KEY_HELP)


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
