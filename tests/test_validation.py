"""Bad input gets a clear 4xx naming the problem; nothing produces a 500."""

from __future__ import annotations

import io
import json
from typing import Any

import jsonschema
import pytest
from conftest import ADMIN, ALICE, Env, StartApp, auth, post_job, wait_status

from optimized_versions.web.api.api import OPENAPI

GOOD = {"url": "http://jf.invalid/Videos/x/stream?api_key=k", "deviceId": "d", "itemId": "x"}


def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": OPENAPI["components"]}
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "url": "ftp://jf.invalid/x"}, "url"),
        ({**GOOD, "url": "not a url"}, "url"),
        ({**GOOD, "url": "http:///no-host"}, "url"),
        ({**GOOD, "url": "http://host:99999/x"}, "url"),
        ({**GOOD, "url": ""}, "url"),
        ({**GOOD, "url": 42}, "url"),
        ({k: v for k, v in GOOD.items() if k != "url"}, "url"),
        ({k: v for k, v in GOOD.items() if k != "deviceId"}, "deviceId"),
        ({**GOOD, "deviceId": ""}, "deviceId"),
        ({**GOOD, "itemId": None}, "itemId"),
        ({**GOOD, "itemId": "x" * 300}, "itemId"),
        ({**GOOD, "item": "a string"}, "item"),
        ({**GOOD, "item": [1, 2]}, "item"),
        ({**GOOD, "fileExtension": 3}, "fileExtension"),
        ({**GOOD, "profile": "no-such-profile"}, "profile"),
        ([GOOD], "body"),
        ("just a string", "body"),
        (0, "body"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(
    env: Env, start_app: StartApp, body: Any, field: str
) -> None:
    client = await start_app()
    resp = await client.post("/optimize-version", json=body, headers=auth())
    assert resp.status == 400, await resp.text()
    error = await resp.json()
    assert error["statusCode"] == 400 and error["error"] == "Bad Request"
    assert field in error["message"]
    assert await (await client.get("/all-jobs", headers=auth())).json() == []


async def test_not_json_is_415_or_400(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    resp = await client.post(
        "/optimize-version",
        data="url=x",
        headers={**auth(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 415
    assert "JSON" in (await resp.json())["message"]
    resp = await client.post(
        "/optimize-version",
        data=b"{not json",
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert "not valid JSON" in (await resp.json())["message"]
    resp = await client.post(
        "/optimize-version", data=b"", headers={**auth(), "Content-Type": "application/json"}
    )
    assert resp.status == 400
    resp = await client.post(
        "/optimize-version",
        data=b"\xff\xfe\x00",
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert resp.status == 400


async def test_a_large_item_is_fine_and_too_large_a_body_is_413(
    env: Env, start_app: StartApp
) -> None:
    client = await start_app()
    item = {"Id": "x", "Name": "Big", "Overview": "word " * 10_000, "People": [{"Name": "p"}] * 500}
    body = {**GOOD, "url": env.url("h264"), "item": item}
    resp = await client.post("/optimize-version", json=body, headers=auth())
    assert resp.status == 201
    job = await (
        await client.get(f"/job-status/{(await resp.json())['id']}", headers=auth())
    ).json()
    assert job["item"] == item  # stored and returned as given
    huge = {**GOOD, "item": {"Overview": "x" * 2_000_000}}
    resp = await client.post(
        "/optimize-version",
        data=io.BytesIO(json.dumps(huge).encode()),
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert resp.status == 413
    error = await resp.json()
    assert error["statusCode"] == 413 and "too large" in error["message"]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (
            '{"url": "http://a/b", "deviceId": "d", "itemId": "x", "item": {"n": NaN}}',
            "NaN is not a JSON number",
        ),
        (
            '{"url": "http://a/b", "deviceId": "d", "itemId": "x", "item": {"n": -Infinity}}',
            "-Infinity is not a JSON number",
        ),
        ('{"url": "http://a/b", "deviceId": "\\ud800", "itemId": "x"}', "invalid deviceId"),
        ('{"url": "http://a/\\udfff", "deviceId": "d", "itemId": "x"}', "invalid url"),
        ("[" * 5000 + "]" * 5000, "not valid JSON"),
        (
            '{"url": "http://a/b", "deviceId": "d", "itemId": "x", "item": '
            + '{"a":' * 3000
            + "1"
            + "}" * 3001,
            "not valid JSON",
        ),
    ],
)
async def test_bodies_that_json_allows_but_nobody_can_use(
    env: Env, start_app: StartApp, raw: str, says: str
) -> None:
    client = await start_app()
    resp = await client.post(
        "/optimize-version",
        data=raw.encode(),
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert resp.status == 400, await resp.text()
    assert says in (await resp.json())["message"]
    jobs = await (await client.get("/all-jobs", headers=auth())).json()
    assert jobs == []


async def test_unknown_fields_are_ignored(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    resp = await client.post("/optimize-version", json={**GOOD, "extra": {"a": 1}}, headers=auth())
    assert resp.status == 201


async def test_unknown_routes_and_methods_answer_json(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    resp = await client.get("/nope", headers=auth())
    assert resp.status == 404
    assert (await resp.json())["message"] == "no such endpoint: GET /nope"
    resp = await client.get("/optimize-version", headers=auth())
    assert resp.status == 405
    assert (await resp.json())["statusCode"] == 405


@pytest.mark.parametrize(
    "rng", ["bytes=abc", "bytes=5-2", "items=0-1", "bytes=0-1,4-5", "bytes=", "bytes=-0"]
)
async def test_malformed_ranges_are_416_in_json(env: Env, start_app: StartApp, rng: str) -> None:
    client = await start_app()
    job_id = await post_job(client, env, "h264")
    job = await wait_status(client, job_id, "completed")
    resp = await client.get(f"/download/{job_id}", headers={**auth(), "Range": rng})
    assert resp.status == 416, resp.status
    assert resp.headers["Content-Range"] == f"bytes */{job['size']}"
    assert (await resp.json())["statusCode"] == 416


async def test_real_responses_match_the_openapi_document(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1") and doc["paths"] == OPENAPI["paths"]
    profile = doc["components"]["schemas"]["OptimizeRequest"]["properties"]["profile"]
    assert profile["enum"] == ["copy", "h264-1080p", "h264-720p", "hevc-1080p"]
    assert {p.split("/")[1] for p in doc["paths"]} >= {
        "optimize-version",
        "download",
        "job-status",
        "cancel-job",
        "start-job",
        "all-jobs",
        "statistics",
        "delete-cache",
    }
    created = await client.post(
        "/optimize-version", json={**GOOD, "url": env.url("h264")}, headers=auth()
    )
    schema_validator("Created").validate(await created.json())
    job_id = (await created.json())["id"]
    job = await wait_status(client, job_id, "completed")
    schema_validator("Job").validate(job)
    for job in await (await client.get("/all-jobs", headers=auth(ADMIN))).json():
        schema_validator("Job").validate(job)
    schema_validator("Hardware").validate(
        await (await client.get("/hardware", headers=auth())).json()
    )
    schema_validator("Statistics").validate(
        await (await client.get("/statistics", headers=auth())).json()
    )
    schema_validator("Message").validate(
        await (await client.delete(f"/cancel-job/{job_id}", headers=auth())).json()
    )
    for resp in [
        await client.get("/job-status/x", headers=auth()),
        await client.get("/all-jobs"),
        await client.post(f"/start-job/{job_id}", headers=auth(ALICE)),
        await client.delete("/delete-cache", headers=auth(ALICE)),
    ]:
        schema_validator("Error").validate(await resp.json())
