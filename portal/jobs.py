"""Background jobs on Redis: checkpoints and large reports, with progress anyone may poll.

A job is a Redis hash (``jobs:<id>``) and its id on the queue list. Workers move an id
from the queue to their own "running" list (BLMOVE), so a job whose worker dies is
found by the next worker that starts or looks around, and queued again (up to
``MAX_ATTEMPTS`` times). Workers run in a thread of each app process
(``JOBS_IN_PROCESS``) or on their own (``flask jobs worker``). Each one also
queues the day's checkpoint once ``CHECKPOINT_HOUR`` has passed.

Handlers take their parameters and a ``Progress`` and return a JSON-able result; they
run in an app context with the operators' scope and own their commits.
"""

from __future__ import annotations

import json
import logging
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click
import redis
from flask import Flask, current_app
from flask.cli import AppGroup

from portal.extensions import db, redis_store
from portal.services import tenancy
from portal.services.errors import DomainError, NotFound

log = logging.getLogger(__name__)

QUEUE = "jobs:queue"
RUNNING = "jobs:running:"
WORKER = "jobs:worker:"
KEEP_SECONDS = 7 * 24 * 3600
HEARTBEAT_SECONDS = 30
MAX_ATTEMPTS = 3
STATUSES = ("queued", "running", "done", "failed")

Handler = Callable[[dict[str, Any], "Progress"], dict[str, Any]]
_HANDLERS: dict[str, Handler] = {}


class JobNotFound(NotFound):
    """No such job (or it finished long ago)."""


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    status: str
    params: dict[str, Any]
    done: int
    total: int
    message: str
    result: dict[str, Any] | None
    owner: str
    created_at: str
    finished_at: str

    @property
    def finished(self) -> bool:
        return self.status in {"done", "failed"}

    @property
    def percent(self) -> int:
        if self.status == "done":
            return 100
        return int(100 * self.done / self.total) if self.total else 0


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of ``kind``."""

    def register(function: Handler) -> Handler:
        _HANDLERS[kind] = function
        return function

    return register


def _client() -> redis.Redis:
    return redis_store.client()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(job_id: str) -> str:
    return f"jobs:{job_id}"


def _fields(client: redis.Redis, job_id: str) -> dict[str, str]:
    """A job's hash as text (the client decodes responses)."""
    return {str(k): str(v) for k, v in client.hgetall(_key(job_id)).items()}


class Progress:
    """What a handler reports: how far it got, and what it is doing."""

    def __init__(self, client: redis.Redis, job_id: str) -> None:
        self.job_id = job_id
        self._client, self._key = client, _key(job_id)
        self._done, self._last = 0, 0.0

    def total(self, count: int) -> None:
        self._client.hset(self._key, mapping={"total": count, "done": 0})

    def message(self, text: str) -> None:
        self._client.hset(self._key, "message", text)

    def advance(self, count: int = 1) -> None:
        self._done += count
        now = time.monotonic()
        if now - self._last >= 0.25:  # progress is polled, not streamed: a few writes a second
            self._client.hset(self._key, "done", self._done)
            self._last = now

    def flush(self) -> None:
        self._client.hset(self._key, "done", self._done)


def enqueue(kind: str, params: dict[str, Any] | None = None, *, owner: str = "") -> Job:
    if kind not in _HANDLERS:
        raise DomainError(f"unknown job kind {kind!r}")
    job_id = "job_" + secrets.token_hex(12)
    client = _client()
    with client.pipeline() as pipe:
        pipe.hset(_key(job_id), mapping={
            "kind": kind, "status": "queued", "params": json.dumps(params or {}),
            "done": 0, "total": 0, "message": "Waiting for a worker", "owner": owner,
            "created_at": _now(), "attempts": 0,
        })
        pipe.expire(_key(job_id), KEEP_SECONDS)
        pipe.lpush(QUEUE, job_id)
        pipe.execute()
    return get(job_id)


