"""Run the benchmarks: ``python -m bench [suite …] [--quick] [--markdown FILE]``.

Each figure is printed beside a baseline measured in the same run on the same
machine (a raw SQL insert, raw hashing, a hello-world endpoint), as a ratio.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import donations, ledger, portal, proofs
from bench.harness import Results, fresh_database, servers

SUITES: dict[str, Callable[..., None]] = {
    "appends": ledger.appends,
    "bulk": ledger.bulk,
    "verify": ledger.verify,
    "pages": portal.pages,
    "merkle": proofs.merkle_upkeep,
    "proofs": proofs.proofs,
    "reports": proofs.audit_reports,
    "webhooks": donations.webhooks,
}
SIZED = {"verify", "pages", "proofs"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("suites", nargs="*", choices=[*SUITES, []], metavar="SUITE",
                        help=f"which to run (default: all): {', '.join(SUITES)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--entries", type=int,
                        help="ledger size for the verify and pages suites")
    parser.add_argument("--markdown", type=Path, help="also write the results table here")
    args = parser.parse_args(argv)
    chosen = args.suites or list(SUITES)
    results = Results()
    print(f"Benchmarks on {platform.node()} ({platform.machine()}, Python "
          f"{platform.python_version()}), {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    with servers() as (pg_url, redis_url):
        for name in chosen:
            print(f"\n[{name}]", flush=True)
            with fresh_database(pg_url) as urls:
                from bench.harness import make_app

                make_app(urls, redis_url, migrate=True)
                extra: dict[str, Any] = {}
                if name in SIZED and args.entries:
                    extra["entries"] = args.entries
                SUITES[name](results, urls, redis_url, quick=args.quick, **extra)
    table = results.markdown()
    print("\n" + table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
