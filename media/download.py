"""Fetch the bytes of a result image, with limits: scheme, public addresses, deadline over the whole
body, byte cap.

Image hosts never receive the fal key: these requests carry no `Authorization` header. Images are
fetched only from public addresses: the host of the URL, and of every redirect on the way (followed
here, hop by hop, at most `client.MAX_REDIRECTS`), is resolved and refused when any of its addresses
is loopback, private, link-local or otherwise not public, so a result cannot make the ComfyUI server
fetch from its own network. When fal's queue base URL (`FAL_QUEUE_BASE_URL`) is itself local (a
local proxy, the tests' fake fal) images may come from local addresses too. A host name that does
not resolve here is left to the connection (it fails, or a proxy resolves it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import httpx

from ..fal_transport import config
from ..fal_transport.aio import Deadline, within
from ..fal_transport.errors import ResultError
from ..fal_transport.http import (
    DEFAULT_RETRY,
    MAX_REDIRECTS,
    RETRY_STATUS_IDEMPOTENT,
    LoopClient,
    Tries,
    lease,
    retry,
)

log = logging.getLogger("grok_imagine_fal")
T = TypeVar("T")

MAX_IMAGE_BYTES = 64 * 1024 * 1024
ALLOWED_SCHEMES = frozenset({"https", "http", "data"})


class ImageFetchError(ResultError):
    """A result image could not be fetched."""


def _problem(exc: BaseException, noun: str) -> str:
    """What went wrong with a download of an image or a video (`noun`), in words."""
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return f"the connection closed before the whole {noun} arrived"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    if isinstance(exc, httpx.TimeoutException):
        return "no data arrived in time"
    return type(exc).__name__


def _again(outcome: object, failure: BaseException | None) -> bool:
    if isinstance(outcome, httpx.Response):
        return outcome.status_code in RETRY_STATUS_IDEMPOTENT
    return failure is not None and not isinstance(failure, asyncio.TimeoutError)


async def retried_download(attempt: Callable[[LoopClient, bool], Awaitable[T]], *, timeout_s: float,
                           what: str) -> Tries:
    """`attempt(loop client, local)` (local: fal's base URL is itself local) until it gives its result or an answer
    not worth another try (a response), all attempts within `timeout_s`: what downloading `what` came to."""
    deadline = Deadline(timeout_s)
    try:
        async with lease() as loop_client:
            local = await within(deadline.remaining(), local_base())
            return await retry(lambda: attempt(loop_client, local), deadline=deadline, policy=DEFAULT_RETRY,
                               again=_again, what=f"downloading {what}")
    except asyncio.TimeoutError as exc:
        return Tries(None, exc, 0, out_of_time=True)


def download_error(tries: Tries, error: type[ResultError], *, what: str, host: str, timeout_s: float,
                   request_id: str | None) -> ResultError:
    """The error a user reads for a download of `what` ("a result image") that did not succeed."""
    outcome, failure = tries.outcome, tries.failure
    problem = _problem(failure, what.rsplit(" ", 1)[-1]) if failure is not None else ""
    what = what[:1].upper() + what[1:]
    if isinstance(outcome, httpx.Response):
        problem = f"HTTP {outcome.status_code}"
        if outcome.status_code not in RETRY_STATUS_IDEMPOTENT:
            return error(f"{what} could not be downloaded from {host} ({problem}). fal may have expired it.",
                         request_id=request_id)
    if tries.out_of_time:
        return error(
            f"Downloading {what[:1].lower()}{what[1:]} from {host} took longer than {timeout_s:g} s "
            f"(GROK_IMAGINE_DOWNLOAD_TIMEOUT{f'; last problem: {problem}' if problem else ''}). Check your "
            "connection, or raise GROK_IMAGINE_DOWNLOAD_TIMEOUT.",
            request_id=request_id)
    return error(f"{what} could not be downloaded from {host} after {tries.attempts} attempts ({problem}). Load it "
                 "again later by its request id.", request_id=request_id)


def _data_uri_bytes(url: str, request_id: str | None) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header:
        raise ImageFetchError("fal returned an image data URI that is not base64.", request_id=request_id)
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise ImageFetchError(
            f"fal returned an image larger than {MAX_IMAGE_BYTES // 2**20} MiB; refusing to load it.",
            request_id=request_id,
        )
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ImageFetchError("fal returned an image data URI that does not decode.", request_id=request_id) from exc


async def _addresses(host: str, port: int) -> list[str] | None:
    """The addresses `host` stands for, or None when it does not resolve here."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return None
    return [str(info[4][0]).partition("%")[0] for info in found]


def _not_public(address: str) -> str | None:
    """What kind of non-public address `address` is, or None when it is public."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        return None
    return next((kind for kind, yes in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                                        ("private", ip.is_private)) if yes), "non-public")


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname or "", port or (443 if parts.scheme == "https" else 80)


async def local_base() -> bool:
    """True when fal's queue base URL is itself on a local (non-public) address: images may then be local too."""
    addresses = await _addresses(*_host_port(config.queue_base_url()))
    return bool(addresses) and any(_not_public(address) for address in addresses)


async def _refuse_non_public(url: str, request_id: str | None, what: str = "an image",
                            error: type[ResultError] = ImageFetchError) -> None:
    """Refuse (with `error`) a URL of fal's result, `what` it points at, on a non-public address."""
    host, port = _host_port(url)
    for address in await _addresses(host, port) or ():
        kind = _not_public(address)
        if kind is not None:
            raise error(
                f"fal's result points at {what} on {host}, a {kind} address ({address}); results are "
                "loaded only from public addresses (unless FAL_QUEUE_BASE_URL is itself local), so nothing was "
                "fetched from it. fal never does this: check FAL_QUEUE_BASE_URL and any proxy between ComfyUI "
                "and fal.",
                request_id=request_id,
            )


@contextlib.asynccontextmanager
async def final_response(loop_client: LoopClient, url: str, request_id: str | None, *, local: bool,
                         what: str = "an image", error: type[ResultError] = ImageFetchError
                         ) -> AsyncIterator[httpx.Response]:
    """The response at the end of `url`'s redirects, streamed (its body not read yet), following them hop by hop
    with every hop's address checked (unless fal's queue base URL is itself `local`). For images and videos alike."""
    for _ in range(MAX_REDIRECTS + 1):
        if not local:
            await _refuse_non_public(url, request_id, what, error)
        async with loop_client.client.stream("GET", url, follow_redirects=False) as response:
            if not response.is_redirect:
                yield response
                return
            url = str(response.request.url.join(response.headers["location"]))  # httpx refuses schemes but http(s)
    raise error(f"A result file on {urlsplit(url).netloc} ({what}) redirects in a loop; it cannot be downloaded. Try "
                "loading it again later by its request id.", request_id=request_id)


async def _download(loop_client: LoopClient, url: str, request_id: str | None, local: bool) -> bytes | httpx.Response:
    """The body, or the response to decide on (an error)."""
    async with final_response(loop_client, url, request_id, local=local) as response:
        if response.status_code != 200:
            await response.aread()
            return response
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
            raise ImageFetchError(
                f"A result image is {int(declared) // 2**20} MiB, over the {MAX_IMAGE_BYTES // 2**20} MiB "
                "limit; refusing to download it.",
                request_id=request_id,
            )
        chunks = bytearray()
        async for chunk in response.aiter_bytes():
            chunks += chunk
            if len(chunks) > MAX_IMAGE_BYTES:
                raise ImageFetchError(
                    f"A result image is larger than {MAX_IMAGE_BYTES // 2**20} MiB; download stopped.",
                    request_id=request_id,
                )
        return bytes(chunks)


async def fetch_image_bytes(url: str, *, timeout_s: float, request_id: str | None = None) -> bytes:
    """The bytes of one image URL, within `timeout_s` for all attempts and the whole body."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise ImageFetchError(
            f"fal returned an image URL with scheme {scheme or '(none)'!r}; only https, http and data "
            "URLs are loaded.",
            request_id=request_id,
        )
    if scheme == "data":
        return _data_uri_bytes(url, request_id)
    tries = await retried_download(lambda loop_client, local: _download(loop_client, url, request_id, local),
                                   timeout_s=timeout_s, what="a result image")
    if isinstance(tries.outcome, bytes):
        return tries.outcome
    raise download_error(tries, ImageFetchError, what="a result image", host=urlsplit(url).netloc,
                         timeout_s=timeout_s, request_id=request_id) from tries.failure
