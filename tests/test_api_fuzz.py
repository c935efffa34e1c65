"""Schemathesis against the running API and its own OpenAPI document (issue 16): generated
requests for every operation; no answer may be a 5xx, and every answer must match the schema the
document gives for its status. Bounded (FUZZ_EXAMPLES per operation) to stay well under a minute.
"""

from __future__ import annotations

import importlib
import os
from collections import Counter

import httpx
import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from engine.api.server import ApiServer
from engine.config import ApiConfig
from engine.tokens import add_token

FUZZ_EXAMPLES = int(os.environ.get("NOTIFY_FUZZ_EXAMPLES", "25"))
# The same cases every run in CI (a failure reproduces); NOTIFY_FUZZ_EXAMPLES=500 NOTIFY_FUZZ_RANDOM=1
# explores further by hand.
DERANDOMIZE = not os.environ.get("NOTIFY_FUZZ_RANDOM")


@pytest.fixture
def fuzz_target(app):
    token = add_token(app, "fuzzer", ["admin"])
    server = ApiServer(app, ApiConfig(listen="127.0.0.1:0", max_body_bytes=256 * 1024,
                                      auth_failure_burst=1000)).start()
    session = requests.Session()
    session.trust_env = False   # loopback only: no proxy from the environment
    yield server, token, session
    session.close()
    server.stop()


def unsubscribe_missing() -> bool:
    try:
        importlib.import_module("engine.unsubscribe")
        return False
    except ImportError:
        return True


def api_operations(server):
    document = httpx.get(f"{server.url}/v1/openapi.json", trust_env=False, timeout=10).json()
    return [result.ok() for result in schemathesis.openapi.from_dict(document).get_all_operations()]


# Positive cases follow the document; negative ones break it on purpose (wrong types, missing
# fields, unknown values), which must be a documented 4xx, never a 5xx.
@pytest.mark.parametrize("mode, examples", [(GenerationMode.POSITIVE, FUZZ_EXAMPLES),
                                            (GenerationMode.NEGATIVE, FUZZ_EXAMPLES // 2)])
def test_no_5xx_and_every_answer_matches_the_document(fuzz_target, mode, examples):
    server, token, session = fuzz_target
    operations = api_operations(server)
    assert len(operations) >= 10
    answered: dict[str, Counter] = {}

    for operation in operations:
        if operation.path.startswith("/v1/unsubscribe/") and unsubscribe_missing():
            continue   # answers 501 (a 5xx by design) until engine.unsubscribe is merged
        if mode is GenerationMode.NEGATIVE and not (operation.body or operation.query or operation.path_parameters):
            continue   # nothing to get wrong
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, database=None, derandomize=DERANDOMIZE,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            response = case.call_and_validate(base_url=server.url, session=session,
                                              headers={"Authorization": f"Bearer {token}"},
                                              checks=[not_a_server_error, response_schema_conformance])
            answered.setdefault(f"{operation.method.upper()} {operation.path}", Counter())[response.status_code] += 1

        try:
            fuzz()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise
            # Nothing in this operation can be made invalid in a request (a free-form path string).

    print({name: dict(statuses) for name, statuses in answered.items()})
    # The fuzzing reached the server: every operation was called, and valid input got through.
    assert len(answered) >= 6
    if mode is GenerationMode.POSITIVE:
        assert answered["POST /v1/events"].keys() & {200, 202}
        assert answered["GET /v1/alerts"][200] > 0
        assert answered["GET /api/v2/alerts"][200] > 0
    else:
        assert all(status < 500 for statuses in answered.values() for status in statuses)
