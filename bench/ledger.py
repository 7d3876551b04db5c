"""Ledger benchmarks: appends, bulk building and verify_chain, each against a raw baseline."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import time
from typing import Any

import psycopg

from bench.harness import (
    Figure,
    Results,
    make_app,
    now,
    operator_context,
    peak_rss_mb,
    raw_url,
)
from portal.embedded import DatabaseUrls

RAW_TABLE = """
CREATE TABLE IF NOT EXISTS bench_raw_entries (
    entry_id text PRIMARY KEY, organisation_id text NOT NULL, sequence bigint NOT NULL,
    timestamp text NOT NULL, type text NOT NULL, amount bigint NOT NULL, currency text NOT NULL,
    metadata jsonb NOT NULL, prev_entry_hash text, entry_hash text NOT NULL,
    balance_after bigint NOT NULL, UNIQUE (organisation_id, sequence))
"""
RAW_INSERT = (
    "INSERT INTO bench_raw_entries (entry_id, organisation_id, sequence, timestamp, type, amount,"
    " currency, metadata, prev_entry_hash, entry_hash, balance_after)"
    " VALUES (%s, %s, %s, %s, 'donation_received', %s, 'EUR', %s::jsonb, %s, %s, %s)"
)
METADATA = {"donor_name": "Bench Donor", "category": "programs", "donation_id": "don_bench"}
HASH = "sha256:" + "ab" * 32


def _create_orgs(urls: DatabaseUrls, redis_url: str, count: int) -> list[str]:
    from portal.services.organisations import create_organisation

    app = make_app(urls, redis_url)
    with operator_context(app):
        return [create_organisation(name=f"Bench {i} {time.time_ns()}", country="DE",
                                    default_currency="EUR", status="active").id
                for i in range(count)]


def _service_writer(urls: DatabaseUrls, redis_url: str, orgs: list[str], count: int,
                    ready: Any, start: Any, results: Any) -> None:
    from portal.extensions import db
    from portal.services import ledger

    app = make_app(urls, redis_url)
    with operator_context(app):
        for org in orgs[:3]:  # warm the connection, prepared statements and caches
            ledger.append_entry(org, "donation_received", 1, "EUR", METADATA)
            db.session.commit()
        ready.release()
        start.wait()
        began = now()
        for i in range(count):
            ledger.append_entry(orgs[i % len(orgs)], "donation_received", 100 + i % 900, "EUR",
                                METADATA)
            db.session.commit()
        results.put((began, now(), count))


def _raw_writer(urls: DatabaseUrls, redis_url: str, orgs: list[str], count: int,
                ready: Any, start: Any, results: Any) -> None:
    import json
    import os

    with psycopg.connect(raw_url(urls.owner)) as connection:
        prefix = f"{os.getpid()}-"
        metadata = json.dumps(METADATA)
        connection.execute("SELECT 1")
        connection.commit()
        ready.release()
        start.wait()
        began = now()
        for i in range(count):
            connection.execute(RAW_INSERT, (f"led_{prefix}{i}", orgs[i % len(orgs)] + prefix,
                                            i, "2030-01-01T00:00:00Z", 100, metadata, HASH,
                                            HASH, i))
            connection.commit()
        results.put((began, now(), count))


def _run_writers(target: Any, urls: DatabaseUrls, redis_url: str, orgs: list[str],
                 writers: int, per_writer: int) -> float:
    """Start ``writers`` processes, release them together, return appends per second."""
    ctx = mp.get_context("spawn")
    ready, start, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    processes = []
    for w in range(writers):
        mine = orgs[w::writers] if len(orgs) >= writers else orgs
        process = ctx.Process(target=target, args=(urls, redis_url, mine, per_writer,
                                                   ready, start, results))
        process.start()
        processes.append(process)
    for _ in processes:
        ready.acquire()
    start.set()
    spans = [results.get() for _ in processes]
    for process in processes:
        process.join()
        if process.exitcode:
            raise RuntimeError(f"a writer failed with exit code {process.exitcode}")
    began = min(span[0] for span in spans)
    ended = max(span[1] for span in spans)
    return float(sum(span[2] for span in spans) / (ended - began))


def appends(results: Results, urls: DatabaseUrls, redis_url: str, *, quick: bool) -> None:
    total = 1_200 if quick else 6_000
    with psycopg.connect(raw_url(urls.owner), autocommit=True) as connection:
        connection.execute(RAW_TABLE)
    for org_count, writers, goal in ((1, 1, 1_500), (1, 4, 1_500), (100, 4, 4_000)):
        orgs = _create_orgs(urls, redis_url, org_count)
        per_writer = total // writers
        service = _run_writers(_service_writer, urls, redis_url, orgs, writers,
                               per_writer)
        raw = _run_writers(_raw_writer, urls, redis_url, orgs, writers, per_writer)
        label = f"appends, {org_count} org{'s' if org_count > 1 else ''}, {writers} writer"
        results.add(Figure(label + ("s" if writers > 1 else ""), service, "appends/s",
                           "raw INSERT+COMMIT", raw, f"goal ≥ {goal:,}/s", service >= goal))


def bulk(results: Results, urls: DatabaseUrls, redis_url: str, *, quick: bool) -> None:
    from portal.services import demo

    entries = 50_000 if quick else 300_000
    app = make_app(urls, redis_url)
    with operator_context(app):
        began = time.perf_counter()
        demo.build_demo_data(organisations=1, entries=entries, seed=7, sign=False)
        service = entries / (time.perf_counter() - began)
    rows = [(f"led_bulk_{i}", "org_bulk", i, "2030-01-01T00:00:00Z", "donation_received", 100,
             "EUR", '{"donor_name":"Bench Donor","category":"programs"}', HASH, HASH, i)
            for i in range(entries)]
    with psycopg.connect(raw_url(urls.owner)) as connection:
        connection.execute(RAW_TABLE)
        connection.execute("CREATE TEMP TABLE bulk_raw (LIKE bench_raw_entries INCLUDING ALL)")
        began = time.perf_counter()
        with connection.cursor() as cursor, cursor.copy(
            "COPY bulk_raw (entry_id, organisation_id, sequence, timestamp, type, amount,"
            " currency, metadata, prev_entry_hash, entry_hash, balance_after) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
        connection.commit()
        raw = entries / (time.perf_counter() - began)
    results.add(Figure(f"demo-data bulk build ({entries:,} entries)", service, "entries/s",
                       "raw COPY", raw, "goal ≥ 20,000/s", service >= 20_000))


def _verify_child(urls: DatabaseUrls, redis_url: str, org: str, results: Any) -> None:
    from portal.services import ledger

    app = make_app(urls, redis_url)
    with operator_context(app):
        began = time.perf_counter()
        outcome = ledger.verify_chain(org)
        seconds = time.perf_counter() - began
    results.put((outcome.valid, outcome.entry_count, seconds, peak_rss_mb()))


def _hash_child(urls: DatabaseUrls, redis_url: str, org: str, results: Any) -> None:
    """Hash exactly the bytes verify_chain hashes, with hashlib alone (payloads built first)."""
    from amply_verify.hashing import canonical_json
    from portal.services import ledger

    app = make_app(urls, redis_url)
    with operator_context(app):
        payloads = [
            "|".join((e.entry_id, e.timestamp, e.organisation_id, e.type, str(e.amount),
                      e.currency, canonical_json(e.metadata), e.prev_entry_hash or "null")
                     ).encode()
            for e in ledger.iter_entries(org)
        ]
    sha256 = hashlib.sha256
    began = time.perf_counter()
    for payload in payloads:
        sha256(payload).hexdigest()
    results.put((len(payloads), time.perf_counter() - began))


def verify(results: Results, urls: DatabaseUrls, redis_url: str, *, quick: bool,
           entries: int | None = None) -> None:
    from portal.services import demo

    size = entries or (100_000 if quick else 1_000_000)
    app = make_app(urls, redis_url)
    with operator_context(app):
        print(f"  building a {size:,}-entry ledger for verify_chain …", flush=True)
        org = demo.build_demo_data(organisations=1, entries=size, seed=11, sign=False)[0].id
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_verify_child, args=(urls, redis_url, org, queue))
    child.start()
    valid, count, seconds, rss = queue.get()
    child.join()
    child = ctx.Process(target=_hash_child, args=(urls, redis_url, org, queue))
    child.start()
    hashed, hash_seconds = queue.get()
    child.join()
    if not valid or hashed != count:
        raise RuntimeError("verify_chain did not find the demo ledger valid")
    rate, baseline = count / seconds, hashed / hash_seconds
    scaled = seconds * 1_000_000 / count
    results.add(Figure(f"verify_chain ({count:,} entries, {seconds:.1f} s)", rate,
                       "entries/s", "hashlib alone", baseline,
                       f"goal ≤ 10 s per 1M (here {scaled:.1f} s)", scaled <= 10))
    results.add(Figure("verify_chain peak resident memory", rss, "MB", "goal", 150,
                       "goal ≤ 150 MB", rss <= 150, higher_is_better=False))
