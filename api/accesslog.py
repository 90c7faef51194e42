"""Keeps secrets out of the server's access log: query values and token-like path segments.

uvicorn logs every request line, query string included. Tracking tokens, emails typed into a
search, and the tokens of links that carry one in their path would sit in that log for as
long as it is kept; this filter rewrites the logged path before any handler sees it.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, quote, urlsplit

SAFE_PARAMS = frozenset(
    {"status", "limit", "agent_id", "include_inactive", "created_from", "created_to", "v"}
)
"""Query parameters whose values are logged; every other value is replaced by `***`."""

_TOKEN_SEGMENT = re.compile(r"^[A-Za-z0-9_\-.~%]{24,}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def redact_path(path: str) -> str:
    """`/track/ORD-2026-1?token=abc&status=x` -> `/track/ORD-2026-1?token=***&status=x`."""
    parts = urlsplit(path)
    segments = [
        "***" if _TOKEN_SEGMENT.match(s) and not _UUID.match(s) else s
        for s in parts.path.split("/")
    ]
    clean = "/".join(segments)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        clean += "?" + "&".join(
            f"{quote(k)}={quote(v) if k in SAFE_PARAMS else '***'}" for k, v in pairs
        )
    return clean


class RedactingFilter(logging.Filter):
    """For `uvicorn.access`, whose records carry (client, method, path, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def install() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
