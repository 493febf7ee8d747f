"""The pages through the real app: who sees what, sign-in and sign-out, the session
cookie, anti-forgery tokens, the live fragments (SSE and polling) and BASE_PATH."""

from __future__ import annotations

import html
import io
import json
import logging
import re
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import ADMIN, ALICE, BOB, Env, StartApp, post_job, wait_status
from web_helpers import CSRF, csrf_of, sign_in

from optimized_versions.app import create_app
from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.profiles import load_profiles
from optimized_versions.config import StaticToken
from optimized_versions.jobs.models import Job, JobStatus
from optimized_versions.keys import HISTORY, MONITOR
from optimized_versions.media.probe import VideoInfo
from optimized_versions.media.why import video_reason
from optimized_versions.web.dashboard import views
from optimized_versions.web.http.serving import mount, server_options


async def test_a_signed_out_visitor_gets_the_sign_in_page_never_data(
    start_app: StartApp, env: Env
) -> None:
    client = await start_app()
    job = await post_job(client, env, "h264")
    for path in ("/", f"/jobs/{job}", "/live.json", "/live"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303, path
        assert resp.headers["Location"] == "/login"
    page = await (await client.get("/login")).text()
    assert 'name="username"' in page and 'name="token"' in page
    assert job not in page


async def test_sign_in_by_name_sets_a_strict_http_only_session_cookie(
    start_app: StartApp, env: Env
) -> None:
    client = await start_app()
    resp = await sign_in(client, username="alice", password="alice-password")
    assert resp.status == 303 and resp.headers["Location"] == "/"
    cookie = next(v for k, v in resp.headers.items() if k == "Set-Cookie" and "ovs_session" in v)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    session_id = re.search(r"ovs_session=([^;]+)", cookie)
    assert session_id is not None and ALICE not in cookie and len(session_id.group(1)) >= 40
    page = await (await client.get("/")).text()
    assert "alice" in page and ALICE not in page  # the Jellyfin token never reaches a page


async def test_a_user_sees_only_their_jobs_and_no_admin_action(
    start_app: StartApp, env: Env
) -> None:
    client = await start_app(max_concurrent_jobs=1)
    mine = await post_job(client, env, "h264", token=ALICE)
    theirs = await post_job(client, env, "hevc", token=BOB, device="bob-phone")
    await wait_status(client, mine, "completed")
    assert (await sign_in(client, token=ALICE)).status == 303
    page = await (await client.get("/")).text()
    assert mine in page and theirs not in page
    assert "/admin/probe" not in page and "/admin/clear-cache" not in page
    assert (await client.get(f"/jobs/{theirs}")).status == 404
    live = await (await client.get("/live.json")).json()
    assert mine in live["history"] and theirs not in live["jobs"] + live["history"]
    csrf = await csrf_of(client, "/")
    refused = await client.post("/admin/clear-cache", data={"csrf": csrf}, allow_redirects=False)
    assert refused.status == 403
    cancel_theirs = await client.post(
        f"/jobs/{theirs}/cancel", data={"csrf": csrf}, allow_redirects=False
    )
    assert cancel_theirs.status == 404


async def test_an_admin_sees_every_job_the_probe_and_admin_actions(
    start_app: StartApp, env: Env
) -> None:
    client = await start_app()
    job = await post_job(client, env, "hevc", token=ALICE)  # encoded: ffmpeg counts frames
    done = await wait_status(client, job, "completed")
    assert (await sign_in(client, token=ADMIN)).status == 303
    page = await (await client.get("/")).text()
    assert job in page and "/admin/probe" in page and "/admin/clear-cache" in page
    fps = re.search(r"libx264 [^<]* at (\d+) fps", page)
    assert fps is not None and int(fps.group(1)) > 0, page  # the run's own frame rate
    assert "software" in page and "works" in page  # the probe's verdicts
    detail = await (await client.get(f"/jobs/{job}")).text()
    assert done["checksum"] in detail and "verified and ready" in detail
    # why this plan: the planner's own reasons, per stream
    assert (
        "video encoded (libx264, software decode): HEVC 320x240 10-bit → H.264 320x240: "
        "h264-1080p keeps only H.264" in detail
    )
    assert "audio encoded: AAC 5.1 → AAC stereo (downmix: default)" in detail
    assert done["tracks"] and "<h3>Tracks</h3>" in detail
    for track in done["tracks"]:  # every track's fate and reason, as job-status has it
        assert html.escape(track["reason"]) in detail
    assert "-progress pipe:1" in detail and "libx264" in detail  # its ffmpeg command line
    assert ALICE not in detail  # the stored source URL is redacted


async def test_the_speeds_per_encoder_show_the_measured_speed(
    start_app: StartApp, env: Env
) -> None:
    client = await start_app()
    job = await post_job(client, env, "hevc", token=ALICE)  # encoded: ffmpeg reports its speed
    done = await wait_status(client, job, "completed")
    assert "speed" not in done  # a completed record keeps no speed (the page must not need it)
    assert (await sign_in(client, token=ADMIN)).status == 303
    page = await (await client.get("/")).text()
    table = page[page.index('<table class="speeds">') :]
    row = re.search(r"<tr><td>libx264</td><td>h264-1080p</td><td>1</td>(.*?)</tr>", table)
    assert row is not None, table[:2000]
    fps, speed = re.findall(r"<td>([^<]*)</td>", row.group(1))
    assert re.fullmatch(r"\d+", fps) and int(fps) > 0
    assert re.fullmatch(r"\d+\.\d\dx", speed) and float(speed[:-1]) > 0, row.group(0)
    history = re.search(r"libx264 [^<]* at \d+ fps \((\d+\.\d\dx)\)", page)
    assert history is not None and history.group(1) == speed  # the job's own row: one job


async def test_a_running_job_shows_why_each_stream_is_copied(start_app: StartApp, env: Env) -> None:
    env.jellyfin.trickle.add("long")  # about 3 s of gradual progress
    client = await start_app()
    job = await post_job(client, env, "long", token=ALICE)
    await wait_status(client, job, "optimizing", min_progress=0)
    assert (await sign_in(client, token=ALICE)).status == 303
    page = await (await client.get("/")).text()
    assert "video copied: H.264 320x240 8-bit fits h264-1080p" in page
    assert "audio copied: AAC mono fits h264-1080p" in page


async def test_a_running_jobs_page_names_its_backend_encoder_and_decoder(
    start_app: StartApp, env: Env
) -> None:
    env.jellyfin.trickle.add("long")  # about 3 s of gradual progress
    client = await start_app()
    assert (await sign_in(client, token=ALICE)).status == 303
    for profile, backend, encoder, decoder in (
        ("hevc-1080p", "software", "libx265", "software"),
        ("h264-1080p", "copy", "copy", "none"),
    ):
        job = await post_job(client, env, "long", token=ALICE, profile=profile)
        running = await wait_status(client, job, "optimizing", min_progress=0)
        assert "backend" not in running and "encoder" not in running  # the record has none yet
        page = await (await client.get(f"/jobs/{job}")).text()
        assert "<dt>status</dt><dd>optimizing</dd>" in page  # still running as it is read
        assert ("video copied" if encoder == "copy" else "video encoded") in page
        assert f"<dt>backend</dt><dd>{backend}</dd>" in page
        assert f"<dt>encoder · decoder</dt><dd>{encoder} · {decoder}</dd>" in page
        assert f'<span class="k">runs</span> {encoder} · decode {decoder}' in page
        await client.delete(f"/cancel-job/{job}", headers={"Authorization": ALICE})
        await wait_status(client, job, "cancelled")


@pytest.mark.parametrize(
    ("encoder", "decoder", "backend"),
    [
        ("h264_nvenc", "nvenc", "nvenc"),
        ("h264_qsv", "software", "qsv"),
        ("libx264", "software", "software"),
    ],
)
def test_the_rung_read_from_a_plan_is_the_one_the_planner_wrote(
    encoder: str, decoder: str, backend: str
) -> None:
    """The page reads a running rung from its plan, as media/why.py words it (a hardware
    rung's among them, which no test here can run)."""
    video = VideoInfo(0, "hevc", 3840, 2160, "yuv420p10le", 10, None, transfer=16)
    profile = load_profiles()["h264-1080p"]
    line = video_reason(video, profile, ["HDR"], (1920, 1080), encoder, decoder, tonemap=True)
    job = Job(
        id="j",
        owner_id="u",
        owner_name="u",
        device_id="d",
        item_id="i",
        item={},
        input_url="http://jf/x",
        file_extension=None,
        profile=profile.name,
        status=JobStatus.OPTIMIZING,
        created_at=0.0,
        output_path="/tmp/j.mp4",
        plan=f"{line}; audio copied: AAC stereo fits h264-1080p",
    )
    encoders = {s.codec: name for name, b in load_backends().items() for s in b.encoders.values()}
    rung = {"backend": backend, "encoder": encoder, "decoder": decoder}
    assert views.running_rung(job, encoders) == rung
    job.status, job.backend = JobStatus.COMPLETED, "software"
    assert views.running_rung(job, encoders) == {}, "once it ended, the record's own"


@pytest.mark.parametrize(
    "back",
    ["/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "/\\evil.example",
     " //evil.example", "\x00//evil.example", "https://evil.example/", "/\x7f/evil.example",
     "/\u3000/evil.example", ""],
)  # fmt: skip
async def test_back_after_a_form_is_only_ever_a_path_here(
    start_app: StartApp, env: Env, back: str
) -> None:
    """Browsers drop tabs and newlines from a Location: ``/\t/evil.example`` became
    ``//evil.example``, another site. Only a plain path on this server goes back."""
    client = await start_app(max_concurrent_jobs=1)
    await post_job(client, env, "long", token=ALICE)
    job = await post_job(client, env, "h264", token=ALICE, device="p2")  # queued behind it
    assert (await sign_in(client, token=ALICE)).status == 303
    data = {"csrf": await csrf_of(client, "/"), "back": back}
    resp = await client.post(f"/jobs/{job}/start", data=data, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/", resp.headers["Location"]
    data["back"] = f"/jobs/{job}?from=list"  # a path of this server's own is kept
    resp = await client.post(f"/jobs/{job}/start", data=data, allow_redirects=False)
    assert resp.headers["Location"] == f"/jobs/{job}?from=list"


async def test_forms_without_the_sessions_anti_forgery_token_are_refused(
    start_app: StartApp, env: Env
) -> None:
    client = await start_app(max_concurrent_jobs=1)
    await post_job(client, env, "long", token=ALICE)
    queued = await post_job(client, env, "h264", token=ALICE, device="p2")
    assert (await sign_in(client, token=ALICE)).status == 303
    for data in ({}, {"csrf": "forged-token-of-the-right-shape"}):
        resp = await client.post(f"/jobs/{queued}/cancel", data=data, allow_redirects=False)
        assert resp.status == 403
    status = await (
        await client.get(f"/job-status/{queued}", headers={"Authorization": ALICE})
    ).json()
    assert status["status"] == "queued"
    csrf = await csrf_of(client, "/")
    resp = await client.post(
        f"/jobs/{queued}/cancel",
        data={"csrf": csrf, "back": "//evil.example/"},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/"  # never an open redirect
    status = await (
        await client.get(f"/job-status/{queued}", headers={"Authorization": ALICE})
    ).json()
    assert status["status"] == "cancelled"
    # the sign-in form needs its token too (no sign-in forced from another site)
    other = await client.post("/login", data={"token": ALICE, "csrf": "x" * 32})
    assert other.status == 403


async def test_sign_out_ends_the_session_server_side(start_app: StartApp, env: Env) -> None:
    client = await start_app()
    assert (await sign_in(client, token=ALICE)).status == 303
    old_cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["ovs_session"].value
    csrf = await csrf_of(client, "/")
    out = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/login"
    replay = await client.get(
        "/", headers={"Cookie": f"ovs_session={old_cookie}"}, allow_redirects=False
    )
    assert replay.status == 303  # the id is forgotten here, not only in the browser


async def test_failed_sign_ins_are_rate_limited_per_address(start_app: StartApp) -> None:
    client = await start_app(auth_failure_limit=3)
    for _ in range(3):
        assert (await sign_in(client, username="alice", password="wrong")).status == 401
    blocked = await sign_in(client, username="alice", password="alice-password")
    assert blocked.status == 429
    assert "too many failed sign-ins" in await blocked.text()


async def test_live_updates_arrive_as_server_sent_events(start_app: StartApp, env: Env) -> None:
    client = await start_app()
    assert (await sign_in(client, token=ALICE)).status == 303
    job = await post_job(client, env, "h264", token=ALICE)
    async with client.get("/live") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        event, data = "", ""
        while not data:
            line = (await stream.content.readline()).decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                data = line.partition(":")[2].strip()
        assert event == "update"
        parts = json.loads(data)
        assert set(parts) == {"jobs", "devices", "history"}
        assert job in parts["jobs"] + parts["history"]


async def test_base_path_serves_everything_under_the_sub_path(
    env: Env, aiohttp_client: object
) -> None:
    from dataclasses import replace

    config = replace(env.config, base_path="/ovs")
    root = mount(create_app(config, readers=(env.load, env.gpu_load)), config.base_path)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(TestServer(root))  # type: ignore[operator]
    resp = await client.get("/ovs/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/ovs/login"
    form = await client.get("/ovs/login")
    assert "Path=/ovs" in form.headers["Set-Cookie"]  # the sign-in form's cookie
    page = await form.text()
    assert 'action="/ovs/login"' in page and 'href="/ovs/static/app.css"' in page
    match = CSRF.search(page)
    assert match is not None
    signed = await client.post(
        "/ovs/login", data={"csrf": match.group(1), "token": ALICE}, allow_redirects=False
    )
    assert signed.status == 303 and signed.headers["Location"] == "/ovs/"
    assert (await client.get("/ovs/static/app.css")).status == 200
    assert (await client.get("/ovs/health")).status in (200, 503)
    outside = await client.get("/login")
    assert outside.status == 404 and (await outside.json())["statusCode"] == 404
    for resp in (outside, await client.get("/ovs/login")):  # the root's answers and the app's
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
    big = await client.post(
        "/ovs/optimize-version",
        data=io.BytesIO(b"x" * (config.max_body_size + 1)),
        headers={"Authorization": ALICE, "Content-Type": "application/json"},
    )
    assert big.status == 413  # MAX_BODY_SIZE holds under the sub-path too


async def test_polls_under_the_base_path_are_logged_at_debug(
    env: Env, aiohttp_client: object, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    config = replace(env.config, base_path="/ovs")
    root = mount(create_app(config, readers=(env.load, env.gpu_load)), config.base_path)
    server = TestServer(root)
    await server.start_server(**server_options(config))  # as `serve` runs it
    client: TestClient[web.Request, web.Application] = await aiohttp_client(server)  # type: ignore[operator]
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    assert (await client.get("/ovs/all-jobs", headers={"Authorization": ALICE})).status == 200
    assert (await client.get("/ovs/statistics", headers={"Authorization": ALICE})).status == 200
    assert (await client.get("/ovs/login")).status == 200
    assert (await client.get("/all-jobs", headers={"Authorization": ALICE})).status == 404
    levels = {
        line.split('"')[1]: r.levelno
        for r in caplog.records
        if r.name == "aiohttp.access" and '"' in (line := r.getMessage())
    }
    assert levels == {
        "GET /ovs/all-jobs": logging.DEBUG,  # a phone's poll, under the sub-path
        "GET /ovs/statistics": logging.DEBUG,
        "GET /ovs/login": logging.INFO,
        "GET /all-jobs": logging.INFO,  # outside the app: not its poll
    }


async def test_devices_show_sparklines_of_the_load_readings(start_app: StartApp, env: Env) -> None:
    client = await start_app()
    for cpu in (10.0, 80.0, 30.0, 55.0):  # real readings of the (stand-in) host, one by one
        env.load.cpu = cpu
        client.app[MONITOR].sample()
        client.app[HISTORY].sample()
    assert client.app[HISTORY].values("cpu")[0] == 5.0  # the start's reading comes first
    assert (await sign_in(client, token=ALICE)).status == 303
    page = await (await client.get("/")).text()
    line = re.search(
        r'aria-label="CPU, last 15 minutes">[^/]*/>[^/]*/><polyline points="([^"]+)"', page
    )
    assert line is not None
    points = [tuple(map(float, p.split(","))) for p in line.group(1).split()]
    assert len(points) == 5 and points[-1][0] == 120.0  # the newest at the right edge
    readings = client.app[HISTORY].values("cpu")  # smoothed, as the scheduler sees them
    assert len(set(readings)) == 5
    ys = [y for _, y in points]  # SVG: a higher reading is drawn higher (a smaller y)
    assert sorted(range(5), key=lambda i: -readings[i]) == sorted(range(5), key=lambda i: ys[i])


async def test_standalone_sign_in_takes_the_servers_own_token(start_app: StartApp) -> None:
    own = StaticToken(token="standalone-admin-token-0123", name="owner", admin=True)
    client = await start_app(jellyfin_url=None, tokens=(own,))
    form = await (await client.get("/login")).text()
    assert 'name="username"' not in form and 'name="token"' in form
    assert (await sign_in(client, token="not-the-servers-token-00")).status == 401
    assert (await sign_in(client, token=own.token)).status == 303
    page = await (await client.get("/")).text()
    assert "owner" in page and "/admin/probe" in page and own.token not in page


async def test_an_admin_clears_the_cache_from_the_page(start_app: StartApp, env: Env) -> None:
    client = await start_app()
    job = await post_job(client, env, "h264", token=ALICE)
    done = await wait_status(client, job, "completed")
    output = Path(done["outputPath"])
    assert output.is_file()
    assert (await sign_in(client, token=ADMIN)).status == 303
    csrf = await csrf_of(client, "/")
    resp = await client.post(
        "/admin/clear-cache", data={"csrf": csrf, "back": "/"}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/"
    assert not output.exists()
    gone = await client.get(f"/job-status/{job}", headers={"Authorization": ADMIN})
    assert gone.status == 404  # delete-cache drops the finished jobs


FRAMING = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; object-src 'none';"
    " base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
}


async def test_every_answer_forbids_framing_sniffing_and_others_scripts(
    start_app: StartApp, env: Env
) -> None:
    """The pages cannot be framed (by another site, or another port of this host), run only
    the server's own scripts; the API's JSON, the stream and the static files get the same."""
    client = await start_app()
    job = await post_job(client, env, "h264", token=ALICE)
    await wait_status(client, job, "completed")
    signed_out = [await client.get("/login"), await client.get("/", allow_redirects=False)]
    assert (await sign_in(client, token=ALICE)).status == 303
    answers = [
        *signed_out,
        await client.get("/"),
        await client.get(f"/jobs/{job}"),
        await client.get("/live.json"),
        await client.get("/static/live.js"),
        await client.get(f"/job-status/{job}", headers={"Authorization": ALICE}),
        await client.head(f"/download/{job}", headers={"Authorization": ALICE}),
        await client.get("/no-such-endpoint"),
    ]
    async with client.get("/live") as stream:
        answers.append(stream)
    for resp in answers:
        for name, value in FRAMING.items():
            assert resp.headers.get(name) == value, (resp.url.path, name)
