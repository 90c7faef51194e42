"""Which carrier a tracking number belongs to, from its format and check digit.

Only formats whose check digit the carrier publishes are recognised, and only where no other
recognised carrier uses the same shape: a wrong guess sends the customer to the wrong carrier's
site, which is worse than no guess. Anything else is `None` (shown as "other").

- UPS: `1Z` + 6 shipper characters + 2 service digits + 7 package digits + check (mod 10 over
  the 15 characters after `1Z`, letters mapped to digits, every second one doubled).
- USPS: Intelligent Mail package barcode, 22 or 26 digits starting 91-95 (mod 10, weights 3
  and 1 from the right), with or without its `420` + ZIP routing prefix; UPU S10 numbers
  ending in `US` (mod 11, weights 8 6 4 2 3 5 9 7).
- FedEx: Express 12 digits (mod 11, weights 1 3 7 from the right), Ground 15 digits (mod 10,
  weights 3 and 1 from the right).
- DHL Express: 10 digits (the first 9 mod 7).
"""

from __future__ import annotations

import re

from agent_tools.models.shipments import normalize_tracking_number

UPS = "UPS"
USPS = "USPS"
FEDEX = "FedEx"
DHL = "DHL"
OTHER = "other"

_UPS = re.compile(r"^1Z([0-9A-Z]{15})([0-9])$")
_IMPB = re.compile(r"^(?:420\d{5}(?:\d{4})?)?(9[1-5](?:\d{20}|\d{24}))$")
_S10 = re.compile(r"^[A-Z]{2}(\d{8})(\d)US$")


def _weighted(digits: str, weights: tuple[int, ...]) -> int:
    """Sum of the digits times the weights, both read from the right."""
    return sum(int(d) * weights[i % len(weights)] for i, d in enumerate(reversed(digits)))


def _ups(number: str) -> bool:
    m = _UPS.match(number)
    if m is None:
        return False
    # Letters count as digits: A=2, B=3 ... (their position in the alphabet, plus 1, mod 10).
    values = [int(c) if c.isdigit() else (ord(c) - ord("A") + 2) % 10 for c in m.group(1)]
    total = sum(v * (2 if i % 2 else 1) for i, v in enumerate(values))
    return (10 - total % 10) % 10 == int(m.group(2))


def _mod10_31(number: str) -> bool:
    """The last digit checks the others with weights 3, 1, 3 ... from the right."""
    return (10 - _weighted(number[:-1], (3, 1)) % 10) % 10 == int(number[-1])


def _usps(number: str) -> bool:
    m = _IMPB.match(number)
    if m is not None:
        return _mod10_31(m.group(1))
    s10 = _S10.match(number)
    if s10 is not None:
        check = 11 - _weighted(s10.group(1), (7, 9, 5, 3, 2, 4, 6, 8)) % 11
        return {10: 0, 11: 5}.get(check, check) == int(s10.group(2))
    return False


def _fedex(number: str) -> bool:
    if re.fullmatch(r"\d{12}", number):
        return _weighted(number[:-1], (1, 3, 7)) % 11 % 10 == int(number[-1])
    if re.fullmatch(r"\d{15}", number):
        return _mod10_31(number)
    return False


def _dhl(number: str) -> bool:
    return re.fullmatch(r"\d{10}", number) is not None and int(number[:9]) % 7 == int(number[9])


_RULES = ((UPS, _ups), (USPS, _usps), (FEDEX, _fedex), (DHL, _dhl))


def detect(tracking_number: str) -> str | None:
    """The carrier (`UPS`, `USPS`, `FedEx`, `DHL`) whose format and check digit this number
    fits, or None when none or more than one does."""
    number = normalize_tracking_number(tracking_number)
    found = [name for name, fits in _RULES if fits(number)]
    return found[0] if len(found) == 1 else None


KNOWN = {name.lower(): name for name, _ in _RULES}


def carrier_name(given: str | None, tracking_number: str) -> str:
    """The carrier to keep for a shipment: the caller's (UPS, USPS, FedEx and DHL spelled the
    usual way), else the detected one, else "other"."""
    if given and given.strip():
        text = given.strip()
        return KNOWN.get(text.lower(), text)
    return detect(tracking_number) or OTHER
