"""Request validation errors that can always be answered.

FastAPI's 422 answer echoes the offending input, and a JSON body can hold what JSON can escape but
UTF-8 and JSON numbers can't carry back: a lone surrogate (``"\\ud800"``) or a number too large
for a float (``1e400`` is infinity). Rendering such an answer failed, and the client got a 500
for its own mistake. The routes of the API use ``ValidatedRoute``, which hands the app's
validation handler errors whose inputs are made representable (surrogates as ``\\udXXX`` text,
non-finite numbers as their names): a 422 that names the bad field, like any other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

__all__ = ["ValidatedRoute", "representable"]


def representable(value: Any) -> Any:
    """``value`` with every string valid UTF-8 and every float finite, recursively."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode()
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {representable(k): representable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(representable(v) for v in value)
    return value


class ValidatedRoute(APIRoute):
    """An API route whose request validation errors are always representable as JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise self.answerable(exc) from None

        return run

    def answerable(self, exc: RequestValidationError) -> RequestValidationError:
        return RequestValidationError(
            representable(list(exc.errors())),
            body=representable(exc.body),
            endpoint_ctx=exc.endpoint_ctx,
        )
