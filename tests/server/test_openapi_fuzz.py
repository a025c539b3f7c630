"""Every operation of the OpenAPI schema, fuzzed by schemathesis against a real server: valid and
invalid requests alike are answered without a 5xx, and documented answers match the schema."""

from __future__ import annotations

import collections
import shutil
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.conftest import ALICE, RunningServer

# Per operation and generation mode (positive, negative): a few thousand requests in all.
EXAMPLES = 90  # with generated session ids
EXISTING = 35  # with the id of a session that exists
AUTH = {"Authorization": f"Bearer {ALICE}"}
CLOSED_PORT = 9  # discard: nothing listens there on a test machine
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# operations that reach another machine (SPEC §11): its failure is a 502 that names the step
UPSTREAM = {"POST /api/v1/connections/{id}/test", "POST /api/v1/terminal/sessions"}


@pytest.fixture
def fuzzed(make_server: Callable[..., RunningServer]) -> Iterator[RunningServer]:
    # Small limits: creates soon answer 429 instead of starting many shells or kernels.
    yield make_server(
        max_terminals=8,
        max_terminals_per_user=4,
        max_kernels=1,
        session_pool_size=0,
        download_timeout=2,
        terminal_kill_grace=0.2,
    )


def contained(case: Any, server: RunningServer) -> None:
    """Keep generated requests on this machine and harmless: a file to download comes from a
    closed local port, and a program that exists is ``true``."""
    body = case.body
    if not isinstance(body, dict):
        return
    files = body.get("files")
    if isinstance(files, list):
        for item in files:
            url = item.get("url") if isinstance(item, dict) else None
            if isinstance(url, str) and ("://" in url or _scheme(url) in ("http", "https")):
                item["url"] = f"http://127.0.0.1:{server.port}/nothing-here"
    if isinstance(body.get("host"), str):  # a saved connection: to a closed port here
        body["host"], body["port"] = "127.0.0.1", CLOSED_PORT
    command = body.get("command")
    if (
        isinstance(command, list)
        and command
        and isinstance(command[0], str)
        and "\0" not in command[0]
        and _which(command[0])
    ):
        command[0] = "true"


def _scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme
    except ValueError:
        return ""


def _which(name: str) -> bool:
    try:
        return shutil.which(name) is not None
    except (ValueError, UnicodeError):
        return False


def fuzz(
    server: RunningServer,
    operation: Any,
    mode: GenerationMode,
    examples: int,
    path_parameters: dict[str, str],
    statuses: collections.Counter[int],
    session: requests.Session,
) -> None:
    """``examples`` generated requests to ``operation``; raises on the first failed check."""

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],  # no shrinking: a failure is reported as found
        database=None,
    )
    def call(case: Any) -> None:
        contained(case, server)
        response = case.call(session=session, headers=AUTH, timeout=30)
        statuses[response.status_code] += 1
        if response.status_code == 502 and operation.label in UPSTREAM:
            assert response.json()["detail"], response.text  # which step failed, said
            return
        case.validate_response(response, checks=CHECKS, headers=AUTH)
        if operation.label == "POST /api/v1/terminal/sessions" and response.status_code == 201:
            # Close it, so that the next create starts a process too instead of a 429.
            session.delete(f"{server.url}/api/v1/terminal/sessions/{response.json()['id']}")

    call()


def can_be_invalid(definition: dict[str, Any], fixed: dict[str, str]) -> bool:
    """Whether a request to the operation can break its schema (negative cases exist): a body,
    a query parameter, or a path parameter more constrained than any string."""
    if "requestBody" in definition:
        return True
    for parameter in definition.get("parameters", []):
        if parameter["name"] in fixed and parameter["in"] == "path":
            continue
        constraints = set(parameter.get("schema", {})) - {"type", "title", "description"}
        if parameter["in"] == "query" or constraints:
            return True
    return False


@pytest.mark.slow
@pytest.mark.timeout(300)  # ~45 s here; room for a busy CI machine
def test_no_operation_answers_a_5xx(fuzzed: RunningServer) -> None:
    with httpx.Client(base_url=fuzzed.url, headers=AUTH, timeout=60) as c:
        assert c.post("/api/v1/terminal/sessions", json={"id": "tfz"}).status_code == 201
        assert c.post("/api/v1/sessions", json={"session_id": "kfz"}).status_code == 201
    api = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 20  # every operation of the REST API
    existing = {"id": "tfz", "session_id": "kfz"}
    failures: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()
    session = requests.Session()  # one connection for all
    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        passes = [({}, EXAMPLES)]  # ids generated: mostly sessions that don't exist
        if names and operation.method.upper() != "DELETE":
            # ids of sessions that exist: their answers, not only 404s (restarts are slow)
            fixed = {name: existing[name] for name in names if name in existing}
            passes.append((fixed, 3 if operation.path.endswith("/restart") else EXISTING))
        for path_parameters, examples in passes:
            modes = [GenerationMode.POSITIVE]
            if can_be_invalid(operation.definition.raw, path_parameters):
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                try:
                    fuzz(fuzzed, operation, mode, examples, path_parameters, statuses, session)
                except (
                    Exception,
                    BaseExceptionGroup,
                ) as exc:  # all operations run, all failures told
                    failures.append(f"{operation.label} {path_parameters} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    assert statuses.total() > 2500
    assert {200, 201, 404, 422, 429} <= set(statuses), statuses


def test_the_schema_documents_the_content_types_answered(server: RunningServer) -> None:
    """Found by the fuzzing above: two answers had a content type the schema did not list."""
    with httpx.Client(base_url=server.url) as c:
        paths = c.get("/openapi.json").json()["paths"]
    cast = paths["/api/v1/terminal/sessions/{id}/recording.cast"]["get"]["responses"]["200"]
    assert set(cast["content"]) == {"application/x-asciicast"}
    execute = paths["/api/v1/sessions/{session_id}/execute"]["post"]["responses"]["200"]
    assert set(execute["content"]) == {"application/json", "application/x-ndjson"}
