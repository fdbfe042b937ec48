"""The OpenAPI document: valid OpenAPI 3, covering every route, and true to what the handlers send."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import jsonschema
import orjson
import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from activeusers.settings import Settings
from api.app import create_app
from api.openapi import document, route_paths
from api.routes import engagement

PATH = engagement.ACTIVE_USERS
SUMMARY = "/api/v1/active-users/summary"
QUERY = "?start=2026-03-01T00:00:00.000Z&end=2026-03-15T00:00:00.000Z"


def app_document() -> dict[str, Any]:
    return document(route_paths(create_app(Settings())), Settings().indexed_properties)


def check(schema_name: str, body: bytes) -> None:
    doc = app_document()
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
    OAS30Validator(root).validate(orjson.loads(body))


def test_document_is_valid_openapi():
    validate(app_document())


def test_document_is_valid_openapi_when_no_property_is_indexed():
    doc = document(route_paths(create_app(Settings())), ())
    validate(doc)
    (parameter,) = [
        p for p in doc["paths"]["/api/v1/active-users/breakdown"]["get"]["parameters"] if p["name"] == "property"
    ]
    assert parameter["schema"] == {"type": "string"}


def test_every_route_is_documented():
    app = create_app(Settings())
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(method, path) for path, item in app_document()["paths"].items() for method in item}
    assert routes == documented


def test_a_route_without_an_operation_cannot_be_documented():
    with pytest.raises(KeyError):
        document({**route_paths(create_app(Settings())), "undocumented": "/api/v1/new"}, ("platform",))


async def test_served_document(api):
    answer = await api.get("/api/openapi.json")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == app_document()


async def test_answers_match_their_schemas(api, admin, seed, now_ms):
    seed({date(2026, 3, 14): {"a", "b"}, date(2026, 3, 15): {"a"}})
    query = QUERY
    check("ActiveUsers", (await api.get(PATH + query, admin)).body)
    check("Summary", (await api.get(SUMMARY + query, admin)).body)
    check(
        "Summary", (await api.get(SUMMARY + "?start=2026-03-02T00:00:00.000Z&end=2026-03-01T00:00:00.000Z", admin)).body
    )
    check("ValidationError", (await api.get(PATH + "?start=x", admin)).body)
    check("ValidationError", (await api.get(PATH, admin)).body)
    check("Unauthorized", (await api.get(PATH + query)).body)
    check("Error", (await api.get(PATH + query, await api.token("p", permissions=()))).body)
    check("Health", (await api.get("/healthz")).body)
    check("Readiness", (await api.get("/readyz")).body)


@pytest.mark.parametrize(
    ("schema", "body"),
    [
        ("ActiveUsers", b'{"month":[],"success":true,"extra":1}'),
        ("ActiveUsers", b'{"month":[]}'),
        ("Error", b'{"success":true,"error":"x"}'),
    ],
)
def test_schemas_are_closed_and_exact(schema, body):
    with pytest.raises(jsonschema.ValidationError):
        check(schema, body)


async def test_users_tab_answers_match_their_schemas(api, admin, seed_users):
    day = date(2026, 3, 14)
    seed_users(active={(day, 9): {"a", "b"}, (day, 10): {"b"}}, created={day: {"a"}, day - timedelta(days=1): {"c"}})
    check("NewUsers", (await api.get(engagement.NEW_USERS + QUERY, admin)).body)
    check("UsersByTimeOfDay", (await api.get(engagement.BY_TIME_OF_DAY + QUERY, admin)).body)
    start = "?start=2026-03-14T23:59:59.999Z"
    hourly = await api.get(engagement.HOURLY + start, admin)
    assert len(hourly.json()["hours"]) == 12
    check("HourlyData", hourly.body)
    check("HourlyData", (await api.get(engagement.HOURLY + "?start=2020-01-01T00:00:00.000Z", admin)).body)
    check("WeeklyData", (await api.get(engagement.WEEKLY + start, admin)).body)
