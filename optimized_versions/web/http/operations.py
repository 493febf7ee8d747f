"""What a request of the API and a button of the pages both do, assembled once: the API
answers with the result, the pages go back where the form was."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...errors import NotFound
from ...keys import JANITOR, LIFECYCLE
from .guards import dispatcher


async def delete_cache(app: web.Application) -> int:
    """Cancel every job (running ones are stopped first), then remove every output; the
    number of jobs whose files went."""
    await app[LIFECYCLE].cancel_all()
    return app[JANITOR].clear_cache()


def drain(request: web.Request, draining: bool) -> dict[str, Any]:
    """Drain (or resume) the worker host named in the path; 404 for one never heard from."""
    name = request.match_info["name"]
    if not dispatcher(request).drain(name, draining):
        raise NotFound(f"no worker host named {name!r} has been heard from")
    what = "takes no new job; its running jobs finish" if draining else "takes jobs again"
    return {"name": name, "draining": draining, "message": f"worker host {name} {what}"}
