"""Money for people: ISO 4217 minor units, formatted with Babel."""

from __future__ import annotations

import pytest

from portal.money import format_money, is_known_currency, minor_units, parse_major


@pytest.mark.parametrize(("amount", "currency", "locale", "expected"), [
    (-4550, "EUR", "de", "-45,50\xa0€"),
    (123456, "EUR", "en", "€1,234.56"),
    (1234567, "JPY", "en", "¥1,234,567"),
    (1234567, "KWD", "en", "KWD1,234.567"),
    (123456, "HUF", "en", "HUF1,234.56"),
    (100, "USD", "fr_CH", "1,00\xa0$US"),
])
def test_format_money_follows_locale_and_iso_digits(
    amount: int, currency: str, locale: str, expected: str
) -> None:
    assert format_money(amount, currency, locale) == expected


def test_signed_positive_amounts() -> None:
    assert format_money(500, "GBP", "en", signed=True) == "+£5.00"
    assert format_money(-500, "GBP", "en", signed=True) == "-£5.00"


def test_unknown_locale_falls_back_to_english() -> None:
    assert format_money(100, "EUR", "xx-YY") == "€1.00"


def test_currencies() -> None:
    assert is_known_currency("EUR")
    assert not is_known_currency("XYZ")
    assert not is_known_currency("XAU")  # gold is not money a charity receives
    assert (minor_units("EUR"), minor_units("JPY"), minor_units("BHD")) == (2, 0, 3)


@pytest.mark.parametrize(("text", "currency", "expected"), [
    ("12.50", "EUR", 1250), ("1,234.5", "EUR", 123450), ("7", "JPY", 7), ("0.001", "KWD", 1),
])
def test_parse_major(text: str, currency: str, expected: int) -> None:
    assert parse_major(text, currency) == expected


@pytest.mark.parametrize(("text", "currency"), [("1.001", "EUR"), ("1.5", "JPY"), ("abc", "EUR"),
                                                ("nan", "EUR"), ("inf", "EUR")])
def test_parse_major_refuses(text: str, currency: str) -> None:
    with pytest.raises(ValueError, match=r"amount|decimals"):
        parse_major(text, currency)
