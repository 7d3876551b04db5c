from __future__ import annotations

from flask import Response, jsonify, request

from portal.blueprints.api.proofs import checkpoint_list_json
from portal.blueprints.checkpoints import bp
from portal.services import checkpoints
from portal.web import render

WELL_KNOWN_KEY = "/.well-known/amply-checkpoint-key"


def _wants_json() -> bool:
    if request.args.get("format") == "json":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _negotiated(response: Response) -> Response:
    response.vary.add("Accept")
    return response


@bp.get("/checkpoints")
def index() -> Response:
    """Every checkpoint, newest first, with the newest one's line per organisation."""
    if _wants_json():
        return _negotiated(jsonify(checkpoint_list_json()))
    found = checkpoints.list_checkpoints(limit=50, before=request.args.get("before") or None)
    latest = found[0] if found and not request.args.get("before") else None
    lines = checkpoints.organisation_lines(latest.id) if latest else []
    return _negotiated(render("checkpoints/index.html", checkpoints=found, latest=latest,
                              lines=lines, keys=checkpoints.published_keys(),
                              more=len(found) == 50))


@bp.get("/checkpoints/<checkpoint_id>")
def detail(checkpoint_id: str) -> Response:
    if _wants_json():
        response = jsonify(checkpoints.get_document(checkpoint_id))
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return _negotiated(response)
    summary = checkpoints.get_checkpoint(checkpoint_id)
    document = checkpoints.get_document(checkpoint_id)
    return _negotiated(render(
        "checkpoints/detail.html", checkpoint=summary, lines=checkpoints.organisation_lines(
            checkpoint_id), total_volume=document["total_volume"],
        signature=document["signature"], verifier_key=document["verifier_key"]))


@bp.get(WELL_KNOWN_KEY)
def well_known_key() -> Response:
    """The verifier keys that sign checkpoints, current first, one per line."""
    keys = checkpoints.published_keys()
    if not keys:
        return Response("This portal has no checkpoint signing key yet.\n", status=404,
                        mimetype="text/plain")
    return Response("".join(f"{key}\n" for key in keys), mimetype="text/plain")
