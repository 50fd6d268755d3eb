"""The OpenAPI document: built from the models, and held to by the server."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.ventra.api import routes
from app.ventra.openapi import OPERATIONS, build_openapi
from app.ventra.schemas import CreateOrder
from tests.conftest import RunningStack, wait_until

EXAMPLES_PER_MODE = 25
# A BR Code's CRC cannot be written in JSON Schema, so a schema-valid code
# is still rejected with 422 unless it carries the right checksum.
EXCLUDED_CHECKS = {"POST /v1/pix/pay": [positive_data_acceptance]}


def served_routes() -> set[tuple[str, str]]:
    return {(route.method.lower(), route.path) for route in routes}  # type: ignore[union-attr]


def test_every_route_documented() -> None:
    """Every route the server registers is in the document, and no other."""
    documented = {
        (method, path)
        for path, item in build_openapi()["paths"].items()
        for method in item
    }

    assert documented == served_routes()


def test_guard_rejections_documented() -> None:
    """Every operation documents the 403 and 421 of a foreign Origin or Host."""
    document = build_openapi()

    for path, item in document["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"403", "421"} <= statuses, f"{method.upper()} {path}"


def test_request_schema_from_model() -> None:
    """The documented body of POST /v1/orders is the model's own schema."""
    document = build_openapi()

    schema = document["components"]["schemas"]["CreateOrder"]

    assert schema["properties"]["amount"] == {
        **CreateOrder.model_json_schema()["properties"]["amount"],
    }
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["amount"]


def test_served_document(stack: RunningStack) -> None:
    """GET /openapi.json needs no key and returns the built document."""
    response = stack.ventra.get("/openapi.json", headers={"x-api-key": "wrong"})

    assert response.status_code == 200
    assert response.json() == build_openapi()


def assert_documented(response: httpx.Response, method: str, path: str) -> None:
    """Check a real response against the document of ``method path``.

    A success body must have exactly the documented fields. An error body
    may add the ids it names to the documented ``error`` and ``message``.
    """
    document = build_openapi()
    responses = document["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method.upper()} {path} does not document {status}"
    ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
    model = ref.rsplit("/", 1)[1]
    documented = set(document["components"]["schemas"][model]["properties"])
    fields = set(response.json())
    if response.is_success:
        assert fields == documented
    else:
        assert documented <= fields


def delivered_event(stack: RunningStack) -> str:
    """Create an order and return its first event's id once it is delivered."""
    order = stack.create_order()

    def delivered() -> str | None:
        response = stack.ventra.get("/v1/events", params={"order_id": order["id"]})
        events = response.json()["data"]
        if events and events[-1]["delivery"]["status"] == "delivered":
            return events[-1]["id"]
        return None

    return wait_until(delivered)


SINCE = (datetime.now(UTC) - timedelta(days=1)).isoformat()
RETRY_REQUESTS = [
    ("/v1/events/{event_id}/retry", None),
    ("/v1/events/retry", {"env": "local", "since": SINCE}),
]


@pytest.mark.parametrize(("path", "body"), RETRY_REQUESTS)
def test_retry_success_documented(
    stack: RunningStack, path: str, body: dict[str, str] | None
) -> None:
    """A retry's 200 body has exactly the fields the document lists."""
    event_id = delivered_event(stack)

    response = stack.ventra.post(path.format(event_id=event_id), json=body)

    assert response.status_code == 200, response.text
    assert_documented(response, "post", path)


@pytest.mark.parametrize(("path", "body"), RETRY_REQUESTS)
def test_retry_disabled_documented(
    stack: RunningStack, path: str, body: dict[str, str] | None
) -> None:
    """A retry on a disabled endpoint is a documented 409."""
    event_id = delivered_event(stack)
    stack.ventra.put("/v1/webhook-endpoints/local", json={"enabled": False})

    response = stack.ventra.post(path.format(event_id=event_id), json=body)

    assert response.status_code == 409, response.text
    assert_documented(response, "post", path)


def whole_numbers_as_int(value: Any) -> Any:
    """Write 100.0 as 100, as the API requires of its integers.

    JSON Schema counts 100.0 as an integer, so a generator may send it, but
    the API rejects numbers written with a fraction part on purpose.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers_as_int(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers_as_int(v) for v in value]
    return value


def has_inputs(operation: Any) -> bool:
    """Whether an operation takes parameters or a body."""
    item = build_openapi()["paths"][operation.path][operation.method.lower()]
    return bool(item.get("parameters")) or "requestBody" in item


def _operations() -> list[Any]:
    schema = schemathesis.openapi.from_dict(build_openapi())
    return [result.ok() for result in schema.get_all_operations()]


OPERATION_LABELS = [f"{o.method.upper()} {o.path}" for o in OPERATIONS] + [
    "GET /openapi.json"
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis(shared_stack: RunningStack, mode: GenerationMode) -> None:
    """Generated requests to every operation get no 5xx and match the document."""
    stack = shared_stack
    base_url = str(stack.ventra.base_url).rstrip("/")
    key_file = stack.data_dir / ".runtime" / "api_key.json"
    hook_url = f"{stack.info.sim_url}/api/webhooks/ventra/local"
    operations = _operations()
    assert sorted(o.label for o in operations) == sorted(OPERATION_LABELS)

    with requests.Session() as session:
        target = Target(session, base_url, stack.info.api_key, key_file, hook_url)
        for operation in operations:
            if mode is GenerationMode.NEGATIVE and not has_inputs(operation):
                continue  # nothing in the request to make invalid
            fuzz(operation, mode, target)


@dataclass
class Target:
    """The running Ventra that generated requests go to."""

    session: requests.Session
    base_url: str
    api_key: str
    key_file: Path
    hook_url: str


GUARDED_HEADERS = ("host", "origin")


def adapt(case: schemathesis.Case, mode: GenerationMode, target: Target) -> None:
    """Adjust a generated request where the API is stricter than JSON Schema."""
    headers_valid = case.meta is None or (
        case.meta.components.get(ParameterLocation.HEADER) is None
        or case.meta.components[ParameterLocation.HEADER].mode.is_positive
    )
    for name in [n for n in case.headers or {} if n.lower() in GUARDED_HEADERS]:
        # A generated Host or Origin header meets the guard's 421 or 403
        # before the API reads the request; tests/test_host_origin.py
        # covers those.
        del case.headers[name]
    if case.headers and "x-api-key" in case.headers and headers_valid:
        # The generated key is random. A header made invalid on purpose,
        # such as a dropped key, is left as generated.
        case.headers["x-api-key"] = target.api_key
    if mode is GenerationMode.POSITIVE:
        if isinstance(case.body, dict):
            case.body = whole_numbers_as_int(case.body)
        if case.headers and "Idempotency-Key" in case.headers:
            # A key reused with another body is rightly a 422, because
            # clients send a new key with each new request.
            case.headers["Idempotency-Key"] = str(uuid.uuid4())
    url = case.body.get("url") if isinstance(case.body, dict) else None
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        # Generated URLs name hosts on the internet, so every stored
        # endpoint points at this machine's VentraSim instead.
        case.body["url"] = target.hook_url


def fuzz(operation: Any, mode: GenerationMode, target: Target) -> None:
    """Send generated requests to one operation and validate each response."""
    excluded = EXCLUDED_CHECKS.get(operation.label, [])

    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        adapt(case, mode, target)
        try:
            case.call_and_validate(
                base_url=target.base_url,
                session=target.session,
                excluded_checks=excluded,
            )
        finally:
            # A generated rotation would lock the next cases out.
            target.key_file.unlink(missing_ok=True)

    check()
