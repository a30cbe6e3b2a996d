"""Schemathesis over the OpenAPI document of a running ``mailspool serve``: generated
requests (valid and invalid) never get a 5xx, and every response matches the document."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.api import TOKEN, ApiServer

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# per operation and mode; raise it for a longer hunt: MAILSPOOL_FUZZ_EXAMPLES=1000
EXAMPLES = int(os.environ.get("MAILSPOOL_FUZZ_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    # no workers and no relay: accepted messages stay queued; /u checks tokens
    srv = ApiServer(
        tmp_path_factory.mktemp("schema"), "--workers", "0", "--max-body", "65536",
        env={"MAILSPOOL_UNSUBSCRIBE_SECRET": "s" * 32},
    )  # fmt: skip
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed: ApiServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")


WITH_INPUT = [
    ("POST", "/v1/messages"),
    ("GET", "/v1/messages/{job_id}"),
    ("GET", "/v1/campaigns/{campaign}"),
    ("GET", "/v1/dead-letters"),
    ("POST", "/v1/campaigns/{campaign}/pause"),
    ("POST", "/v1/campaigns/{campaign}/resume"),
    ("POST", "/v1/campaigns/{campaign}/cancel"),
    ("POST", "/v1/dead-letters/retry"),
    ("POST", "/v1/dead-letters/purge"),
    ("PUT", "/v1/templates/{name}"),
    ("GET", "/v1/templates/{name}"),
    ("GET", "/v1/suppressions"),
    ("POST", "/v1/suppressions"),
    ("DELETE", "/v1/suppressions"),
    ("GET", "/v1/events"),
    ("POST", "/u/{token}"),
]
# GET /u/{token} takes any text as its token (what is not one gets 400): nothing to get wrong
OPERATIONS = [
    *WITH_INPUT, ("GET", "/u/{token}"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")
]  # fmt: skip
# negative cases need something to get wrong: parameters or a body
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in WITH_INPUT
]
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_every_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    found = {
        (op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())
    }
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_no_server_errors(
    api_schema: schemathesis.BaseSchema,
    fuzzed: ApiServer,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=fuzzed.url, headers=AUTH, checks=CHECKS)

    check()


def test_the_fuzzed_server_logged_no_error(fuzzed: ApiServer) -> None:
    levels = {e.get("level") for e in fuzzed.events()}
    assert "error" not in levels and "critical" not in levels, Path(fuzzed.log_path).read_text()
