"""The pack's private files: a state directory only the user can enter, files only the user can read,
written whole or not at all, and a lock that serialises writers across ComfyUI processes.

The lock is an advisory lock on a separate `<name>.lock` file (`fcntl.flock` on POSIX, `msvcrt.locking`
on Windows), so a file that is replaced by a rename (compaction) stays protected.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)

    def _unlock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


_thread_lock = threading.Lock()  # flock is per open file, not per thread: serialise this process's threads too


def ensure_private_dir(directory: Path) -> Path:
    """Create `directory` (mode 0700) if needed, and take group/other permissions off it if it has them."""
    directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if os.name != "nt":
        mode = stat.S_IMODE(directory.stat().st_mode)
        if mode & 0o077 and directory.stat().st_uid == os.getuid():
            os.chmod(directory, mode & ~0o077)
    return directory


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by the owner only, atomically.

    The temporary file is a fresh one with a unique name (never an old leftover, never a symlink),
    made 0600 before a byte is written, then renamed over `path`."""
    ensure_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def append_private(path: Path, data: bytes) -> None:
    """Append `data` to `path` (created 0600) in one write; call it with `locked(path)` held."""
    ensure_private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of `path` (across threads and processes) for the block."""
    ensure_private_dir(path.parent)
    lock_path = path.with_name(path.name + ".lock")
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    with _thread_lock:
        fd = os.open(lock_path, flags, FILE_MODE)
        try:
            _lock_fd(fd)
            try:
                yield
            finally:
                _unlock_fd(fd)
        finally:
            os.close(fd)
