"""Command-line tools: ``flask orgs …``, ``flask ledger …``, ``flask users …``,
``flask demo-data``."""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from portal.extensions import db
from portal.models import Organisation
from portal.services import accounts, demo, ledger, ledger_export, organisations, tenancy
from portal.services.errors import DomainError

orgs_cli = AppGroup("orgs", help="Organisations.")
ledger_cli = AppGroup("ledger", help="Verify and export organisations' ledgers.")
users_cli = AppGroup("users", help="People with accounts on the portal.")
P = ParamSpec("P")
R = TypeVar("R")


def operator(command: Callable[P, R]) -> Callable[P, R]:
    """Commands are run by the portal's operators: they see every organisation."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        tenancy.platform()
        return command(*args, **kwargs)

    return run


class InputError(click.ClickException):
    """Bad input: exit code 2, as for usage errors, so scripts can tell it from a broken
    ledger (exit code 1)."""

    exit_code = 2


def _organisation(reference: str) -> Organisation:
    try:
        return organisations.find_organisation(reference)
    except DomainError as exc:
        raise InputError(str(exc)) from exc


@orgs_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--status", type=click.Choice(["pending", "active", "suspended"]))
@operator
def orgs_list(as_json: bool, status: str | None) -> None:
    """List organisations with their ledger size."""
    rows = organisations.list_organisations(status=status)
    if as_json:
        click.echo(json.dumps([
            {"id": r.id, "slug": r.slug, "name": r.name, "status": r.status,
             "entry_count": r.entry_count}
            for r in rows
        ], ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("No organisations yet. Create demo data with: flask demo-data")
        return
    headers = ("ID", "SLUG", "NAME", "STATUS", "ENTRIES")
    table = [(r.id, r.slug, r.name, r.status, f"{r.entry_count:,}") for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in table:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        cells[-1] = row[-1].rjust(widths[-1])
        click.echo("  ".join(cells))


@ledger_cli.command("verify")
@click.argument("organisation")
@operator
def ledger_verify(organisation: str) -> None:
    """Recompute every hash and link of ORGANISATION's ledger (id or slug)."""
    org = _organisation(organisation)
    head = ledger.get_head(org.id)
    with click.progressbar(length=head.sequence, label=f"Verifying {org.slug}",
                           file=sys.stderr, show_pos=True) as bar:
        result = ledger.verify_chain(org.id, progress=bar.update)
    if result.valid:
        click.echo(f"valid: {result.entry_count:,} entries, head {result.head_hash or '(empty)'}")
        return
    where = (f"entry {result.broken_entry_id} (sequence {result.broken_sequence})"
             if result.broken_entry_id
             else f"sequence {result.broken_sequence}, which is missing")
    click.echo(f"INVALID: {result.error} at {where}", err=True)
    click.echo(f"  {result.detail}", err=True)
    sys.exit(1)


@ledger_cli.command("export")
@click.argument("organisation")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="File to write, or - for standard output.")
@click.option("--audience", type=click.Choice(ledger_export.AUDIENCES), default="public",
              show_default=True, help="public redacts hidden entries; auditor redacts nothing.")
@operator
def ledger_export_command(organisation: str, output: str, audience: str) -> None:
    """Write ORGANISATION's ledger as JSON (format: docs/ledger-spec.md)."""
    org = _organisation(organisation)
    if output == "-":
        for chunk in ledger_export.export_chunks(org, audience):  # type: ignore[arg-type]
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        return
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    # Write beside the target and rename, so a failed export never leaves half a file.
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as stream, click.progressbar(
            length=ledger.get_head(org.id).sequence, label=f"Exporting {org.slug}",
            file=sys.stderr, show_pos=True,
        ) as bar:
            def advance(count: int) -> None:
                nonlocal written
                written += count
                bar.update(count)

            for chunk in ledger_export.export_chunks(org, audience,  # type: ignore[arg-type]
                                                     progress=advance):
                stream.write(chunk)
        _readable_like_any_new_file(Path(temporary))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    click.echo(f"wrote {written:,} entries ({audience}) to {target}")


def _readable_like_any_new_file(path: Path) -> None:
    """mkstemp makes owner-only files; give the export the permissions the umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


@click.command("demo-data")
@click.option("--orgs", "orgs", default=6, show_default=True, type=click.IntRange(1, 500),
              help="How many organisations to create.")
@click.option("--entries", default=1_500, show_default=True, type=click.IntRange(1, 50_000_000),
              help="Ledger entries per organisation.")
@click.option("--seed", type=int, help="Seed for repeatable amounts and names.")
@click.option("--if-empty", is_flag=True, help="Do nothing when organisations already exist.")
@operator
def demo_data(orgs: int, entries: int, seed: int | None, if_empty: bool) -> None:
    """Create realistic demo organisations with a year of ledger history."""
    if if_empty and db.session.scalar(sa.select(sa.func.count()).select_from(Organisation)):
        click.echo("Organisations exist already; demo data not loaded.")
        return
    with click.progressbar(length=orgs * entries, label="Building demo ledgers",
                           file=sys.stderr, show_pos=True) as bar:
        created = demo.build_demo_data(organisations=orgs, entries=entries, seed=seed,
                                       progress=bar.update)
    for org in created:
        click.echo(f"  {org.slug}  ({org.name})")
    click.echo(f"Created {len(created)} organisations.")


@users_cli.command("make-admin")
@click.argument("email")
@operator
def users_make_admin(email: str) -> None:
    """Make the account with EMAIL a platform administrator (approves organisations).

    Their sessions end, so they sign in again; the admin pages also ask for two-factor
    sign-in.
    """
    try:
        user = accounts.make_platform_admin(email)
    except DomainError as exc:
        raise InputError(str(exc)) from exc
    click.echo(f"{user.email} is now a platform administrator.")
    if not user.mfa_enabled:
        click.echo("They must turn on two-factor sign-in before using the admin pages.")


def register_cli(app: Flask) -> None:
    app.cli.add_command(orgs_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(ledger_cli)
    app.cli.add_command(demo_data)
