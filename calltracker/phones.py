"""Phone numbers: normalise to E.164 and format for display, per the site's country."""

from __future__ import annotations

import functools

import phonenumbers


class InvalidPhoneNumber(ValueError):
    """A number that is not a valid phone number for its region; the message names it."""


def normalise(raw: str, region: str = "RU") -> str:
    """E.164 form of `raw`, read in `region` when it has no country code."""
    text = (raw or "").strip()
    if not text:
        raise InvalidPhoneNumber("empty phone number")
    candidate = text
    digits = "".join(ch for ch in text if ch.isdigit())
    # Asterisk and CSV files often send full international numbers without the '+'.
    if not text.startswith(("+", "8")) and len(digits) >= 11:
        candidate = "+" + digits
    try:
        parsed = phonenumbers.parse(candidate, region.upper())
    except phonenumbers.NumberParseException as err:
        raise InvalidPhoneNumber(f"invalid phone number {raw!r}: {err}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(f"invalid phone number {raw!r} for region {region.upper()}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def try_normalise(raw: str, region: str = "RU") -> str | None:
    try:
        return normalise(raw, region)
    except InvalidPhoneNumber:
        return None


@functools.lru_cache(maxsize=65536)  # formatting is slow and pools are small
def display(e164: str, region: str = "RU") -> str:
    """International format with the local grouping, e.g. '+7 495 123-45-67'."""
    parsed = phonenumbers.parse(e164, region.upper())
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def valid_region(region: str) -> bool:
    return region.upper() in phonenumbers.SUPPORTED_REGIONS
