"""``amply-verify``: check an Amply ledger, its checkpoints and proofs, on your own machine.

Exit codes: 0 valid, 1 invalid (the ledger, a signature or a proof fails), 2 usage
or input error (a malformed or truncated file, an unreachable portal, an entry
hashed with an algorithm this version does not support).
"""

from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from amply_verify import checkpoint as formats
from amply_verify import fetch, merkle
from amply_verify.chain import ChainBroken, ChainChecker, ChainResult
from amply_verify.export import ExportError, ExportReader, open_export
from amply_verify.hashing import compute_entry_hash
from amply_verify.note import NoteError, Verifier
from amply_verify.tlog_proof import ProofFileError, parse_proof, verify_proof

VALID, INVALID, INPUT_ERROR = 0, 1, 2
KEY_PATH = "/.well-known/amply-checkpoint-key"


class Invalid(Exception):
    """Verification failed: exit code 1."""


class InputProblem(Exception):
    """Bad input or an unreachable source: exit code 2."""


# ------------------------------------------------------------------------ output


class Progress:
    """A progress bar on standard error when it is a terminal; silent otherwise."""

    def __init__(self, label: str, total: int | None, unit: str = "entries") -> None:
        self.label, self.total, self.unit = label, total, unit
        self.done = 0
        self.enabled = sys.stderr.isatty()
        self._shown = -1

    def advance(self, count: int = 1) -> None:
        self.done += count
        if not self.enabled:
            return
        if self.total:
            percent = min(100, self.done * 100 // self.total)
            if percent != self._shown:
                self._shown = percent
                filled = percent * 30 // 100
                sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}]"
                                 f" {percent:3d}% {self.done:,}/{self.total:,} {self.unit}")
        elif self.done - self._shown >= 10_000 or self._shown < 0:
            self._shown = self.done
            sys.stderr.write(f"\r{self.label} {self.done:,} {self.unit}")

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def ok(message: str) -> None:
    print(f"\u2713 {message}")


def note(message: str) -> None:
    print(f"  {message}")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ------------------------------------------------------------------- shared steps


def _base_url(arguments: argparse.Namespace, fallback: str | None = None) -> str:
    url = getattr(arguments, "base_url", None) or fallback
    if not url:
        raise InputProblem("give the portal's address with --base-url"
                           " (for example https://amply.example)")
    return str(url).rstrip("/")


def load_verifier(arguments: argparse.Namespace, base_url: str | None) -> list[Verifier]:
    """The trusted keys: from --public-key, or (with a warning) from the portal itself."""
    path = getattr(arguments, "public_key", None)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputProblem(f"{path}: {exc.strerror or exc}") from exc
        source = str(path)
    else:
        if not base_url:
            raise InputProblem("give the portal's public key with --public-key FILE")
        text = fetch.get_text(fetch.join(base_url, KEY_PATH))
        source = fetch.join(base_url, KEY_PATH)
        warn(f"using the key published by the portal itself ({source}); to be independent of"
             " it, save the key once and pass it with --public-key")
    keys = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            try:
                keys.append(Verifier.parse(line))
            except NoteError as exc:
                raise InputProblem(f"{source}: {exc}") from exc
    if not keys:
        raise InputProblem(f"{source}: no verifier key in it")
    return keys


def _verifier_for(document: dict[str, Any], keys: Sequence[Verifier]) -> Verifier:
    for key in keys:
        if (key.name, f"{key.id:08x}") == (document.get("key_name"), document.get("key_id")):
            return key
    raise Invalid(f"checkpoint {document.get('checkpoint_id')} is signed by"
                  f" {document.get('key_name')} ({document.get('key_id')}), a key you did not"
                  " give as trusted")


