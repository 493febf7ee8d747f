"""The Rules page through the real app, against the Jellyfin double (real folders, scanned):
preview and save a rule, who sees and deletes what, bad input named, the file's rules
read-only, a rule job's page saying where its copy went, and a server without the rules."""

from __future__ import annotations

import asyncio
import html
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import ADMIN, ALICE, Env, Media, StartApp
from jellyfin_double import JellyfinDouble
from playwright.async_api import ViewportSize, async_playwright, expect
from web_helpers import csrf_of, sign_in

from optimized_versions.config.publish_settings import RuleSpec
from optimized_versions.jobs.models import RULES_DEVICE
from optimized_versions.keys import LEDGER, STORE

Client = TestClient[web.Request, web.Application]
FILMS = ("Alpha (2001)", "Beta (2002)", "Gamma (2003)")
TOKENS = {"alice": "tok-alice", "bob": "tok-bob", "root": "tok-root"}


@dataclass
class Household:
    jellyfin: JellyfinDouble
    url: str
    api_key: str
    root: Path

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The app's settings for the double: the API key, PUBLISH=alongside, its paths."""
        return {
            "jellyfin_url": self.url,
            "jellyfin_api_key": self.api_key,
            "publish": "alongside",
            "path_map": f"{self.root}/={self.root}/",
            **overrides,
        }


@pytest.fixture
async def household(media: Media, tmp_path: Path, aiohttp_server: Any) -> Household:
    """Three films in a Films library; alice and bob, root an administrator; an API key."""
    root = tmp_path.resolve() / "films"
    for film in FILMS:
        (root / film).mkdir(parents=True)
        shutil.copy(media.h264, root / film / f"{film}.mkv")
    jellyfin = JellyfinDouble()
    jellyfin.add_library("Films", "movies", [root])
    for name, token in TOKENS.items():
        jellyfin.add_user(name, admin=name == "root", token=token)
    key = jellyfin.add_api_key("optimized-versions")
    jellyfin.scan()
    server: TestServer = await aiohttp_server(jellyfin.app(), access_log=None)
    return Household(jellyfin, str(server.make_url("")), key, root)


async def signed_in(start_app: StartApp, household: Household, who: str, **config: Any) -> Client:
    client = await start_app(**household.settings(**config))
    assert (await sign_in(client, token=TOKENS[who])).status == 303
    return client


async def post_rule(client: Client, path: str = "/rules", **fields: str) -> Any:
    data = {"csrf": await csrf_of(client, "/rules"), "kind": "latest", "count": "2", **fields}
    data.setdefault("profile", "h264-1080p")
    data.setdefault("keep", "until-watched")
    return await client.post(path, data=data, allow_redirects=False)


def saved(client: Client) -> list[tuple[Any, ...]]:
    return client.app[LEDGER].rules()


def rule_cards(page: str) -> dict[str, str]:
    """Each rule's card on the page, by its key (file:N, page:N)."""
    card = r'<article class="card rule" data-rule="([^"]+)">(.*?)</article>'
    return dict(re.findall(card, page, re.S))


async def test_a_user_previews_a_rule_with_its_items_and_size_then_saves_it(
    start_app: StartApp, household: Household
) -> None:
    client = await signed_in(start_app, household, "alice")
    page = await (await client.get("/rules")).text()
    assert 'href="/rules"' in page and 'action="/rules"' in page and rule_cards(page) == {}
    assert 'name="user"' in page and 'type="hidden" name="user" value="alice"' in page
    shown = await post_rule(client, "/rules/preview", kind="latest", count="2")
    assert shown.status == 200
    preview = await shown.text()
    box = preview[preview.index('id="preview"') :]
    names = re.findall(r'<span class="name">([^<]+)</span>', box)
    assert len(set(names)) == 2 and set(names) < set(FILMS), box[:2000]
    size = re.search(r"would optimize these 2 items, ~(\d+\.\d) (KiB|MiB)", box)
    assert size is not None and float(size.group(1)) > 0, box[:2000]
    assert "the 2 newest unwatched films" in box and "not published yet" in box
    assert saved(client) == [] and rule_cards(preview) == {}  # a preview saves nothing
    resp = await post_rule(client, kind="latest", count="2")
    assert resp.status == 303 and resp.headers["Location"] == "/rules"
    assert [(r[1], r[2], r[3], r[7], r[8]) for r in saved(client)] == [
        ("alice", "latest", 2, "until-watched", "alice")
    ]
    cards = rule_cards(await (await client.get("/rules")).text())
    assert list(cards) == [f"page:{saved(client)[0][0]}"]
    card = next(iter(cards.values()))
    assert "the 2 newest unwatched films, as h264-1080p, kept until watched" in card
    assert "saved here" in card and "/delete" in card


