"""Uploads to fal's storage, the way fal's own clients send files: a CDN token, then the upload.

    POST {FAL_REST_BASE_URL}/storage/auth/token?storage_type=fal-cdn-v3   (Authorization: Key ...)
         -> {"token", "token_type", "base_url", "expires_at"}
    POST {base_url}/files/upload   (Authorization: <token_type> <token>, raw bytes)
         -> {"access_url": ...}

The key goes only to fal's REST API for the token; the upload itself carries the short-lived token.
Tokens are reused until shortly before they expire, and a file already uploaded in the last hour is
not uploaded again (by content hash). Files on disk (videos) are streamed, never read whole into memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import config
from .aio import Deadline
from .credentials import FalCredentials
from .errors import UploadError, error_from_response
from .http import send
from .process_state import current

TOKEN_MARGIN_S = 60.0
UPLOAD_CACHE_S = 3600.0
# fal's clients send a file of up to 100 MiB in one request (larger ones in parts, which this pack does not do).
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
UPLOAD_CHUNK_BYTES = 1024 * 1024
UPLOADS_KEPT = 1000  # uploads remembered at most (the oldest are forgotten first)

@dataclass
class _CdnToken:
    token: str = field(repr=False)
    token_type: str
    base_url: str
    valid_until: float  # monotonic


def _key_id(credentials: FalCredentials) -> str:
    return hashlib.sha256(credentials.key.encode("utf-8")).hexdigest()


async def _token(credentials: FalCredentials) -> _CdnToken:
    cached = current().cdn_tokens.get(_key_id(credentials))
    if cached is not None and cached.valid_until > time.monotonic():
        return cached
    response = await send(
        "POST",
        f"{config.rest_base_url()}/storage/auth/token",
        what="getting a fal storage token",
        deadline=Deadline(30.0),
        headers={"Authorization": credentials.authorization, "Accept": "application/json"},
        params={"storage_type": "fal-cdn-v3"},
        json={},
    )
    if response.status_code >= 400:
        raise error_from_response(response, what="getting a fal storage token", key_source=credentials.source,
                                  scrub=credentials.scrub)
    try:
        data = response.json()
        expires = datetime.fromisoformat(str(data["expires_at"]).replace("Z", "+00:00"))
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=timezone.utc)
        lifetime = (expires - datetime.now(timezone.utc)).total_seconds()
        token = _CdnToken(str(data["token"]), str(data["token_type"]), str(data["base_url"]).rstrip("/"),
                          time.monotonic() + max(0.0, lifetime - TOKEN_MARGIN_S))
    except (ValueError, KeyError, TypeError) as exc:
        raise UploadError("fal's storage answered with a token this pack cannot read.") from exc
    current().cdn_tokens[_key_id(credentials)] = token
    return token


async def upload(
    credentials: FalCredentials, data: bytes, *, content_type: str, file_name: str, sha256: str | None = None
) -> str:
    """The fal URL of `data`, uploaded now or in the last hour (`sha256`: its hex digest, if known)."""
    digest = sha256 or hashlib.sha256(data).hexdigest()
    return await _upload(credentials, data, digest=digest, content_type=content_type, file_name=file_name,
                         what="an image", deadline_s=120.0)


async def upload_file(credentials: FalCredentials, path: Path, *, content_type: str, file_name: str,
                      sha256: str | None = None) -> str:
    """The fal URL of the file at `path` (the caller keeps it within `MAX_UPLOAD_BYTES`), uploaded now or in the
    last hour (`sha256`: its hex digest, if known). The file is streamed from disk, never read whole into memory;
    the upload may take 2 minutes plus a second per MiB."""
    size = path.stat().st_size
    digest = sha256 or await asyncio.to_thread(file_sha256, path)

    async def chunks() -> AsyncIterator[bytes]:
        with path.open("rb") as handle:
            while chunk := handle.read(UPLOAD_CHUNK_BYTES):
                yield chunk

    return await _upload(credentials, chunks, digest=digest, content_type=content_type, file_name=file_name,
                         what="a video", deadline_s=120.0 + size / 2**20, size=size)


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of the file at `path`, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(UPLOAD_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


async def _upload(credentials: FalCredentials, content: bytes | Callable[[], AsyncIterator[bytes]], *, digest: str,
                  content_type: str, file_name: str, what: str, deadline_s: float, size: int | None = None) -> str:
    cached = current().uploads.get(digest)
    if cached is not None and time.monotonic() - cached[1] < UPLOAD_CACHE_S:
        return cached[0]
    length = {"Content-Length": str(size)} if size is not None else {}
    for attempt in (1, 2):
        token = await _token(credentials)
        response = await send(
            "POST",
            f"{token.base_url}/files/upload",
            what=f"uploading {what} to fal's storage",
            deadline=Deadline(deadline_s),
            headers={"Authorization": f"{token.token_type} {token.token}", "Content-Type": content_type,
                     "X-Fal-File-Name": file_name, **length},
            content=content,
        )
        if response.status_code in (401, 403) and attempt == 1:
            current().cdn_tokens.pop(_key_id(credentials), None)  # an expired token: get a new one once
            continue
        break
    if response.status_code >= 400:
        error = error_from_response(response, what=f"uploading {what}", key_source=credentials.source,
                                    scrub=credentials.scrub)
        raise UploadError(f"Could not upload {what} to fal's storage: {error}")
    try:
        url = str(response.json()["access_url"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UploadError("fal's storage accepted an upload but its answer could not be read.") from exc
    _remember_upload(digest, url)
    return url


def _remember_upload(digest: str, url: str) -> None:
    """Remember an upload for the next hour; forget those older than that, and the oldest past `UPLOADS_KEPT`
    (a long run of edits with new references would otherwise hold every one of them for good)."""
    uploads = current().uploads
    now = time.monotonic()
    uploads.pop(digest, None)
    uploads[digest] = (url, now)  # the newest last: the dict is in upload order
    for old in list(uploads):
        if len(uploads) <= UPLOADS_KEPT and now - uploads[old][1] < UPLOAD_CACHE_S:
            break
        del uploads[old]
