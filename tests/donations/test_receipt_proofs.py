"""Once a signed checkpoint covers a gift, its receipt (page, PDF, email) carries the
inclusion proof and the checkpoint it is proven against, and offers the ``.tlog-proof``
file, which ``amply-verify``'s own code accepts with the portal's key."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from amply_verify.note import Signer
from amply_verify.tlog_proof import parse_proof, verify_proof
from portal.models import Organisation
from portal.services import checkpoints, ledger
from tests.donations.conftest import Donor, Webhooks, messages_to, send_receipts

CHECKPOINT_DAY = datetime(2031, 7, 1, 12, 0, tzinfo=UTC)


def test_the_receipt_carries_the_proof_once_a_checkpoint_covers_the_gift(
    app: Flask, client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
    webhooks: Webhooks, signing_key: Signer, outbox_folder: Path, tmp_path: Path,
) -> None:
    org = connected_org()
    donation_id = donor.give(org)
    donor.pay(donation_id)
    webhooks.deliver()
    gift = next(entry for entry in ledger.iter_entries(org.id)
                if entry.type == "donation_received")

    before = donor.thanks(donation_id)
    assert "signs a checkpoint of every ledger once a day" in before
    assert "Download the proof" not in before
    missing = client.get(f"/donations/{donation_id}/proof")
    assert missing.status_code == 409
    assert "No signed checkpoint covers this gift yet" in missing.get_data(as_text=True)

    made = checkpoints.create_checkpoint(CHECKPOINT_DAY).checkpoint
    after = donor.thanks(donation_id)
    assert made.id in after
    assert "Download the proof" in after
    line = checkpoints.line_for(made.id, org.id)
    assert line.note.splitlines()[0] in after  # the signed checkpoint itself
    assert f"amply-verify proof --file {gift.entry_id}.tlog-proof" in after

    proof = client.get(f"/donations/{donation_id}/proof")
    assert proof.status_code == 200
    assert proof.headers["Content-Disposition"] == (
        f'attachment; filename="{gift.entry_id}.tlog-proof"')
    parsed = parse_proof(proof.get_data(as_text=True))
    assert parsed.entry_hash == gift.entry_hash
    tree = verify_proof(parsed, gift.entry_hash.encode(), signing_key.verifier)
    assert tree.size == line.tree_size

    pdf = tmp_path / "receipt.pdf"
    pdf.write_bytes(client.get(f"/donations/{donation_id}/receipt.pdf").data)
    text = subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True,
                          text=True).stdout
    assert made.id in text

    send_receipts(app)
    [message] = messages_to(outbox_folder, donor.email)
    names = sorted(part.get_filename() or "" for part in message.iter_attachments())
    assert names == [f"{gift.entry_id}.tlog-proof", f"receipt-{donation_id}.pdf"]
    attached = next(part for part in message.iter_attachments()
                    if part.get_filename() == f"{gift.entry_id}.tlog-proof")
    content = attached.get_content()
    assert isinstance(content, bytes)
    verify_proof(parse_proof(content.decode()), gift.entry_hash.encode(), signing_key.verifier)
