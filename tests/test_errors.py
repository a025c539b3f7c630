from __future__ import annotations

import pickle

import pytest

from hearth import errors
from hearth.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    DownloadFailed,
    HearthError,
    HostUnavailable,
    InsufficientStorage,
    KernelDied,
    LimitReached,
    NotFound,
    OriginRefused,
    RequestError,
    SandboxUnavailable,
    ScreenUnavailable,
    SecretsUnreadable,
    ServiceError,
    SessionClosed,
    Unauthorized,
    error_for_status,
)

TREE = {
    RequestError: HearthError,
    BadRequest: RequestError,
    Unauthorized: RequestError,
    OriginRefused: RequestError,
    NotFound: RequestError,
    Conflict: RequestError,
    SessionClosed: Conflict,
    LimitReached: RequestError,
    ServiceError: HearthError,
    KernelDied: ServiceError,
    DownloadFailed: ServiceError,
    BadGateway: ServiceError,
    HostUnavailable: ServiceError,
    SecretsUnreadable: ServiceError,
    ScreenUnavailable: ServiceError,
    SandboxUnavailable: ServiceError,
    InsufficientStorage: ServiceError,
}


def test_the_tree_is_the_one_drawn_in_the_docstring() -> None:
    for cls, parent in TREE.items():
        assert cls.__bases__ == (parent,)
        assert cls.__name__ in (errors.__doc__ or "")
    assert HearthError.__bases__ == (Exception,)
    exported = {getattr(errors, name) for name in errors.__all__} - {error_for_status}
    assert exported == {HearthError, *TREE}


@pytest.mark.parametrize(
    ("cls", "status", "close"),
    [
        (BadRequest, 400, 4400),
        (Unauthorized, 401, 4401),
        (OriginRefused, 403, 4403),
        (NotFound, 404, 4404),
        (Conflict, 409, 4409),
        (SessionClosed, 409, 4409),
        (LimitReached, 429, 4429),
        (KernelDied, 500, 1011),
        (DownloadFailed, 502, 1011),
        (BadGateway, 502, 1014),
        (HostUnavailable, 503, 1012),
        (ScreenUnavailable, 503, 1011),
        (InsufficientStorage, 507, 1011),
    ],
)
def test_status_and_close_codes(cls: type[HearthError], status: int, close: int) -> None:
    assert (cls.status_code, cls.close_code) == (status, close)
    if 400 <= status < 500:
        assert close == 4000 + status  # websocket close codes mirror HTTP statuses


def test_message_str_and_repr() -> None:
    exc = NotFound("No terminal session 'a1'; list yours with GET /api/v1/terminal/sessions.")
    assert exc.message == str(exc)
    assert repr(exc) == (
        "NotFound(\"No terminal session 'a1'; list yours with GET /api/v1/terminal/sessions.\")"
    )


def test_errors_survive_pickling() -> None:
    exc = pickle.loads(pickle.dumps(LimitReached("too many terminals")))
    assert type(exc) is LimitReached
    assert exc.message == "too many terminals"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (403, OriginRefused),
        (404, NotFound),
        (409, Conflict),
        (422, BadRequest),
        (429, LimitReached),
        (502, DownloadFailed),
        (4400, BadRequest),
        (4401, Unauthorized),
        (4403, OriginRefused),
        (4404, NotFound),
        (4409, Conflict),
        (4429, LimitReached),
        (418, RequestError),
        (4418, RequestError),
        (500, ServiceError),
        (503, HostUnavailable),
        (504, ServiceError),
        (1011, ServiceError),
    ],
)
def test_error_for_status(code: int, cls: type[HearthError]) -> None:
    exc = error_for_status(code, "what the server said")
    assert type(exc) is cls
    assert exc.message == "what the server said"


def test_error_for_status_roundtrips_every_request_error() -> None:
    for cls in [BadRequest, Unauthorized, OriginRefused, NotFound, Conflict, LimitReached]:
        assert type(error_for_status(cls.status_code, "m")) is cls
        assert type(error_for_status(cls.close_code, "m")) is cls
