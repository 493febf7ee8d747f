"""Random bodies, ids and headers through the real app: answers are 2xx or 4xx, never 500."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from conftest import ALICE, BOB, Env, StartApp
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
    # ids that cannot match the route ("/", braces, dot segments) are a routing 404
    job_id=st.text(min_size=1, max_size=50).filter(
        lambda s: s not in (".", "..") and not set(s) & set("/{}")
    ),
    header=st.one_of(
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
        st.sampled_from([ALICE, BOB]),  # half the draws get past authentication
    ),
)
async def test_random_ids_and_auth_headers_never_500(
    env: Env, start_app: StartApp, job_id: str, header: str
) -> None:
    client = await start_app(data_dir=env.config.data_dir)
    try:
        valid = header in (ALICE, BOB)
        for method, path in [
            ("GET", "/job-status/"),
            ("GET", "/download/"),
            ("DELETE", "/cancel-job/"),
            ("POST", "/start-job/"),
        ]:
            resp = await client.request(
                method, path + quote(job_id, safe=""), headers={"Authorization": header}
            )
            assert resp.status == (404 if valid else 401), (method, resp.status, header)
            body = await resp.json()
            if valid:
                assert body["message"].startswith("no job with id"), body
    finally:
        await client.close()
