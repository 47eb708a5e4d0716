"""Schema-driven fuzzing: schemathesis against the app's own OpenAPI, over real HTTP.

Every operation gets generated valid and invalid requests (with an admin key; schemathesis'
``ignored_auth`` check also sends them without one). The run fails on any 5xx, any status
code, content type, header or body that the OpenAPI document does not declare, and any
invalid request that is accepted (all of schemathesis' checks but one, see ``EXCLUDED``).

Run just this: ``.venv/bin/pytest tests/api/test_fuzz.py`` (``FUZZ_EXAMPLES`` sets examples
per operation and mode; default 100, about 1.5 minutes on 2 cores, hence ``slow``: the full
suite runs it, ``-m "not slow"`` skips it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import AcceptedNegativeData, FailureGroup
from schemathesis.generation.meta import ParameterLocation, negated_parameters

from api.security import KeyStore
from tests.api.conftest import LiveServer, make_settings, start_server
from tests.api.helpers import tiny_bundle

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
#: ``positive_data_acceptance`` expects every schema-valid body to succeed, but FHIR validity is
#: more than JSON Schema can say (an NDJSON body is "a string"; a Bundle entry "an object"), so
#: a schema-valid but clinically malformed record rightly gets a 422 naming the resource.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]


@schemathesis.serializer("application/fhir+ndjson", "application/x-ndjson", "application/ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """NDJSON bodies: a generated string is sent as is; anything else as one JSON line."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()


@pytest.fixture(scope="module")
def fuzz_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of its own (one patient), so fuzzed writes and training jobs touch nothing else."""
    root: Path = tmp_path_factory.mktemp("fuzz")
    st = make_settings(root)
    ks = KeyStore(st.keys_db)
    admin = ks.create("fuzz", ["admin"])
    ks.close()
    server, thread, url = start_server(st)
    import httpx

    httpx.post(f"{url}/v1/records", json=tiny_bundle("fuzz-patient"),
               headers={"Authorization": f"Bearer {admin.token}"}).raise_for_status()
    yield LiveServer(url=url, settings=st, tokens={"admin": admin.token}, key_ids={"admin": admin.key.id})
    server.should_exit = True  # type: ignore[attr-defined]
    thread.join(timeout=10)


def _mutated_locations(case: Any) -> set[Any]:
    """Where a negative case was made invalid (parameter locations; ``None``: not said)."""
    data = case.meta.phase.data
    locs = {getattr(data, "parameter_location", None)}
    locs |= {getattr(m, "parameter_location", None) for m in getattr(data, "mutations", ())}
    return locs


def _valid_once_serialised(op: Any, case: Any, exc: BaseException) -> bool:
    """Whether ``exc`` only says a "negative" case was accepted that is valid *as sent*: its
    negation was lost on the way to the server (schemathesis issues #2312, #3962). A query
    parameter's type the query string cannot carry (``namespace=False`` arrives as the string
    ``"false"``, a valid namespace), an extra query property whose value serialises to nothing,
    or a missing ``Authorization`` header, which this test always sends. Only when nothing but
    the query and that header was mutated, and every query parameter of the URL actually sent
    is one the operation declares, with a value its schema accepts, and none required is missing."""
    if not isinstance(exc, FailureGroup) or not all(isinstance(f, AcceptedNegativeData) for f in exc.exceptions):
        return False
    negated = list(negated_parameters(case.meta))
    if any(loc is not ParameterLocation.QUERY and not (loc is ParameterLocation.HEADER and name.lower() == "authorization")
           for name, loc in negated):
        return False
    if _mutated_locations(case) - {ParameterLocation.QUERY, ParameterLocation.HEADER, None}:
        return False
    params = [p for p in op.definition.raw.get("parameters", []) if p.get("in") == "query"]
    schemas = {p["name"]: p.get("schema", {}) for p in params}
    query = case.query or {}
    if any(isinstance(v, dict | list) for v in query.values()):
        return False
    # as schemathesis sends it: strings as they are, other values as JSON, None left out
    url = requests.Request("POST", "http://fuzz.invalid/", params={
        k: v if isinstance(v, str) else json.dumps(v) for k, v in query.items() if v is not None}).prepare().url or ""
    sent = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    if any(name not in schemas or not jsonschema.Draft202012Validator(schemas[name]).is_valid(value)
           for name, value in sent):
        return False
    return all(p["name"] in {n for n, _ in sent} for p in params if p.get("required"))


def _fuzz_operation(op: Any, mode: Any, token: str) -> list[str]:
    """Run ``EXAMPLES`` generated cases of one operation; return the failures' descriptions."""
    failures: list[str] = []

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              phases=[Phase.explicit, Phase.generate])
    def run(case: Any) -> None:
        try:
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, excluded_checks=EXCLUDED)
        except (Exception, FailureGroup) as exc:  # collect every distinct failure, not just the first
            if _valid_once_serialised(op, case, exc):
                return
            where = sorted(str(x) for x in _mutated_locations(case)) if mode.is_negative else []
            text = (f"{op.method.upper()} {op.path} [{mode.value}] (mutated: {where}, "
                    f"negated: {list(negated_parameters(case.meta))}): {type(exc).__name__}: {str(exc)[:1500]}")
            if text not in failures:
                failures.append(text)

    try:
        run()
    except Unsatisfiable:  # negative mode on an operation with no input to make invalid (e.g. /healthz)
        if mode is schemathesis.GenerationMode.POSITIVE:
            raise
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_openapi_conformance(fuzz_live: LiveServer, mode: str) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_live.url}/openapi.json")
    gen_mode = schemathesis.GenerationMode(mode)
    failures: list[str] = []
    n_ops = 0
    for result in schema.get_all_operations():
        op = result.ok()
        n_ops += 1
        failures += _fuzz_operation(op, gen_mode, fuzz_live.tokens["admin"])
    assert n_ops >= 12
    assert not failures, "\n\n".join(failures)
