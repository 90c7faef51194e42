"""Shipping addresses as people write them: "USA", "Deutschland", "España" become ISO 3166
codes, a US or Canadian "IL 62704" in the city or postal field is split into region and postal
code, and a postal code is required where the country uses one.

Country names come from pycountry (ISO 3166 with its translations); what cannot be understood
is refused with a message naming the field, so the model can ask the customer for it.
"""

from __future__ import annotations

import gettext
import re
import unicodedata
from functools import cache
from typing import Any

import pycountry

from agent_tools.errors import ValidationFailed

LANGUAGES = (
    "en", "es", "fr", "de", "it", "pt", "pt_BR", "nl", "sv", "da", "nb_NO", "fi", "pl", "cs",
    "tr", "ru", "uk", "el", "ro", "hu", "ca", "ja", "zh_CN", "ko", "ar", "he", "hi", "id", "vi",
)  # fmt: skip
"""Languages whose country names are recognised (pycountry ships their translations)."""

_ALIASES = {
    "usa": "US", "u s": "US", "u s a": "US", "america": "US", "united states of america": "US",
    "estados unidos de america": "US", "eeuu": "US", "ee uu": "US", "etats unis": "US",
    "uk": "GB", "u k": "GB", "great britain": "GB", "britain": "GB", "england": "GB",
    "scotland": "GB", "wales": "GB", "northern ireland": "GB", "reino unido": "GB",
    "holland": "NL", "south korea": "KR", "korea": "KR", "north korea": "KP", "russia": "RU",
    "czech republic": "CZ", "vietnam": "VN", "iran": "IR", "syria": "SY", "laos": "LA",
    "bolivia": "BO", "venezuela": "VE", "tanzania": "TZ", "taiwan": "TW", "moldova": "MD",
    "macedonia": "MK", "ivory coast": "CI", "turkey": "TR", "brasil": "BR", "deutschland": "DE",
    "suisse": "CH", "schweiz": "CH", "svizzera": "CH", "osterreich": "AT", "nederland": "NL",
    "espana": "ES", "italia": "IT", "sverige": "SE", "norge": "NO", "danmark": "DK",
    "suomi": "FI", "polska": "PL", "mexico": "MX", "uae": "AE", "emirates": "AE",
}  # fmt: skip
"""Everyday names the standard's own names and translations miss."""

NO_POSTAL_CODE = frozenset(
    [
        "AE",
        "AG",
        "AN",
        "AO",
        "AW",
        "BF",
        "BI",
        "BJ",
        "BO",
        "BS",
        "BW",
        "BZ",
        "CD",
        "CF",
        "CG",
        "CI",
        "CK",
        "CM",
        "DJ",
        "DM",
        "ER",
        "FJ",
        "GA",
        "GD",
        "GH",
        "GM",
        "GQ",
        "GY",
        "HK",
        "HM",
        "JM",
        "KE",
        "KI",
        "KM",
        "KN",
        "KP",
        "LC",
        "ML",
        "MO",
        "MR",
        "MW",
        "NA",
        "NR",
        "NU",
        "QA",
        "RW",
        "SB",
        "SC",
        "SL",
        "SO",
        "SR",
        "SS",
        "ST",
        "SY",
        "TD",
        "TF",
        "TG",
        "TK",
        "TL",
        "TO",
        "TT",
        "TV",
        "UG",
        "VU",
        "YE",
        "ZW",
    ]
)
"""Countries whose addresses have no postal code (everywhere else one is required)."""

_POSTAL = {
    "US": (re.compile(r"^\d{5}(-\d{4})?$"), "5 digits, e.g. 62704"),
    "CA": (re.compile(r"^[A-Z]\d[A-Z] \d[A-Z]\d$"), "like K1A 0B1"),
}
_REGION_POSTAL = {
    "US": re.compile(r"^(?P<region>[A-Za-z]{2})\.?\s+(?P<postal>\d{5}(?:-\d{4})?)$"),
    "CA": re.compile(
        r"^(?P<region>[A-Za-z]{2})\.?\s+(?P<postal>[A-Za-z]\d[A-Za-z] ?\d[A-Za-z]\d)$"
    ),
}
_CITY_TAIL = {
    code: re.compile(r"^(?P<city>.+?)[,\s]\s*" + pattern.pattern[1:])
    for code, pattern in _REGION_POSTAL.items()
}
_CITY_REGION = re.compile(r"^(?P<city>.+?),\s*(?P<region>[A-Za-z]{2})\.?$")


