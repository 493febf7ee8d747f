"""The dashboard's "Worker hosts" section (only with QUEUE_URL): each node as the server
sees it now, and for an admin the worker tokens. Plain dicts for the templates.

Everyone signed in sees the nodes (as everyone sees this host's devices); the jobs on a
node are links only to the jobs the viewer may open, the others are counted. Tokens, drain
and resume are an admin's alone.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...jobs.models import Principal
from ...keys import CLOCK, DISPATCHER, STORE, WORKER_TOKENS
from ..http.guards import may_see
from . import views


def heard(seconds: float) -> str:
    """A heartbeat's age as people read it: "just now", "4s ago", "3m 05s ago"."""
    return "just now" if seconds < 1 else f"{views.human_seconds(seconds)} ago"


def nodes_context(request: web.Request, principal: Principal) -> dict[str, Any]:
    dispatcher = request.app.get(DISPATCHER)
    if dispatcher is None:
        return {"workers": None, "tokens": []}
    store, now = request.app[STORE], request.app[CLOCK]()
    fleet = dispatcher.fleet
    nodes = []
    for node in sorted(fleet.nodes.values(), key=lambda n: n.name):
        jobs = []
        for job_id in sorted(node.running):
            job = store.get(job_id)
            if job is not None and may_see(principal, job):
                jobs.append({"id": job.id, "title": views.job_view(job, now)["title"]})
        devices = [
            {"id": d.id, "name": d.name, "used": d.used, "free": d.free} for d in node.devices
        ]
        nodes.append(
            {
                "name": node.name,
                "online": fleet.online(node, now),
                "heard": heard(max(0.0, now - node.seen)),
                "heard_at": views.iso_at(node.seen),
                "version": node.version or "-",
                "devices": devices,
                "best": sorted(node.best.items()),
                "slots": node.slots,
                "running": len(node.running),
                "jobs": jobs,
                "busy": node.busy,
                "draining": node.draining,
                "unhealthy": node.unhealthy,
            }
        )
    return {"workers": {"nodes": nodes}, "tokens": _tokens(request, principal)}


def _tokens(request: web.Request, principal: Principal) -> list[dict[str, Any]]:
    if not principal.is_admin:
        return []
    return [
        {
            "name": t.name,
            "active": t.active,
            "created": views.iso_at(t.created_at),
            "revoked": views.iso_at(t.revoked_at),
            "used": views.iso_at(t.last_used_at),
        }
        for t in request.app[WORKER_TOKENS].all()
    ]
