"""``amply-verify`` end to end: against a live portal over HTTP, and on good, tampered and
malformed files. Exit codes: 0 valid, 1 invalid, 2 usage or input error."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from amply_verify import checkpoint as formats
from amply_verify import cli
from amply_verify.hashing import compute_entry_hash
from tests.verifier.conftest import LivePortal


def run(*arguments: str) -> tuple[int, str, str]:
    """Run the verifier as a user would, in its own process."""
    done = subprocess.run([sys.executable, "-m", "amply_verify.cli", *arguments],
                          capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def public_export(live_portal: LivePortal, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return live_portal.export(tmp_path_factory.mktemp("exports") / "ledger.json")


@pytest.fixture(scope="module")
def auditor_export(live_portal: LivePortal, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return live_portal.export(tmp_path_factory.mktemp("exports") / "audit.json", "auditor")


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def rewrite(path: Path, target: Path, change: Any) -> Path:
    lines = lines_of(path)
    target.write_text("".join(change(lines)), encoding="utf-8")
    return target


def entry(line: str) -> dict[str, Any]:
    return json.loads(line.rstrip().rstrip(","))  # type: ignore[no-any-return]


def as_line(record: dict[str, Any], last: bool = False) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + ("\n" if last
                                                                            else ",\n")


# --------------------------------------------------------------------- downloading


def test_download_then_chain(live_portal: LivePortal, tmp_path: Path) -> None:
    target = tmp_path / "meadow.json"
    code, out, err = run("download", "--org", live_portal.slug, "--output", str(target),
                         "--base-url", live_portal.base_url)
    assert code == 0, err
    assert "Meadow Trust, 24 entries" in out
    code, out, err = run("chain", str(target))
    assert code == 0, err
    assert "chain valid: 24 entries" in out
    assert "redacted" in out  # the aggregated salaries


def test_download_from_nowhere_is_an_input_error(tmp_path: Path) -> None:
    code, _, err = run("download", "--org", "x", "--output", str(tmp_path / "x.json"),
                       "--base-url", "http://127.0.0.1:9")
    assert code == 2
    assert "cannot reach" in err
    assert not (tmp_path / "x.json").exists()


# ----------------------------------------------------------------------- the chain


def test_an_edited_amount_is_named(public_export: Path, tmp_path: Path) -> None:
    def edit(lines: list[str]) -> list[str]:
        record = entry(lines[3])
        record["amount"] += 1
        lines[3] = as_line(record)
        return lines

    code, _, err = run("chain", str(rewrite(public_export, tmp_path / "t.json", edit)))
    assert code == 1
    assert "INVALID: entry 3" in err and "it was changed" in err


def test_a_removed_entry_is_named(public_export: Path, tmp_path: Path) -> None:
    code, _, err = run("chain", str(rewrite(public_export, tmp_path / "t.json",
                                            lambda ls: ls[:5] + ls[6:])))
    assert code == 1
    assert "sequence 6 found where 5 was expected" in err


def test_reordered_entries_are_named(public_export: Path, tmp_path: Path) -> None:
    def swap(lines: list[str]) -> list[str]:
        lines[4], lines[5] = lines[5], lines[4]
        return lines

    code, _, err = run("chain", str(rewrite(public_export, tmp_path / "t.json", swap)))
    assert code == 1
    assert "entry 4" in err


def test_a_cut_off_file_is_an_input_error(public_export: Path, tmp_path: Path) -> None:
    code, _, err = run("chain", str(rewrite(public_export, tmp_path / "t.json",
                                            lambda ls: ls[:10])))
    assert code == 2
    assert "cut short" in err
    assert "Traceback" not in err


def test_half_a_line_is_an_input_error(public_export: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "t.json"
    truncated.write_bytes(public_export.read_bytes()[: 2_000])
    code, _, err = run("chain", str(truncated))
    assert code == 2
    assert "Traceback" not in err


def test_wrong_types_are_an_input_error(public_export: Path, tmp_path: Path) -> None:
    def stringify(lines: list[str]) -> list[str]:
        record = entry(lines[1])
        record["amount"] = str(record["amount"])
        lines[1] = as_line(record)
        return lines

    code, _, err = run("chain", str(rewrite(public_export, tmp_path / "t.json", stringify)))
    assert code == 2
    assert "'amount' should be a whole number" in err


def test_an_unknown_hash_prefix_is_an_input_error(public_export: Path, tmp_path: Path) -> None:
    def md5(lines: list[str]) -> list[str]:
        record = entry(lines[1])
        record["entry_hash"] = "md5:" + "0" * 32
        lines[1] = as_line(record)
        return lines

    code, _, err = run("chain", str(rewrite(public_export, tmp_path / "t.json", md5)))
    assert code == 2
    assert "unknown hash prefix 'md5'" in err


def test_a_future_algorithm_is_recognised_as_unsupported(tmp_path: Path) -> None:
    """An export whose last entry uses sha512: links checked, content reported unchecked."""
    org = "org_" + "a" * 24
    first = compute_entry_hash("led_" + "1" * 24, "2031-01-01T00:00:00Z", org,
                               "donation_received", 100, "EUR", {}, None)
    future = "sha512:" + "ab" * 64
    header = {"format": "amply-ledger-export", "version": 1, "hash_algorithm": "sha256",
              "audience": "public", "organisation": {"id": org},
              "head": {"sequence": 2, "entry_hash": future}}
    records = [
        {"sequence": 1, "entry_id": "led_" + "1" * 24, "timestamp": "2031-01-01T00:00:00Z",
         "organisation_id": org, "type": "donation_received", "amount": 100,
         "currency": "EUR", "metadata": {}, "prev_entry_hash": None, "entry_hash": first},
        {"sequence": 2, "entry_id": "led_" + "2" * 24, "timestamp": "2031-01-02T00:00:00Z",
         "organisation_id": org, "type": "donation_received", "amount": 5,
         "currency": "EUR", "metadata": {}, "prev_entry_hash": first, "entry_hash": future},
    ]
    path = tmp_path / "future.json"
    path.write_text(json.dumps(header, separators=(",", ":"))[:-1] + ',"entries":[\n'
                    + as_line(records[0]) + as_line(records[1], last=True) + "]}\n")
    code, out, err = run("chain", str(path))
    assert code == 2
    assert "chain valid: 2 entries" in out
    assert "does not support yet" in err and "(2)" in err


@pytest.mark.parametrize("content", [b"", b"not json at all\n", b'{"format":"other"}\n'])
def test_files_that_are_not_exports(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    code, _, err = run("chain", str(path))
    assert code == 2
    assert err.startswith("error:") and "Traceback" not in err


def test_a_missing_file_and_bad_usage(tmp_path: Path) -> None:
    assert run("chain", str(tmp_path / "none.json"))[0] == 2
    assert run("chain")[0] == 2
    assert run("no-such-command")[0] == 2


# -------------------------------------------------------------------- checkpoints


def test_an_export_matches_its_checkpoint(live_portal: LivePortal, public_export: Path) -> None:
    code, out, err = run("checkpoint", str(public_export), "--checkpoint", live_portal.second,
                         "--public-key", str(live_portal.key_file))
    assert code == 0, err
    assert f"checkpoint {live_portal.second} signed by verifier.test" in out
    assert "tree size 22 of 24 entries" in out
    assert "recomputed from the export" in out
    assert "totals not checkable" in out  # the public export redacts the salaries


def test_an_auditor_export_also_matches_the_totals(
    live_portal: LivePortal, auditor_export: Path
) -> None:
    code, out, err = run("checkpoint", str(auditor_export), "--checkpoint", live_portal.first,
                         "--public-key", str(live_portal.key_file))
    assert code == 0, err
    assert "counts and totals match (EUR: 13 entries" in out


def test_the_key_is_fetched_from_the_portal_with_a_warning(
    live_portal: LivePortal, public_export: Path
) -> None:
    code, _, err = run("checkpoint", str(public_export), "--checkpoint", live_portal.first)
    assert code == 0, err
    assert "using the key published by the portal itself" in err


def test_another_key_does_not_verify(
    live_portal: LivePortal, public_export: Path, tmp_path: Path
) -> None:
    from amply_verify.note import Signer

    stranger = tmp_path / "other.txt"
    stranger.write_text(f"{Signer.generate('verifier.test').verifier}\n")
    code, _, err = run("checkpoint", str(public_export), "--checkpoint", live_portal.first,
                       "--public-key", str(stranger))
    assert code == 1
    assert "a key you did not give as trusted" in err


def fetch_document(live_portal: LivePortal, checkpoint_id: str) -> dict[str, Any]:
    from amply_verify import fetch

    return fetch.get_json(f"{live_portal.base_url}/api/v1/public/checkpoints/{checkpoint_id}")  # type: ignore[no-any-return]


def test_an_edited_checkpoint_file_fails_its_signature(
    live_portal: LivePortal, public_export: Path, tmp_path: Path
) -> None:
    document = fetch_document(live_portal, live_portal.first)
    document["entry_count"] += 1
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(document))
    code, _, err = run("checkpoint", str(public_export), "--checkpoint", str(path),
                       "--public-key", str(live_portal.key_file))
    assert code == 1
    assert "signature does not verify" in err


def test_an_export_older_than_the_checkpoint(
    live_portal: LivePortal, public_export: Path, tmp_path: Path
) -> None:
    def older(lines: list[str]) -> list[str]:
        header = json.loads(lines[0].rstrip()[: -len(',"entries":[')] + "}")
        last = entry(lines[10])
        header["head"] = {"sequence": 10, "entry_hash": last["entry_hash"]}
        opening = json.dumps(header, separators=(",", ":"))[:-1] + ',"entries":[\n'
        return [opening, *lines[1:10], as_line(last, last=True), "]}\n"]

    path = rewrite(public_export, tmp_path / "old.json", older)
    assert run("chain", str(path))[0] == 0
    code, _, err = run("checkpoint", str(path), "--checkpoint", live_portal.first,
                       "--public-key", str(live_portal.key_file))
    assert code == 2
    assert "download a newer export" in err


def forked(path: Path, target: Path, from_sequence: int) -> Path:
    """A perfectly chained rewrite of history from ``from_sequence`` on."""
    lines = lines_of(path)
    previous = None
    out = [lines[0]]
    records = [entry(line) for line in lines[1:-1]]
    for record in records:
        if record["sequence"] >= from_sequence:
            record["prev_entry_hash"] = previous
            if record.get("redacted"):
                record["entry_hash"] = "sha256:" + base64.b16encode(
                    bytes([record["sequence"]]) * 32).decode().lower()
            else:
                if record["sequence"] == from_sequence:
                    record["amount"] = 1
                record["entry_hash"] = compute_entry_hash(
                    record["entry_id"], record["timestamp"], record["organisation_id"],
                    record["type"], record["amount"], record["currency"], record["metadata"],
                    previous)
        previous = record["entry_hash"]
    header = json.loads(lines[0].rstrip()[: -len(',"entries":[')] + "}")
    header["head"]["entry_hash"] = previous
    out = [json.dumps(header, separators=(",", ":"))[:-1] + ',"entries":[\n']
    out += [as_line(r, last=i == len(records) - 1) for i, r in enumerate(records)]
    out.append("]}\n")
    target.write_text("".join(out), encoding="utf-8")
    return target


def test_a_rewritten_fork_passes_the_chain_but_not_the_older_checkpoint(
    live_portal: LivePortal, auditor_export: Path, tmp_path: Path
) -> None:
    fork = forked(auditor_export, tmp_path / "fork.json", from_sequence=5)
    code, _, err = run("chain", str(fork))
    assert code == 0, err
    code, _, err = run("checkpoint", str(fork), "--checkpoint", live_portal.first,
                       "--public-key", str(live_portal.key_file))
    assert code == 1
    assert "differs from the signed root" in err and "rewritten" in err


# ------------------------------------------------------------------------- proofs


def test_an_entry_is_proven_in_a_signed_checkpoint(live_portal: LivePortal) -> None:
    code, out, err = run("proof", "--org", live_portal.slug, "--entry",
                         live_portal.entry_ids[4], "--base-url", live_portal.base_url,
                         "--public-key", str(live_portal.key_file))
    assert code == 0, err
    assert f"checkpoint {live_portal.second}" in out
    assert "is in that tree" in out
    assert "public content hashes to" in out


def test_a_hidden_entry_is_proven_by_its_hash(live_portal: LivePortal) -> None:
    code, out, err = run("proof", "--org", live_portal.org_id, "--entry",
                         live_portal.entry_ids[6], "--base-url", live_portal.base_url,
                         "--public-key", str(live_portal.key_file))
    assert code == 0, err
    assert "content is not public; its hash alone is proven" in out


def test_an_entry_after_the_last_checkpoint_is_not_provable_yet(live_portal: LivePortal) -> None:
    code, _, err = run("proof", "--org", live_portal.slug, "--entry",
                       live_portal.entry_ids[-1], "--base-url", live_portal.base_url,
                       "--public-key", str(live_portal.key_file))
    assert code == 2
    assert "not in a signed checkpoint yet" in err


def test_a_proof_file_verifies_offline(live_portal: LivePortal, tmp_path: Path) -> None:
    from amply_verify import fetch

    text = fetch.get_text(f"{live_portal.base_url}/api/v1/public/organisations/"
                          f"{live_portal.slug}/entries/{live_portal.entry_ids[2]}/proof"
                          "?format=tlog-proof")
    proof = tmp_path / "gift.tlog-proof"
    proof.write_text(text)
    code, out, err = run("proof", "--file", str(proof), "--public-key",
                         str(live_portal.key_file))
    assert code == 0, err
    assert "entry #3" in out
    code, _, err = run("proof", "--file", str(proof), "--entry-hash", "sha256:" + "0" * 64,
                       "--public-key", str(live_portal.key_file))
    assert code == 1
    proof.write_text(text.replace("index 2", "index x"))
    assert run("proof", "--file", str(proof), "--public-key", str(live_portal.key_file))[0] == 2


def test_the_ledger_only_grew_between_checkpoints(live_portal: LivePortal) -> None:
    code, out, err = run("consistency", "--org", live_portal.slug, "--from", live_portal.first,
                         "--to", live_portal.second, "--base-url", live_portal.base_url,
                         "--public-key", str(live_portal.key_file))
    assert code == 0, err
    assert "extends the one at" in out and "(9 entries added)" in out


def test_a_split_view_is_caught_by_the_consistency_proof(
    live_portal: LivePortal, tmp_path: Path
) -> None:
    """A second checkpoint, signed by the same key, of a history that differs."""
    document = fetch_document(live_portal, live_portal.second)
    document["checkpoint_id"] = "chk_2031_07_03"
    summary = formats.summary_for(document, live_portal.org_id)
    forged_root = bytes(32)
    summary["root_hash"] = base64.b64encode(forged_root).decode()
    origin = formats.origin_for(live_portal.signer.name, live_portal.org_id)
    from amply_verify.note import sign

    summary["checkpoint"] = sign(formats.checkpoint_text(origin, summary["tree_size"],
                                                         forged_root), live_portal.signer)
    document["cumulative_hash"] = formats.cumulative_hash(document["organisation_summaries"])
    document["signature"] = live_portal.signer.signature(formats.signed_message(document))
    path = tmp_path / "split.json"
    path.write_text(json.dumps(document))
    code, _, err = run("consistency", "--org", live_portal.slug, "--from", live_portal.first,
                       "--to", str(path), "--base-url", live_portal.base_url,
                       "--public-key", str(live_portal.key_file))
    assert code == 1
    assert "history was rewritten" in err


def test_main_reports_exit_codes_in_process(public_export: Path) -> None:
    assert cli.main(["chain", str(public_export)]) == 0
    with pytest.raises(SystemExit) as info:
        cli.main(["chain", str(public_export) + ".missing"])
    assert info.value.code == 2


# ------------------------------------------------------------------------ reports


def pdf_text(path: Path) -> str:
    done = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          text=True, check=True)
    return done.stdout


def test_a_report_from_an_export_alone(
    live_portal: LivePortal, auditor_export: Path, tmp_path: Path
) -> None:
    target = tmp_path / "audit.pdf"
    code, _, err = run("report", str(auditor_export), "--output", str(target),
                       "--checkpoint", live_portal.second, "--public-key",
                       str(live_portal.key_file))
    assert code == 0, err
    assert target.read_bytes().startswith(b"%PDF")
    text = pdf_text(target)
    assert "Meadow Trust" in text
