"""Signed notes (c2sp.org/signed-note) with Ed25519 keys, as transparency logs use them.

A note is UTF-8 text ending in a newline, a blank line, then signature lines
``— <key name> <base64(key id || signature)>``. Keys are written the way Go's
``golang.org/x/mod/sumdb/note`` writes them, so other tools can check our notes:

- verifier key: ``<name>+<key id, 8 hex digits>+<base64(0x01 || 32-byte public key)>``
- signer key:   ``PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>``

with key id = the first four bytes of SHA-256(name || 0x0A || 0x01 || public key).

Signatures need the ``cryptography`` package; everything else is standard library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 16


class NoteError(ValueError):
    """A malformed key or note, or a signature that does not verify."""


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:  # pragma: no cover - depends on what the auditor installed
        raise NoteError("checking signatures needs the 'cryptography' package"
                        " (pip install cryptography)") from exc
    return ed25519


def _public_key(seed: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = _ed25519().Ed25519PrivateKey.from_private_bytes(seed)
    raw: bytes = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw


def _sign(seed: bytes, message: bytes) -> bytes:
    signature: bytes = _ed25519().Ed25519PrivateKey.from_private_bytes(seed).sign(message)
    return signature


def _verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        _ed25519().Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def key_id(name: str, public_key: bytes) -> int:
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name) or not name.isprintable():
        raise NoteError(f"invalid key name {name!r}: it must be non-empty, without spaces or '+'")


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"{what} is not valid base64") from exc


@dataclass(frozen=True)
class Verifier:
    name: str
    id: int
    public_key: bytes

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Verifier:
        _check_name(name)
        if len(public_key) != 32:
            raise NoteError("an Ed25519 public key has 32 bytes")
        return cls(name, key_id(name, public_key), public_key)

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Read a verifier key ``name+id+base64``."""
        name, sep1, rest = vkey.strip().partition("+")
        hex_id, sep2, encoded = rest.partition("+")
        if not (sep1 and sep2) or len(hex_id) != 8 or hex_id != hex_id.lower():
            raise NoteError("a verifier key reads <name>+<8 hex digits>+<base64 key>")
        try:
            claimed = int(hex_id, 16)
        except ValueError as exc:
            raise NoteError("the key id of a verifier key is 8 hex digits") from exc
        raw = _b64decode(encoded, "the verifier key")
        if len(raw) != 33 or raw[0] != ED25519:
            raise NoteError("only Ed25519 verifier keys (type 0x01, 32 bytes) are supported")
        verifier = cls.from_public_key(name, raw[1:])
        if verifier.id != claimed:
            raise NoteError("the verifier key's id does not match its name and public key")
        return verifier

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.id:08x}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        return _verify(self.public_key, message, signature)


@dataclass(frozen=True)
class Signer:
    name: str
    seed: bytes

    @classmethod
    def generate(cls, name: str) -> Signer:
        _check_name(name)
        return cls(name, secrets.token_bytes(32))

    @classmethod
    def parse(cls, skey: str) -> Signer:
        """Read a signer key ``PRIVATE+KEY+name+id+base64``."""
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("a signer key reads PRIVATE+KEY+<name>+<key id>+<base64 seed>")
        _, _, name, hex_id, encoded = parts
        raw = _b64decode(encoded, "the signer key")
        if len(raw) != 33 or raw[0] != ED25519:
            raise NoteError("only Ed25519 signer keys (type 0x01, 32-byte seed) are supported")
        signer = cls(name, raw[1:])
        if f"{signer.verifier.id:08x}" != hex_id:
            raise NoteError("the signer key's id does not match its name and key")
        return signer

    @property
    def verifier(self) -> Verifier:
        return Verifier.from_public_key(self.name, _public_key(self.seed))

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([ED25519]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.id:08x}+{encoded}"

    def __repr__(self) -> str:  # never print the seed by accident
        return f"Signer(name={self.name!r})"

    def signature(self, message: bytes) -> str:
        """``base64(key id || Ed25519 signature)``: the value of a signature line."""
        verifier = self.verifier
        signed = verifier.id.to_bytes(4, "big") + _sign(self.seed, message)
        return base64.b64encode(signed).decode()


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("a note's text ends with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("a note's text has no control characters but newlines")


def sign(text: str, signer: Signer) -> str:
    """The signed note of ``text``."""
    _check_text(text)
    return f"{text}\n{SIGNATURE_PREFIX}{signer.name} {signer.signature(text.encode())}\n"


@dataclass(frozen=True)
class Signature:
    name: str
    id: int
    value: bytes  # the signature proper, without the key id


def split_note(note: str) -> tuple[str, list[Signature]]:
    """The text and signature lines of a note, without checking any signature."""
    if not note.endswith("\n"):
        raise NoteError("a signed note ends with a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteError("a signed note has a blank line before its signatures")
    text, block = note[: cut + 1], note[cut + 2:]
    _check_text(text)
    signatures: list[Signature] = []
    for line in block.splitlines():
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("a signature line starts with an em dash and a space")
        name, sep, encoded = line[len(SIGNATURE_PREFIX):].partition(" ")
        if not sep:
            raise NoteError("a signature line reads '— <key name> <base64 signature>'")
        raw = _b64decode(encoded, "a signature")
        if len(raw) < 5:
            raise NoteError("a signature is too short")
        signatures.append(Signature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
    if not signatures:
        raise NoteError("the note is not signed")
    if len(signatures) > MAX_SIGNATURES:
        raise NoteError("the note has too many signatures")
    return text, signatures


def open_note(note: str, *verifiers: Verifier) -> str:
    """Return the text of ``note`` if a known key signed it; raise ``NoteError`` otherwise.

    Signatures by unknown keys are ignored; a signature by a known key that does not
    verify rejects the whole note.
    """
    text, signatures = split_note(note)
    known = {(v.name, v.id): v for v in verifiers}
    verified = False
    for signature in signatures:
        verifier = known.get((signature.name, signature.id))
        if verifier is None:
            continue
        if not verifier.verify(text.encode(), signature.value):
            raise NoteError(f"the signature by {signature.name} does not verify")
        verified = True
    if not verified:
        raise NoteError("no signature by a known key")
    return text
