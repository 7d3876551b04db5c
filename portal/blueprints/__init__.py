"""Blueprints: thin views that validate input, call one service and render."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from portal.blueprints.api import bp as api_bp
    from portal.blueprints.public import bp as public_bp

    app.register_blueprint(public_bp)
    app.register_blueprint(api_bp)
