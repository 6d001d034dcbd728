"""The OpenAPI 3.1 document, generated from the route table and its pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from wharf_gateway import __version__, models
from wharf_gateway.edge import IDEMPOTENCY_KEY_HEADER, IDEMPOTENCY_KEY_LIMIT
from wharf_gateway.routes import Route

_REF = "#/components/schemas/{model}"
# Public routes whose body is itself a credential, so they can answer 401.
_BODY_CREDENTIALS = (models.TokenRequest, models.RefreshRequest)
_PROBLEMS = {
    "400": "The request is malformed",
    "401": "No valid credential",
    "403": "The credential does not allow this",
    "404": "No such object in the caller's tenant",
    "409": "Conflicts with an existing object",
    "413": "The body is too large",
    "415": "The body is not in the route's content type",
    "422": "Invalid fields, each named",
    "429": "Rate limited; see Retry-After",
    "503": "The service behind is unavailable",
    "504": "The request's deadline passed",
}


def document(routes: list[Route]) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document describing `routes`."""
    used: set[type[BaseModel]] = {models.Problem}
    for route in routes:
        used.update(m for m in (route.body, route.form, route.response) if m is not None)
    ordered = sorted(used, key=lambda m: m.__name__)
    _, schemas = models_json_schema([(model, "validation") for model in ordered], ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Wharf API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


_IDEMPOTENCY_KEY = {
    "name": IDEMPOTENCY_KEY_HEADER,
    "in": "header",
    "required": False,
    "description": "A key of the caller's choosing: a retry with the same key and body answers"
    " with what the first request made; the same key with another body is a 422",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": IDEMPOTENCY_KEY_LIMIT,
        "pattern": "^[\\x20-\\x7e]+$",
    },
}


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.service],
        "parameters": [
            *_parameters(route.path_params, "path"),
            *_parameters(route.query, "query"),
            *([_IDEMPOTENCY_KEY] if route.idempotent else []),
        ],
        "responses": _responses(route),
    }
    if route.access != "public":
        operation["security"] = [{"bearer": []}, {"apiKey": []}]
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.body)}},
        }
    elif route.content_type == "multipart/form-data":
        schema = _ref(route.form) if route.form is not None else {"type": "object"}
        operation["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    elif route.content_type != "application/json":
        operation["requestBody"] = {
            "required": True,
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    return operation


def _parameters(model: type[BaseModel] | None, where: str) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    defs = schema.get("$defs", {})
    parameters = []
    for name, prop in schema["properties"].items():
        parameter = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": {
                k: _inline(v, defs) for k, v in prop.items() if k not in ("title", "description")
            },
        }
        if "description" in prop:
            parameter["description"] = prop["description"]
        parameters.append(parameter)
    return parameters


def _inline(value: Any, defs: dict[str, Any]) -> Any:
    """`value` with references to the model's own definitions (an enum, say) written out."""
    if isinstance(value, list):
        return [_inline(item, defs) for item in value]
    if not isinstance(value, dict):
        return value
    ref = value.get("$ref", "")
    if ref.startswith("#/$defs/"):
        target = defs[ref.removeprefix("#/$defs/")]
        return {k: _inline(v, defs) for k, v in target.items() if k not in ("title", "description")}
    return {k: _inline(v, defs) for k, v in value.items()}


def _responses(route: Route) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "Success"}
    if route.response is not None:
        success["content"] = {"application/json": {"schema": _ref(route.response)}}
    responses: dict[str, Any] = {str(route.status): success}
    problem = {"application/problem+json": {"schema": _ref(models.Problem)}}
    for status, description in _PROBLEMS.items():
        if route.access == "public" and status in {"403", "404"}:
            continue
        if status == "401" and route.access == "public" and route.body not in _BODY_CREDENTIALS:
            continue
        if status == "409" and route.status != 201:
            continue
        if status == "415" and route.body is None and route.content_type != "multipart/form-data":
            continue
        responses[status] = {"description": description, "content": problem}
    return responses


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}
