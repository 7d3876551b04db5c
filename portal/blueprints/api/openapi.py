"""The OpenAPI 3.1 description of the public API, served as JSON and as a docs page."""

from __future__ import annotations

from typing import Any

from flask import current_app

FILTER_PARAMETERS: list[dict[str, Any]] = [
    {"name": "type", "in": "query", "schema": {"type": "string"},
     "description": "Entry type, e.g. donation_received or expense. Matches disclosed and "
                    "aggregated entries."},
    {"name": "category", "in": "query", "schema": {"type": "string"},
     "description": "Category, e.g. rent. Matches disclosed and aggregated entries."},
    {"name": "fund", "in": "query", "schema": {"type": "string"},
     "description": "Fund id (fund_…). Matches disclosed entries."},
    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"},
     "description": "First day (UTC), inclusive."},
    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"},
     "description": "Last day (UTC), inclusive."},
    {"name": "min", "in": "query", "schema": {"type": "string"},
     "description": "Smallest absolute amount in major units (e.g. 12.50). Disclosed entries "
                    "only."},
    {"name": "max", "in": "query", "schema": {"type": "string"},
     "description": "Largest absolute amount in major units. Disclosed entries only."},
    {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 100},
     "description": "Words (prefixes) in the payee, donor display name or description of "
                    "disclosed entries."},
]

ERROR = {"$ref": "#/components/schemas/Error"}


def _response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad input; the message says what", 404: "Not found",
            410: "The organisation has been suspended"}
    return {str(code): _response(text[code], ERROR) for code in codes}


ORGANISATION_PARAMETER = {
    "name": "reference", "in": "path", "required": True, "schema": {"type": "string"},
    "description": "Organisation id (org_…) or slug.",
}


def openapi_document() -> dict[str, Any]:
    name = current_app.config["PORTAL_NAME"]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{name} public API",
            "version": "1.0.0",
            "description": (
                "Read-only access to organisations and their public ledgers. Hidden entries "
                "appear as redacted rows (sequence and hashes, and for aggregated entries "
                "date, type and category), exactly as on the website. Amounts are integers "
                "in the currency's minor units. The ledger format and the hash formula are "
                "specified in docs/ledger-spec.md."
            ),
        },
        "servers": [{"url": current_app.config["PUBLIC_BASE_URL"]}],
        "paths": {
            "/api/v1/public/organisations": {"get": {
                "summary": "List active organisations",
                "operationId": "listOrganisations",
                "parameters": [
                    {"name": "q", "in": "query", "schema": {"type": "string"},
                     "description": "Search in names and descriptions."},
                    {"name": "country", "in": "query", "schema": {"type": "string"},
                     "description": "Two-letter country code."},
                    {"name": "sort", "in": "query",
                     "schema": {"type": "string", "enum": ["name", "raised", "recent"],
                                "default": "name"}},
                    {"name": "page", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "default": 1}},
                ],
                "responses": {
                    "200": _response("A page of organisations",
                                     {"$ref": "#/components/schemas/OrganisationList"}),
                    **_errors(400),
                },
            }},
            "/api/v1/public/organisations/{reference}": {"get": {
                "summary": "One organisation with its figures and funds",
                "operationId": "getOrganisation",
                "parameters": [ORGANISATION_PARAMETER],
                "responses": {
                    "200": _response("The organisation",
                                     {"$ref": "#/components/schemas/Organisation"}),
                    **_errors(404, 410),
                },
            }},
            "/api/v1/public/organisations/{reference}/ledger": {"get": {
                "summary": "A page of the public ledger, newest first",
                "description": (
                    "Cursor pagination by sequence: follow `next` (or pass `before` = the "
                    "`older` value) for older entries, `after` = the `newer` value for newer "
                    "ones. A page below the head does not change until a scheduled entry is "
                    "disclosed; its Cache-Control says how long."
                ),
                "operationId": "getLedger",
                "parameters": [
                    ORGANISATION_PARAMETER,
                    {"name": "before", "in": "query", "schema": {"type": "integer"},
                     "description": "Only entries with a smaller sequence."},
                    {"name": "after", "in": "query", "schema": {"type": "integer"},
                     "description": "Only entries with a larger sequence."},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                "default": 50}},
                    *FILTER_PARAMETERS,
                ],
                "responses": {
                    "200": _response("Entries", {"$ref": "#/components/schemas/LedgerPage"}),
                    "304": {"description": "Not modified (If-None-Match)"},
                    **_errors(400, 404, 410),
                },
            }},
            "/api/v1/public/organisations/{reference}/ledger/export": {"get": {
                "summary": "The whole public ledger as one verifiable JSON document",
                "description": "Streamed; format amply-ledger-export version 1.",
                "operationId": "exportLedger",
                "parameters": [ORGANISATION_PARAMETER],
                "responses": {
                    "200": _response("The export document", {"type": "object"}),
                    **_errors(404, 410),
                },
            }},
            **PROOF_PATHS,
        },
        "components": {"schemas": {**SCHEMAS, **PROOF_SCHEMAS}},
    }


