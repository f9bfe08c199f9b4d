"""One exception hierarchy for everything that can go wrong talking to fal.

Every message is written for the person in front of ComfyUI: it says what happened, names the
input, variable or request id involved, and what to do next. No message ever contains the key.
"""

from __future__ import annotations


class FalError(Exception):
    """Base of every error this pack raises about a fal request."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        self.request_id = request_id
        if request_id and request_id not in message:
            message = f"{message} (fal request id: {request_id})"
        super().__init__(message)


class FalConfigError(FalError):
    """A setting (environment variable or key file) is missing or unusable."""


class MissingCredentialsError(FalConfigError):
    """No fal API key is configured."""


class AuthenticationError(FalError):
    """fal refused the key (HTTP 401/403)."""


class InvalidInputError(FalError):
    """fal rejected the request's inputs (HTTP 422)."""

    def __init__(self, message: str, *, field: str | None = None, request_id: str | None = None) -> None:
        self.field = field
        super().__init__(message, request_id=request_id)


class ContentPolicyError(FalError):
    """fal (or xAI) refused the prompt or an image under its content policy."""


class JobFailedError(FalError):
    """The request reached fal and completed with an error."""


class ServerError(FalError):
    """fal answered with an error status that retries did not get past."""

    def __init__(self, message: str, *, status_code: int | None = None, request_id: str | None = None) -> None:
        self.status_code = status_code
        super().__init__(message, request_id=request_id)


class SubmitUncertainError(FalError):
    """A submit failed in a way where fal may have accepted (and will bill) the request."""


class FalTimeoutError(FalError, TimeoutError):
    """A configured time limit passed; the request was cancelled at fal."""

    def __init__(self, message: str, *, limit_name: str, request_id: str | None = None) -> None:
        self.limit_name = limit_name
        super().__init__(message, request_id=request_id)


class RequestCancelledError(FalError):
    """The user interrupted the run; fal was asked to cancel the request."""


class ResultError(FalError):
    """fal's result could not be read (malformed body, missing images, bad image data)."""


class RequestNotFoundError(FalError):
    """fal does not know the request id (wrong id, or fal no longer keeps the result)."""
