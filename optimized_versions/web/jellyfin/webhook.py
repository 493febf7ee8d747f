"""``POST /jellyfin/webhook``: Jellyfin's webhook plugin (optional) says something changed
(an item added, a playback stopped, user data saved), and the rules are evaluated at once
rather than at their next RULES_INTERVAL. The plugin sends the API key it was given as
``Authorization: MediaBrowser Token="..."`` (a header it is set up with); the body is only
read for its ``NotificationType``, which is logged. Events that come during a pass make one
more pass after it, not one each."""

from __future__ import annotations

import hmac
import json
import logging

from aiohttp import web

from ...errors import BadRequest, NotFound, Unauthorized
from ...keys import CONFIG, RULES
from ..http.middleware import request_token
from ..http.ratelimit import check_sign_ins, sign_in_failed

routes = web.RouteTableDef()
log = logging.getLogger(__name__)
LARGEST = 64 * 1024  # the plugin's JSON for one event is a few hundred bytes


@routes.post("/jellyfin/webhook")
async def webhook(request: web.Request) -> web.Response:
    engine, key = request.app.get(RULES), request.app[CONFIG].jellyfin_api_key
    if engine is None or not key:
        raise NotFound("the rules are off: the webhook needs JELLYFIN_API_KEY and PUBLISH")
    check_sign_ins(request)
    token = request_token(request) or ""
    if not hmac.compare_digest(token.encode(), key.encode()):
        sign_in_failed(request)
        raise Unauthorized("the webhook's token is not JELLYFIN_API_KEY")
    body = await request.content.read(LARGEST + 1)
    if len(body) > LARGEST:
        raise BadRequest(f"the webhook's body is larger than {LARGEST} bytes")
    try:
        event = json.loads(body or b"{}")
    except ValueError:
        raise BadRequest("the webhook's body is not JSON") from None
    kind = event.get("NotificationType") if isinstance(event, dict) else None
    log.info("jellyfin webhook: %s: evaluating the rules", str(kind or "an event")[:64])
    engine.wake()
    return web.json_response({"evaluating": True}, status=202)
