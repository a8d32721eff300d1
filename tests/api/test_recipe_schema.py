"""POST /v1/jobs takes the typed recipe: /docs shows its fields, defaults and bounds."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from compression.recipe import Recipe


def job_body_schema(client: TestClient) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return body, spec["components"]["schemas"]


def test_the_job_body_is_the_recipe_schema(client: TestClient) -> None:
    body, schemas = job_body_schema(client)
    assert body["$ref"] == "#/components/schemas/Recipe"
    assert set(schemas["Recipe"]["properties"]) == set(Recipe.model_fields)


def test_every_recipe_part_shows_its_fields_and_defaults(client: TestClient) -> None:
    _, schemas = job_body_schema(client)
    training = schemas["TrainingSpec"]["properties"]
    assert set(training) == set(Recipe.model_fields["training"].default.__class__.model_fields)
    assert training["batch_size"]["default"] == Recipe.model_fields["training"].default.batch_size
