"""Schemathesis against the app's own OpenAPI document, over real HTTP: no 5xx, and every
status, content type, header and body the server sends is the one it documents."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from tests.api_support import JWT_SECRET, ApiProcess, bearer, server
from tests.api_support import settings as settings_for_tests
from tests.conftest import CATALOG, drop_database, new_database

OWNER = uuid4()
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live(
    server_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    name, url = new_database(server_url, template_db)
    env = {"DATABASE_URL": url, "AUTH_JWT_SECRET": JWT_SECRET, "SUPABASE_URL": ""}
    try:
        with server(["serve"], env, tmp_path_factory.mktemp("schema")) as running:
            # Something to find: an agent with a catalog and an order.
            api = httpx.Client(base_url=running.base, headers=bearer(OWNER))
            agent = api.post("/api/agents/", json={"name": "Fuzzed"}).json()
            api.post(f"/api/agents/{agent['id']}/products", json={"products": CATALOG})
            order = {
                "agent_id": agent["id"],
                "customer": {"name": "Ann", "email": "ann@example.com"},
                "shipping_address": {"line1": "1 Main St", "city": "Portland", "country": "US"},
                "items": [{"sku": "TEE-M", "quantity": 1}],
            }
            assert api.post("/api/orders/", json=order).status_code == 201
            yield running
    finally:
        drop_database(server_url, name)


# The document the app serves at /openapi.json, built without starting it (no database
# needed), so each operation becomes its own test.
schema = schemathesis.openapi.from_dict(create_app(settings=settings_for_tests()).openapi())

# Shapes that once ended in a 500, mixed into what schemathesis generates from the document,
# so the whole class keeps being tried, not just the instances a review found: dates at the
# edges of Python's range in any offset, versions made of non-ASCII digits, deep JSON.
EXTREME_DATES = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
    timezones=st.sampled_from(
        [None, UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))]
    ),
).map(datetime.isoformat) | st.sampled_from(["9999-12-31T23:59:59.999999", "0001-01-01"])
ODD_VERSIONS = st.text("0123456789\u00b2\u00b3\u00b9", min_size=1, max_size=10).map(
    lambda v: f'"{v}"'
)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@schema.hook("flatmap_query")
def extreme_dates(ctx: Any, query: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    if not query or not {"created_from", "created_to"} & set(query):
        return st.just(query)
    key = "created_from" if "created_from" in query else "created_to"
    return st.just(query) | EXTREME_DATES.map(lambda d: {**query, key: d})


@schema.hook("flatmap_headers")
def odd_versions(ctx: Any, headers: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    if not headers or "If-Match" not in headers:
        return st.just(headers)
    return st.just(headers) | ODD_VERSIONS.map(lambda v: {**headers, "If-Match": v})


@schema.hook("flatmap_body")
def deep_metadata(ctx: Any, body: Any) -> st.SearchStrategy[Any]:
    if not isinstance(body, dict) or "metadata" not in body:
        return st.just(body)
    # Deeper than the 32 levels allowed; schemathesis itself recurses past a few hundred
    # (test_hardening_api sends 5000 levels as raw text).
    depths = st.integers(min_value=20, max_value=250)
    return st.just(body) | depths.map(lambda n: {**body, "metadata": {"x": nested(n)}})


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi(case: schemathesis.Case, live: ApiProcess) -> None:
    case.call_and_validate(base_url=live.base, headers=bearer(OWNER), checks=CHECKS)
