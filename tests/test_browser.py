"""The pages in a real browser: Debian's chromium, headless, driven by Playwright for
Python (``executable_path``: ``playwright install`` is never run; ``.ci/run`` installs
chromium from Debian's packages when it is missing).

Signed in through the real form, the dashboard follows a real tiny job to completed by
Server-Sent Events (no reload), cancels another job with its own button, and is saved as
screenshots at phone and desktop sizes (``SCREENSHOT_DIR``, else the test's folder; the
README's pictures in docs/ come from this test)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import ADMIN, BOB, Env, Media, StartApp, auth, wait_status
from playwright.async_api import Browser, Page, ViewportSize, async_playwright, expect
from postgres import postgres
from test_worker_pages import HEARTBEAT, heartbeat

from optimized_versions.keys import DISPATCHER, HISTORY, MONITOR, WORKER_TOKENS

CHROMIUM = "/usr/bin/chromium"
PHONE = ViewportSize(width=390, height=844)
DESKTOP = ViewportSize(width=1440, height=900)
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium (.ci/run does)"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield launched
        await launched.close()


async def _sign_in(page: Page, base: str, token: str) -> None:
    await page.goto(f"{base}/")
    assert page.url.endswith("/login"), "a signed-out visitor gets the sign-in page"
    await page.fill("input[name=token]", token)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")


async def _moving(page: Page, job_id: str) -> None:
    """Wait, without reloading, until the job's card shows progress above 0 %."""
    await page.wait_for_function(
        """id => { const b = document.querySelector(`article.job[data-job="${id}"] .bar`);
                   return b && b.value > 0; }""",
        arg=job_id,
        timeout=30_000,
    )


async def _post(
    client: Client,
    env: Env,
    source: str,
    name: str,
    year: int,
    token: str = ADMIN,
    device: str = "pixel-8",
) -> str:
    """A job as Streamyfin posts it, with the item's title and year."""
    body = {
        "url": env.url(source, token),
        "deviceId": device,
        "itemId": source,
        "item": {"Id": source, "Name": name, "ProductionYear": year},
    }
    resp = await client.post("/optimize-version", json=body, headers=auth(token))
    assert resp.status == 201, await resp.text()
    job_id: str = (await resp.json())["id"]
    return job_id


