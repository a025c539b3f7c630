from __future__ import annotations

import hearth
from hearth import errors


def test_exported_members() -> None:
    assert sorted(hearth.__all__) == sorted(
        [
            "AsyncClient",
            "BadRequest",
            "Client",
            "Conflict",
            "HearthError",
            "LimitReached",
            "NotFound",
            "SessionClosed",
            "Settings",
            "Unauthorized",
            "__version__",
            "errors",
        ]
    )
    for name in hearth.__all__:
        assert hasattr(hearth, name), name


def test_exported_errors_are_those_of_hearth_errors() -> None:
    for name in hearth.__all__:
        member = getattr(hearth, name)
        if isinstance(member, type) and issubclass(member, Exception):
            assert member is getattr(errors, name)
            assert member.__module__ == "hearth.errors"


def test_version() -> None:
    from importlib.metadata import version

    assert hearth.__version__ == version("hearth")