def load_checkpoint(reference: str, base_url: str | None,
                    keys: Sequence[Verifier]) -> dict[str, Any]:
    """A platform checkpoint from a file or by id from the portal, its signature checked."""
    path = Path(reference)
    if path.suffix == ".json" or path.exists():
        try:
            document = formats.load_document(path.read_bytes())
        except OSError as exc:
            raise InputProblem(f"{reference}: {exc.strerror or exc}") from exc
        except formats.CheckpointError as exc:
            raise InputProblem(f"{reference}: {exc}") from exc
    else:
        if not formats.CHECKPOINT_ID.fullmatch(reference):
            raise InputProblem(f"{reference!r} is neither a file nor a checkpoint id"
                               " (chk_YYYY_MM_DD)")
        if not base_url:
            raise InputProblem("give --base-url to fetch a checkpoint by its id")
        document = fetch.get_json(fetch.join(base_url, f"/api/v1/public/checkpoints/{reference}"))
        if not isinstance(document, dict):
            raise InputProblem(f"{reference}: the portal's answer is not a checkpoint")
    try:
        formats.verify_document(document, _verifier_for(document, keys))
    except formats.CheckpointError as exc:
        raise Invalid(f"checkpoint {document.get('checkpoint_id')}: {exc}") from exc
    return document


def walk_export(path: str, *, snapshot_at: int | None = None,
                each: Callable[[dict[str, Any]], None] | None = None,
                label: str = "Checking") -> tuple[ExportReader, ChainResult]:
    stream, reader = open_export(path)
    progress = Progress(f"{label} {Path(path).name}", reader.header.head_sequence)
    checker = ChainChecker(reader.header, snapshot_at=snapshot_at)
    try:
        with stream:
            for record in reader.records():
                checker.add(record)
                if each is not None:
                    each(record)
                progress.advance()
        return reader, checker.finish()
    finally:
        progress.close()


def _report_chain(result: ChainResult) -> None:
    ok(f"chain valid: {result.entry_count:,} entries, every link and every disclosed"
       " entry's hash checked")
    if result.redacted:
        note(f"{result.redacted:,} entries are redacted in this export: their links are"
             " checked, their content is not public")
    note(f"head {result.head_hash or '(empty ledger)'}")
    note(f"Merkle root {base64.b64encode(result.root).decode()} (tree size"
         f" {result.entry_count:,})")


def _unsupported(result: ChainResult) -> None:
    if result.unsupported:
        shown = ", ".join(str(s) for s in result.unsupported[:10])
        more = " …" if len(result.unsupported) > 10 else ""
        raise InputProblem(
            f"{len(result.unsupported):,} entries ({shown}{more}) are hashed with an algorithm"
            " this verifier does not support yet (it supports sha256); their content was not"
            " checked. Use a newer amply-verify.")


# ----------------------------------------------------------------------- commands


def command_chain(arguments: argparse.Namespace) -> None:
    _, result = walk_export(arguments.export)
    _report_chain(result)
    _unsupported(result)


def command_download(arguments: argparse.Namespace) -> None:
    base = _base_url(arguments)
    url = fetch.join(base, f"/api/v1/public/organisations/{fetch.quote(arguments.org)}"
                           "/ledger/export")
    target = Path(arguments.output)
    progress = Progress(f"Downloading {target.name}", None, "bytes")
    try:
        size = fetch.download(url, target, progress.advance)
    finally:
        progress.close()
    stream, reader = open_export(target)
    stream.close()
    ok(f"saved {target} ({size:,} bytes): the ledger of"
       f" {reader.header.organisation.get('name', reader.header.organisation_id)},"
       f" {reader.header.head_sequence:,} entries")
    note(f"next: amply-verify chain {target}")


def command_checkpoint(arguments: argparse.Namespace) -> None:
    stream, reader = open_export(arguments.export)
    stream.close()
    base = getattr(arguments, "base_url", None) or reader.header.base_url
    keys = load_verifier(arguments, base)
    document = load_checkpoint(arguments.checkpoint, base, keys)
    verifier = _verifier_for(document, keys)
    ok(f"checkpoint {document['checkpoint_id']} signed by {verifier.name}"
       f" ({verifier.id:08x}), signed {document.get('timestamp')}")
    try:
        summary = formats.summary_for(document, reader.header.organisation_id)
    except formats.CheckpointError as exc:
        raise Invalid(str(exc)) from exc
    size = int(summary["tree_size"])
    if size > reader.header.head_sequence:
        raise InputProblem(f"the checkpoint covers {size:,} entries but this export has only"
                           f" {reader.header.head_sequence:,}: download a newer export")
    _, result = walk_export(arguments.export, snapshot_at=size)
    _report_chain(result)
    snapshot = result.snapshot
    assert snapshot is not None
    ok(f"tree size {size:,} of {result.entry_count:,} entries in the export")
    if base64.b64encode(snapshot.root).decode() != summary["root_hash"]:
        raise Invalid(f"the Merkle root of the export's first {size:,} entries,"
                      f" {base64.b64encode(snapshot.root).decode()}, differs from the signed"
                      f" root {summary['root_hash']}: the ledger was rewritten")
    ok(f"root {summary['root_hash']} recomputed from the export")
    if snapshot.head_hash != summary.get("head_hash"):
        raise Invalid(f"entry {size}'s hash {snapshot.head_hash} differs from the signed head"
                      f" {summary.get('head_hash')}")
    ok(f"entry {size:,}'s hash matches the signed head")
    if snapshot.redacted:
        note(f"totals not checkable from this export: {snapshot.redacted:,} of the first"
             f" {size:,} entries are redacted (an auditor export has them all)")
    elif snapshot.totals != summary.get("totals"):
        raise Invalid(f"the totals of the first {size:,} entries, {snapshot.totals}, differ"
                      f" from the signed totals {summary.get('totals')}")
    else:
        shown = ", ".join(f"{c}: {t['entries']:,} entries, balance {t['balance']:,}"
                          for c, t in snapshot.totals.items()) or "no entries"
        ok(f"counts and totals match ({shown}, in minor units)")
    _unsupported(result)