async def test_dashboard_follows_jobs_live_and_cancels(
    env: Env, media: Media, start_app: StartApp, browser: Browser, tmp_path: Path
) -> None:
    env.jellyfin.trickle.add("long")  # about 3 s of gradual progress
    for name in ("bunny", "tears"):  # long films that stop coming: run until cancelled
        env.jellyfin.items[name] = media.long
        env.jellyfin.hang.add(name)
    client = await start_app(max_concurrent_jobs=2, stall_timeout=300.0)
    base = str(client.make_url("")).rstrip("/")
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await _sign_in(page, base, ADMIN)
    await page.evaluate("window.notReloaded = true")

    # a real job, followed without a reload: its card's bar moves, then it is in the history
    first = await _post(client, env, "long", "Sintel", 2010)
    bar = page.locator(f'article.job[data-job="{first}"] .bar')
    await expect(bar).to_be_visible(timeout=20_000)
    await _moving(page, first)
    done = page.locator(f'li[data-job="{first}"][data-status="completed"]')
    await expect(done).to_be_visible(timeout=60_000)
    await expect(done.locator(".pill")).to_have_text("ready")
    assert await page.evaluate("window.notReloaded") is True, "the page was not reloaded"

    # two jobs that run until cancelled, and a third that waits for a slot
    running = await _post(client, env, "bunny", "Big Buck Bunny", 2008)
    other = await _post(client, env, "tears", "Tears of Steel", 2012, token=BOB, device="ipad")
    waiting = await _post(client, env, "h264", "Elephants Dream", 2006)
    await wait_status(client, running, "optimizing", min_progress=0)
    await wait_status(client, other, "optimizing", min_progress=0)
    card = page.locator(f'article.job[data-job="{waiting}"]')
    await expect(card.locator(".wait")).to_contain_text("#1 in queue", timeout=20_000)
    await expect(page.locator(f'article.job[data-job="{running}"] .pill')).not_to_have_text(
        "queued", timeout=20_000
    )

    await _moving(page, running)
    await _moving(page, other)
    # a few real load readings (the tests' interval is an hour): the devices' sparklines
    app = client.app
    for cpu, memory in ((12, 70), (35, 66), (61, 58), (48, 60), (72, 55), (55, 57)):
        env.load.cpu, env.load.memory = cpu, memory
        app[MONITOR].sample()
        app[HISTORY].sample()
    await expect(page.locator("#devices svg").first).to_be_visible(timeout=10_000)
    shots = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(shots / "dashboard-desktop.png"), full_page=False)
    phone = await browser.new_context(viewport=PHONE, is_mobile=True)
    phone_page = await phone.new_page()
    await _sign_in(phone_page, base, ADMIN)
    await expect(phone_page.locator(f'article.job[data-job="{running}"]')).to_be_visible()
    await phone_page.screenshot(path=str(shots / "dashboard-phone.png"), full_page=False)
    for name in ("dashboard-desktop.png", "dashboard-phone.png"):
        assert (shots / name).stat().st_size > 10_000, name
    await phone.close()

    # cancel from the page: the job's own button (a CSRF-protected form)
    await page.locator(f'article.job[data-job="{running}"] button:has-text("Cancel")').click()
    await page.wait_for_url(f"{base}/")
    job = await (await client.get(f"/job-status/{running}", headers=auth(ADMIN))).json()
    assert job["status"] == "cancelled"
    await expect(page.locator(f'article.job[data-job="{running}"]')).to_have_count(0)
    await expect(page.locator(f'li[data-job="{running}"][data-status="cancelled"]')).to_be_visible()
    await context.close()
    await client.delete("/delete-cache", headers=auth(ADMIN))


async def test_worker_hosts_follow_live_and_drain_on_a_narrow_phone(
    start_app: StartApp, browser: Browser
) -> None:
    """With worker hosts (a throwaway PostgreSQL; the node known by its real heartbeat
    protocol): the card turns lost without a reload, the page fits 320 px, Drain is a
    click, and a token made on the page is shown on the page it answers with."""
    with postgres() as queue_url:
        client = await start_app(queue_url=queue_url, worker_heartbeat=1.0, local_jobs=False)
        token = client.app[WORKER_TOKENS].create("gaming-pc")
        await heartbeat(client, token, "gaming-pc", HEARTBEAT)
        base = str(client.make_url("")).rstrip("/")
        context = await browser.new_context(viewport=ViewportSize(width=320, height=640))
        page = await context.new_page()
        await _sign_in(page, base, ADMIN)
        await page.evaluate("window.notReloaded = true")
        card = page.locator('article.node[data-node="gaming-pc"]')
        await expect(card.locator(".pill")).to_have_text("online")
        await expect(card).to_contain_text("RTX 4070")
        wide = await page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 320, f"the page is {wide} px wide on a 320 px screen"
        await expect(card.locator(".pill")).to_have_text("lost", timeout=10_000)  # by SSE
        assert await page.evaluate("window.notReloaded") is True, "the page was not reloaded"

        await card.locator('button:has-text("Drain")').click()
        await page.wait_for_url(f"{base}/")
        await expect(card).to_contain_text("draining")
        await expect(card.locator('button:has-text("Resume")')).to_be_visible()
        assert client.app[DISPATCHER].fleet.nodes["gaming-pc"].draining
        if shots := os.environ.get("SCREENSHOT_DIR"):
            await card.scroll_into_view_if_needed()
            await page.screenshot(path=f"{shots}/worker-hosts-phone.png")

        await page.fill("input[name=name]", "laptop")
        await page.click('button:has-text("Create token")')
        shown = await page.locator("#worker-token").text_content()
        assert shown is not None and client.app[WORKER_TOKENS].check(shown.strip()) == "laptop"
        await context.close()


