"""Errors the simulator answers with, in Stripe's shape and with Stripe's HTTP statuses."""

from __future__ import annotations

from typing import Any

DOCS = "https://docs.stripe.com/error-codes"


class StripeError(Exception):
    """One API error: ``{"error": {"type", "code", "decline_code", "message", "param"}}``.

    ``commit`` marks errors raised after the request changed state that must be kept
    (a declined card leaves a failed charge behind); such answers are also replayed
    for a repeated idempotency key, as Stripe does.
    """

    def __init__(self, status: int, error_type: str, message: str, *, code: str | None = None,
                 param: str | None = None, decline_code: str | None = None,
                 extra: dict[str, Any] | None = None, commit: bool = False,
                 should_retry: bool | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.extra = extra or {}
        self.commit = commit
        self.should_retry = should_retry

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "type": self.error_type,
            "code": self.code,
            "decline_code": self.decline_code,
            "message": self.message,
            "param": self.param,
        }
        if self.code:
            error["doc_url"] = f"{DOCS}#{self.code.replace('_', '-')}"
        error.update(self.extra)
        return {"error": error}


def invalid_request(message: str, *, code: str | None = None, param: str | None = None,
                    status: int = 400) -> StripeError:
    return StripeError(status, "invalid_request_error", message, code=code, param=param)


def missing_param(name: str) -> StripeError:
    return invalid_request(f"Missing required param: {name}.", code="parameter_missing",
                           param=name)


def unknown_param(name: str) -> StripeError:
    return invalid_request(f"Received unknown parameter: {name}", code="parameter_unknown",
                           param=name)


def no_such(kind: str, object_id: str, param: str = "id") -> StripeError:
    return invalid_request(f"No such {kind}: '{object_id}'", code="resource_missing",
                           param=param, status=404)


def unexpected_state(message: str) -> StripeError:
    return invalid_request(message, code="payment_intent_unexpected_state")


def rate_limited() -> StripeError:
    # Stripe answers 429 with the rate_limit code; the SDK keys on the status.
    return invalid_request(
        "Too many requests hit the API too quickly. We recommend an exponential backoff "
        "of your requests.", code="rate_limit", status=429)


def lock_timeout() -> StripeError:
    error = invalid_request(
        "This object cannot be accessed right now because another API request or Stripe "
        "process is currently accessing it. Please retry your request.",
        code="lock_timeout", status=429)
    error.should_retry = True
    return error


def api_error(message: str = "An unknown error occurred. Please retry your request.",
              ) -> StripeError:
    return StripeError(500, "api_error", message)


def idempotency_conflict(key: str) -> StripeError:
    return StripeError(
        400, "idempotency_error",
        "Keys for idempotent requests can only be used with the same parameters they were "
        f"first used with. Try using a key other than '{key}' if you meant to execute a "
        "different request.")