def _entry_content_check(base: str, org: str, entry_id: str, entry_hash: str) -> None:
    """Recompute the entry's hash from its public content, when it is public."""
    try:
        row = fetch.get_json(fetch.join(
            base, f"/api/v1/public/organisations/{fetch.quote(org)}/entries/"
                  f"{fetch.quote(entry_id)}"))
    except fetch.FetchError as exc:
        note(f"the entry's content could not be fetched ({exc}); its hash alone is proven")
        return
    if row.get("disclosure") != "full":
        note("the entry's content is not public; its hash alone is proven")
        return
    computed = compute_entry_hash(row["entry_id"], row["timestamp"], row["organisation_id"],
                                  row["type"], row["amount"], row["currency"], row["metadata"],
                                  row["prev_entry_hash"])
    if computed != entry_hash:
        raise Invalid(f"the entry's public content hashes to {computed}, not to {entry_hash}")
    ok(f"the entry's public content hashes to {entry_hash}")


def command_proof(arguments: argparse.Namespace) -> None:
    if arguments.file:
        _proof_from_file(arguments)
        return
    if not (arguments.org and arguments.entry):
        raise InputProblem("give --org and --entry, or --file with a .tlog-proof file")
    base = _base_url(arguments)
    keys = load_verifier(arguments, base)
    query = f"?tree_size={arguments.tree_size}" if arguments.tree_size else ""
    body = fetch.get_json(fetch.join(
        base, f"/api/v1/public/organisations/{fetch.quote(arguments.org)}/entries/"
              f"{fetch.quote(arguments.entry)}/proof{query}"))
    entry_hash = str(body["entry_hash"])
    path = [base64.b64decode(value) for value in body["inclusion_path"]]
    line = body.get("checkpoint")
    if line is None:
        merkle.verify_inclusion(body["leaf_index"], body["tree_size"],
                                merkle.entry_leaf_hash(entry_hash), path,
                                base64.b64decode(body["root_hash"]))
        raise InputProblem(
            f"entry {arguments.entry} is not in a signed checkpoint yet; its proof against the"
            f" current head (tree size {body['tree_size']:,}) holds, but that head is not"
            " signed. Checkpoints are made daily: try again tomorrow.")
    document = load_checkpoint(line["checkpoint_id"], base, keys)
    verifier = _verifier_for(document, keys)
    summary = formats.summary_for(document, body["organisation_id"])
    if summary["checkpoint"] != line["note"]:
        raise Invalid("the proof's checkpoint differs from the one the portal published")
    tree = formats.open_checkpoint(line["note"], verifier)
    ok(f"checkpoint {document['checkpoint_id']} signed by {verifier.name}: tree size"
       f" {tree.size:,}, root {tree.root_base64}")
    try:
        merkle.verify_inclusion(body["leaf_index"], tree.size,
                                merkle.entry_leaf_hash(entry_hash), path, tree.root)
    except merkle.ProofError as exc:
        raise Invalid(f"the inclusion proof fails: {exc}") from exc
    ok(f"entry {body['entry_id']} (#{body['sequence']:,}, hash {entry_hash}) is in that tree")
    _entry_content_check(base, arguments.org, arguments.entry, entry_hash)


