"""Background jobs on the real Redis: queued, run with progress, failed with a reason,
rescued from a dead worker, and the daily checkpoint scheduled once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from portal import jobs
from portal.extensions import db, redis_store
from portal.models import Organisation
from portal.services import checkpoints, ledger
from portal.services.errors import DomainError


@pytest.fixture
def queue(app: Flask) -> Iterator[Any]:
    client = redis_store.client()
    client.delete(jobs.QUEUE)
    yield client
    client.delete(jobs.QUEUE)


def test_a_checkpoint_job_runs_and_reports_its_result(
    queue: Any, app: Flask, signing_key: object, create_org: Callable[..., Organisation]
) -> None:
    org = create_org()
    ledger.append_entry(org.id, "donation_received", 100, "EUR", {})
    db.session.commit()
    job = jobs.enqueue("checkpoints.create")
    assert (job.status, job.percent) == ("queued", 0)
    assert jobs.run_pending(app) == 1
    done = jobs.get(job.id)
    assert done.status == "done" and done.percent == 100 and done.finished
    assert done.result is not None
    assert done.result["checkpoint_id"] == checkpoints.latest_checkpoint().id  # type: ignore[union-attr]
    assert done.total >= 1 and done.done == done.total


def test_a_failing_job_says_why(queue: Any, app: Flask, tmp_path: Any) -> None:
    app.config["CHECKPOINT_KEY_FILE"] = str(tmp_path / "none.key")
    try:
        job = jobs.enqueue("checkpoints.create")
        jobs.run_pending(app)
    finally:
        app.config["CHECKPOINT_KEY_FILE"] = ""
    failed = jobs.get(job.id)
    assert failed.status == "failed"
    assert "flask checkpoints keygen" in failed.message


def test_unknown_jobs_are_refused(app: Flask) -> None:
    with pytest.raises(DomainError):
        jobs.enqueue("nothing.here")
    with pytest.raises(jobs.JobNotFound):
        jobs.get("job_doesnotexist")
    with pytest.raises(jobs.JobNotFound):
        jobs.get("../etc")


def test_a_job_left_by_a_dead_worker_is_queued_again(queue: Any, app: Flask) -> None:
    job = jobs.enqueue("checkpoints.create")
    # A worker took it, then died: its running list remains, its heartbeat is gone.
    queue.lmove(jobs.QUEUE, jobs.RUNNING + "dead-worker", "RIGHT", "LEFT")
    assert queue.llen(jobs.QUEUE) == 0
    jobs._requeue_orphans(queue)
    assert queue.llen(jobs.QUEUE) == 1
    assert jobs.get(job.id).message == "Waiting for a worker (retry)"
    queue.delete(jobs.QUEUE)


def test_a_live_workers_jobs_are_left_alone(queue: Any, app: Flask) -> None:
    worker = jobs.Worker(app)
    worker.beat()
    jobs.enqueue("checkpoints.create")
    queue.lmove(jobs.QUEUE, jobs.RUNNING + worker.id, "RIGHT", "LEFT")
    jobs._requeue_orphans(queue)
    assert queue.llen(jobs.QUEUE) == 0
    queue.delete(jobs.RUNNING + worker.id, jobs.WORKER + worker.id)


def test_the_days_checkpoint_is_scheduled_once(
    queue: Any, app: Flask, signing_key: object
) -> None:
    from datetime import UTC, datetime

    queue.delete(f"jobs:scheduled:checkpoint:{datetime.now(UTC):%Y-%m-%d}")
    app.config["CHECKPOINT_HOUR"] = 0
    jobs._schedule_checkpoint(app, queue)
    jobs._schedule_checkpoint(app, queue)
    assert queue.llen(jobs.QUEUE) == 1
