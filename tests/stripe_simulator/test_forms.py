"""Stripe's form encoding, decoded as the simulator reads it."""

from __future__ import annotations

import pytest

from portal.stripe_simulator.errors import StripeError
from portal.stripe_simulator.forms import Params, decode_form, parse_pairs


def test_nested_keys_and_indexed_lists_decode_as_the_sdk_encodes_them() -> None:
    decoded = decode_form(parse_pairs(
        "amount=500&metadata[donation_id]=don_1&metadata[fund]=&expand[0]=latest_charge"
        "&expand[1]=customer&items[0][price]=price_1&items[0][quantity]=2"
        "&automatic_payment_methods[enabled]=true"))
    assert decoded == {
        "amount": "500",
        "metadata": {"donation_id": "don_1", "fund": ""},
        "expand": ["latest_charge", "customer"],
        "items": [{"price": "price_1", "quantity": "2"}],
        "automatic_payment_methods": {"enabled": "true"},
    }


def test_empty_brackets_append() -> None:
    assert decode_form(parse_pairs("expand[]=a&expand[]=b")) == {"expand": ["a", "b"]}


def test_a_key_that_is_both_a_value_and_a_hash_is_refused() -> None:
    with pytest.raises(StripeError, match="mixes a value and a hash"):
        decode_form(parse_pairs("metadata=x&metadata[a]=b"))


def test_unknown_parameters_are_named() -> None:
    params = Params({"amount": "5", "colour": "red"})
    with pytest.raises(StripeError) as caught:
        params.allow("amount")
    assert caught.value.body()["error"]["code"] == "parameter_unknown"
    assert caught.value.param == "colour"


def test_empty_metadata_values_unset_their_key() -> None:
    assert Params({"metadata": {"a": "1", "b": ""}}).metadata() == {"a": "1"}


@pytest.mark.parametrize(("raw", "message"), [
    ("five", "Invalid integer: five"),
    ("0", "greater than or equal to 1"),
])
def test_integers_are_checked(raw: str, message: str) -> None:
    with pytest.raises(StripeError, match=message):
        Params({"amount": raw}).integer("amount", minimum=1)
