"""Behind a reverse proxy: whose address failed sign-ins count against, and the cookie's
Secure flag, believed only from a proxy named in TRUSTED_PROXIES (the test client is
127.0.0.1)."""

from __future__ import annotations

import pytest
from conftest import ADMIN, StartApp
from web_helpers import Client, csrf_of

from optimized_versions.errors import ConfigError
from optimized_versions.web.http.proxies import parse_networks

BOGUS = {"Authorization": "f" * 32}  # well-formed, unknown to Jellyfin: 401


async def test_a_trusted_proxys_client_address_is_limited_not_the_proxy(
    start_app: StartApp,
) -> None:
    client = await start_app(auth_failure_limit=2, trusted_proxies="127.0.0.0/8, ::1")
    guesser = {**BOGUS, "X-Forwarded-For": "203.0.113.5"}
    for _ in range(2):
        assert (await client.get("/all-jobs", headers=guesser)).status == 401
    assert (await client.get("/all-jobs", headers=guesser)).status == 429
    # a header of the guesser's own is read from the right: still 203.0.113.5
    forged = {**BOGUS, "X-Forwarded-For": "198.51.100.9, 203.0.113.5"}
    assert (await client.get("/all-jobs", headers=forged)).status == 429
    # another household member behind the same proxy is not locked out
    other = {**BOGUS, "X-Forwarded-For": "203.0.113.6"}
    assert (await client.get("/all-jobs", headers=other)).status == 401


async def test_x_forwarded_for_is_ignored_without_trusted_proxies(start_app: StartApp) -> None:
    client = await start_app(auth_failure_limit=2)
    for n in range(2):
        headers = {**BOGUS, "X-Forwarded-For": f"203.0.113.{n}"}
        assert (await client.get("/all-jobs", headers=headers)).status == 401
    fresh = {**BOGUS, "X-Forwarded-For": "203.0.113.99"}  # a new address cannot be chosen
    assert (await client.get("/all-jobs", headers=fresh)).status == 429


async def _session_cookie(client: Client, headers: dict[str, str]) -> str:
    data = {"csrf": await csrf_of(client), "token": ADMIN}
    resp = await client.post("/login", data=data, headers=headers, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    cookie: str = next(
        v for k, v in resp.headers.items() if k == "Set-Cookie" and "ovs_session" in v
    )
    return cookie


async def test_the_session_cookie_is_secure_when_the_proxy_says_https(
    start_app: StartApp,
) -> None:
    client = await start_app(trusted_proxies="127.0.0.1")
    secure = await _session_cookie(client, {"X-Forwarded-Proto": "https"})
    assert "Secure" in secure and "HttpOnly" in secure and "SameSite=Strict" in secure
    assert "Secure" not in await _session_cookie(client, {"X-Forwarded-Proto": "http"})


async def test_the_sign_in_forms_cookie_is_secure_when_the_proxy_says_https(
    start_app: StartApp,
) -> None:
    client = await start_app(trusted_proxies="127.0.0.1")
    form = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
    cookie = form.headers["Set-Cookie"]
    assert cookie.startswith("ovs_login=") and "Secure" in cookie and "HttpOnly" in cookie


async def test_an_untrusted_peer_cannot_claim_https(start_app: StartApp) -> None:
    client = await start_app(trusted_proxies="10.0.0.0/8")
    assert "Secure" not in await _session_cookie(client, {"X-Forwarded-Proto": "https"})


def test_a_bad_entry_names_itself() -> None:
    assert [str(n) for n in parse_networks(" 10.0.0.0/8,,::1 ")] == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(ConfigError, match=r"'nas\.local' is not an IP address"):
        parse_networks("10.0.0.1, nas.local")
