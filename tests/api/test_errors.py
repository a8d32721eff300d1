"""Every failure answers {"error": {"code", "message", "param"}}."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.main import create_app
from store.settings import Settings
from tests.api.conftest import Headers


def assert_error_shape(body: dict, code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "param"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_unknown_route_is_404_with_error_shape(client: TestClient) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


def test_wrong_method_is_405_with_error_shape(client: TestClient, auth: Headers) -> None:
    response = client.delete("/v1/models", headers=auth)
    assert response.status_code == 405
    assert_error_shape(response.json(), "method_not_allowed")


def test_validation_error_is_422_naming_the_field(client: TestClient, auth: Headers) -> None:
    response = client.get("/v1/jobs", params={"limit": 0}, headers=auth)
    assert response.status_code == 422
    assert_error_shape(response.json(), "validation_error")
    assert response.json()["error"]["param"] == "limit"


def test_non_object_job_body_is_422(client: TestClient, auth: Headers) -> None:
    response = client.post("/v1/jobs", json=[1, 2], headers=auth)
    assert response.status_code == 422
    assert_error_shape(response.json(), "validation_error")


def test_unhandled_exception_is_500_with_error_shape(api_settings: Settings) -> None:
    app = create_app(api_settings)

    def explode() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/explode", explode)
    with TestClient(app, raise_server_exceptions=False) as local:
        response = local.get("/explode")
    assert response.status_code == 500
    assert_error_shape(response.json(), "internal_error")
    assert "boom" not in response.text


def test_missing_key_is_401(client: TestClient) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_error_shape(response.json(), "invalid_api_key")


def test_unknown_key_is_401(client: TestClient) -> None:
    response = client.get("/v1/jobs", headers={"Authorization": "Bearer dqb_not-a-real-key"})
    assert response.status_code == 401
    assert_error_shape(response.json(), "invalid_api_key")