async def test_a_tab_over_the_live_stream_cap_polls_instead(
    env: Env, start_app: StartApp, browser: Browser
) -> None:
    """LIVE_STREAMS=1: the session's second tab is refused a stream (429) and follows the jobs
    by polling /live.json, asking for a stream once, not over and over."""
    client = await start_app(live_streams=1)
    base = str(client.make_url("")).rstrip("/")
    context = await browser.new_context(viewport=DESKTOP)
    first = await context.new_page()
    async with first.expect_response(lambda r: r.url.endswith("/live")) as opened:
        await _sign_in(first, base, ADMIN)
    assert (await opened.value).status == 200
    second = await context.new_page()  # the same session
    asked: list[str] = []
    second.on("request", lambda r: asked.append(r.url.removeprefix(base)))
    async with second.expect_response(lambda r: r.url.endswith("/live")) as refused:
        await second.goto(f"{base}/")
    assert (await refused.value).status == 429
    await second.evaluate("window.notReloaded = true")
    job = await _post(client, env, "h264", "Elephants Dream", 2006)
    await expect(second.locator(f'[data-job="{job}"]').first).to_be_visible(timeout=10_000)
    assert await second.evaluate("window.notReloaded") is True, "the page was not reloaded"
    assert asked.count("/live") == 1 and "/live.json" in asked, asked
    await context.close()


async def test_the_pages_work_under_their_content_security_policy(
    env: Env, start_app: StartApp, browser: Browser
) -> None:
    """The dashboard and a job's page follow a running job live with nothing refused by their
    Content-Security-Policy, which is in force: a script put into the page does not run."""
    env.jellyfin.trickle.add("long")  # about 3 s of gradual progress
    client = await start_app()
    base = str(client.make_url("")).rstrip("/")
    context = await browser.new_context(viewport=DESKTOP)
    await context.add_init_script(
        """document.addEventListener("securitypolicyviolation", e =>
             console.error(`CSP refused ${e.effectiveDirective}: ${e.blockedURI}`));"""
    )
    page = await context.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "CSP refused" in m.text else None)
    await _sign_in(page, base, ADMIN)
    job = await _post(client, env, "long", "Sintel", 2010)
    await _moving(page, job)  # live updates arrive (the stream is 'self')
    await page.goto(f"{base}/jobs/{job}")
    await expect(page.locator("#job .pill")).to_have_text("ready", timeout=30_000)
    assert refused == [], refused
    injected = """() => { const s = document.createElement("script");
                          s.textContent = "window.injected = true"; document.body.append(s);
                          return window.injected === true; }"""
    assert await page.evaluate(injected) is False, "an inline script ran"
    await page.wait_for_timeout(200)  # the console message follows the refusal
    assert len(refused) == 1 and refused[0].startswith("CSP refused script-src"), refused
    await context.close()


async def test_a_page_on_another_port_cannot_frame_the_dashboard(
    start_app: StartApp, browser: Browser, aiohttp_server: Any
) -> None:
    """SameSite=Strict stops other sites, not another port of this host: the dashboard,
    "Clear the cache" and all, must not render in that page's frame."""
    client = await start_app()
    base = str(client.make_url("")).rstrip("/")

    async def framing(request: web.Request) -> web.Response:
        return web.Response(text=f'<iframe src="{base}/"></iframe>', content_type="text/html")

    other = web.Application()
    other.router.add_get("/", framing)
    evil = await aiohttp_server(other)
    assert evil.port != client.port
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await _sign_in(page, base, ADMIN)  # the cookie goes with the frame's request
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    await page.goto(str(evil.make_url("/")), wait_until="load")
    assert f"{base}/" in asked, "the frame did ask for the dashboard"
    frame = page.frames[1]
    assert await frame.locator("#jobs, button").count() == 0, "the dashboard rendered framed"
    assert f"{base}/static/live.js" not in asked, "the framed dashboard loaded its script"
    await context.close()
