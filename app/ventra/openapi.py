"""The OpenAPI 3.1 document of Ventra's API, built from the pydantic models.

Each operation names the models that the handler validates its body and
query with, and the model of its response, so the document and the checks
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app import __version__
from app.core.config import ENVIRONMENTS
from app.ventra import schemas
from app.ventra.idempotency import KEY_REGEX

REF = "#/components/schemas/{model}"
ERROR_STATUSES = {
    400: "The body is not UTF-8 JSON, or not a JSON object.",
    401: "The x-api-key header is missing or wrong.",
    403: "The Origin header names another site, so a web page may have sent it.",
    404: "An id in the path does not exist.",
    409: "The order's status does not allow the change.",
    413: "The body is over the size limit.",
    415: "The body is not application/json.",
    421: "The Host header is not an address this server serves.",
    429: "The maximum number of manual retries is in flight; send it again later.",
    422: "A field or query value is invalid.",
    503: "The delivery worker of this process is not running.",
}
GUARD_STATUSES = {403, 421}
PATH_PARAMETERS = {
    "order_id": {"type": "string", "pattern": schemas.ID_REGEX},
    "event_id": {"type": "string", "pattern": schemas.ID_REGEX},
    "env": {"type": "string", "enum": list(ENVIRONMENTS)},
}


@dataclass(frozen=True)
class Operation:
    """One route: its models, success status and the errors it may return."""

    method: str
    path: str
    summary: str
    response: type[BaseModel]
    status: int = 200
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    # Descriptions that replace those of ERROR_STATUSES on this route, where a
    # status means something narrower, such as a 409 for a disabled endpoint.
    error_descriptions: Mapping[int, str] = field(default_factory=dict)
    public: bool = False


S = schemas
BODY_ERRORS = (400, 413, 415, 422)
ENDPOINT_UNAVAILABLE = "The environment's webhook endpoint is disabled or has no URL."
OPERATIONS = (
    Operation("get", "/health", "Check that the server is up", S.Health, public=True),
    Operation(
        "post",
        "/v1/orders",
        "Create an escrow order and its Pix charge",
        S.Order,
        201,
        S.CreateOrder,
        errors=BODY_ERRORS,
    ),
    Operation(
        "get",
        "/v1/orders",
        "List orders, newest first",
        S.OrderList,
        query=S.OrderQuery,
        errors=(422,),
    ),
    Operation("get", "/v1/orders/{order_id}", "Get an order", S.Order, errors=(404,)),
    Operation(
        "post",
        "/v1/orders/{order_id}/pay",
        "Simulate the Pix payment",
        S.Order,
        errors=(404, 409),
    ),
    Operation(
        "post",
        "/v1/orders/{order_id}/release",
        "Release what is held to the merchant",
        S.Order,
        errors=(404, 409),
    ),
    Operation(
        "post",
        "/v1/orders/{order_id}/refund",
        "Refund the buyer, fully or in part",
        S.Order,
        body=S.Refund,
        body_required=False,
        errors=(404, 409, *BODY_ERRORS),
    ),
    Operation(
        "post",
        "/v1/pix/pay",
        "Pay a charge by its pasted BR Code",
        S.Order,
        body=S.PixPay,
        errors=(404, 409, *BODY_ERRORS),
    ),
    Operation(
        "get",
        "/v1/events",
        "List events, newest first",
        S.EventList,
        query=S.EventQuery,
        errors=(404, 422),
    ),
    Operation(
        "post",
        "/v1/events/retry",
        "Queue failed deliveries again",
        S.BulkRetryResult,
        body=S.BulkRetry,
        errors=(409, *BODY_ERRORS),
        error_descriptions={409: ENDPOINT_UNAVAILABLE},
    ),
    Operation("get", "/v1/events/{event_id}", "Get an event", S.Event, errors=(404,)),
    Operation(
        "get",
        "/v1/events/{event_id}/deliveries",
        "Get an event's delivery and attempts",
        S.EventDeliveries,
        errors=(404,),
    ),
    Operation(
        "post",
        "/v1/events/{event_id}/retry",
        "Send an event again as a new attempt",
        S.RetryResult,
        errors=(404, 409, 429, 503),
        error_descriptions={
            409: "The environment's webhook endpoint is disabled or has no URL,"
            " or an attempt of the event is in flight."
        },
    ),
    Operation(
        "get", "/v1/webhook-endpoints", "List the webhook endpoints", S.EndpointList
    ),
    Operation(
        "put",
        "/v1/webhook-endpoints/{env}",
        "Change a webhook endpoint",
        S.Endpoint,
        body=S.UpdateEndpoint,
        errors=(404, *BODY_ERRORS),
    ),
    Operation(
        "get",
        "/v1/ledger/accounts",
        "List ledger accounts and balances",
        S.LedgerAccountList,
    ),
    Operation(
        "get",
        "/v1/ledger/transactions",
        "List ledger transactions",
        S.LedgerTransactionList,
        query=S.TransactionQuery,
        errors=(422,),
    ),
    Operation(
        "get", "/v1/ledger/verify", "Check the ledger invariants", S.LedgerVerification
    ),
    Operation(
        "post",
        "/settings/api-key",
        "Rotate the API key",
        S.ApiKey,
        body=S.RotateKey,
        body_required=False,
        errors=BODY_ERRORS,
    ),
)


def _component_schemas() -> tuple[dict[Any, Any], dict[str, Any]]:
    models: list[tuple[type[BaseModel], Any]] = [(S.Error, "serialization")]
    for operation in OPERATIONS:
        models.append((operation.response, "serialization"))
        if operation.body is not None:
            models.append((operation.body, "validation"))
    refs, document = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    return refs, document.get("$defs", {})


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    parameters = []
    for name, prop in schema["properties"].items():
        description = prop.pop("description", None)
        prop.pop("title", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in schema.get("required", []),
            "schema": prop,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in PATH_PARAMETERS.items()
        if "{" + name + "}" in path
    ]


def _json_content(ref: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": ref}}


def _operation(operation: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    error_ref = refs[(S.Error, "serialization")]
    responses: dict[str, Any] = {
        str(operation.status): {
            "description": operation.response.__doc__ or "OK",
            "content": _json_content(refs[(operation.response, "serialization")]),
        }
    }
    # Every route rejects other sites' browsers.
    statuses = set(operation.errors) | GUARD_STATUSES
    if not operation.public:
        statuses.add(401)
    if operation.method == "post":
        statuses.add(422)  # an invalid Idempotency-Key, or one reused
    for status in sorted(statuses):
        description = operation.error_descriptions.get(status, ERROR_STATUSES[status])
        responses[str(status)] = _error_response(description, error_ref)

    parameters = _path_parameters(operation.path)
    if operation.query is not None:
        parameters += _query_parameters(operation.query)
    if operation.method == "post":
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "A repeated key with the same body returns the"
                " first response without doing the work again.",
                "schema": {"type": "string", "pattern": KEY_REGEX},
            }
        )

    body: dict[str, Any] = {
        "summary": operation.summary,
        "operationId": _operation_id(operation),
        "parameters": parameters,
        "responses": responses,
    }
    if operation.body is not None:
        body["requestBody"] = {
            "required": operation.body_required,
            "content": _json_content(refs[(operation.body, "validation")]),
        }
    if operation.public:
        body["security"] = []
    return body


def _error_response(description: str, error_ref: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": _json_content(error_ref)}


def _operation_id(operation: Operation) -> str:
    words = [
        part.strip("{}").replace("-", "_")
        for part in operation.path.split("/")
        if part and part != "v1"
    ]
    return "_".join([operation.method, *words])


def build_openapi() -> dict[str, Any]:
    """Return the OpenAPI document of every route."""
    refs, components = _component_schemas()
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(
            operation, refs
        )
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "get_openapi",
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **{
                    str(status): _error_response(
                        ERROR_STATUSES[status], refs[(S.Error, "serialization")]
                    )
                    for status in sorted(GUARD_STATUSES)
                },
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ventra API",
            "version": __version__,
            "description": "Sandbox Pix escrow platform. Amounts are integer"
            " centavos (BRL).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}
            },
        },
        "security": [{"apiKey": []}],
    }
