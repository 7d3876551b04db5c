"""Flask extensions, created once here and bound to an app in ``create_app``."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg.types.json
import redis
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from htmx_flask import Htmx
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# JSON read from PostgreSQL (entry metadata) is parsed by orjson: four times faster
# than the standard library, which verifying a million entries feels.
psycopg.types.json.set_json_loads(orjson.loads)

# Constraint names are spelled out so that migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RedisClient:
    """One Redis connection pool per app, shared by caches, rate limits and sessions."""

    def __init__(self) -> None:
        self._clients: dict[int, redis.Redis] = {}

    def init_app(self, app: Flask) -> None:
        url = app.config["REDIS_URL"]
        self._clients[id(app)] = redis.Redis.from_url(url, decode_responses=True)
        app.extensions["portal_redis"] = self

    def client(self, app: Flask | None = None) -> redis.Redis:
        from flask import current_app

        target: Any = app or current_app._get_current_object()  # type: ignore[attr-defined]
        return self._clients[id(target)]


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
htmx = Htmx()
login_manager = LoginManager()
# Limits are counted in Redis, so every worker and every app process shares them.
limiter = Limiter(key_func=get_remote_address, strategy="moving-window")
redis_store = RedisClient()


def limits_storage_uri(redis_url: str) -> str:
    """The limits library names unix-socket Redis ``redis+unix://``."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://"):]
    return redis_url