async def test_a_user_cannot_delete_anothers_rule_and_an_admin_sees_and_deletes_every_one(
    start_app: StartApp, household: Household, aiohttp_client: Any
) -> None:
    alice = await signed_in(start_app, household, "alice")
    assert (await post_rule(alice, kind="latest", count="1")).status == 303
    bob = await aiohttp_client(alice.server)  # another browser, its own cookies
    assert (await sign_in(bob, token=TOKENS["bob"])).status == 303
    assert (await post_rule(bob, kind="favourites", count="3", keep="14")).status == 303
    (alice_rule, *_), (bob_rule, *_) = saved(alice)
    assert list(rule_cards(await (await alice.get("/rules")).text())) == [f"page:{alice_rule}"]
    csrf = await csrf_of(alice, "/rules")
    refused = await alice.post(
        f"/rules/{bob_rule}/delete", data={"csrf": csrf}, allow_redirects=False
    )
    assert refused.status == 403 and "another user's" in (await refused.json())["message"]
    assert len(saved(alice)) == 2
    for_bob = await post_rule(alice, user="bob")  # nor may she add one for him
    assert for_bob.status == 403 and len(saved(alice)) == 2
    evaluate = await alice.post("/rules/evaluate", data={"csrf": csrf}, allow_redirects=False)
    assert evaluate.status == 403  # an admin's button
    admin = await aiohttp_client(alice.server)
    assert (await sign_in(admin, token=TOKENS["root"])).status == 303
    page = await (await admin.get("/rules")).text()
    assert set(rule_cards(page)) == {f"page:{alice_rule}", f"page:{bob_rule}"}
    assert 'action="/rules/evaluate"' in page and 'name="user" value="root"' in page
    csrf = await csrf_of(admin, "/rules")
    done = await admin.post("/rules/evaluate", data={"csrf": csrf}, allow_redirects=False)
    assert done.status == 303
    gone = await admin.post(f"/rules/{bob_rule}/delete", data={"csrf": csrf}, allow_redirects=False)
    assert gone.status == 303 and [r[0] for r in saved(admin)] == [alice_rule]
    for_carol = await post_rule(admin, user="bob", kind="next-up", count="1")  # an admin may
    assert for_carol.status == 303 and [(r[1], r[8]) for r in saved(admin)][-1] == ("bob", "root")
    no_token = await admin.post(f"/rules/{alice_rule}/delete", allow_redirects=False)
    assert no_token.status == 403 and len(saved(admin)) == 2  # the anti-forgery token


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"count": "0"}, "count"),
        ({"count": "101"}, "count"),
        ({"count": "two"}, "count"),
        ({"kind": "everything"}, "kind"),
        ({"profile": "h999"}, "profile"),
        ({"keep": "0"}, "keep"),
        ({"keep": "3651"}, "keep"),
        ({"keep": "forever"}, "keep"),
        ({"kind": "playlist", "playlist": ""}, "playlist"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    start_app: StartApp, household: Household, fields: dict[str, str], named: str
) -> None:
    client = await signed_in(start_app, household, "alice")
    for path in ("/rules/preview", "/rules"):
        resp = await post_rule(client, path, **fields)
        assert resp.status == 400, (path, fields)
        error = re.search(r'<p class="error" id="rule-error">([^<]*)</p>', await resp.text())
        assert error is not None and html.unescape(error.group(1)).startswith(f"{named}: ")
    assert saved(client) == []
    fine = await post_rule(client, "/rules/preview", kind="playlist", playlist="Trip")
    assert fine.status == 200 and "no playlist named &#39;Trip&#39;" in await fine.text()


async def test_the_files_rules_are_shown_read_only_to_their_user(
    start_app: StartApp, household: Household, aiohttp_client: Any
) -> None:
    rules = (RuleSpec("alice", "latest", 3), RuleSpec("bob", "next-up", 1))
    alice = await signed_in(start_app, household, "alice", rules=rules)
    client_page = await (await alice.get("/rules")).text()
    cards = rule_cards(client_page)
    assert list(cards) == ["file:0"], client_page  # bob's is not hers to see
    card = cards["file:0"]
    assert "from the configuration file" in card and "read-only" in card
    assert "/delete" not in card and "the 3 newest unwatched films" in card
    csrf = await csrf_of(alice, "/rules")
    for target in ("file:0", "0"):
        resp = await alice.post(f"/rules/{target}/delete", data={"csrf": csrf})
        assert resp.status == 404
    assert "file:0" in rule_cards(await (await alice.get("/rules")).text())
    admin = await aiohttp_client(alice.server)
    assert (await sign_in(admin, token=TOKENS["root"])).status == 303
    every = rule_cards(await (await admin.get("/rules")).text())
    assert set(every) == {"file:0", "file:1"} and "/delete" not in "".join(every.values())


