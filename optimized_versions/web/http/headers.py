"""What every answer tells the browser (pages, the stream, static files, the API's JSON):
never frame it (another site, or another port of this host, could dress the dashboard's
buttons as its own), never guess a type other than the one sent, and run only this server's
own scripts and styles (no inline script, style or handler anywhere in the pages)."""

from __future__ import annotations

from aiohttp import web

POLICY = (
    "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """An ``on_response_prepare`` hook: the headers go out with every answer, streams too."""
    response.headers.update(HEADERS)
