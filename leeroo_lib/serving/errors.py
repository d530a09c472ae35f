"""The errors the service answers with, each with its HTTP status and an OpenAI-style body.

Clients of an OpenAI-compatible server read ``{"error": {"message", "type", "code"}}`` (the OpenAI SDK
raises on it by status; LiteLLM's proxy answers the same way), so every refusal of the service, from a
missing key to a spent cap, has that shape: ``type`` the kind of error, ``code`` the problem or the
limit it hit, ``message`` what happened and how to fix it.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse


class ServiceError(Exception):
    """A request the service refuses or cannot answer; ``code`` names the problem (or the limit hit),
    ``retry_after_s`` goes into a Retry-After header."""

    status = 500
    kind = "internal_error"

    def __init__(self, message: str, code: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s

    def response(self) -> JSONResponse:
        headers = {"retry-after": str(self.retry_after_s)} if self.retry_after_s is not None else None
        return error_response(self.status, str(self), self.kind, self.code, headers)


class InvalidRequest(ServiceError):
    status = 400
    kind = "invalid_request_error"


class Unauthorized(ServiceError):
    status = 401
    kind = "authentication_error"


class RateLimited(ServiceError):
    status = 429
    kind = "rate_limit_error"


class CapReached(ServiceError):
    status = 429
    kind = "budget_exceeded"


class ClientGone(ServiceError):
    """The client hung up before its answer (nginx's 499: no one reads it)."""

    status = 499
    kind = "client_closed_request"


class Unavailable(ServiceError):
    """No expert answered, or the service is shutting down."""

    status = 503
    kind = "service_unavailable"


def error_response(status: int, message: str, kind: str, code: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": code}}, status_code=status, headers=headers
    )


def reason(error: BaseException) -> str:
    """An exception as one short line (for messages and headers)."""
    return " ".join(f"{type(error).__name__}: {error}".split())[:200].strip()