ENTRY_PARAMETER = {"name": "entry_id", "in": "path", "required": True,
                   "schema": {"type": "string"}, "description": "Entry id (led_…)."}
CHECKPOINT_PARAMETER = {"name": "checkpoint_id", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^chk_\\d{4}_\\d{2}_\\d{2}$"},
                        "description": "Checkpoint id, chk_YYYY_MM_DD."}

PROOF_PATHS: dict[str, Any] = {
    "/api/v1/public/organisations/{reference}/entries/{entry_id}": {"get": {
        "summary": "One entry as the public may see it",
        "description": "A fully disclosed entry carries every hashed field, so its hash can "
                       "be recomputed; other entries are redacted rows.",
        "operationId": "getEntry",
        "parameters": [ORGANISATION_PARAMETER, ENTRY_PARAMETER],
        "responses": {"200": _response("The entry", {"$ref": "#/components/schemas/LedgerRow"}),
                      **_errors(404, 410)},
    }},
    "/api/v1/public/organisations/{reference}/entries/{entry_id}/proof": {"get": {
        "summary": "RFC 6962 inclusion proof of an entry",
        "description": (
            "Against the newest signed checkpoint that covers the entry (then `checkpoint` "
            "holds its signed note), or the given `tree_size`, or the current head when no "
            "checkpoint covers the entry yet. Leaf data is the entry_hash text; hashes are "
            "base64. With `format=tlog-proof` (or `Accept: text/x-tlog-proof`) the answer is "
            "a c2sp.org/tlog-proof file."),
        "operationId": "getInclusionProof",
        "parameters": [ORGANISATION_PARAMETER, ENTRY_PARAMETER,
                       {"name": "tree_size", "in": "query",
                        "schema": {"type": "integer", "minimum": 1}},
                       {"name": "format", "in": "query",
                        "schema": {"type": "string", "enum": ["json", "tlog-proof"]}}],
        "responses": {"200": _response("The proof",
                                       {"$ref": "#/components/schemas/InclusionProof"}),
                      **_errors(400, 404, 410)},
    }},
    "/api/v1/public/organisations/{reference}/consistency": {"get": {
        "summary": "RFC 6962 consistency proof between two tree sizes",
        "operationId": "getConsistencyProof",
        "parameters": [ORGANISATION_PARAMETER,
                       {"name": "first", "in": "query", "required": True,
                        "schema": {"type": "integer", "minimum": 0}},
                       {"name": "second", "in": "query", "required": True,
                        "schema": {"type": "integer", "minimum": 0}}],
        "responses": {"200": _response("The proof",
                                       {"$ref": "#/components/schemas/ConsistencyProof"}),
                      **_errors(400, 404, 410)},
    }},
    "/api/v1/public/checkpoints": {"get": {
        "summary": "Signed checkpoints, newest first",
        "operationId": "listCheckpoints",
        "parameters": [{"name": "before", "in": "query", "schema": {"type": "string"},
                        "description": "Only checkpoints older than this id."}],
        "responses": {"200": _response("Checkpoints", {"type": "object"})},
    }},
    "/api/v1/public/checkpoints/{checkpoint_id}": {"get": {
        "summary": "One signed checkpoint document",
        "description": "Format and signature: docs/ledger-spec.md, Checkpoints.",
        "operationId": "getCheckpoint",
        "parameters": [CHECKPOINT_PARAMETER],
        "responses": {"200": _response("The signed document", {"type": "object"}),
                      **_errors(404)},
    }},
    "/api/v1/public/checkpoint-key": {"get": {
        "summary": "The verifier key that signs checkpoints",
        "operationId": "getCheckpointKey",
        "responses": {"200": _response("The key (Go note verifier key format)",
                                       {"type": "object"}), **_errors(404)},
    }},
}

