"""The Rules page: /rules, a signed-in user's rules (an admin's: everyone's), what each would
optimize and where its copies are published; a form to preview and save a rule, delete,
and (admins) evaluate now. Plain forms with the session's anti-forgery token, as
``actions.py``. Without the rules engine (PUBLISH off, no JELLYFIN_API_KEY, standalone) the
page says what is missing and offers no form.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from ...config.publish_settings import RULE_KINDS
from ...errors import BadRequest, Forbidden, NotFound, ServiceError
from ...jobs.models import Principal
from ...keys import CONFIG, LEDGER, PROFILE_NAMES, RULES
from ...publish.engine import RulesEngine
from ...publish.rules import Rule, RuleState
from ..http.guards import require_admin
from . import rules_views
from .pages import base, common, page_user
from .sessions import check_csrf

routes = web.RouteTableDef()


def _engine(request: web.Request) -> RulesEngine:
    engine = request.app.get(RULES)
    if engine is None:
        raise NotFound(rules_views.MISSING)
    return engine


async def _render(
    request: web.Request,
    principal: Principal,
    form: dict[str, str] | None = None,
    preview: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    config = request.app[CONFIG]
    engine = request.app.get(RULES)
    profiles: frozenset[str] = request.app[PROFILE_NAMES]
    context: dict[str, Any] = {
        **await common(request, principal),
        "enabled": engine is not None,
        "missing_message": rules_views.MISSING,
        "missing": rules_views.missing(config),
        "rules": [],
        "status": None,
        "preview": preview,
        "error": error,
        "kinds": RULE_KINDS,
        "profiles": sorted(profiles),
        "form": rules_views.form_values(form or {}, principal, config.default_profile),
    }
    if engine is not None:
        ledger = request.app[LEDGER]
        context["rules"] = rules_views.rules_view(engine, ledger, principal, config.publish)
        context["status"] = rules_views.engine_status(engine)
    return aiohttp_jinja2.render_template("rules.html", request, context, status=status)


@routes.get("/rules")
async def rules_page(request: web.Request) -> web.Response:
    return await _render(request, await page_user(request))


async def _posted_rule(
    request: web.Request,
) -> tuple[Principal, dict[str, str], RulesEngine, Rule | web.Response]:
    """The form (its token checked), the caller, the engine, and the rule or a 400 page."""
    form = await check_csrf(request)
    principal = await page_user(request)
    engine = _engine(request)
    config = request.app[CONFIG]
    try:
        rule = rules_views.read_rule(
            form, principal, request.app[PROFILE_NAMES], config.default_profile
        )
    except BadRequest as exc:
        return (
            principal,
            form,
            engine,
            await _render(request, principal, form, error=exc.message, status=400),
        )
    return principal, form, engine, rule


@routes.post("/rules/preview")
async def preview(request: web.Request) -> web.Response:
    """What the posted rule would optimize now; nothing is saved."""
    principal, form, engine, rule = await _posted_rule(request)
    if isinstance(rule, web.Response):
        return rule
    try:
        state = await engine.preview(rule)
    except ServiceError as exc:  # Jellyfin unreachable: said as the rule's problem
        state = RuleState(problem=exc.message)
    publish = request.app[CONFIG].publish
    shown = rules_views.evaluation(state, request.app[LEDGER], rule.profile, publish)
    shown["describe"] = rule.describe()
    shown["user"] = rule.user
    return await _render(request, principal, form, preview=shown)


@routes.post("/rules")
async def save(request: web.Request) -> web.Response:
    principal, _, engine, rule = await _posted_rule(request)
    if isinstance(rule, web.Response):
        return rule
    request.app[LEDGER].add_rule(
        principal.name,
        user=rule.user,
        kind=rule.kind,
        count=rule.count,
        library=rule.library,
        playlist=rule.playlist,
        profile=rule.profile,
        keep=rule.keep,
    )
    engine.wake()
    raise web.HTTPSeeOther(f"{base(request)}/rules")


@routes.post("/rules/{id}/delete")
async def delete(request: web.Request) -> web.Response:
    """Delete a page rule: the caller's own, or any for an admin (the file's: never here)."""
    await check_csrf(request)
    principal = await page_user(request)
    engine = _engine(request)
    ledger = request.app[LEDGER]
    wanted = request.match_info["id"]
    row = next((r for r in ledger.rules() if str(r[0]) == wanted), None)
    if row is None:
        raise NotFound(f"no rule {wanted!r} saved on this page (the file's are read-only)")
    if not (principal.is_admin or rules_views.mine(principal, str(row[1]))):
        raise Forbidden("this rule is another user's: only they or an administrator can delete it")
    ledger.delete_rule(int(row[0]))
    engine.wake()
    raise web.HTTPSeeOther(f"{base(request)}/rules")


@routes.post("/rules/evaluate")
async def evaluate(request: web.Request) -> web.Response:
    await check_csrf(request)
    require_admin(await page_user(request), "evaluate the rules now")
    _engine(request).wake()
    raise web.HTTPSeeOther(f"{base(request)}/rules")
