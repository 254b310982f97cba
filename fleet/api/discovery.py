"""The Google API discovery document served at ``GET /fleet/v1/discovery``.

fleet published one (``id fleet:v1``, ``rootUrl "$ENDPOINT/"``) so clients
could generate bindings; its ``rootUrl`` is a placeholder the client must
substitute. This module writes our own document describing the same
resources, methods and schemas; it is built once per app and never mutated.
"""

from __future__ import annotations

from typing import Any

_STRING: dict[str, Any] = {"type": "string"}


def _page_token() -> dict[str, Any]:
    return {"type": "string", "location": "query", "description": "Token of the page to fetch."}


def _unit_name() -> dict[str, Any]:
    return {"type": "string", "location": "path", "required": True}


def discovery_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may serialise it however they like)."""
    schemas: dict[str, Any] = {
        "UnitOption": {
            "id": "UnitOption",
            "type": "object",
            "properties": {"section": _STRING, "name": _STRING, "value": _STRING},
        },
        "Unit": {
            "id": "Unit",
            "type": "object",
            "properties": {
                "name": _STRING,
                "options": {"type": "array", "items": {"$ref": "UnitOption"}},
                "desiredState": {"type": "string", "enum": ["inactive", "loaded", "launched"]},
                "currentState": {"type": "string", "enum": ["inactive", "loaded", "launched"]},
                "machineID": _STRING,
                "reason": {
                    "type": "string",
                    "description": "Extension: why the engine could not place the unit.",
                },
            },
        },
        "UnitPage": {
            "id": "UnitPage",
            "type": "object",
            "properties": {
                "units": {"type": "array", "items": {"$ref": "Unit"}},
                "nextPageToken": _STRING,
            },
        },
        "UnitState": {
            "id": "UnitState",
            "type": "object",
            "properties": {
                "name": _STRING,
                "hash": _STRING,
                "machineID": _STRING,
                "systemdLoadState": _STRING,
                "systemdActiveState": _STRING,
                "systemdSubState": _STRING,
            },
        },
        "UnitStatePage": {
            "id": "UnitStatePage",
            "type": "object",
            "properties": {
                "states": {"type": "array", "items": {"$ref": "UnitState"}},
                "nextPageToken": _STRING,
            },
        },
        "Machine": {
            "id": "Machine",
            "type": "object",
            "properties": {
                "id": _STRING,
                "primaryIP": _STRING,
                "metadata": {"type": "object", "additionalProperties": _STRING},
            },
        },
        "MachinePage": {
            "id": "MachinePage",
            "type": "object",
            "properties": {
                "machines": {"type": "array", "items": {"$ref": "Machine"}},
                "nextPageToken": _STRING,
            },
        },
    }
    resources: dict[str, Any] = {
        "Units": {
            "methods": {
                "List": {
                    "id": "fleet.Units.List",
                    "httpMethod": "GET",
                    "path": "units",
                    "parameters": {"nextPageToken": _page_token()},
                    "response": {"$ref": "UnitPage"},
                },
                "Get": {
                    "id": "fleet.Units.Get",
                    "httpMethod": "GET",
                    "path": "units/{unitName}",
                    "parameters": {"unitName": _unit_name()},
                    "parameterOrder": ["unitName"],
                    "response": {"$ref": "Unit"},
                },
                "Set": {
                    "id": "fleet.Units.Set",
                    "httpMethod": "PUT",
                    "path": "units/{unitName}",
                    "parameters": {"unitName": _unit_name()},
                    "parameterOrder": ["unitName"],
                    "request": {"$ref": "Unit"},
                },
                "Delete": {
                    "id": "fleet.Units.Delete",
                    "httpMethod": "DELETE",
                    "path": "units/{unitName}",
                    "parameters": {"unitName": _unit_name()},
                    "parameterOrder": ["unitName"],
                },
            }
        },
        "UnitState": {
            "methods": {
                "List": {
                    "id": "fleet.UnitState.List",
                    "httpMethod": "GET",
                    "path": "state",
                    "parameters": {
                        "nextPageToken": _page_token(),
                        "machineID": {"type": "string", "location": "query"},
                        "unitName": {"type": "string", "location": "query"},
                    },
                    "response": {"$ref": "UnitStatePage"},
                },
                "Get": {
                    "id": "fleet.UnitState.Get",
                    "httpMethod": "GET",
                    "path": "state/{unitName}",
                    "parameters": {"unitName": _unit_name()},
                    "parameterOrder": ["unitName"],
                    "response": {"$ref": "UnitState"},
                },
            }
        },
        "Machines": {
            "methods": {
                "List": {
                    "id": "fleet.Machines.List",
                    "httpMethod": "GET",
                    "path": "machines",
                    "parameters": {"nextPageToken": _page_token()},
                    "response": {"$ref": "MachinePage"},
                },
                "Patch": {
                    "id": "fleet.Machines.Patch",
                    "httpMethod": "PATCH",
                    "path": "machines",
                    "description": (
                        "Set or remove dynamic machine metadata: a JSON array of "
                        '{"op": "add"|"replace"|"remove", "path": "/<machineID>/metadata/<key>", '
                        '"value": {"value": "x"} or "x"}.'
                    ),
                },
            }
        },
    }
    return {
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": "fleet:v1",
        "name": "fleet",
        "version": "v1",
        "title": "fleet API",
        "description": "Schedule systemd units across a cluster of machines.",
        "documentationLink": "https://github.com/coreos/fleet/blob/master/Documentation/api-v1.md",
        "protocol": "rest",
        # A placeholder on purpose (as in fleet): the client knows the endpoint it used.
        "rootUrl": "$ENDPOINT/",
        "servicePath": "fleet/v1/",
        "batchPath": "batch",
        "parameters": {},
        "schemas": schemas,
        "resources": resources,
    }
