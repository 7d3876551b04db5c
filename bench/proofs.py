"""Merkle trees, checkpoints, proofs, the offline verifier and audit reports.

- appends with the tree's upkeep, next to the same appends with its trigger off;
- inclusion proofs through HTTP at 1,000,000 entries, next to a hello-world endpoint;
- checking one proof, next to hashing the same nodes with hashlib alone;
- ``amply-verify checkpoint`` on a 1,000,000-entry export (chain, root, signature),
  next to plain SHA-256 of the same file;
- audit reports of 10,000 and 100,000 entries, next to writing the export alone.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.harness import Figure, Results, make_app, operator_context, percentile, raw_url
from bench.ledger import _create_orgs, _run_writers, _service_writer
from bench.portal import _free_port, _latencies, _start_gunicorn, _vacuum
from portal.embedded import DatabaseUrls

PROOF_REQUESTS = 300


def _set_merkle_trigger(urls: DatabaseUrls, enabled: bool) -> None:
    with psycopg.connect(raw_url(urls.owner), autocommit=True) as connection:
        state = "ENABLE" if enabled else "DISABLE"
        connection.execute(f"ALTER TABLE ledger_entries {state} TRIGGER ledger_entries_merkle")


def merkle_upkeep(results: Results, urls: DatabaseUrls, redis_url: str, *, quick: bool) -> None:
    total = 1_000 if quick else 4_000
    orgs = _create_orgs(urls, redis_url, 2)
    with_tree = _run_writers(_service_writer, urls, redis_url, orgs[:1], 1, total)
    _set_merkle_trigger(urls, enabled=False)
    try:
        without = _run_writers(_service_writer, urls, redis_url, orgs[1:], 1, total)
    finally:
        _set_merkle_trigger(urls, enabled=True)
    cost = (1 / with_tree - 1 / without) * 1e6
    results.add(Figure(f"appends with Merkle upkeep (+{cost:.0f} µs each)", with_tree,
                       "appends/s", "same appends, tree trigger off", without))


def _build(app: Any, size: int, seed: int) -> tuple[str, str]:
    from portal.services import demo

    with operator_context(app):
        print(f"  building a {size:,}-entry ledger …", flush=True)
        org = demo.build_demo_data(organisations=1, entries=size, seed=seed, sign=False)[0]
        return org.id, org.slug


def _sign(app: Any) -> tuple[str, float, int]:
    """Make the signing key and the first checkpoint; (verifier key, seconds, entries)."""
    from portal.services import checkpoints

    with operator_context(app):
        signer = checkpoints.generate_key("bench.example")
        entries = checkpoints.entries_to_sign()
        began = time.perf_counter()
        checkpoints.create_checkpoint(datetime.now(UTC))
        return str(signer.verifier), time.perf_counter() - began, entries


def proofs(results: Results, urls: DatabaseUrls, redis_url: str, *, quick: bool,
           entries: int | None = None) -> None:
    from amply_verify import merkle

    size = entries or (100_000 if quick else 1_000_000)
    app = make_app(urls, redis_url)
    org_id, slug = _build(app, size, seed=31)
    with psycopg.connect(raw_url(urls.owner)) as connection:
        nodes, entries_size = connection.execute(
            "SELECT pg_total_relation_size('merkle_nodes'),"
            " pg_total_relation_size('ledger_entries')").fetchone() or (0, 0)
    results.add(Figure(f"Merkle tree storage at {size:,} entries", nodes / 1e6, "MB",
                       "the entries' own storage", entries_size / 1e6, higher_is_better=False))
    key, seconds, walked = _sign(app)
    print(f"  first checkpoint: {walked:,} entries checked and signed in {seconds:.1f} s"
          f" ({walked / seconds:,.0f} entries/s)", flush=True)
    with operator_context(app):
        from portal.services import ledger

        ids = [e.entry_id for e in ledger.iter_entries(org_id)]
    _vacuum(urls)
    picks = random.Random(5).sample(ids, min(PROOF_REQUESTS + 10, len(ids)))
    os.environ["CHECKPOINT_KEY_FILE"] = str(Path(app.instance_path) / "checkpoint-signing.key")
    port = _free_port()
    server = _start_gunicorn(urls, redis_url, port)
    try:
        hello = _latencies(port, "/healthz", PROOF_REQUESTS)
        timings, bodies = _proof_latencies(port, slug, picks)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        os.environ.pop("CHECKPOINT_KEY_FILE", None)
    p95, hello_p95 = percentile(timings, 95), percentile(hello, 95)
    results.add(Figure(f"inclusion proof over HTTP at {size:,} entries, p95", p95, "ms",
                       "hello-world p95", hello_p95, "goal ≤ 20 ms", p95 <= 20,
                       higher_is_better=False))

    # Checking a proof: the verifier's function, next to hashlib over the same nodes.
    body = bodies[0]
    path = [base64.b64decode(v) for v in body["inclusion_path"]]
    root = base64.b64decode(body["checkpoint"]["root_hash"])
    leaf = merkle.entry_leaf_hash(body["entry_hash"])
    rounds = 2_000
    began = time.perf_counter()
    for _ in range(rounds):
        merkle.verify_inclusion(body["leaf_index"], body["tree_size"], leaf, path, root)
    verify_ms = (time.perf_counter() - began) / rounds * 1000
    sha = hashlib.sha256
    began = time.perf_counter()
    for _ in range(rounds):
        value = leaf
        for sibling in path:
            value = sha(b"\x01" + value + sibling).digest()
    raw_ms = (time.perf_counter() - began) / rounds * 1000
    results.add(Figure(f"checking one inclusion proof ({len(path)} hashes)", verify_ms, "ms",
                       "hashlib over the same nodes", raw_ms, "goal ≤ 1 ms", verify_ms <= 1,
                       higher_is_better=False))
    _verifier(results, app, org_id, key, size)


def _proof_latencies(port: int, slug: str, picks: list[str]) -> tuple[list[float],
                                                                       list[dict[str, Any]]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    timings, bodies = [], []
    for index, entry_id in enumerate(picks):
        began = time.perf_counter()
        connection.request("GET", f"/api/v1/public/organisations/{slug}/entries/{entry_id}/proof")
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"proof of {entry_id} answered {response.status}: {data[:200]!r}")
        if index >= 10:
            timings.append((time.perf_counter() - began) * 1000)
            bodies.append(json.loads(data))
    connection.close()
    return timings, bodies


def _verifier(results: Results, app: Any, org_id: str, key: str, size: int) -> None:
    """``amply-verify checkpoint`` on the export, in its own process, timed and measured."""
    from portal.extensions import db
    from portal.models import Organisation
    from portal.services import checkpoints, ledger_export

    folder = Path(tempfile.mkdtemp(prefix="bench-verifier-"))
    export, document, key_file = folder / "ledger.json", folder / "chk.json", folder / "key"
    with operator_context(app):
        org = db.session.get(Organisation, org_id)
        with export.open("wb") as out:
            for chunk in ledger_export.export_chunks(org, "public"):  # type: ignore[arg-type]
                out.write(chunk)
        latest = checkpoints.latest_checkpoint()
        assert latest is not None
        document.write_text(json.dumps(checkpoints.get_document(latest.id)))
    key_file.write_text(key + "\n")
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys\n"
         "from amply_verify.cli import main\n"
         "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
         "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
         "print('PEAK', int(peak[0].split()[1]) / 1024, file=sys.stderr)\n"
         "sys.exit(code)",
         "checkpoint", str(export), "--checkpoint", str(document), "--public-key",
         str(key_file)], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"amply-verify failed: {done.stderr[-2000:]}")
    peak = float(done.stderr.split("PEAK")[-1].split()[0])
    began = time.perf_counter()
    digest = hashlib.sha256()
    with export.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    baseline = time.perf_counter() - began
    megabytes = export.stat().st_size / 1e6
    scaled = seconds * 1_000_000 / size
    results.add(Figure(f"amply-verify chain+root+checkpoint ({size:,} entries, "
                       f"{megabytes:.0f} MB)", seconds, "s", "sha256 of the file", baseline,
                       f"goal ≤ 10 s per 1M (here {scaled:.1f} s)", scaled <= 10,
                       higher_is_better=False))
    results.add(Figure("amply-verify peak resident memory", peak, "MB", "goal", 150,
                       "goal ≤ 150 MB", peak <= 150, higher_is_better=False))


def _report_child(urls: DatabaseUrls, redis_url: str, org_id: str, queue: Any) -> None:
    from amply_verify.report import Period
    from portal.extensions import db
    from portal.models import Organisation
    from portal.services import ledger_export, reports

    app = make_app(urls, redis_url)
    folder = Path(tempfile.mkdtemp(prefix="bench-report-"))
    with operator_context(app):
        org = db.session.get(Organisation, org_id)
        began = time.perf_counter()
        with (folder / "export.json").open("wb") as out:
            for chunk in ledger_export.export_chunks(org, "auditor"):  # type: ignore[arg-type]
                out.write(chunk)
        export_seconds = time.perf_counter() - began
        began = time.perf_counter()
        made = reports.build_pdf(org_id, Period(), "auditor", folder / "report.pdf")
        queue.put((time.perf_counter() - began, export_seconds, made.pages))


def audit_reports(results: Results, urls: DatabaseUrls, redis_url: str, *,
                  quick: bool) -> None:
    app = make_app(urls, redis_url)
    sizes = ((2_000, 20), (10_000, 60)) if quick else ((10_000, 20), (100_000, 60))
    for size, goal in sizes:
        org_id, _ = _build(app, size, seed=41 + size)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(target=_report_child, args=(urls, redis_url, org_id, queue))
        child.start()
        seconds, export_seconds, pages = queue.get()
        child.join()
        results.add(Figure(f"audit report PDF, {size:,} entries ({pages} pages)", seconds,
                           "s", "auditor export alone", export_seconds, f"goal ≤ {goal} s",
                           seconds <= goal, higher_is_better=False))

