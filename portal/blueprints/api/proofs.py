"""Merkle proofs and signed checkpoints in JSON: standard RFC 6962 proofs, base64 hashes."""

from __future__ import annotations

import base64
from typing import Any

from flask import Response, abort, jsonify, request, url_for

from portal.blueprints.api import bp
from portal.blueprints.api.routes import _int
from portal.services import checkpoints
from portal.services import merkle as trees
from portal.services.organisations import find_public_organisation

TLOG_PROOF_TYPE = "text/x-tlog-proof"


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _wants_tlog_proof() -> bool:
    if request.args.get("format") == "tlog-proof":
        return True
    best = request.accept_mimetypes.best_match(["application/json", TLOG_PROOF_TYPE])
    return best == TLOG_PROOF_TYPE and request.accept_mimetypes[TLOG_PROOF_TYPE] > 0


def _line_json(line: checkpoints.OrganisationLine | None) -> dict[str, Any] | None:
    if line is None:
        return None
    return {
        "checkpoint_id": line.checkpoint_id,
        "tree_size": line.tree_size,
        "root_hash": line.root_hash,
        "note": line.note,
        "url": url_for("api.checkpoint_document", checkpoint_id=line.checkpoint_id,
                       _external=True),
    }


def proof_json(proven: checkpoints.ProvenEntry) -> dict[str, Any]:
    """The JSON of an inclusion proof (also used by the receipt pages)."""
    proof = proven.proof
    return {
        "organisation_id": proof.organisation_id,
        "entry_id": proof.entry_id,
        "sequence": proof.sequence,
        "leaf_index": proof.leaf_index,
        "entry_hash": proof.entry_hash,
        "leaf_hash": _b64(proof.leaf_hash),
        "tree_size": proof.tree_size,
        "root_hash": _b64(proof.root),
        "inclusion_path": [_b64(value) for value in proof.path],
        "checkpoint": _line_json(proven.line),
    }


@bp.get("/api/v1/public/organisations/<reference>/entries/<entry_id>/proof")
def entry_proof(reference: str, entry_id: str) -> Response:
    """RFC 6962 inclusion proof of one entry, against the newest checkpoint covering it
    (``tree_size`` to choose another size); ``format=tlog-proof`` for the C2SP file."""
    org = find_public_organisation(reference)
    proven = checkpoints.prove_entry(org.id, entry_id, _int("tree_size"))
    if _wants_tlog_proof():
        text = proven.tlog_proof()
        if text is None:
            abort(404, "No signed checkpoint covers this entry yet; checkpoints are made daily.")
        response = Response(text, mimetype="text/plain")
        response.headers["Content-Disposition"] = (
            f'attachment; filename="{entry_id}.tlog-proof"')
        return response
    return jsonify(proof_json(proven))


@bp.get("/api/v1/public/organisations/<reference>/consistency")
def consistency(reference: str) -> Response:
    """RFC 6962 consistency proof: the tree of ``second`` entries extends that of ``first``."""
    org = find_public_organisation(reference)
    first, second = _int("first", low=0), _int("second", low=0)
    if first is None or second is None:
        abort(400, "first and second (tree sizes) are required")
    proof = trees.consistency_proof(org.id, first, second)
    return jsonify({
        "organisation_id": org.id, "first": first, "second": second,
        "first_root": _b64(proof.first_root), "second_root": _b64(proof.second_root),
        "consistency_path": [_b64(value) for value in proof.path],
    })


def _summary_json(summary: checkpoints.CheckpointSummary) -> dict[str, Any]:
    return {
        "checkpoint_id": summary.id, "period": summary.period.isoformat(),
        "timestamp": summary.timestamp, "previous_checkpoint_id": summary.previous_id,
        "entry_count": summary.entry_count, "organisation_count": summary.organisation_count,
        "cumulative_hash": summary.cumulative_hash,
        "url": url_for("api.checkpoint_document", checkpoint_id=summary.id, _external=True),
    }


def checkpoint_list_json() -> dict[str, Any]:
    before = request.args.get("before") or None
    found = checkpoints.list_checkpoints(limit=50, before=before)
    return {
        "data": [_summary_json(summary) for summary in found],
        "next": (url_for("api.checkpoint_list", before=found[-1].id, _external=True)
                 if len(found) == 50 else None),
        "verifier_keys": checkpoints.published_keys(),
    }


@bp.get("/api/v1/public/checkpoints")
def checkpoint_list() -> Response:
    return jsonify(checkpoint_list_json())


@bp.get("/api/v1/public/checkpoints/<checkpoint_id>")
def checkpoint_document(checkpoint_id: str) -> Response:
    """The signed checkpoint document, as published; it never changes."""
    response = jsonify(checkpoints.get_document(checkpoint_id))
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


@bp.get("/api/v1/public/checkpoint-key")
def checkpoint_key() -> Response:
    keys = checkpoints.published_keys()
    if not keys:
        abort(404, "This portal has no checkpoint signing key yet.")
    return jsonify({"verifier_key": keys[0], "previous_keys": keys[1:],
                    "format": "Go note verifier key: <name>+<key id>+<base64(0x01 || key)>"})
