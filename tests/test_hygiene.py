"""Request and storage hygiene: bodies that cannot be read, log lines that cannot be forged,
secrets that configuration errors never echo, and a full data folder."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from pathlib import Path

import jsonschema
import pytest
from conftest import ALICE, Env, StartApp, auth, post_job, wait_status

from optimized_versions.config import load_config
from optimized_versions.errors import ConfigError
from optimized_versions.keys import STORE
from optimized_versions.logs import OneLineFormatter
from optimized_versions.web.api.api import OPENAPI


async def test_a_body_that_does_not_decode_is_400(
    env: Env, start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    client = await start_app()
    body = json.dumps({"url": env.url("h264"), "deviceId": "d", "itemId": "h264"}).encode()
    headers = {**auth(), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    resp = await client.post("/optimize-version", data=body, headers=headers)
    assert resp.status == 400
    assert (await resp.json())["message"].startswith("the body could not be read: ")
    fine = await client.post("/optimize-version", data=gzip.compress(body), headers=headers)
    assert fine.status == 201, "a real gzip body is fine"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no traceback"


def test_log_lines_cannot_be_forged() -> None:
    formatter = OneLineFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord(
        "x",
        logging.INFO,
        __file__,
        1,
        "job %s on device %s",
        ("a\nINFO forged", "d\r\u2028x"),
        None,
    )
    line = formatter.format(record)
    assert line == "INFO job a\\x0aINFO forged on device d\\x0d\\u2028x"
    assert "\n" not in line


def test_a_short_token_is_named_not_printed(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("tokens:\n  - {token: hunter2-secret, name: me}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config, environ={})
    assert "hunter2" not in str(caught.value)
    assert str(caught.value).endswith("tokens[0].token: shorter than 16 characters")


@pytest.mark.parametrize("url", ["0", "http://", "ftp://h/x", "http://:80/"])
async def test_the_document_and_the_server_agree_on_urls(
    env: Env, start_app: StartApp, url: str
) -> None:
    schema = OPENAPI["components"]["schemas"]["OptimizeRequest"]
    body = {"url": url, "deviceId": "d", "itemId": "i"}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(body)), "invalid by the doc"
    client = await start_app()
    resp = await client.post("/optimize-version", json=body, headers=auth())
    assert resp.status == 400 and "url" in (await resp.json())["message"]


async def test_a_full_data_folder_answers_507_and_logs_once(
    env: Env, start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    client = await start_app()
    store = client.app[STORE]
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk full"
    caplog.set_level("INFO")
    for n in range(3):
        resp = await client.post(
            "/optimize-version",
            json={"url": env.url("h264"), "deviceId": f"d{n}", "itemId": "h264",
                  "item": {"Overview": "x" * 20_000}},
            headers=auth(),
        )  # fmt: skip
        assert resp.status == 507
        assert (await resp.json())["message"].startswith("the server's data folder is full")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and not errors[0].exc_info, "one line, no traceback"
    assert (await client.get("/statistics", headers=auth())).status == 200, "reads still work"
    store._db.execute("PRAGMA max_page_count = 1073741823")
    await wait_status(client, await post_job(client, env, "h264"), "completed")


async def test_slow_headers_and_slow_bodies_are_cut_off(env: Env, start_app: StartApp) -> None:
    client = await start_app(keepalive_timeout=1.0, body_timeout=1.0)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    started = loop.time()
    closed = False
    for byte in b"GET /statistics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
        writer.write(bytes([byte]))
        try:
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        if reader.at_eof():
            closed = True
            break
        await asyncio.sleep(0.1)
    assert closed or await reader.read() == b"", "the server closed a slow-header socket"
    assert loop.time() - started < 4.0
    writer.close()

    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /optimize-version HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: " + ALICE.encode() + b"\r\nContent-Length: 500\r\n\r\n{"
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), timeout=5)
    assert status.startswith(b"HTTP/1.1 408"), status
    rest = await asyncio.wait_for(reader.read(), timeout=5)
    assert b"did not arrive within 1 s" in rest, "and the connection is closed"
    writer.close()
