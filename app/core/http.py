"""HTTP plumbing shared by both servers: JSON errors, bodies, Host and Origin."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

log = logging.getLogger("ventra.http")

MAX_BODY_BYTES = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ModelT = TypeVar("ModelT", bound=BaseModel)


class ApiError(Exception):
    """A failure reported to the caller as JSON ``{error, message}``."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.status = http_status
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        body.update(self.details)
        return body


def json_response(body: Any, status: int = 200, **kwargs: Any) -> web.Response:
    """Return a JSON response that keeps non-ASCII text readable."""
    return web.Response(
        body=json.dumps(body, ensure_ascii=False, default=str).encode("utf-8"),
        status=status,
        content_type="application/json",
        **kwargs,
    )


def error_response(status: int, code: str, message: str, **details: Any) -> web.Response:
    return json_response({"error": code, "message": message, **details}, status=status)


HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    421: "misdirected_request",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every failure to JSON; unexpected ones are a logged 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        if exc.status >= 500:
            log.error("request failed path=%s error=%s", request.path, exc.code)
        return json_response(exc.to_json(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "http_error")
        message = _http_message(request, exc)
        return error_response(exc.status, code, message)
    except Exception:
        log.exception("unhandled error method=%s path=%s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the server log")


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return f"no route for {request.method} {request.path}"
    if exc.status == 405:
        return f"{request.method} is not allowed on {request.path}"
    if exc.status == 413:
        return (
            f"the body is over the limit of {request.app.get(MAX_BODY_KEY, MAX_BODY_BYTES)}"
            " bytes; send a smaller one"
        )
    return exc.reason or "request failed"


MAX_BODY_KEY = web.AppKey("max_body", int)


RAW_BODY_KEY = web.RequestKey("raw_body", bytes)


async def read_body(request: web.Request) -> bytes:
    """Read the whole body once, rejecting one over the app's size limit.

    The bytes are kept on the request, so a middleware that read the body
    first (to hash it) and the handler after it see the same bytes.
    """
    cached = request.get(RAW_BODY_KEY)
    if cached is not None:
        return cached
    limit = request.app.get(MAX_BODY_KEY, MAX_BODY_BYTES)
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            f"the body is {request.content_length} bytes, over the limit of"
            f" {limit}; send a smaller one",
            code="payload_too_large",
            http_status=413,
        )
    # One read returns only what has arrived so far, so read until the end
    # of the body, stopping as soon as it passes the limit.
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise ApiError(
            f"the body is over the limit of {limit} bytes; send a smaller one",
            code="payload_too_large",
            http_status=413,
        )
    body = b"".join(chunks)
    request[RAW_BODY_KEY] = body
    return body


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


class DuplicateKey(ValueError):
    """A JSON object that names one key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # The standard decoder keeps the last of repeated keys, which would let
    # {"amount": 100, "amount": 200} pass as an order for 200.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = value
    return result


def parse_json(body: bytes) -> Any:
    """Decode a UTF-8 JSON body, naming what is wrong with it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            f"the body is not valid UTF-8 (byte {exc.start}); send UTF-8 JSON",
            code="malformed_json",
        ) from None
    try:
        return json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys
        )
    except DuplicateKey as exc:
        raise ApiError(
            f"the body names the field {exc.key!r} twice; send it once",
            code="malformed_json",
        ) from None
    except (json.JSONDecodeError, ValueError) as exc:
        if "int_max_str_digits" in str(exc):
            raise ApiError(
                "a number in the body has over 4300 digits; send a smaller one",
                code="malformed_json",
            ) from None
        raise ApiError(f"the body is not valid JSON: {exc}", code="malformed_json") from None
    except RecursionError:
        # The standard decoder recurses once per nesting level.
        raise ApiError(
            "the body nests arrays or objects too deeply; flatten it",
            code="malformed_json",
        ) from None


DATETIME_RULE = "an RFC 3339 date-time with a time zone, such as 2026-01-01T00:00:00Z"


def validation_message(error: ValidationError) -> tuple[str, str]:
    """Return the first invalid field and a message naming it."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    value = first.get("input")
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    if first["type"] == "missing":
        return field, f"{field} is missing"
    if first["type"] == "extra_forbidden":
        return field, f"{field} is not a known field; remove it"
    reason = first["msg"]
    if first["type"] == "value_error":
        # A validator's own message, without pydantic's "Value error, ".
        reason = str(first["ctx"]["error"])
    message = f"{field}={shown} is invalid: {reason}"
    if first["type"].startswith(("datetime_", "timezone_")):
        message += f"; use {DATETIME_RULE}"
    return field, message


async def read_model(
    request: web.Request, model: type[ModelT], *, optional: bool = False
) -> ModelT:
    """Read, decode and validate a JSON body into ``model``."""
    body = await read_body(request)
    if not body.strip() and optional:
        return model()
    content_type = request.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(
            f"Content-Type is {content_type or 'missing'!r}; send application/json",
            code="unsupported_media_type",
            http_status=415,
        )
    data = parse_json(body)
    if not isinstance(data, dict):
        raise ApiError(
            f"the body must be a JSON object, not {type(data).__name__}",
            code="malformed_json",
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field, message = validation_message(exc)
        raise ApiError(
            message, code="validation_failed", http_status=422, field=field
        ) from None


def request_guard(allowed_hosts: Callable[[], set[str]]) -> Any:
    """Build a middleware that rejects other sites' browsers.

    A ``Host`` that is not one of the served addresses gets 421, which
    stops DNS rebinding. An ``Origin`` of another site gets 403, so a page
    in the user's browser cannot drive the API.
    """

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        rejection = foreign_request_error(request, allowed_hosts())
        if rejection is not None:
            return rejection
        return await handler(request)

    return guard


def foreign_request_error(request: web.Request, hosts: set[str]) -> web.Response | None:
    """Return the 421 or 403 response for another site's request, else None."""
    host = (request.headers.get("Host") or "").lower()
    if host not in hosts:
        return error_response(
            421,
            "misdirected_request",
            f"Host {host!r} is not an address this server serves;"
            f" use one of {', '.join(sorted(hosts))}",
        )
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() not in {f"http://{h}" for h in hosts}:
        return error_response(
            403,
            "forbidden_origin",
            f"requests from Origin {origin!r} are not allowed;"
            " call this API from the app or a script, not a web page",
        )
    return None


def served_hosts(host: str, port: int) -> set[str]:
    """Return the Host header values that name a server on ``host:port``."""
    names = {host}
    if host in ("127.0.0.1", "localhost", "::1"):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        # Clients leave the default port out of the Host header.
        hosts |= names
    return hosts
