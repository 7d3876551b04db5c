"""Stripe's form encoding: ``metadata[key]=v``, ``expand[0]=x``/``expand[]=x``, nested objects.

``decode_form`` turns the pairs of a query string or form body into nested dicts and lists;
``Params`` reads typed values out of them and answers malformed input as Stripe does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from portal.money import CURRENCY_EXPONENTS
from portal.stripe_simulator.errors import invalid_request, missing_param, unknown_param

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")

METADATA_KEYS = 50
METADATA_KEY_LENGTH = 40
METADATA_VALUE_LENGTH = 500


def parse_pairs(raw: str) -> list[tuple[str, str]]:
    return parse_qsl(raw, keep_blank_values=True)


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nest ``a[b][0]=v`` pairs; dicts whose keys are all indexes become lists."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = _KEY.match(raw_key)
        if not match:
            raise invalid_request(f"Invalid parameter name: {raw_key}", param=raw_key)
        parts = [match.group(1), *_PART.findall(match.group(2))]
        node: dict[str, Any] = root
        for position, part in enumerate(parts):
            # ``expand[]=x``: the next free index.
            name = part or str(sum(1 for key in node if key.isdigit()))
            if position == len(parts) - 1:
                node[name] = value
                break
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                raise invalid_request(f"Invalid parameter: {raw_key} mixes a value and a hash",
                                      param=raw_key)
            node = child
    decoded: dict[str, Any] = _listify(root)
    return decoded


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


class Params:
    """The parameters of one request; reading one marks it as known."""

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self.data = dict(data)
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}[{key}]" if self.prefix else key

    def allow(self, *names: str) -> None:
        """Refuse any parameter not named here, as Stripe refuses unknown parameters."""
        for key in self.data:
            if key not in names:
                raise unknown_param(self.name(key))

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] != ""

    def text(self, key: str, *, required: bool = False, choices: Iterable[str] | None = None,
             max_length: int = 5000) -> str | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise missing_param(self.name(key))
            return None
        if not isinstance(value, str):
            raise invalid_request(f"Invalid string: {self.name(key)} must be a string",
                                  code="parameter_invalid_string", param=self.name(key))
        if len(value) > max_length:
            raise invalid_request(
                f"Invalid string: {self.name(key)} must be at most {max_length} characters",
                code="parameter_invalid_string", param=self.name(key))
        if choices is not None:
            allowed = list(choices)
            if value not in allowed:
                raise invalid_request(
                    f"Invalid {self.name(key)}: must be one of {', '.join(allowed)}",
                    param=self.name(key))
        return value

    def required_text(self, key: str, *, choices: Iterable[str] | None = None) -> str:
        value = self.text(key, required=True, choices=choices)
        assert value is not None
        return value

    def integer(self, key: str, *, required: bool = False, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        raw = self.text(key, required=required)
        if raw is None:
            return None
        if not re.fullmatch(r"-?\d+", raw):
            raise invalid_request(f"Invalid integer: {raw}", code="parameter_invalid_integer",
                                  param=self.name(key))
        value = int(raw)
        if minimum is not None and value < minimum:
            raise invalid_request(
                f"This value must be greater than or equal to {minimum}.",
                code="parameter_invalid_integer", param=self.name(key))
        if maximum is not None and value > maximum:
            raise invalid_request(
                f"This value must be less than or equal to {maximum}.",
                code="parameter_invalid_integer", param=self.name(key))
        return value

    def boolean(self, key: str) -> bool | None:
        raw = self.text(key)
        if raw is None:
            return None
        if raw not in {"true", "false"}:
            raise invalid_request(f"Invalid boolean: {raw}", param=self.name(key))
        return raw == "true"

    def nested(self, key: str) -> Params:
        value = self.data.get(key)
        if value is None or value == "":
            return Params({}, self.name(key))
        if not isinstance(value, dict):
            raise invalid_request(f"Invalid object: {self.name(key)} must be a hash",
                                  code="parameter_invalid_empty", param=self.name(key))
        return Params(value, self.name(key))

    def items(self, key: str) -> list[Params]:
        value = self.data.get(key)
        if value is None or value == "":
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise invalid_request(f"Invalid array: {self.name(key)} must be a list of hashes",
                                  param=self.name(key))
        return [Params(item, f"{self.name(key)}[{index}]") for index, item in enumerate(value)]

    def strings(self, key: str) -> list[str]:
        value = self.data.get(key)
        if value is None or value == "":
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise invalid_request(f"Invalid array: {self.name(key)} must be a list of strings",
                                  param=self.name(key))
        return list(value)

    def expand(self) -> list[str]:
        return self.strings("expand")

    def metadata(self) -> dict[str, str]:
        """Metadata to set: an empty value unsets its key, as in Stripe."""
        value = self.data.get("metadata")
        if value is None or value == "":
            return {}
        if not isinstance(value, dict):
            raise invalid_request("Invalid metadata: must be a hash of strings",
                                  param=self.name("metadata"))
        if len(value) > METADATA_KEYS:
            raise invalid_request(
                f"Invalid metadata: metadata can have at most {METADATA_KEYS} keys",
                param=self.name("metadata"))
        result: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(item, str):
                raise invalid_request(f"Invalid metadata[{key}]: must be a string",
                                      param=self.name(f"metadata[{key}]"))
            if len(key) > METADATA_KEY_LENGTH:
                raise invalid_request(
                    f"Metadata keys can have up to {METADATA_KEY_LENGTH} characters; "
                    f"'{key}' has {len(key)}", param=self.name(f"metadata[{key}]"))
            if len(item) > METADATA_VALUE_LENGTH:
                raise invalid_request(
                    f"Metadata values can have up to {METADATA_VALUE_LENGTH} characters; the "
                    f"value of '{key}' has {len(item)}", param=self.name(f"metadata[{key}]"))
            if item != "":
                result[key] = item
        return result

    def currency(self, key: str = "currency", *, required: bool = True) -> str | None:
        raw = self.text(key, required=required)
        if raw is None:
            return None
        code = raw.lower()
        if code.upper() not in CURRENCY_EXPONENTS:
            raise invalid_request(f"Invalid currency: {raw}.", param=self.name(key))
        return code

    def required_currency(self, key: str = "currency") -> str:
        value = self.currency(key)
        assert value is not None
        return value
