"""Page sessions under attack, through the real app: anonymous visitors cost no server-side
session (the sign-in form's anti-forgery token is a signed cookie), and nobody's traffic
signs anyone else out."""

from __future__ import annotations

import asyncio
import time

from aiohttp import ClientSession, CookieJar, DummyCookieJar, TCPConnector
from conftest import ALICE, BOB, StartApp
from web_helpers import CSRF, browser_sign_in, sign_in
from yarl import URL

from optimized_versions.web.dashboard.session_store import MAX_SESSIONS, SESSIONS

LOGIN_COOKIE = "ovs_login"


async def test_anonymous_visits_to_the_sign_in_page_sign_nobody_out(start_app: StartApp) -> None:
    client = await start_app()
    assert (await sign_in(client, token=ALICE)).status == 303
    visits = MAX_SESSIONS + 50
    started = time.monotonic()
    # each visit a new browser (no cookie kept), as a flood would come
    async with ClientSession(cookie_jar=DummyCookieJar(), connector=TCPConnector(limit=16)) as s:

        async def visit() -> None:
            async with s.get(client.make_url("/login")) as resp:
                assert resp.status == 200
                await resp.read()

        for batch in range(0, visits, 1000):
            await asyncio.gather(*(visit() for _ in range(min(1000, visits - batch))))
    print(f"{visits} anonymous GET /login in {time.monotonic() - started:.1f} s")
    page = await client.get("/", allow_redirects=False)
    assert page.status == 200, "the signed-in user was signed out by anonymous visits"
    assert len(client.app[SESSIONS]) == 1, "the store holds only the signed-in session"


async def test_the_sign_in_form_carries_a_signed_cookie_not_a_session(
    start_app: StartApp,
) -> None:
    client = await start_app()
    form = await client.get("/login")
    cookies = [v for k, v in form.headers.items() if k == "Set-Cookie"]
    assert len(cookies) == 1 and cookies[0].startswith(f"{LOGIN_COOKIE}="), cookies
    assert "HttpOnly" in cookies[0] and "SameSite=Strict" in cookies[0]
    token = _csrf(await form.text())
    assert len(client.app[SESSIONS]) == 0, "a visit to the form keeps nothing on the server"
    # a failed sign-in answers the form again, with a token that still works
    failed = await client.post("/login", data={"csrf": token, "token": "not-a-known-token-0"})
    assert failed.status == 401 and len(client.app[SESSIONS]) == 0
    again = _csrf(await failed.text())
    # the token is bound to this browser's cookie: another browser's token is refused
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as other:
        theirs = _csrf(await (await other.get(client.make_url("/login"))).text())
    refused = await client.post("/login", data={"csrf": theirs, "token": ALICE})
    assert refused.status == 403
    # a page on another port of this host may set the cookie, but the browser says it posts
    framed = await client.post(
        "/login", data={"csrf": again, "token": ALICE}, headers={"Sec-Fetch-Site": "same-site"}
    )
    assert framed.status == 403 and "another site" in (await framed.json())["message"]
    odd = await client.post("/login", data={"csrf": "é" * 64, "token": ALICE})
    assert odd.status == 403
    client.session.cookie_jar.clear()  # the token alone, without its cookie
    assert (await client.post("/login", data={"csrf": again, "token": ALICE})).status == 403
    assert len(client.app[SESSIONS]) == 0
    # only a sign-in makes a session, and the form's cookie goes with it
    assert (await sign_in(client, token=ALICE)).status == 303
    assert len(client.app[SESSIONS]) == 1
    assert LOGIN_COOKIE not in client.session.cookie_jar.filter_cookies(client.make_url("/"))


async def _status(browser: ClientSession, url: URL) -> int:
    async with browser.get(url, allow_redirects=False) as resp:
        return resp.status


def _csrf(page: str) -> str:
    match = CSRF.search(page)
    assert match is not None, page
    return match.group(1)


async def test_signing_in_again_and_again_drops_only_that_users_oldest_session(
    start_app: StartApp,
) -> None:
    client = await start_app(sessions_per_user=3)
    url = client.make_url("/")
    bob = ClientSession(cookie_jar=CookieJar(unsafe=True))
    alices = [ClientSession(cookie_jar=CookieJar(unsafe=True)) for _ in range(5)]
    try:
        await browser_sign_in(bob, url, BOB)
        for alice in alices:  # one after another, each a new browser
            await browser_sign_in(alice, url, ALICE)
        pages = [await _status(s, url) for s in [bob, *alices]]
        assert pages == [200, 303, 303, 200, 200, 200], "bob's stays, alice's last 3 stay"
        assert len(client.app[SESSIONS]) == 4
    finally:
        for s in [bob, *alices]:
            await s.close()


async def test_a_token_that_is_not_ascii_is_refused_not_an_error(start_app: StartApp) -> None:
    client = await start_app()
    assert (await sign_in(client, token=ALICE)).status == 303
    resp = await client.post("/logout", data={"csrf": "é" * 32}, allow_redirects=False)
    assert resp.status == 403
