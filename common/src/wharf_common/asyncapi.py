"""The AsyncAPI 3.0 document of ``wharf.events``, generated from the event catalog."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from wharf_common import __version__, events
from wharf_common.bus import EVENTS_EXCHANGE
from wharf_common.envelope import CONTENT_TYPE

_REF = "#/components/schemas/{model}"


def document(*, host: str = "rabbitmq:5672") -> dict[str, Any]:
    """Build the AsyncAPI 3.0 document: one channel, message and operation per event type."""
    models = [events.model_for(type) for type in events.event_types()]
    _, defs = models_json_schema([(m, "serialization") for m in models], ref_template=_REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    for model in models:
        name = model.__name__
        schemas[f"{name}Envelope"] = _envelope_schema(model)
        messages[name] = {
            "name": model.event_type,
            "title": model.event_type,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": CONTENT_TYPE,
            "payload": {"$ref": f"#/components/schemas/{name}Envelope"},
            "x-wharf-schema-version": model.version,
            "x-wharf-publisher": model.publisher,
        }
        channel = model.event_type.replace(".", "_")
        channels[channel] = {
            "address": model.event_type,
            "description": f"Routing key {model.event_type} on the {EVENTS_EXCHANGE} exchange",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"amqp": _channel_binding()},
        }
        operations[f"publish_{channel}"] = {
            "action": "send",
            "summary": f"{model.publisher} publishes {model.event_type}",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Wharf events",
            "version": __version__,
            "description": (
                "Events on the wharf.events topic exchange. Each message is an envelope whose"
                " type is the routing key and whose schema_version is the event's major version."
                " Readers ignore fields they do not know."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "rabbitmq": {"host": host, "protocol": "amqp", "protocolVersion": "0-9-1"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _channel_binding() -> dict[str, Any]:
    return {
        "is": "routingKey",
        "exchange": {"name": EVENTS_EXCHANGE, "type": "topic", "durable": True, "vhost": "/"},
        "bindingVersion": "0.3.0",
    }


def _envelope_schema(model: type[events.Event]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id", "type", "schema_version", "correlation_id", "created_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "Message id; dedupe on it"},
            "type": {"const": model.event_type},
            "schema_version": {"const": model.version},
            "tenant": {"type": "string"},
            "correlation_id": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "body": {"$ref": _REF.format(model=model.__name__)},
            "body_ref": {
                "type": "string",
                "description": "Object-storage key of a large body sent instead of body",
            },
        },
    }
