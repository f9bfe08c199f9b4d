"""One exception hierarchy for everything that can go wrong, and the mapping from fal's answers to it.

Every message is written for the person in front of ComfyUI: what happened, the input, setting or
request id involved, and what to do next. One meaning per class. No message ever holds the key:
text that came from elsewhere is scrubbed of it before it is cut to length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

CONTENT_POLICY_TYPES = frozenset({"content_policy_violation", "content_moderation", "nsfw"})
# How fal's 403 says the account's balance is used up ("User is locked. Reason: Exhausted balance. Top up
# your balance at fal.ai/dashboard/billing." or "User is locked. Reason: TOP_UP.")
EXHAUSTED_BALANCE_SIGNS = ("exhausted balance", "top_up", "top up your balance")
ACCOUNT_LOCKED_SIGN = "user is locked"
TOP_UP_HELP = "Top up at fal's dashboard (https://fal.ai/dashboard/billing)"
DETAIL_MAX_CHARS = 300


class FalError(Exception):
    """Base of every error this pack raises."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        self.request_id = request_id
        self.reason = message  # the message without the request id, for places that show it apart
        if request_id and request_id not in message:
            message = f"{message} (fal request id: {request_id})"
        super().__init__(message)


class FalConfigError(FalError):
    """A setting (environment variable, key file, stored setting) is missing or unusable."""


class StateError(FalConfigError):
    """The pack's state database (journal, spend, settings) cannot be read or written."""


class MissingCredentialsError(FalConfigError):
    """No fal API key is configured."""


class InvalidKeyError(FalConfigError):
    """A configured fal key cannot be a key (line breaks, spaces, non-ASCII); nothing was sent with it."""


class InvalidInputError(FalError):
    """A node input was refused by the pack's own checks, before anything was sent to fal."""

    def __init__(self, message: str, *, field: str, request_id: str | None = None) -> None:
        self.field = field
        super().__init__(message, request_id=request_id)


class SpendLimitError(FalError):
    """The run would take today's spend past the daily limit; nothing was sent."""


class BalanceError(FalError):
    """The fal balance cannot pay for the run: refused by the pack before anything was sent, or by fal
    (HTTP 403 "User is locked. Reason: Exhausted balance")."""


class AuthenticationError(FalError):
    """fal refused the key (HTTP 401/403), or has locked the account for another reason."""


class InputRejectedError(FalError):
    """fal's own validation rejected the request's inputs (HTTP 422): `field` names the input, `fal_type` is
    fal's machine-readable kind of error (`file_download_error` when fal could not read an input file)."""

    def __init__(self, message: str, *, field: str | None = None, fal_type: str | None = None,
                 request_id: str | None = None) -> None:
        self.field = field
        self.fal_type = fal_type
        super().__init__(message, request_id=request_id)


class ContentPolicyError(FalError):
    """fal (or xAI) refused the prompt or an image under its content policy."""

    def __init__(self, message: str, *, fal_reason: str = "", request_id: str | None = None) -> None:
        self.fal_reason = fal_reason  # fal's own words
        super().__init__(message, request_id=request_id)


class JobFailedError(FalError):
    """The request reached fal and completed with an error."""


class RateLimitedError(FalError):
    """fal kept answering HTTP 429 (rate limit) until the retries ran out."""


class ServerError(FalError):
    """fal answered with a server error (HTTP 5xx) that retries did not get past."""


class UnexpectedAnswerError(FalError):
    """fal answered with another HTTP error (400, 405, ...): the pack and fal disagree."""


class NetworkError(FalError):
    """fal could not be reached (connection refused, DNS, timeouts) within the retries; nothing was sent."""


class SubmitUncertainError(FalError):
    """A submit failed in a way where fal may have accepted (and will bill) the request."""


class FalTimeoutError(FalError, TimeoutError):
    """A configured time limit passed; the request was cancelled at fal (or given up)."""


class RequestCancelledError(FalError):
    """The user pressed Cancel; fal was asked to stop the request."""


class ResultError(FalError):
    """fal's result could not be read (malformed body, missing images, bad image data)."""


class RequestNotFoundError(FalError):
    """fal does not know the request id (a wrong id, or fal no longer keeps the result)."""


class UploadError(FalError):
    """A reference image could not be uploaded to fal's storage."""