async def test_a_rule_jobs_page_says_where_its_copy_is_published(
    start_app: StartApp, household: Household
) -> None:
    client = await signed_in(start_app, household, "alice")
    assert (await post_rule(client, kind="latest", count="1")).status == 303
    ledger, store = client.app[LEDGER], client.app[STORE]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any(r.state == "published" for r in ledger.all()):
        await asyncio.sleep(0.1)
    rows = ledger.all()
    assert [r.state for r in rows] == ["published"], rows
    row = rows[0]
    assert row.path is not None and Path(row.path).parent.parent == household.root
    (job,) = [j for j in store.jobs(device_id=RULES_DEVICE) if j.item_id == row.item_id]
    page = await (await client.get(f"/jobs/{job.id}")).text()
    assert f"published beside the original: {html.escape(row.path)}" in page
    rules = await (await client.get("/rules")).text()
    assert "would optimize this item" in rules and "published beside the original" in rules
    assert re.search(r'<span class="k">last pass</span> <time datetime="20', rules)


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({}, "JELLYFIN_API_KEY is not set"),
        ({"jellyfin_api_key": "k" * 32}, "PUBLISH is off"),
        ({"publish": "alongside"}, "JELLYFIN_API_KEY is not set"),
    ],
)
async def test_without_the_rules_the_page_says_what_is_missing_and_offers_no_form(
    start_app: StartApp, env: Env, config: dict[str, Any], says: str
) -> None:
    client = await start_app(**config)
    assert (await sign_in(client, token=ADMIN)).status == 303
    page = await (await client.get("/rules")).text()
    assert "Rules need JELLYFIN_API_KEY and PUBLISH=alongside or library" in page
    assert says in page and 'action="/rules"' not in page and "/rules/preview" not in page
    assert 'href="/rules"' in await (await client.get("/")).text()  # the header's link
    csrf = await csrf_of(client, "/rules")
    for path in ("/rules", "/rules/preview", "/rules/evaluate"):
        resp = await client.post(path, data={"csrf": csrf, "kind": "latest", "count": "1"})
        assert resp.status == 404, path
        assert "Rules need JELLYFIN_API_KEY" in (await resp.json())["message"]


async def test_standalone_the_page_says_the_rules_need_jellyfin(
    start_app: StartApp, env: Env
) -> None:
    client = await start_app(jellyfin_url=None)
    token = (env.config.data_dir / "admin-token").read_text().strip()
    assert (await sign_in(client, token=token)).status == 303
    resp = await client.get("/rules")
    page = await resp.text()
    assert resp.status == 200 and "JELLYFIN_URL is not set: the server runs standalone" in page
    assert "<form" in page and 'action="/rules"' not in page  # sign-out only
    assert ALICE not in page


async def test_on_a_phone_the_page_previews_and_saves_under_its_content_security_policy(
    start_app: StartApp, household: Household
) -> None:
    """In Chromium at 320 px: Preview (the form's second action) and Save are clicks, nothing
    is refused by the Content-Security-Policy, and the page fits the screen."""
    client = await start_app(**household.settings())
    base = str(client.make_url("")).rstrip("/")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"]
        )
        context = await browser.new_context(viewport=ViewportSize(width=320, height=640))
        await context.add_init_script(
            """document.addEventListener("securitypolicyviolation", e =>
                 console.error(`CSP refused ${e.effectiveDirective}: ${e.blockedURI}`));"""
        )
        page = await context.new_page()
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "CSP" in m.text else None)
        await page.goto(f"{base}/login")
        await page.fill("input[name=token]", TOKENS["alice"])
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/")
        await page.click("nav >> text=Rules")
        await page.wait_for_url(f"{base}/rules")
        await page.select_option("select[name=kind]", "latest")
        await page.fill("input[name=count]", "1")
        await page.click('button:has-text("Preview")')
        await expect(page.locator("#preview .summary")).to_contain_text("would optimize this item")
        assert await page.locator("article.rule").count() == 0
        wide = await page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 320, f"the page is {wide} px wide on a 320 px screen"
        await page.click('button:has-text("Save")')
        await page.wait_for_url(f"{base}/rules")
        await expect(page.locator("article.rule")).to_contain_text("the 1 newest unwatched films")
        assert refused == [], refused
        await browser.close()
