"""/metrics through the real app: off unless configured, a bearer token or open, parsed with
prometheus_client's own parser, moving when a real job runs, and no job, file or user in
a label."""

from __future__ import annotations

from conftest import ADMIN, ALICE, Env, StartApp, post_job, wait_status
from gpu_host import FakeHost, FakeNvml, start_fake
from prometheus_client.parser import text_string_to_metric_families
from web_helpers import sign_in

from optimized_versions.hardware.nvml import GpuInfo, GpuReading
from optimized_versions.keys import MONITOR

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


async def test_gpu_series_are_labelled_like_the_nvidia_exporters(
    env: Env, start_app: StartApp, fake: FakeHost
) -> None:
    env.gpu_load.gpus[0] = GpuReading(encoder_percent=40, sessions=2)  # Jellyfin holds 2
    host = fake.host(nvidia=("GeForce RTX 3060",))
    assert isinstance(host.nvml, FakeNvml)
    host.nvml.gpus[0] = GpuInfo(0, "GeForce RTX 3060", 100, "GPU-8D4A0C3B-Ab12")
    client = await start_fake(env, start_app, fake, host, metrics="open", nvenc_sessions=5)
    client.app[MONITOR].sample()
    found = samples(await (await client.get("/metrics")).text())
    gpu = {"gpu": "0", "uuid": "8d4a0c3b-ab12"}  # NVML index; lower case, without "GPU-"
    assert value(found, "ovs_nvenc_sessions", owner="other", **gpu) == 2
    assert value(found, "ovs_nvenc_sessions", owner="self", **gpu) == 0
    assert value(found, "ovs_nvenc_session_limit", **gpu) == 5
    assert value(found, "ovs_encoder_utilization_ratio", **gpu) == 0.4
    assert value(found, "ovs_slots", device="nvidia:0", state="free") == 3  # 5 less 2 others
    assert (await sign_in(client, token=ADMIN)).status == 303
    page = await (await client.get("/")).text()
    assert "0 ours / 2 others / cap 5" in page


async def test_holds_are_counted_by_their_kind_once_per_hold(start_app: StartApp, env: Env) -> None:
    env.load.cpu = 99.0
    client = await start_app(metrics="open")
    job = await post_job(client, env, "h264")
    held = await wait_status(client, job, "queued")
    assert held["waitReason"] == "CPU above threshold (99% >= 85%)"
    for _ in range(3):  # more passes over the same hold count nothing more
        client.app[MONITOR].sample()
    found = samples(await (await client.get("/metrics")).text())
    assert value(found, "ovs_scheduler_holds_total", reason="cpu") == 1
    assert value(found, "ovs_scheduler_holds_total") == 1
    env.load.cpu = 10.0
    client.app[MONITOR].sample()
    await wait_status(client, job, "completed")
