"""The one Jellyfin client: every call to Jellyfin goes through here, and this is the only
place that builds the ``MediaBrowser`` authorization header."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from ..errors import Unauthorized, Unavailable

# Jellyfin wants a client, device and version on a sign-in (they name the session it makes)
CLIENT_HEADER = (
    'MediaBrowser Client="Optimized Versions Server", Device="web", '
    'DeviceId="optimized-versions-web", Version="1"'
)


def authorization(token: str) -> dict[str, str]:
    """The header Jellyfin expects for a user's access token."""
    return {"Authorization": f'MediaBrowser Token="{token}"'}


class JellyfinClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout: float = 10.0):
        self.session = session
        self.base_url = base_url
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def users_me(self, token: str) -> dict[str, Any]:
        """The token's user. Unauthorized when Jellyfin refuses the token, Unavailable when
        Jellyfin cannot be asked (the token is not at fault then)."""
        user = await self._answer(
            "GET",
            "/Users/Me",
            {401, 403},
            "Jellyfin did not accept the access token",
            headers=authorization(token),
        )
        if not isinstance(user, dict) or not isinstance(user.get("Id"), str):
            raise Unavailable("Jellyfin answered /Users/Me without a user id")
        return user

    async def item(self, user_id: str, item_id: str, token: str) -> dict[str, Any] | None:
        """The item as this user sees it (Jellyfin enforces access), or None."""
        url = f"{self.base_url}/Users/{quote(user_id, safe='')}/Items/{quote(item_id, safe='')}"
        try:
            async with self.session.get(
                url, headers=authorization(token), timeout=self._timeout
            ) as resp:
                if resp.status != 200:
                    return None
                item = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        return item if isinstance(item, dict) else None

    async def subtitle(
        self, item_id: str, source_id: str, index: int, token: str, limit: int
    ) -> bytes:
        """A subtitle stream of the item as SubRip text (Jellyfin converts ASS and WebVTT
        sidecar files); the token goes in the header, never in a URL. Unavailable with
        the reason when Jellyfin does not give it (or it is over ``limit`` bytes)."""
        url = (
            f"{self.base_url}/Videos/{quote(item_id, safe='')}/{quote(source_id, safe='')}"
            f"/Subtitles/{index}/Stream.srt"
        )
        try:
            async with self.session.get(
                url, headers=authorization(token), timeout=self._timeout, allow_redirects=False
            ) as resp:
                if resp.status != 200:
                    raise Unavailable(f"Jellyfin answered HTTP {resp.status}")
                data = await resp.content.read(limit + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"Jellyfin could not be reached ({type(exc).__name__})") from None
        if len(data) > limit:
            raise Unavailable(f"larger than {limit} bytes")
        return data

    async def authenticate_by_name(self, username: str, password: str) -> str:
        """Sign a user in with name and password; the new access token. Unauthorized when
        Jellyfin refuses them, Unavailable when Jellyfin cannot be asked."""
        answer = await self._answer(
            "POST",
            "/Users/AuthenticateByName",
            {400, 401, 403},
            "Jellyfin did not accept this user name and password",
            json={"Username": username, "Pw": password},
            headers={"Authorization": CLIENT_HEADER},
        )
        token = answer.get("AccessToken") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise Unavailable("Jellyfin answered AuthenticateByName without an access token")
        return token

    async def _answer(
        self, method: str, path: str, refused: set[int], refusal: str, **request: Any
    ) -> Any:
        """Jellyfin's JSON answer to a call whose failure is the caller's (``refused``
        statuses: Unauthorized with ``refusal``) or Jellyfin's (Unavailable)."""
        url = self.base_url + path
        try:
            async with self.session.request(method, url, timeout=self._timeout, **request) as resp:
                if resp.status in refused:
                    raise Unauthorized(refusal)
                if resp.status != 200:
                    raise Unavailable(
                        f"Jellyfin could not be reached: {url} answered HTTP {resp.status}"
                    )
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(
                f"Jellyfin could not be reached at {self.base_url} ({type(exc).__name__})"
            ) from None