def get(job_id: str) -> Job:
    if not job_id.startswith("job_") or len(job_id) > 40:
        raise JobNotFound("no such job")
    raw = _fields(_client(), job_id)
    if not raw:
        raise JobNotFound("no such job, or it finished more than a week ago")
    return Job(
        job_id, raw["kind"], raw["status"], json.loads(raw.get("params") or "{}"),
        int(raw.get("done") or 0), int(raw.get("total") or 0), raw.get("message", ""),
        json.loads(raw["result"]) if raw.get("result") else None, raw.get("owner", ""),
        raw.get("created_at", ""), raw.get("finished_at", ""),
    )


# --------------------------------------------------------------------------- worker


def _run(app: Flask, client: redis.Redis, job_id: str) -> None:
    key = _key(job_id)
    raw = _fields(client, job_id)
    if not raw:
        return
    function = _HANDLERS.get(raw["kind"])
    client.hset(key, mapping={"status": "running", "message": "Started",
                              "attempts": int(raw.get("attempts") or 0) + 1})
    progress = Progress(client, job_id)
    with app.app_context():
        tenancy.platform()
        try:
            if function is None:
                raise DomainError(f"unknown job kind {raw['kind']!r}")
            result = function(json.loads(raw.get("params") or "{}"), progress)
        except DomainError as exc:
            db.session.rollback()
            client.hset(key, mapping={"status": "failed", "message": str(exc),
                                      "finished_at": _now()})
        except Exception:
            db.session.rollback()
            log.exception("job %s (%s) failed", job_id, raw["kind"])
            client.hset(key, mapping={"status": "failed", "finished_at": _now(),
                                      "message": "The job failed unexpectedly; the error is"
                                                 " in the portal's log."})
        else:
            progress.flush()
            client.hset(key, mapping={"status": "done", "result": json.dumps(result),
                                      "message": "Finished", "finished_at": _now()})
        finally:
            db.session.remove()


def _requeue_orphans(client: redis.Redis) -> None:
    """Jobs left running by workers that stopped sending heartbeats go back on the queue."""
    for found in client.scan_iter(match=RUNNING + "*"):
        running = str(found)
        worker_id = running[len(RUNNING):]
        if client.exists(WORKER + worker_id):
            continue
        while (popped := client.rpop(running)) is not None:
            job_id = str(popped)
            attempts = int(client.hget(_key(job_id), "attempts") or 0)
            if attempts >= MAX_ATTEMPTS:
                client.hset(_key(job_id), mapping={
                    "status": "failed", "finished_at": _now(),
                    "message": "The job stopped with its worker too many times."})
                continue
            client.hset(_key(job_id), mapping={"status": "queued",
                                               "message": "Waiting for a worker (retry)"})
            client.lpush(QUEUE, job_id)


def _schedule_checkpoint(app: Flask, client: redis.Redis) -> None:
    """Queue the day's checkpoint once its hour has passed, once per day across workers."""
    now = datetime.now(UTC)
    if now.hour < app.config["CHECKPOINT_HOUR"]:
        return
    marker = f"jobs:scheduled:checkpoint:{now:%Y-%m-%d}"
    if client.exists(marker):
        return
    with app.app_context():
        from portal.services import checkpoints

        tenancy.platform()
        try:
            if checkpoints.verifier() is None:
                return
            exists = checkpoints.latest_checkpoint()
            if exists is not None and exists.period >= now.date():
                client.set(marker, "done", ex=2 * 24 * 3600)
                return
        finally:
            db.session.remove()
    if client.set(marker, "queued", nx=True, ex=2 * 24 * 3600):
        enqueue_in(app, "checkpoints.create")


def enqueue_in(app: Flask, kind: str, params: dict[str, Any] | None = None) -> Job:
    with app.app_context():
        return enqueue(kind, params)


