"""Signing in to the pages through the real sign-in form (tests of the web pages share it)."""

from __future__ import annotations

import re

from aiohttp import ClientResponse, ClientSession, web
from aiohttp.test_utils import TestClient
from yarl import URL

CSRF = re.compile(r'name="csrf" value="([^"]+)"')

Client = TestClient[web.Request, web.Application]


async def csrf_of(client: Client, path: str = "/login") -> str:
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 200, (path, resp.status)
    match = CSRF.search(await resp.text())
    assert match is not None, f"no anti-forgery token on {path}"
    return match.group(1)


async def sign_in(client: Client, **fields: str) -> ClientResponse:
    """Post the sign-in form (token=..., or username=... and password=...); the response."""
    data = {"csrf": await csrf_of(client), **fields}
    return await client.post("/login", data=data, allow_redirects=False)


async def browser_sign_in(browser: ClientSession, url: URL, token: str) -> None:
    """Sign in another browser (its own cookie jar) to the server at ``url``."""
    form = await browser.get(url.with_path("/login"))
    match = CSRF.search(await form.text())
    assert match is not None, "no anti-forgery token on /login"
    data = {"csrf": match.group(1), "token": token}
    async with browser.post(url.with_path("/login"), data=data, allow_redirects=False) as r:
        assert r.status == 303