def _key(text: str) -> str:
    """Case, accents and punctuation folded away: "É.-U." and "e u" meet."""
    plain = "".join(
        c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
    ).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", plain).split())


@cache
def _country_names() -> dict[str, str]:
    names: dict[str, str] = {}

    def add(name: str | None, code: str) -> None:
        if name:
            names.setdefault(_key(name), code)
            # "Bolivia, Plurinational State of" is also "Bolivia".
            names.setdefault(_key(re.split(r"[,(]", name)[0]), code)

    countries = list(pycountry.countries)
    for c in countries:
        for attr in ("name", "common_name", "official_name"):
            add(getattr(c, attr, None), c.alpha_2)
    for lang in LANGUAGES:
        try:
            t = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[lang])
        except OSError:
            continue
        for c in countries:
            for attr in ("name", "common_name", "official_name"):
                english = getattr(c, attr, None)
                if english:
                    add(t.gettext(english), c.alpha_2)
    names.update(_ALIASES)
    return names


def country_code(text: str) -> str | None:
    """ISO 3166-1 alpha-2 for a code ("us", "DEU") or a name in a common language."""
    raw = text.strip()
    if len(raw) == 2 and raw.isalpha():
        if raw.upper() == "UK":
            return "GB"
        found = pycountry.countries.get(alpha_2=raw.upper())
        return found.alpha_2 if found else None
    if len(raw) == 3 and raw.isalpha() and raw.upper() != "USA":
        found = pycountry.countries.get(alpha_3=raw.upper())
        if found:
            return str(found.alpha_2)
    return _country_names().get(_key(raw))


@cache
def _regions(country: str) -> dict[str, str]:
    """A country's subdivision codes by their code and name: "il" and "illinois" -> "IL"."""
    out: dict[str, str] = {}
    for s in pycountry.subdivisions.get(country_code=country) or []:  # type: ignore[no-untyped-call]
        short = s.code.split("-", 1)[1]
        out[_key(short)] = short
        out[_key(s.name)] = short
    return out


def _fail(field: str, message: str, hint: str) -> ValidationFailed:
    return ValidationFailed(message, field=f"shipping_address.{field}", hint=hint)


def normalise(address: dict[str, Any]) -> dict[str, Any]:
    """The address with an ISO country code, a split "ST 12345" and a checked postal code."""
    out = {k: (v.strip() if isinstance(v, str) else v) or None for k, v in address.items()}
    given = out.get("country") or ""
    code = country_code(given)
    if code is None:
        raise _fail(
            "country",
            f"country {given[:60]!r} is not a country this store knows",
            "ask the customer which country; send its name or 2-letter code, e.g. US, DE",
        )
    out["country"] = code
    city, region, postal = out.get("city"), out.get("region"), out.get("postal_code")
    if code in _REGION_POSTAL:
        # "IL 62704" typed in the postal code, or "Springfield, IL 62704" in the city.
        if postal and (m := _REGION_POSTAL[code].match(postal)):
            region, postal = region or m["region"], m["postal"]
        if city and (m := _CITY_TAIL[code].match(city)):
            city, region, postal = (
                m["city"].rstrip(" ,"),
                region or m["region"],
                postal or m["postal"],
            )
        elif city and (m := _CITY_REGION.match(city)) and m["region"].upper() != code:
            city, region = m["city"], region or m["region"]
    if region and _regions(code):
        known = _regions(code).get(_key(region))
        if known:
            region = known
        elif code in _REGION_POSTAL:
            raise _fail(
                "region",
                f"region {region[:60]!r} is not a {'state' if code == 'US' else 'province'}"
                f" of {code}",
                "send the 2-letter state or province code, e.g. IL or ON",
            )
    if code in _POSTAL and postal:
        postal = postal.upper()
        if code == "CA" and len(postal) == 6:
            postal = f"{postal[:3]} {postal[3:]}"
        pattern, shape = _POSTAL[code]
        if not pattern.match(postal):
            raise _fail(
                "postal_code",
                f"postal code {postal[:20]!r} is not a {code} postal code ({shape})",
                "ask the customer for the postal code",
            )
    if not postal and code not in NO_POSTAL_CODE:
        raise _fail(
            "postal_code",
            f"a postal code is required for addresses in {code}",
            "ask the customer for the postal code",
        )
    if not city:
        raise _fail("city", "the city is missing", "ask the customer for the city")
    out.update(city=city, region=region, postal_code=postal)
    return out
