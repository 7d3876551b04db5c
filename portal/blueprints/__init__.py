"""Blueprints: thin views that validate input, call one service and render."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from portal.blueprints.account import bp as account_bp
    from portal.blueprints.admin import bp as admin_bp
    from portal.blueprints.api import bp as api_bp
    from portal.blueprints.checkpoints import bp as checkpoints_bp
    from portal.blueprints.dashboard import bp as dashboard_bp
    from portal.blueprints.donate import bp as donate_bp
    from portal.blueprints.public import bp as public_bp
    from portal.blueprints.webhooks import bp as webhooks_bp

    app.register_blueprint(public_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(checkpoints_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(donate_bp)
    app.register_blueprint(webhooks_bp)

    @app.context_processor
    def _known_endpoints() -> dict[str, object]:
        # Templates link to pages only when they exist in this build.
        return {"url_rules": set(app.view_functions)}
