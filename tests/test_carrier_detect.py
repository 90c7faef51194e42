"""Carrier detection: published check digits, no guess where a format is unknown or shared,
and the same verdicts as the `tracking-numbers` package on numbers of every shape."""

from __future__ import annotations

import random

import pytest
from tracking_numbers._generated import DEFINITIONS

from agent_tools.carriers.detect import carrier_name, detect


@pytest.mark.parametrize(
    ("number", "carrier"),
    [
        ("1Z999AA10123456784", "UPS"),
        ("1z 999 aa1 01 2345 6784", "UPS"),  # as printed on a label
        ("1Z12345E6605272234", "UPS"),
        ("9400111899223197428497", "USPS"),
        ("420972019400111899223197428497", "USPS"),  # 420 + ZIP routing prefix
        ("92055901755477000271990251", "USPS"),  # 26 digits
        ("RR123456785US", "USPS"),  # UPU S10
        ("123456789012", "FedEx"),  # Express, 12 digits
        ("449044304137821", "FedEx"),  # Ground, 15 digits
        ("3318810025", "DHL"),
    ],
)
def test_known_formats_with_a_valid_check_digit(number: str, carrier: str | None) -> None:
    assert detect(number) == carrier


@pytest.mark.parametrize(
    "number",
    [
        "1Z999AA10123456785",  # UPS, wrong check digit
        "9400111899223197428498",  # USPS, wrong check digit
        "123456789013",  # FedEx, wrong check digit
        "3318810026",  # DHL, wrong check digit
        "RR123456784US",  # S10, wrong check digit
        "RR123456785DE",  # S10 of another post: not USPS
        "EZ1000000001",  # EasyPost's test numbers
        "ORD-2026-123456",
        "12345",
        "",
        "00000000000000000000",  # 20 digits: USPS and FedEx both use the shape
    ],
)
def test_no_guess_without_a_format_and_a_check_digit(number: str) -> None:
    assert detect(number) is None


def test_the_carrier_given_wins_and_known_names_are_spelled_alike() -> None:
    assert carrier_name("ups", "3318810025") == "UPS"
    assert carrier_name("fedex", "x") == "FedEx"
    assert carrier_name("Royal Mail", "1Z999AA10123456784") == "Royal Mail"
    assert carrier_name(None, "1Z999AA10123456784") == "UPS"
    assert carrier_name(" ", "ABC") == "other"


_NAMES = {"UPS": "UPS", "USPS": "United States Postal Service", "FedEx": "FedEx", "DHL": "DHL"}


def _theirs(number: str) -> set[str]:
    found = {d.courier.name for d in DEFINITIONS if (t := d.test(number)) and t.valid}
    if "S10 International Standard" in found and number.endswith("US"):
        found.add(_NAMES["USPS"])
    return found


def test_check_digits_agree_with_the_tracking_numbers_package() -> None:
    """Random numbers of each carrier's shape: whenever we name a carrier, the package's
    definitions accept the number for it too (its UPS rule also checks service codes, so a
    UPS verdict is compared on the check digit alone), and every number the package accepts
    for exactly one of our carriers, we name the same way."""
    rng = random.Random(17)

    def digits(n: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(n))

    shapes = [
        lambda: digits(10),
        lambda: digits(12),
        lambda: digits(15),
        lambda: "9" + rng.choice("12345") + digits(20),
        lambda: "9" + rng.choice("12345") + digits(24),
        lambda: rng.choice(["RR", "EC", "LZ"]) + digits(9) + "US",
        lambda: (
            "1Z"
            + "".join(rng.choice("0123456789ABCDEFGHJKLMNPRTUVWXYZ") for _ in range(15))
            + digits(1)
        ),
    ]
    agreed = 0
    for _ in range(3000):
        number = rng.choice(shapes)()
        ours, theirs = detect(number), _theirs(number)
        if ours is not None and ours != "UPS":
            assert _NAMES[ours] in theirs, (number, ours, theirs)
            agreed += 1
        ours_known = {v for v in theirs if v in _NAMES.values()}
        if len(ours_known) == 1 and not number.startswith("1Z"):
            assert ours is not None and _NAMES[ours] in ours_known, (number, ours, theirs)
        if number.startswith("1Z"):
            (ups,) = [d for d in DEFINITIONS if d.product.name == "UPS"]
            checked = ups.test(number)
            sums_up = checked is not None and "checksum" not in dict(checked.validation_errors)
            assert (ours == "UPS") == sums_up, number
            agreed += ours == "UPS"
    assert agreed > 250  # the comparison saw real matches, not just misses
