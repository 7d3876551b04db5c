"""Checkpoints in public: the pages, the well-known key, and the proof API a donor's
verifier calls, each checked with the verifier's own functions."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient

from amply_verify import checkpoint as formats
from amply_verify import merkle, tlog_proof
from amply_verify.note import Signer
from portal.extensions import db
from portal.models import Organisation
from portal.services import checkpoints, ledger

pytestmark = pytest.mark.usefixtures("app", "signing_key")
MOMENT = datetime(2031, 5, 4, 9, 30, tzinfo=UTC)


def ledger_of(org: Organisation, count: int) -> list[ledger.Entry]:
    entries = [ledger.append_entry(org.id, "donation_received", 500 + i, "EUR",
                                   {"donor_name": f"Donor {i}"}) for i in range(count)]
    db.session.commit()
    return entries


def test_the_checkpoints_page_lists_each_ledger_and_the_key(
    client: FlaskClient, create_org: Callable[..., Organisation], signing_key: Signer
) -> None:
    org = create_org(name="Lantern Library")
    ledger_of(org, 3)
    made = checkpoints.create_checkpoint(MOMENT).checkpoint
    page = client.get("/checkpoints")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert made.id in html and "Lantern Library" in html
    assert str(signing_key.verifier) in html
    line = checkpoints.line_for(made.id, org.id)
    assert line.root_hash in html

    detail = client.get(f"/checkpoints/{made.id}").get_data(as_text=True)
    assert line.note.split("\n")[0] in detail  # the origin line of the signed note
    assert "amply-verify checkpoint ledger.json" in detail

    as_json = client.get("/checkpoints", headers={"Accept": "application/json"})
    assert as_json.json is not None and as_json.json["data"][0]["checkpoint_id"] == made.id
    assert "Accept" in as_json.headers["Vary"]
    document = client.get(f"/checkpoints/{made.id}?format=json").json
    assert document is not None
    formats.verify_document(document, signing_key.verifier)
    assert client.get(f"/api/v1/public/checkpoints/{made.id}").json == document


def test_unknown_checkpoints_are_404(client: FlaskClient) -> None:
    for path in ("/checkpoints/chk_1999_01_01", "/checkpoints/not-an-id",
                 "/api/v1/public/checkpoints/chk_1999_01_01"):
        assert client.get(path).status_code == 404


def test_an_empty_portal_says_so(client: FlaskClient) -> None:
    html = client.get("/checkpoints").get_data(as_text=True)
    assert "No checkpoint has been published yet" in html or "Latest:" in html


def test_the_well_known_key_is_the_signing_key(
    client: FlaskClient, signing_key: Signer
) -> None:
    response = client.get("/.well-known/amply-checkpoint-key")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True).splitlines()[0] == str(signing_key.verifier)
    key = client.get("/api/v1/public/checkpoint-key").json
    assert key is not None and key["verifier_key"] == str(signing_key.verifier)


def test_an_inclusion_proof_leads_to_the_signed_root(
    client: FlaskClient, create_org: Callable[..., Organisation], signing_key: Signer
) -> None:
    org = create_org()
    entries = ledger_of(org, 11)
    made = checkpoints.create_checkpoint(MOMENT).checkpoint
    ledger_of(org, 2)  # appended after the checkpoint
    target = entries[6]
    body = client.get(f"/api/v1/public/organisations/{org.slug}/entries/"
                      f"{target.entry_id}/proof").json
    assert body is not None
    assert body["tree_size"] == 11 and body["leaf_index"] == 6
    assert body["checkpoint"]["checkpoint_id"] == made.id
    tree = formats.open_checkpoint(body["checkpoint"]["note"], signing_key.verifier)
    merkle.verify_inclusion(6, tree.size, merkle.entry_leaf_hash(target.entry_hash),
                            [base64.b64decode(h) for h in body["inclusion_path"]], tree.root)

    at_head = client.get(f"/api/v1/public/organisations/{org.id}/entries/"
                         f"{target.entry_id}/proof?tree_size=13").json
    assert at_head is not None and at_head["checkpoint"] is None
    assert at_head["root_hash"] == base64.b64encode(
        merkle.root_from_entry_hashes(e.entry_hash for e in ledger.iter_entries(org.id))).decode()


def test_a_tlog_proof_file_verifies_offline(
    client: FlaskClient, create_org: Callable[..., Organisation], signing_key: Signer
) -> None:
    org = create_org()
    entries = ledger_of(org, 5)
    checkpoints.create_checkpoint(MOMENT)
    response = client.get(f"/api/v1/public/organisations/{org.slug}/entries/"
                          f"{entries[2].entry_id}/proof?format=tlog-proof")
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    proof = tlog_proof.parse_proof(response.get_data(as_text=True))
    assert proof.entry_hash == entries[2].entry_hash
    tree = tlog_proof.verify_proof(proof, entries[2].entry_hash.encode(), signing_key.verifier)
    assert tree.size == 5
    with pytest.raises(tlog_proof.ProofFileError):
        tlog_proof.verify_proof(proof, entries[3].entry_hash.encode(), signing_key.verifier)


def test_an_entry_newer_than_every_checkpoint_has_no_proof_file_yet(
    client: FlaskClient, create_org: Callable[..., Organisation]
) -> None:
    org = create_org()
    checkpoints.create_checkpoint(MOMENT)
    entry = ledger_of(org, 1)[0]
    response = client.get(f"/api/v1/public/organisations/{org.slug}/entries/"
                          f"{entry.entry_id}/proof", headers={"Accept": "text/x-tlog-proof"})
    assert response.status_code == 404
    assert response.json is not None
    assert "checkpoints are made daily" in response.json["error"]["message"]


def test_proofs_refuse_what_they_cannot_prove(
    client: FlaskClient, create_org: Callable[..., Organisation]
) -> None:
    org, other = create_org(), create_org()
    pending = create_org(status="pending")
    mine = ledger_of(org, 3)[0]
    theirs = ledger_of(other, 1)[0]
    hidden = ledger_of(pending, 1)[0]
    base = f"/api/v1/public/organisations/{org.slug}"
    assert client.get(f"{base}/entries/{theirs.entry_id}/proof").status_code == 404
    assert client.get(f"/api/v1/public/organisations/{pending.slug}/entries/"
                      f"{hidden.entry_id}/proof").status_code == 404
    assert client.get(f"{base}/entries/{mine.entry_id}/proof?tree_size=4").status_code == 400
    assert client.get(f"{base}/entries/{mine.entry_id}/proof?tree_size=x").status_code == 400
    assert client.get(f"{base}/consistency?first=2").status_code == 400
    assert client.get(f"{base}/consistency?first=3&second=2").status_code == 400
    assert client.get(f"{base}/consistency?first=1&second=9").status_code == 400


def test_a_consistency_proof_links_two_checkpoints(
    client: FlaskClient, create_org: Callable[..., Organisation], signing_key: Signer
) -> None:
    org = create_org()
    ledger_of(org, 6)
    first = checkpoints.create_checkpoint(MOMENT).checkpoint
    ledger_of(org, 7)
    second = checkpoints.create_checkpoint(MOMENT.replace(day=5)).checkpoint
    old = formats.open_checkpoint(checkpoints.line_for(first.id, org.id).note,
                                  signing_key.verifier)
    new = formats.open_checkpoint(checkpoints.line_for(second.id, org.id).note,
                                  signing_key.verifier)
    body = client.get(f"/api/v1/public/organisations/{org.id}/consistency"
                      f"?first={old.size}&second={new.size}").json
    assert body is not None
    merkle.verify_consistency(old.size, new.size, old.root, new.root,
                              [base64.b64decode(h) for h in body["consistency_path"]])


def test_an_entry_page_carries_its_proof_once_signed(
    client: FlaskClient, create_org: Callable[..., Organisation], signing_key: Signer
) -> None:
    org = create_org()
    entries = ledger_of(org, 6)
    hidden = ledger.append_entry(org.id, "expense", -100, "EUR",
                                 {"category": "legal", "payee": "Counsel",
                                  "visibility": "internal_only"})
    db.session.commit()
    page = client.get(f"/orgs/{org.slug}/entries/{entries[3].entry_id}").get_data(as_text=True)
    assert "newer than the latest signed checkpoint" in page

    made = checkpoints.create_checkpoint(MOMENT).checkpoint
    page = client.get(f"/orgs/{org.slug}/entries/{entries[3].entry_id}").get_data(as_text=True)
    line = checkpoints.line_for(made.id, org.id)
    assert f"Checkpoint <a href=\"/checkpoints/{made.id}\">{made.id}</a>" in page
    assert line.root_hash in page
    proof = checkpoints.prove_entry(org.id, entries[3].entry_id)
    for value in proof.proof.path:
        assert base64.b64encode(value).decode() in page
    assert f"amply-verify proof --file {entries[3].entry_id}.tlog-proof" in page
    assert "format=tlog-proof" in page
    hidden_page = client.get(f"/orgs/{org.slug}/sequence/{hidden.sequence}")
    assert "Proof that this entry" not in hidden_page.get_data(as_text=True)


def test_the_how_to_verify_page_shows_the_key_and_the_commands(
    client: FlaskClient, create_org: Callable[..., Organisation], signing_key: Signer
) -> None:
    create_org()
    made = checkpoints.create_checkpoint(MOMENT).checkpoint
    page = client.get("/how-to-verify").get_data(as_text=True)
    assert str(signing_key.verifier) in page
    assert f"amply-verify checkpoint ledger.json --checkpoint {made.id}" in page
