"""Schemathesis against the app's own OpenAPI document, over real HTTP: no 5xx, and every
status, content type, header and body the server sends is the one it documents."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
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


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi(case: schemathesis.Case, live: ApiProcess) -> None:
    case.call_and_validate(base_url=live.base, headers=bearer(OWNER), checks=CHECKS)
