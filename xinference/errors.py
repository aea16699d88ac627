"""Errors that cross layers. Each carries the HTTP status and OpenAI error type it maps to,
so the REST layer needs one handler and no per-route try/except."""

from typing import Optional


class XinferenceError(Exception):
    status_code = 500
    error_type = "server_error"

    def __init__(
        self, message: str, *, param: Optional[str] = None, code: Optional[str] = None
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def __reduce__(self):
        # xoscar pickles exceptions across processes: keep keyword fields.
        return (_rebuild, (type(self), self.message, self.param, self.code))


def _rebuild(cls, message, param, code):
    return cls(message, param=param, code=code)


class InvalidRequestError(XinferenceError):
    status_code = 400
    error_type = "invalid_request_error"


class ModelNotFoundError(XinferenceError):
    status_code = 404
    error_type = "not_found_error"


class ConflictError(XinferenceError):
    status_code = 409
    error_type = "conflict_error"


class ModelNotReadyError(XinferenceError):
    status_code = 503
    error_type = "service_unavailable"

    retry_after = 2


class NoWorkerError(XinferenceError):
    status_code = 503
    error_type = "service_unavailable"

    retry_after = 5


class InsufficientMemoryError(XinferenceError):
    """A launch that does not fit in any worker's free memory now (memory held by
    other models may be freed: terminate one, or add a worker)."""

    status_code = 503
    error_type = "service_unavailable"

    retry_after = 30


class HubUnreachableError(XinferenceError):
    """A model hub (or the mirror set for it) could not be reached or failed."""

    status_code = 503
    error_type = "service_unavailable"

    retry_after = 10


class LaunchFailedError(XinferenceError):
    status_code = 500
    error_type = "server_error"


class TooManyRequestsError(XinferenceError):
    status_code = 429
    error_type = "rate_limit_error"

    retry_after = 1


class ServerBusyError(XinferenceError):
    """Waited too long for a free slot: the replica is saturated."""

    status_code = 503
    error_type = "service_unavailable"

    retry_after = 1


class UnauthorizedError(XinferenceError):
    """No credentials, or ones the server does not know (or an expired token)."""

    status_code = 401
    error_type = "authentication_error"


class PermissionDeniedError(XinferenceError):
    status_code = 403
    error_type = "permission_error"


class QuotaExceededError(XinferenceError):
    """A key used up its requests per minute or tokens per day."""

    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int = 60, param: Optional[str] = None,
                 code: Optional[str] = "quota_exceeded"):
        super().__init__(message, param=param, code=code)
        self.retry_after = retry_after


class RequestAbortedError(XinferenceError):
    """POST /v1/models/{uid}/requests/{id}/abort stopped the request (or blocked its id)."""

    status_code = 409
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: Optional[str] = None, code: Optional[str] = "request_aborted"):
        super().__init__(message, param=param, code=code)
