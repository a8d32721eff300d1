"""Fuzzing through HTTP what schemathesis cannot reach from the schema: hand-broken multipart
bodies (boundaries, part headers, file names, truncations) and integers of any size in query
strings. No request may get a 5xx, and every refusal is in the error shape."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import Headers, tiny_recipe, upload_dataset, upload_model
from tests.reliability import hostile

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
header_text = st.binary(max_size=40) | st.sampled_from([b"a" * 10_000, b'"', b"\r\n", b"\x00", b""])


@st.composite
def multipart_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    """(Content-Type, body): a multipart form, then broken in a few of the ways a careless or
    hostile client breaks one."""
    boundary = draw(st.sampled_from(["b0undary", "", "x" * 200, "a b", '"q"']))
    filename = draw(header_text)
    headers = b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"'
    extra = draw(st.lists(header_text, max_size=2))
    parts = [(b"\r\n".join([headers, *[b"X-" + e + b": v" for e in extra]]), draw(st.binary(max_size=200)))]
    body = hostile.multipart(parts, boundary.encode())
    cut = draw(st.integers(min_value=0, max_value=len(body)))
    content_type = draw(st.sampled_from([f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                                         f"multipart/form-data; boundary={boundary}; charset=latin-1"]))
    return content_type, draw(st.sampled_from([body, body[:cut], body[cut:]]))


def _refused_cleanly(response: httpx.Response) -> bool:
    if response.status_code >= 500:
        return False
    return response.status_code < 400 or set(response.json()) == {"error"}


@FUZZ
@given(request=multipart_requests(), route=st.sampled_from(["/v1/datasets", "/v1/models"]))
def test_no_multipart_body_gets_a_server_error(client: TestClient, auth: Headers, request: tuple[str, bytes],
                                               route: str) -> None:
    content_type, body = request
    response = client.post(route, headers={**auth, "Content-Type": content_type}, content=body)
    assert _refused_cleanly(response), response.text


@pytest.fixture
def job(client: TestClient, auth: Headers, teacher_archive: bytes) -> str:
    """A job of `auth`'s tenant: its events route reaches the database with the cursor."""
    model, dataset = upload_model(client, auth, teacher_archive), upload_dataset(client, auth)
    recipe = tiny_recipe(model["id"], dataset["id"])
    return client.post("/v1/jobs", headers=auth, json=recipe).json()["id"]


@FUZZ
@given(value=st.integers() | st.sampled_from([2**31, 2**63, 2**64, -(2**63) - 1, 10**100]),
       name=st.sampled_from(["after", "limit"]))
def test_no_integer_in_a_query_string_gets_a_server_error(client: TestClient, auth: Headers, job: str,
                                                          value: int, name: str) -> None:
    for path in (f"/v1/jobs/{job}/events", "/v1/jobs", "/v1/models", "/v1/datasets"):
        response = client.get(path, headers=auth, params={name: value})
        assert _refused_cleanly(response), (path, response.text)
