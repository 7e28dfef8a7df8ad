"""Reading admin requests and writing their answers, on Starlette's ``Request`` and ``Response``."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelgate.http.request import HTTPRequest
from modelgate.schema.errors import InvalidRequest


async def json_body(request: Request) -> Any:
    """The request's JSON body, read as every surface reads one: past ``MAX_BODY`` bytes a 413,
    and a 400 ``invalid_json`` when it does not parse."""
    return await HTTPRequest(request.scope, request.receive).json()


def query(request: Request, allowed: set[str]) -> dict[str, str]:
    """The query parameters, one value each (the last one given); a blank one counts as absent.
    A parameter not in ``allowed`` is a 400 that names it."""
    params = {name: value for name, value in request.query_params.multi_items() if value}
    for name in params:
        if name not in allowed:
            raise InvalidRequest(f"Unknown query parameter '{name}'; allowed: {', '.join(sorted(allowed))}",
                                 param=name)
    return params


def output_format(params: Mapping[str, str]) -> str:
    """``json`` (the default) or ``csv``, from the ``format`` parameter."""
    value = params.get("format", "json")
    if value not in ("json", "csv"):
        raise InvalidRequest(f"'format' must be json or csv, got {value!r}", param="format")
    return value


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def csv_response(text: str, filename: str) -> Response:
    return Response(text.encode(), 200, {"content-disposition": f'attachment; filename="{filename}"'},
                    media_type="text/csv; charset=utf-8")


def new_request_id() -> str:
    """An id for an answer's ``x-request-id``, made as the other surfaces make theirs."""
    return "req_" + secrets.token_hex(12)