def _proof_from_file(arguments: argparse.Namespace) -> None:
    try:
        proof = parse_proof(Path(arguments.file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputProblem(f"{arguments.file}: {exc.strerror or exc}") from exc
    except (ProofFileError, UnicodeDecodeError) as exc:
        raise InputProblem(f"{arguments.file}: {exc}") from exc
    entry_hash = arguments.entry_hash or proof.entry_hash
    if not entry_hash:
        raise InputProblem("the proof names no entry: give its hash with --entry-hash")
    keys = load_verifier(arguments, getattr(arguments, "base_url", None))
    last: Exception | None = None
    for key in keys:
        try:
            tree = verify_proof(proof, entry_hash.encode("ascii"), key)
        except ProofFileError as exc:
            last = exc
            continue
        ok(f"{tree.origin}: entry #{proof.index + 1:,} with hash {entry_hash} is in the"
           f" signed tree of {tree.size:,} entries (root {tree.root_base64}), signed by"
           f" {key.name}")
        return
    raise Invalid(f"{arguments.file}: {last}")


def command_consistency(arguments: argparse.Namespace) -> None:
    base = _base_url(arguments)
    keys = load_verifier(arguments, base)
    older = load_checkpoint(arguments.from_checkpoint, base, keys)
    newer = load_checkpoint(arguments.to_checkpoint, base, keys)
    organisation = fetch.get_json(fetch.join(
        base, f"/api/v1/public/organisations/{fetch.quote(arguments.org)}"))
    org_id = organisation["id"]
    try:
        first, second = formats.summary_for(older, org_id), formats.summary_for(newer, org_id)
    except formats.CheckpointError as exc:
        raise InputProblem(str(exc)) from exc
    m, n = int(first["tree_size"]), int(second["tree_size"])
    ok(f"both checkpoints' signatures hold: {older['checkpoint_id']} has {m:,} entries,"
       f" {newer['checkpoint_id']} has {n:,}")
    if m > n:
        raise Invalid(f"the ledger shrank from {m:,} to {n:,} entries")
    body = fetch.get_json(fetch.join(
        base, f"/api/v1/public/organisations/{fetch.quote(org_id)}/consistency"
              f"?first={m}&second={n}"))
    try:
        merkle.verify_consistency(m, n, base64.b64decode(first["root_hash"]),
                                  base64.b64decode(second["root_hash"]),
                                  [base64.b64decode(v) for v in body["consistency_path"]])
    except merkle.ProofError as exc:
        raise Invalid(f"the ledger at {newer['checkpoint_id']} does not extend the one signed at"
                      f" {older['checkpoint_id']}: {exc}. Its history was rewritten.") from exc
    ok(f"the ledger of {organisation.get('name', org_id)} at {newer['checkpoint_id']} extends"
       f" the one at {older['checkpoint_id']} unchanged ({n - m:,} entries added)")


def consistency_online(base: str | None, keys: Sequence[Verifier]
                       ) -> Callable[[dict[str, Any], str], str]:
    """The report's check against the previous checkpoint, made through the portal."""
    from amply_verify.report import consistency_text

    def check(document: dict[str, Any], organisation_id: str) -> str:
        previous_id = document.get("previous_checkpoint_id")
        if previous_id and not base:
            return "not checked: no portal address (--base-url) to fetch the previous one"

        def proof_for(m: int, n: int) -> list[bytes]:
            body = fetch.get_json(fetch.join(
                base or "", f"/api/v1/public/organisations/{fetch.quote(organisation_id)}"
                            f"/consistency?first={m}&second={n}"))
            return [base64.b64decode(v) for v in body["consistency_path"]]

        try:
            previous = load_checkpoint(str(previous_id), base, keys) if previous_id else None
            return consistency_text(document, organisation_id, previous, proof_for)
        except Invalid as exc:
            return f"FAILED: {exc}"
        except (InputProblem, fetch.FetchError, KeyError, ValueError) as exc:
            return f"not checked: {exc}"

    return check


def command_report(arguments: argparse.Namespace) -> None:
    from amply_verify import report

    document, keys, base = None, [], None
    stream, reader = open_export(arguments.export)
    stream.close()
    if arguments.checkpoint:
        base = getattr(arguments, "base_url", None) or reader.header.base_url
        keys = load_verifier(arguments, base)
        document = load_checkpoint(arguments.checkpoint, base, keys)
    try:
        period = report.Period.parse(arguments.period_from, arguments.period_to)
    except ValueError as exc:
        raise InputProblem(str(exc)) from exc
    progress = Progress("Reading", reader.header.head_sequence)
    try:
        built = report.build_from_export(
            arguments.export, period=period, checkpoint=document,
            consistency=consistency_online(base, keys) if document else None,
            progress=progress.advance)
    finally:
        progress.close()
    try:
        pages = report.write_pdf(built, Path(arguments.output),
                                 export_name=Path(arguments.export).name)
    except report.RenderingUnavailable as exc:
        raise InputProblem(str(exc)) from exc
    ok(f"report written to {arguments.output} ({pages} pages): {built.summary_line()}")
    if not built.verification.chain_valid:
        raise Invalid(f"the ledger is INVALID ({built.verification.chain_problem}); the report"
                      " says so on its first page")


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amply-verify",
        description="Check an Amply ledger, its signed checkpoints and its Merkle proofs.",
        epilog="Exit codes: 0 valid, 1 invalid, 2 usage or input error. Guide:"
               " docs/verification.md")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, function: Callable[[argparse.Namespace], None]
            ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(function=function)
        return sub

    def network(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--base-url", help="the portal's address, e.g. https://amply.example")

    def key(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--public-key", metavar="FILE",
                         help="file with the portal's verifier key(s), one per line (default:"
                              " fetched from the portal, with a warning)")

    sub = add("download", "Download an organisation's public ledger export.", command_download)
    sub.add_argument("--org", required=True, help="organisation id or slug")
    sub.add_argument("--output", "-o", required=True, help="file to write")
    network(sub)

    sub = add("chain", "Check every hash and link of an export.", command_chain)
    sub.add_argument("export", help="ledger export (JSON)")

    sub = add("checkpoint", "Check an export against a signed checkpoint.", command_checkpoint)
    sub.add_argument("export", help="ledger export (JSON)")
    sub.add_argument("--checkpoint", required=True, help="checkpoint id (chk_…) or JSON file")
    network(sub)
    key(sub)

    sub = add("proof", "Check that an entry is in a signed checkpoint.", command_proof)
    sub.add_argument("--org", help="organisation id or slug")
    sub.add_argument("--entry", help="entry id (led_…)")
    sub.add_argument("--tree-size", type=int, help="prove against this tree size")
    sub.add_argument("--file", help="an offline proof file (.tlog-proof) instead")
    sub.add_argument("--entry-hash", help="with --file: the entry hash to prove")
    network(sub)
    key(sub)

    sub = add("consistency", "Check that a ledger only grew between two checkpoints.",
              command_consistency)
    sub.add_argument("--org", required=True, help="organisation id or slug")
    sub.add_argument("--from", dest="from_checkpoint", required=True, help="older checkpoint")
    sub.add_argument("--to", dest="to_checkpoint", required=True, help="newer checkpoint")
    network(sub)
    key(sub)

    sub = add("report", "Write the audit report (PDF) of an export.", command_report)
    sub.add_argument("export", help="ledger export (JSON), public or auditor")
    sub.add_argument("--output", "-o", required=True, help="PDF to write")
    sub.add_argument("--from", dest="period_from", help="first day of the period (YYYY-MM-DD)")
    sub.add_argument("--to", dest="period_to", help="last day of the period (YYYY-MM-DD)")
    sub.add_argument("--checkpoint", help="bind the report to this checkpoint (id or file)")
    network(sub)
    key(sub)
    return parser


def _fail(code: int, message: str) -> NoReturn:
    label = "INVALID" if code == INVALID else "error"
    print(f"{label}: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        arguments.function(arguments)
    except ChainBroken as exc:
        _fail(INVALID, str(exc))
    except Invalid as exc:
        _fail(INVALID, str(exc))
    except (InputProblem, ExportError, fetch.FetchError, formats.CheckpointError,
            NoteError) as exc:
        _fail(INPUT_ERROR, str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        _fail(INPUT_ERROR, f"the data is not what the verifier expects ({exc!r})")
    except KeyboardInterrupt:
        _fail(INPUT_ERROR, "interrupted")
    return VALID


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
