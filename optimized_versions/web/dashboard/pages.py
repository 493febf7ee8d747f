"""The pages: the dashboard at / and a job's page at /jobs/{id} (aiohttp-jinja2). Each is
rendered whole on the server (readable without JavaScript); live.py sends the same
fragments again when they change. A signed-out visitor is sent to /login, never shown data.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ...jobs.models import ACTIVE, RULES_DEVICE, Job, Principal
from ...keys import CLOCK, CONFIG, HARDWARE, HISTORY, LEDGER, PLACER, STORE, TELEMETRY
from ..http.guards import owner_filter, seen_job
from . import views
from .node_views import nodes_context
from .rules_views import published_line
from .sessions import csrf_token, signed_in

HERE = Path(__file__).parent
routes = web.RouteTableDef()
HISTORY_ROWS = 50  # finished jobs shown on the dashboard


def setup_templates(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals["base"] = app[CONFIG].base_path


def base(request: web.Request) -> str:
    return request.app[CONFIG].base_path


async def page_user(request: web.Request) -> Principal:
    """The signed-in user, or a redirect to the sign-in page."""
    principal = await signed_in(request)
    if principal is None:
        raise web.HTTPSeeOther(f"{base(request)}/login")
    return principal


def visible_jobs(request: web.Request, principal: Principal) -> list[Job]:
    return request.app[STORE].jobs(owner_id=owner_filter(principal))


def job_view(
    request: web.Request, job: Job, now: float, place: int | None = None
) -> dict[str, Any]:
    """A job as the pages show it: with its run's figures and its deliveries (telemetry),
    and while it runs the rung it is on."""
    telemetry = request.app[TELEMETRY]
    view = views.job_view(job, now, place, telemetry.fps(job, now), telemetry.speed(job))
    view["delivery"] = telemetry.deliveries.get(job.id)
    view.update(views.running_rung(job, _encoders(request)))
    return view


def _encoders(request: web.Request) -> dict[str, str]:
    """Which backend has each ffmpeg encoder (h264_nvenc: nvenc, libx264: software)."""
    backends = request.app[HARDWARE].backends
    return {spec.codec: name for name, b in backends.items() for spec in b.encoders.values()}


def jobs_context(request: web.Request, principal: Principal) -> dict[str, Any]:
    """The jobs section: active jobs as cards, finished ones in the history."""
    now = request.app[CLOCK]()
    jobs = visible_jobs(request, principal)
    places = views.queue_places(request.app[STORE].waiting())
    telemetry = request.app[TELEMETRY]

    def fps(job: Job) -> float | None:
        return telemetry.fps(job, now)

    active = [job_view(request, j, now, places.get(j.id)) for j in jobs if j.status in ACTIVE]
    active.sort(key=lambda v: (v["place"] or 0, v["created"] or ""))
    wanted = views.HistoryFilter(
        status=request.query.get("status", ""),
        user=request.query.get("user", "") if principal.is_admin else "",
        encoder=request.query.get("encoder", ""),
    )
    finished = [j for j in jobs if j.status in views.FINISHED]
    history: list[dict[str, Any]] = []
    for job in finished:
        if wanted.keep(job) and len(history) < HISTORY_ROWS:
            view = job_view(request, job, now)
            view["expires"] = views.iso_at((job.finished_at or now) + _keep(request))
            history.append(view)
    return {
        "active": active,
        "history": history,
        "filter": wanted,
        "speeds": views.average_speeds(finished, fps, telemetry.speed),
        "users": sorted({j.owner_name for j in finished}),
        "encoders": sorted({j.encoder or j.backend for j in finished if j.encoder or j.backend}),
        "statuses": sorted({str(j.status) for j in finished}),
    }


def _keep(request: web.Request) -> float:
    return request.app[CONFIG].keep_seconds


def devices_context(request: web.Request) -> dict[str, Any]:
    load = request.app[PLACER].describe()
    history = request.app[HISTORY]
    devices = []
    for device in request.app[HARDWARE].matrix.devices:
        entry = load["devices"].get(device.id, {})
        slots = max(int(entry.get("slots") or 0), 0)
        devices.append(
            {
                "id": device.id,
                "name": device.name,
                "vendor": str(device.vendor),
                "used": entry.get("used", 0),
                "slots": slots,
                "sessions": entry.get("sessions"),
                "encoder": entry.get("encoderPercent"),
                "busy": entry.get("busy"),
                "spark_used": history.sparkline(f"{device.id}.used", top=max(slots, 1)),
                "spark_encoder": history.sparkline(f"{device.id}.encoder", top=100),
            }
        )
    return {
        "devices": devices,
        "cpu": load["cpuPercent"],
        "memory": load["memoryAvailablePercent"],
        "disk": views.human_bytes(load["diskFreeBytes"]),
        "host_busy": load["hostBusy"],
        "spark_cpu": history.sparkline("cpu", top=100),
        "spark_memory": history.sparkline("memory", top=100),
        "spark_disk": history.sparkline("disk"),
    }


def hardware_context(request: web.Request) -> dict[str, Any]:
    described = request.app[HARDWARE].describe()
    return {
        "backends": described["backends"],
        "checks": [c for c in described["checks"] if c.get("kind") != "filter"],
        "notes": described["notes"],
        "out_of_use": described["outOfUse"],
    }


async def common(request: web.Request, principal: Principal) -> dict[str, Any]:
    return {"user": principal, "csrf": await csrf_token(request), "query": request.query_string}


@routes.get("/")
@aiohttp_jinja2.template("dashboard.html")
async def dashboard(request: web.Request) -> dict[str, Any]:
    principal = await page_user(request)
    return {
        **await common(request, principal),
        **jobs_context(request, principal),
        **devices_context(request),
        **nodes_context(request, principal),
        **hardware_context(request),
    }


def visible_job(request: web.Request, principal: Principal, job_id: str | None = None) -> Job:
    job = seen_job(request, principal, job_id or request.match_info["id"])
    if job is None:
        raise web.HTTPNotFound(text="no such job")
    return job


def job_context(request: web.Request, job: Job) -> dict[str, Any]:
    now = request.app[CLOCK]()
    places = views.queue_places(request.app[STORE].waiting())
    return {
        "job": job_view(request, job, now, places.get(job.id)),
        "timeline": views.timeline(job),
        "input_url": job.input_url,  # already redacted when stored
        "command": shlex.join(job.command) if job.command else None,  # scrubbed when stored
        "checksum": job.checksum,
        "tracks": job.tracks,  # each audio and subtitle track's fate and why (media/tracks)
        "published": _published(request, job),
    }


def _published(request: web.Request, job: Job) -> str | None:
    """A rule job's copy: where it is published in Jellyfin, or why not (the ledger)."""
    ledger = request.app.get(LEDGER)
    if job.device_id != RULES_DEVICE or ledger is None:
        return None
    return published_line(ledger.get(job.item_id, job.profile), request.app[CONFIG].publish)


@routes.get("/jobs/{id}")
@aiohttp_jinja2.template("job.html")
async def job_page(request: web.Request) -> dict[str, Any]:
    principal = await page_user(request)
    job = visible_job(request, principal)
    return {**await common(request, principal), **job_context(request, job)}