def _detail(response: httpx.Response, scrub: Callable[[str], str]) -> tuple[str, str | None, str | None]:
    """(human text, field name, error type) from a fal error body; scrubbed, then cut to length."""
    content_type = response.headers.get("content-type", "")
    error_type = response.headers.get("x-fal-error-type")
    field_name = None
    try:
        body = response.json()
    except ValueError:
        if "html" in content_type or response.text.lstrip().startswith("<"):
            return "an HTML error page instead of fal's JSON", None, error_type
        text = response.text.strip() or "an empty body"
    else:
        text = str(body)
        if isinstance(body, dict):
            error_type = body.get("error_type") or error_type
            detail = body.get("detail", body)
            text = str(detail)
            if isinstance(detail, list) and detail and isinstance(detail[0], dict):
                first = detail[0]
                loc = first.get("loc") or []  # ["body", field, (index or sub-field)...]
                field_name = next((part for part in loc if isinstance(part, str) and part != "body"), None)
                error_type = first.get("type") or error_type
                text = str(first.get("msg", detail))
    text = scrub(text)
    if len(text) > DETAIL_MAX_CHARS:
        text = text[:DETAIL_MAX_CHARS] + "…"
    return text, field_name, (str(error_type) if error_type else None)


def content_policy_error(reason: str, request_id: str | None) -> ContentPolicyError:
    return ContentPolicyError(
        f"fal refused the request under its content policy: {reason} Change the prompt (or the input "
        "images) and queue again; refused requests may still be billed.",
        fal_reason=reason,
        request_id=request_id,
    )


def error_from_response(
    response: httpx.Response,
    *,
    what: str,
    key_source: str,
    scrub: Callable[[str], str],
    request_id: str | None = None,
) -> FalError:
    """The exception a user can act on for a fal error answer (`what`: "the submit to ...")."""
    request_id = request_id or response.headers.get("x-fal-request-id")
    text, field_name, error_type = _detail(response, scrub)
    code = response.status_code
    lowered = text.lower()
    if code == 403 and any(sign in lowered for sign in EXHAUSTED_BALANCE_SIGNS):
        return BalanceError(
            f"fal refused {what} because your fal balance is used up (fal: \"{text}\"). {TOP_UP_HELP}, then "
            "queue again.",
            request_id=request_id,
        )
    if code == 403 and ACCOUNT_LOCKED_SIGN in lowered:
        return AuthenticationError(
            f"fal has locked your fal account (HTTP 403 during {what}; fal: \"{text}\"). The key is not the "
            "problem: check your account at https://fal.ai/dashboard, or write to support@fal.ai.",
            request_id=request_id,
        )
    if code in (401, 403):
        return AuthenticationError(
            f"fal rejected the API key (HTTP {code}) during {what}. The key from {key_source} is wrong, "
            "revoked or lacks access: create a new key at https://fal.ai/dashboard/keys, set FAL_KEY to it "
            "(or save it in Settings > Grok Imagine (fal)) and queue again.",
            request_id=request_id,
        )
    if code == 404 and request_id:
        return RequestNotFoundError(
            f"fal does not know this request (HTTP 404 during {what}). Check the request id; fal keeps a "
            "result for about an hour after it completes (minutes for large sync-mode results).",
            request_id=request_id,
        )
    if error_type in CONTENT_POLICY_TYPES or "content polic" in text.lower():
        return content_policy_error(text, request_id)
    if code == 422:
        named = f"input '{field_name}'" if field_name else "the inputs"
        return InputRejectedError(
            f"fal rejected {named}: {text}. Fix that input and queue again.",
            field=field_name,
            fal_type=error_type,
            request_id=request_id,
        )
    if code == 429:
        return RateLimitedError(
            f"fal is rate-limiting this key (HTTP 429) during {what} and retries did not get through. "
            "Wait a minute or run fewer Grok nodes at once, then queue again.",
            request_id=request_id,
        )
    if code >= 500:
        return ServerError(
            f"fal had a server error (HTTP {code}) during {what}: {text}. This is usually temporary; "
            "queue again in a moment.",
            request_id=request_id,
        )
    return UnexpectedAnswerError(
        f"fal answered HTTP {code} during {what}: {text}. If this keeps happening, update the pack.",
        request_id=request_id,
    )
