"""Downloads: ranges, HEAD, If-Range, headers, and collection after a full download."""

from __future__ import annotations

import hashlib
from email.utils import formatdate
from pathlib import Path

import pytest
from conftest import ALICE, Env, StartApp, auth, post_job, wait_status

from optimized_versions.web.api import downloads


async def test_whole_file_and_headers(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    resp = await client.get(f"/download/{job['id']}", headers=auth())
    data = await resp.read()
    assert resp.status == 200
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["X-File-Checksum"] == hashlib.sha256(data).hexdigest() == job["checksum"]
    assert int(resp.headers["X-File-Size"]) == len(data) == job["size"]
    assert resp.headers["ETag"] and resp.headers["Last-Modified"]
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="Film hevc.mp4"')
    assert data[4:8] == b"ftyp"
    assert data.find(b"moov") < data.find(b"mdat"), "faststart: moov before mdat"


async def test_ranges_and_unsatisfiable_ranges(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    url, size = f"/download/{job['id']}", job["size"]
    whole = await (await client.get(url, headers=auth())).read()

    tail = await client.get(url, headers={**auth(), "Range": "bytes=-100"})
    assert tail.status == 206
    assert tail.headers["Content-Range"] == f"bytes {size - 100}-{size - 1}/{size}"
    assert await tail.read() == whole[-100:]
    middle = await client.get(url, headers={**auth(), "Range": "bytes=10-19"})
    assert await middle.read() == whole[10:20]
    past = await client.get(url, headers={**auth(), "Range": f"bytes={size}-"})
    assert past.status == 416
    assert past.headers["Content-Range"] == f"bytes */{size}"
    head = await client.head(url, headers={**auth(), "Range": "bytes=0-9"})
    assert head.status == 206 and await head.read() == b""


async def test_if_range(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    url = f"/download/{job['id']}"
    first = await client.get(url, headers=auth())
    modified = first.headers["Last-Modified"]
    same = await client.get(url, headers={**auth(), "Range": "bytes=0-9", "If-Range": modified})
    assert same.status == 206
    stale = formatdate(0, usegmt=True)  # the client's copy is older than the file: whole file
    changed = await client.get(url, headers={**auth(), "Range": "bytes=0-9", "If-Range": stale})
    assert changed.status == 200
    assert len(await changed.read()) == job["size"]


async def test_unfinished_jobs_have_nothing_to_download(env: Env, start_app: StartApp) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_app()
    job_id = await post_job(client, env, "long")
    await wait_status(client, job_id, "optimizing")
    resp = await client.get(f"/download/{job_id}", headers=auth())
    assert resp.status == 404
    assert "optimizing" in (await resp.json())["message"]


async def test_collected_file_stays_for_the_grace_period(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    await client.delete(f"/cancel-job/{job['id']}", headers=auth())
    retry = await client.get(f"/download/{job['id']}", headers=auth())  # a failed download, again
    assert retry.status == 200
    assert hashlib.sha256(await retry.read()).hexdigest() == job["checksum"]


async def test_remove_after_right_download(env: Env, start_app: StartApp) -> None:
    client = await start_app(remove_file_after_right_download=True)
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    url, size = f"/download/{job['id']}", job["size"]
    await (await client.get(url, headers={**auth(), "Range": "bytes=0-99"})).read()
    await (await client.head(url, headers=auth())).read()
    await wait_status(client, job["id"], "completed", token=ALICE)
    await (await client.get(url, headers={**auth(), "Range": f"bytes=100-{size - 1}"})).read()
    await wait_status(client, job["id"], "ready-for-removal", token=ALICE)
    assert Path(job["outputPath"]).exists()  # the grace period still holds it


async def test_sent_in_read_ahead_steps_byte_for_byte(
    env: Env, start_app: StartApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloads, "AHEAD", 4096)  # many steps, and ranges across them
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    url, on_disk = f"/download/{job['id']}", Path(job["outputPath"]).read_bytes()
    size = len(on_disk)
    assert size > 8 * 4096
    assert await (await client.get(url, headers=auth())).read() == on_disk
    for first, last in ((0, 4095), (4095, 4096), (1000, 3 * 4096 + 5), (size - 5000, size - 1)):
        part = await client.get(url, headers={**auth(), "Range": f"bytes={first}-{last}"})
        assert part.status == 206
        assert await part.read() == on_disk[first : last + 1]
