"""The checks that handlers of every audience make the same way, each with one refusal: a
job is seen by its owner and by admins only, an admin's action is refused to anyone else
(403), and the worker hosts are there only with QUEUE_URL (404)."""

from __future__ import annotations

from aiohttp import web

from ...errors import Forbidden, NotFound
from ...jobs.models import Job, Principal
from ...keys import DISPATCHER, STORE
from ...nodes.dispatch import Dispatcher


def may_see(principal: Principal, job: Job) -> bool:
    """A job is its owner's and every admin's to see and act on; nobody else's."""
    return principal.is_admin or job.owner_id == principal.user_id


def owner_filter(principal: Principal) -> str | None:
    """The same rule for a list: the caller's own jobs, or everyone's (None) for an admin."""
    return None if principal.is_admin else principal.user_id


def seen_job(request: web.Request, principal: Principal, job_id: str) -> Job | None:
    """The job, when it exists and the caller may see it; None exactly as for none."""
    job = request.app[STORE].get(job_id)
    return job if job is not None and may_see(principal, job) else None


def owned_job(request: web.Request, principal: Principal) -> Job:
    """The job named in the path, if the caller may see it; 404 exactly as for none."""
    job_id = request.match_info["id"]
    job = seen_job(request, principal, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id!r}")
    return job


def require_admin(principal: Principal, action: str = "do this") -> None:
    """403 for anyone but an admin: "only an administrator can <action>"."""
    if not principal.is_admin:
        raise Forbidden(f"only an administrator can {action}")


def dispatcher(request: web.Request) -> Dispatcher:
    """The worker hosts' dispatcher; 404 on a server without them."""
    found = request.app.get(DISPATCHER)
    if found is None:
        raise NotFound("this server has no worker hosts (QUEUE_URL is not set)")
    return found