class Worker:
    """Takes jobs off the queue one at a time until told to stop."""

    def __init__(self, app: Flask, *, schedule: bool = True) -> None:
        self.app = app
        self.id = f"{socket.gethostname()}-{secrets.token_hex(4)}"
        self.schedule = schedule
        self.stopping = threading.Event()

    def _client(self) -> redis.Redis:
        return redis_store.client(self.app)

    def beat(self) -> None:
        self._client().set(WORKER + self.id, _now(), ex=HEARTBEAT_SECONDS * 3)

    def run_once(self, wait: int = 0) -> bool:
        """Run one job if there is one (waiting up to ``wait`` seconds); True if it did."""
        client = self._client()
        self.beat()
        running = RUNNING + self.id
        if wait:
            moved = client.blmove(QUEUE, running, wait, "RIGHT", "LEFT")
        else:
            moved = client.lmove(QUEUE, running, "RIGHT", "LEFT")
        if moved is None:
            return False
        job_id = str(moved)
        try:
            _run(self.app, client, job_id)
        finally:
            client.lrem(running, 1, job_id)
        return True

    def run(self) -> None:
        client = self._client()
        last_look = 0.0
        while not self.stopping.is_set():
            try:
                if time.monotonic() - last_look > HEARTBEAT_SECONDS:
                    self.beat()
                    _requeue_orphans(client)
                    if self.schedule:
                        _schedule_checkpoint(self.app, client)
                    last_look = time.monotonic()
                self.run_once(wait=2)
            except redis.RedisError:
                log.exception("job worker %s lost Redis; retrying", self.id)
                self.stopping.wait(5)
        client.delete(WORKER + self.id)

    def stop(self) -> None:
        self.stopping.set()


def run_pending(app: Flask | None = None) -> int:
    """Run every queued job now, in this thread (tests, ``flask jobs worker --once``)."""
    target = app or current_app._get_current_object()  # type: ignore[attr-defined]
    worker = Worker(target, schedule=False)
    count = 0
    while worker.run_once():
        count += 1
    worker._client().delete(WORKER + worker.id)
    return count


_in_process_lock = threading.Lock()


def start_in_process_worker(app: Flask) -> None:
    """Start this process's worker thread, once (called on the first request)."""
    with _in_process_lock:
        if app.extensions.get("portal_job_worker") is not None:
            return
        worker = Worker(app)
        app.extensions["portal_job_worker"] = worker
        threading.Thread(target=worker.run, name="portal-jobs", daemon=True).start()


def init_app(app: Flask) -> None:
    from portal.services import reports  # noqa: F401  (registers its job handler)

    app.cli.add_command(jobs_cli)
    if not app.config["JOBS_IN_PROCESS"]:
        return

    @app.before_request
    def _start_worker() -> None:
        if "portal_job_worker" not in app.extensions:
            start_in_process_worker(app)


@handler("checkpoints.create")
def _create_checkpoint(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    from portal.services import checkpoints

    progress.total(checkpoints.entries_to_sign())
    progress.message("Checking the entries appended since the last checkpoint")
    made = checkpoints.create_checkpoint(progress=progress.advance)
    return {"checkpoint_id": made.checkpoint.id, "created": made.created,
            "entry_count": made.checkpoint.entry_count}


jobs_cli = AppGroup("jobs", help="Background jobs (checkpoints, large reports).")


@jobs_cli.command("worker")
@click.option("--once", is_flag=True, help="Run the queued jobs, then stop.")
def worker_command(once: bool) -> None:
    """Run jobs from the queue until stopped (Ctrl-C or SIGTERM); also schedules the
    daily checkpoint."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if once:
        click.echo(f"{run_pending(app)} job(s) run.")
        return
    worker = Worker(app)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    click.echo(f"Job worker {worker.id} waiting for jobs (Ctrl-C to stop).")
    try:
        worker.run()
    except KeyboardInterrupt:
        worker.stop()


@jobs_cli.command("show")
@click.argument("job_id")
def show_command(job_id: str) -> None:
    """Print a job's state; exit code 1 if it failed."""
    try:
        job = get(job_id)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{job.id} {job.kind}: {job.status} ({job.percent} %) {job.message}")
    if job.result:
        click.echo(json.dumps(job.result, indent=2))
    if job.status == "failed":
        sys.exit(1)
