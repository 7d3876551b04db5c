"""Public portal benchmarks: pages of a 1,000,000-entry ledger through gunicorn on loopback.

Each page's p50/p95 is printed next to a hello-world endpoint of the same app
(``/healthz``) measured in the same run, and the JSON export next to the ledger's
own streaming read.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import ROOT, Figure, Results, make_app, operator_context, percentile
from portal.embedded import DatabaseUrls

REQUESTS = 200


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_gunicorn(urls: DatabaseUrls, redis_url: str, port: int) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ, "DATABASE_URL": urls.app, "REDIS_URL": redis_url,
        "SECRET_KEY": "bench-secret-key-bench-secret-key", "PORTAL_ENV": "production",
        "LOG_LEVEL": "WARNING", "PYTHONWARNINGS": "ignore",
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--log-level", "warning", "wsgi:app"],
        cwd=ROOT, env=environ,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("gunicorn did not start")


def _latencies(port: int, path: str, count: int = REQUESTS) -> list[float]:
    return _interleaved_latencies(port, [path], count)[path]


def _interleaved_latencies(port: int, paths: list[str],
                           count: int = REQUESTS) -> dict[str, list[float]]:
    """Request each path in turn, ``count`` rounds after ten warm-up rounds, so every
    path (the baseline too) is timed under the same conditions."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    timings: dict[str, list[float]] = {path: [] for path in paths}
    for index in range(count + 10):
        for path in paths:
            began = time.perf_counter()
            connection.request("GET", path, headers={"Accept-Language": "en"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{path} answered {response.status}")
            if index >= 10:  # the first rounds warm caches and connections
                timings[path].append((time.perf_counter() - began) * 1000)
    connection.close()
    return timings


def _worker_peak_mb(process: subprocess.Popen[bytes]) -> float:
    """The largest peak resident memory among gunicorn's workers (VmHWM)."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    peaks = []
    for pid in children.read_text().split():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks, default=0.0)


def pages(results: Results, urls: DatabaseUrls, redis_url: str, *, quick: bool,
          entries: int | None = None) -> None:
    from portal.services import demo

    size = entries or (100_000 if quick else 1_000_000)
    app = make_app(urls, redis_url)
    with operator_context(app):
        print(f"  building a {size:,}-entry ledger …", flush=True)
        org = demo.build_demo_data(organisations=1, entries=size, seed=21, sign=False)[0]
        slug, org_id = org.slug, org.id
    _vacuum(urls)
    port = _free_port()
    server = _start_gunicorn(urls, redis_url, port)
    try:
        deep = size - min(10_000 * 50, size // 2)  # "page 10,000" (or halfway)
        measured = (
            ("first ledger page", f"/orgs/{slug}/ledger"),
            (f"deep ledger page (before={deep:,})", f"/orgs/{slug}/ledger?before={deep}"),
            ("filtered ledger page (type=expense)", f"/orgs/{slug}/ledger?type=expense"),
            ("filtered deep page (category, cursor)",
             f"/orgs/{slug}/ledger?category=rent&before={deep}"),
            ("organisation page", f"/orgs/{slug}"),
        )
        timings = _interleaved_latencies(port, ["/healthz", *(path for _, path in measured)])
        hello = timings["/healthz"]
        hello_p50, hello_p95 = percentile(hello, 50), percentile(hello, 95)
        for label, path in measured:
            p50, p95 = percentile(timings[path], 50), percentile(timings[path], 95)
            results.add(Figure(f"{label}, p50", p50, "ms", "hello-world p50", hello_p50,
                               higher_is_better=False))
            results.add(Figure(f"{label}, p95", p95, "ms", "hello-world p95", hello_p95,
                               "goal ≤ 50 ms and ≤ 5× hello-world",
                               p95 <= 50 and p95 <= 5 * hello_p95, higher_is_better=False))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        began = time.perf_counter()
        connection.request("GET", f"/orgs/{slug}/ledger.json")
        response = connection.getresponse()
        received = 0
        while chunk := response.read(1 << 20):
            received += len(chunk)
        seconds = time.perf_counter() - began
        rate = size / seconds
        baseline = _raw_stream_rate(urls, org_id)
        results.add(Figure(f"JSON export over HTTP ({size:,} entries, {received / 1e6:.0f} MB)",
                           rate, "entries/s", "database read alone", baseline,
                           "goal ≥ 100,000/s", rate >= 100_000))
        peak = _worker_peak_mb(server)
        results.add(Figure("JSON export, worker peak resident memory", peak, "MB", "goal", 200,
                           "goal ≤ 200 MB", peak <= 200, higher_is_better=False))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def _vacuum(urls: DatabaseUrls) -> None:
    """Let index-only scans see the freshly loaded rows, as autovacuum would."""
    import psycopg

    from bench.harness import raw_url

    with psycopg.connect(raw_url(urls.owner), autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE ledger_entries")


def _raw_stream_rate(urls: DatabaseUrls, organisation_id: str) -> float:
    """Entries per second of reading the same rows with a server-side cursor, nothing else."""
    import psycopg

    from bench.harness import raw_url

    with psycopg.connect(raw_url(urls.app)) as connection, connection.cursor(
        name="bench_read"
    ) as cursor:
        connection.execute("SELECT set_config('app.platform', 'on', true)")
        cursor.itersize = 2_000
        began = time.perf_counter()
        cursor.execute("SELECT * FROM ledger_entries WHERE organisation_id = %s"
                       " ORDER BY sequence", (organisation_id,))
        count = sum(1 for _ in cursor)
        return count / (time.perf_counter() - began)
