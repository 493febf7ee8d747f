"""Authentication and ownership: every token form, Jellyfin's answers, per-user jobs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import ADMIN, ALICE, BOB, Env, StartApp, auth, post_job, wait_status

from optimized_versions.config import StaticToken
from optimized_versions.web.http.auth import AUTHENTICATOR, token_hash

TOKEN_FORMS = [
    ({"Authorization": ALICE}, ""),
    ({"Authorization": f'MediaBrowser Client="app", Device="x", Token="{ALICE}"'}, ""),
    ({"Authorization": f"Bearer {ALICE}"}, ""),
    ({"X-Emby-Token": ALICE}, ""),
    ({"X-MediaBrowser-Token": ALICE}, ""),
    ({}, f"?api_key={ALICE}"),
    ({}, f"?ApiKey={ALICE}"),
]


@pytest.mark.parametrize(("headers", "query"), TOKEN_FORMS)
async def test_every_token_form_is_accepted(
    env: Env, start_app: StartApp, headers: dict[str, str], query: str
) -> None:
    client = await start_app()
    resp = await client.get(f"/statistics{query}", headers=headers)
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "wrong-token-0000000"},
        {"Authorization": 'MediaBrowser Client="x"'},
        {"X-Emby-Token": "nope-nope-nope"},
        {"Authorization": "two words here"},
    ],
)
async def test_missing_or_refused_token_is_401(
    env: Env, start_app: StartApp, headers: dict[str, str]
) -> None:
    client = await start_app()
    resp = await client.get("/all-jobs", headers=headers)
    assert resp.status == 401
    body = await resp.json()
    assert body["statusCode"] == 401 and body["error"] == "Unauthorized" and body["message"]


async def test_jellyfin_down_or_failing_is_503_not_401(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    env.jellyfin.mode = "error"
    resp = await client.get("/statistics", headers=auth())
    assert resp.status == 503
    assert "Jellyfin could not be reached" in (await resp.json())["message"]

    unreachable = await start_app(jellyfin_url="http://127.0.0.1:9", data_dir=env.config.data_dir)
    resp = await unreachable.get("/statistics", headers=auth())
    assert resp.status == 503
    assert "Jellyfin could not be reached" in (await resp.json())["message"]


async def test_good_answers_are_cached_by_hash(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    for _ in range(5):
        assert (await client.get("/statistics", headers=auth())).status == 200
    assert env.jellyfin.me_calls == 1
    assert (await client.get("/statistics", headers=auth(BOB))).status == 200
    assert env.jellyfin.me_calls == 2
    env.jellyfin.mode = "error"  # the cache still answers for a known token
    assert (await client.get("/statistics", headers=auth())).status == 200


async def test_the_cache_never_holds_a_raw_token(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    await client.get("/statistics", headers=auth())
    cache = client.app[AUTHENTICATOR]._cache  # type: ignore[attr-defined]
    assert len(cache) == 1 and ALICE not in cache and token_hash(ALICE) in cache


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"caf\xc3\xa9-token-123", b"a b c"])
async def test_a_strange_token_is_401_in_both_modes(
    env: Env, start_app: StartApp, raw: bytes
) -> None:
    for client in (await start_app(), await start_app(jellyfin_url=None)):
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(
            b"GET /statistics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: " + raw + b"\r\n\r\n"
        )
        await writer.drain()
        status = (await reader.readline()).split()[1]
        writer.close()
        assert status == b"401"


async def test_cache_expires(env: Env, start_app: StartApp) -> None:
    client = await start_app(auth_cache_ttl=0)
    for _ in range(3):
        await client.get("/statistics", headers=auth())
    assert env.jellyfin.me_calls == 3


async def test_other_users_jobs_are_404_exactly_like_unknown_ones(
    env: Env, start_app: StartApp
) -> None:
    client = await start_app()
    job_id = await post_job(client, env, "h264", token=ALICE)
    await wait_status(client, job_id, "completed")
    for method, path in [
        ("GET", f"/job-status/{job_id}"),
        ("GET", f"/download/{job_id}"),
        ("HEAD", f"/download/{job_id}"),
        ("DELETE", f"/cancel-job/{job_id}"),
        ("POST", f"/start-job/{job_id}"),
    ]:
        theirs = await client.request(method, path, headers=auth(BOB))
        unknown = await client.request(
            method, path.replace(job_id, "no-such-id"), headers=auth(BOB)
        )
        assert theirs.status == unknown.status == 404, (method, path)
        if method != "HEAD":
            mine, none = await theirs.json(), await unknown.json()
            assert mine["error"] == none["error"] == "Not Found"
    assert await (await client.get("/all-jobs", headers=auth(BOB))).json() == []
    admin_view = await (await client.get("/all-jobs", headers=auth(ADMIN))).json()
    assert [j["id"] for j in admin_view] == [job_id]
    assert (await client.get(f"/download/{job_id}", headers=auth(ADMIN))).status == 200
    mine = await (await client.get(f"/job-status/{job_id}", headers=auth(ALICE))).json()
    assert mine["status"] == "completed"


async def test_standalone_mode_creates_and_reuses_an_admin_token(
    env: Env, start_app: StartApp, tmp_path: Path
) -> None:
    data = tmp_path / "standalone"
    client = await start_app(jellyfin_url=None, data_dir=data)
    token_file = data / "admin-token"
    token = token_file.read_text().strip()
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert len(token) >= 32
    assert (await client.get("/statistics", headers=auth(token))).status == 200
    assert (await client.delete("/delete-cache", headers=auth(token))).status == 200
    assert (await client.get("/statistics", headers=auth(ALICE))).status == 401
    await client.close()
    again = await start_app(jellyfin_url=None, data_dir=data)
    assert token_file.read_text().strip() == token
    assert (await again.get("/statistics", headers=auth(token))).status == 200


async def test_standalone_mode_with_configured_tokens(env: Env, start_app: StartApp) -> None:
    tokens = (
        StaticToken("user-token-0123456789", "kid"),
        StaticToken("boss-token-0123456789", "boss", admin=True),
    )
    client = await start_app(jellyfin_url=None, tokens=tokens)
    assert not (env.config.data_dir / "admin-token").exists()
    assert (await client.delete("/delete-cache", headers=auth(tokens[0].token))).status == 403
    assert (await client.delete("/delete-cache", headers=auth(tokens[1].token))).status == 200


async def test_the_access_log_leaves_out_query_strings(
    env: Env, start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="aiohttp.access")  # polls are logged at DEBUG
    client = await start_app()
    assert (await client.get(f"/statistics?api_key={ALICE}&x=1")).status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any('"GET /statistics" 200' in line for line in lines), lines
    assert not any(ALICE in line or "api_key" in line for line in lines), lines


async def test_bogus_tokens_stop_reaching_jellyfin(env: Env, start_app: StartApp) -> None:
    client = await start_app(auth_failure_limit=20)
    statuses = [
        (await client.get("/statistics", headers=auth(f"bogus-token-{n:08d}"))).status
        for n in range(400)
    ]
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
    assert env.jellyfin.me_calls == 20, "429s are answered without asking Jellyfin"
    blocked = await client.get("/statistics", headers=auth())
    assert blocked.status == 429, "the address is blocked for the rest of the minute"
    assert 0 < int(blocked.headers["Retry-After"]) <= 60
    assert "too many failed sign-ins" in (await blocked.json())["message"]


async def test_a_refused_token_is_remembered_briefly(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    for _ in range(5):
        assert (await client.get("/statistics", headers=auth("wrong-token-0000000"))).status == 401
    assert env.jellyfin.me_calls == 1
    assert (await client.get("/statistics")).status == 401, "no token: nothing guessed"


async def test_concurrent_checks_of_one_token_share_one_call(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    answers = await asyncio.gather(
        *(client.get("/statistics", headers=auth(BOB)) for _ in range(10))
    )
    assert [a.status for a in answers] == [200] * 10
    assert env.jellyfin.me_calls == 1
