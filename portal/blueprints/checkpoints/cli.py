"""``flask checkpoints keygen|create|list|show``: the operators' side of checkpoints."""

from __future__ import annotations

import json
import sys

import click

from portal.blueprints.checkpoints import bp
from portal.cli import InputError, operator
from portal.services import checkpoints
from portal.services.errors import DomainError


@bp.cli.command("keygen")
@click.option("--name", help="Key name (default: CHECKPOINT_KEY_NAME, or the public host).")
@click.option("--force", is_flag=True,
              help="Replace an existing key. Checkpoints signed with the old key then verify "
                   "only with the old public key: keep publishing it.")
def keygen(name: str | None, force: bool) -> None:
    """Make the Ed25519 key that signs checkpoints, and print its public (verifier) key."""
    try:
        signer = checkpoints.generate_key(name, replace=force)
    except DomainError as exc:
        raise InputError(str(exc)) from exc
    click.echo(f"Signing key written to {checkpoints.key_file()} (keep it secret, back it up).")
    click.echo("Public verifier key, to publish:")
    click.echo(str(signer.verifier))


@bp.cli.command("create")
@click.option("--background", is_flag=True,
              help="Queue the job for the job worker instead of running it here.")
@operator
def create(background: bool) -> None:
    """Sign today's checkpoint of every public ledger (does nothing if it exists).

    Refuses, with exit code 1 and nothing written, when a ledger is not an extension
    of its previous checkpoint.
    """
    if background:
        from portal import jobs

        job = jobs.enqueue("checkpoints.create")
        click.echo(f"Queued as job {job.id}; `flask jobs show {job.id}` follows it.")
        return
    try:
        total = checkpoints.entries_to_sign()
        with click.progressbar(length=total, label="Checking new entries", file=sys.stderr,
                               show_pos=True) as bar:
            made = checkpoints.create_checkpoint(progress=bar.update)
    except checkpoints.CheckpointRefused as exc:
        click.echo(f"REFUSED: {exc}", err=True)
        sys.exit(1)
    except DomainError as exc:
        raise InputError(str(exc)) from exc
    summary = made.checkpoint
    state = "signed" if made.created else "already exists"
    click.echo(f"{summary.id} {state}: {summary.organisation_count} organisations,"
               f" {summary.entry_count:,} entries, {summary.cumulative_hash}")


@bp.cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@operator
def list_command(as_json: bool) -> None:
    """List checkpoints, newest first."""
    found = checkpoints.list_checkpoints(limit=1000)
    if as_json:
        click.echo(json.dumps([{"checkpoint_id": c.id, "timestamp": c.timestamp,
                                "entry_count": c.entry_count,
                                "organisation_count": c.organisation_count,
                                "cumulative_hash": c.cumulative_hash} for c in found],
                              indent=2))
        return
    if not found:
        click.echo("No checkpoints yet. Make one with: flask checkpoints create")
        return
    for c in found:
        click.echo(f"{c.id}  {c.timestamp}  {c.organisation_count:>5} organisations"
                   f"  {c.entry_count:>12,} entries  {c.cumulative_hash}")


@bp.cli.command("show")
@click.argument("checkpoint_id")
@operator
def show(checkpoint_id: str) -> None:
    """Print CHECKPOINT_ID's signed document (JSON)."""
    try:
        document = checkpoints.get_document(checkpoint_id)
    except DomainError as exc:
        raise InputError(str(exc)) from exc
    click.echo(json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True))
