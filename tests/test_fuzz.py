"""Random bodies, ids and headers through the real app: answers are 2xx or 4xx, never 500."""

from __future__ import annotations

import json
from typing import Any

from conftest import ALICE, Env, StartApp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TEXT = st.text(st.characters(exclude_categories=()), max_size=20)  # lone surrogates too
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "url": JSON
        | st.sampled_from(
            [
                "http://a/b",
                "https://x:1/y?api_key=k",
                "http://[::1",
                "http://h:0/",
                "file:///etc/passwd",
                "javascript:x",
            ]
        ),
        "deviceId": JSON,
        "itemId": JSON,
        "item": JSON,
        "fileExtension": JSON,
        "profile": JSON,
    },
)


def _strict(name: str) -> None:
    raise AssertionError(f"{name} in a response: not JSON")


SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(body=FIELDS | JSON)
async def test_random_bodies_never_500(env: Env, start_app: StartApp, body: Any) -> None:
    client = await start_app(max_concurrent_jobs=1, data_dir=env.config.data_dir)
    try:
        resp = await client.post(
            "/optimize-version",
            data=json.dumps(body),
            headers={"Authorization": ALICE, "Content-Type": "application/json"},
        )
        assert resp.status in (201, 400), (resp.status, await resp.text())
        if resp.status == 400:
            assert (await resp.json())["message"]
        listing = await client.get("/all-jobs", headers={"Authorization": ALICE})
        json.loads(await listing.text(), parse_constant=_strict)  # what the phone must parse
    finally:
        await client.close()


@SETTINGS
@given(
    job_id=st.text(min_size=1, max_size=50).filter(lambda s: "/" not in s),
    header=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
)
async def test_random_ids_and_auth_headers_never_500(
    env: Env, start_app: StartApp, job_id: str, header: str
) -> None:
    client = await start_app(data_dir=env.config.data_dir)
    try:
        for method, path in [
            ("GET", "/job-status/"),
            ("GET", "/download/"),
            ("DELETE", "/cancel-job/"),
            ("POST", "/start-job/"),
        ]:
            resp = await client.request(
                method, path + job_id.replace("?", "%3F"), headers={"Authorization": header}
            )
            assert resp.status in (401, 404), (method, resp.status)
    finally:
        await client.close()
