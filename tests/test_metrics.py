"""/metrics through the real app: off unless configured, a bearer token or open, parsed with
prometheus_client's own parser, moving when a real job runs, and no job, file or user in
a label."""

from __future__ import annotations

from conftest import ALICE, Env, StartApp, post_job, wait_status
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "metrics-token-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        v for (n, lab), v in found.items() if n == name and labels.items() <= dict(lab).items()
    )


async def test_metrics_are_off_unless_configured(start_app: StartApp) -> None:
    client = await start_app()
    assert (await client.get("/metrics")).status == 404


async def test_metrics_need_the_bearer_token(start_app: StartApp) -> None:
    client = await start_app(metrics_token=TOKEN)
    assert (await client.get("/metrics")).status == 401
    assert (
        await client.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456"})
    ).status == 401
    resp = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200 and resp.content_type == "text/plain"


async def test_metrics_move_when_a_job_runs_and_carry_no_ids(start_app: StartApp, env: Env) -> None:
    client = await start_app(metrics="open")
    before = samples(await (await client.get("/metrics")).text())
    assert value(before, "ovs_jobs_finished_total") == 0
    assert value(before, "ovs_build_info") == 1
    assert value(before, "ovs_slots", device="cpu", state="free") == 8
    job = await post_job(client, env, "hevc")  # HEVC is encoded: frames go through ffmpeg
    done = await wait_status(client, job, "completed")
    download = await client.get(f"/download/{job}", headers={"Authorization": ALICE})
    assert len(await download.read()) == done["size"]
    text = await (await client.get("/metrics")).text()
    after = samples(text)
    assert value(after, "ovs_jobs_finished_total", outcome="completed", profile="h264-1080p") == 1
    assert value(after, "ovs_output_bytes_total") == done["size"]
    assert value(after, "ovs_download_bytes_total") == done["size"]
    assert value(after, "ovs_transcoded_frames_total") >= 70  # 3 s at 24 fps
    assert value(after, "ovs_queue_wait_seconds_count") == 1
    assert value(after, "ovs_job_duration_seconds_count", outcome="completed") == 1
    assert value(after, "ovs_jobs", state="completed") == 1
    assert value(after, "ovs_cache_free_bytes") > 0
    for needle in (job, "alice", "phone-1", "Film"):  # never an id, a name or a file in a label
        assert needle not in text