PROOF_SCHEMAS: dict[str, Any] = {
    "InclusionProof": {"type": "object", "properties": {
        "organisation_id": {"type": "string"}, "entry_id": {"type": "string"},
        "sequence": {"type": "integer"}, "leaf_index": {"type": "integer"},
        "entry_hash": {"type": "string"}, "leaf_hash": {"type": "string"},
        "tree_size": {"type": "integer"}, "root_hash": {"type": "string"},
        "inclusion_path": {"type": "array", "items": {"type": "string"}},
        "checkpoint": {"type": ["object", "null"], "properties": {
            "checkpoint_id": {"type": "string"}, "tree_size": {"type": "integer"},
            "root_hash": {"type": "string"}, "note": {"type": "string"},
            "url": {"type": "string"}}}}},
    "ConsistencyProof": {"type": "object", "properties": {
        "organisation_id": {"type": "string"}, "first": {"type": "integer"},
        "second": {"type": "integer"}, "first_root": {"type": "string"},
        "second_root": {"type": "string"},
        "consistency_path": {"type": "array", "items": {"type": "string"}}}},
}


SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
        "status": {"type": "integer"}, "title": {"type": "string"},
        "message": {"type": "string"}}}}},
    "Head": {"type": "object", "properties": {
        "sequence": {"type": "integer"},
        "entry_hash": {"type": ["string", "null"], "pattern": "^sha256:[0-9a-f]{64}$"},
        "timestamp": {"type": ["string", "null"]}}},
    "CurrencyFigures": {"type": "object", "properties": {
        "currency": {"type": "string"}, "income": {"type": "integer"},
        "spending": {"type": "integer"}, "balance": {"type": "integer"},
        "raised": {"type": "integer"},
        "undisclosed": {"type": "object", "properties": {
            "count": {"type": "integer"}, "net_amount": {"type": "integer"}}},
        "spending_by_category": {"type": "array", "items": {"type": "object", "properties": {
            "category": {"type": "string"}, "amount": {"type": "integer"}}}}}},
    "OrganisationSummary": {"type": "object", "properties": {
        "id": {"type": "string"}, "slug": {"type": "string"}, "name": {"type": "string"},
        "country": {"type": "string"}, "entry_count": {"type": "integer"},
        "last_activity": {"type": ["string", "null"]},
        "figures": {"type": "array", "items": {"$ref": "#/components/schemas/CurrencyFigures"}}}},
    "OrganisationList": {"type": "object", "properties": {
        "data": {"type": "array", "items": {"$ref": "#/components/schemas/OrganisationSummary"}},
        "page": {"type": "integer"}, "pages": {"type": "integer"},
        "total": {"type": "integer"}}},
    "Organisation": {"type": "object", "properties": {
        "id": {"type": "string"}, "slug": {"type": "string"}, "name": {"type": "string"},
        "legal_name": {"type": "string"}, "country": {"type": "string"},
        "default_currency": {"type": "string"}, "description": {"type": "string"},
        "website": {"type": "string"}, "head": {"$ref": "#/components/schemas/Head"},
        "figures": {"type": "array", "items": {"$ref": "#/components/schemas/CurrencyFigures"}},
        "funds": {"type": "array", "items": {"type": "object"}},
        "entries": {"type": "object", "properties": {
            "total": {"type": "integer"}, "fully_public": {"type": "integer"}}}}},
    "LedgerRow": {"type": "object", "required": ["sequence", "disclosure", "entry_hash"],
                  "properties": {
        "sequence": {"type": "integer"},
        "disclosure": {"type": "string", "enum": ["full", "aggregated", "scheduled", "internal"]},
        "visibility": {"type": "string"},
        "prev_entry_hash": {"type": ["string", "null"]}, "entry_hash": {"type": "string"},
        "timestamp": {"type": "string"}, "type": {"type": "string"},
        "category": {"type": ["string", "null"]}, "reveal_at": {"type": "string"},
        "entry_id": {"type": "string"}, "amount": {"type": "integer"},
        "currency": {"type": "string"}, "metadata": {"type": "object"},
        "running_balance": {"type": "integer",
                            "description": "Balance of disclosed entries in this currency."}}},
    "LedgerPage": {"type": "object", "properties": {
        "data": {"type": "array", "items": {"$ref": "#/components/schemas/LedgerRow"}},
        "newer": {"type": ["integer", "null"]}, "older": {"type": ["integer", "null"]},
        "next": {"type": ["string", "null"]}}},
}
