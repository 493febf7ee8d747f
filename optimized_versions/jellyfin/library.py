"""Jellyfin as an administrator sees it, through an API key: the users and their libraries
for the rules, and the calls that publish a copy (refresh, merge, unlink).

An API key is an administrator with no user, so every call about a user's view passes
``userId``. The key goes only in the ``MediaBrowser`` header (12.0 refuses it elsewhere).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from ..errors import Unavailable
from .client import authorization

Item = dict[str, Any]
FIELDS = "Path,MediaSources,DateCreated,ParentId,UserData"


class JellyfinLibrary:
    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, api_key: str, timeout: float = 10.0
    ) -> None:
        self._session = session
        self.base_url = base_url
        self._headers = authorization(api_key)
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def version(self) -> str:
        """Jellyfin's version (``10.11.11``, ``12.0.0``), from its public info."""
        info = await self._call("GET", "/System/Info/Public", auth=False)
        version = info.get("Version") if isinstance(info, dict) else None
        if not isinstance(version, str):
            raise Unavailable("Jellyfin's /System/Info/Public named no version")
        return version

    async def users(self) -> list[Item]:
        return _list(await self._call("GET", "/Users"))

    async def libraries(self) -> list[Item]:
        """Each library: Name, CollectionType, Locations (Jellyfin's paths), ItemId."""
        return _list(await self._call("GET", "/Library/VirtualFolders"))

    async def item(self, user_id: str, item_id: str) -> Item | None:
        """The item as the user sees it, with its path and versions; None when not found."""
        found = await self._call(
            "GET", f"/Items/{item_id}", {"userId": user_id, "fields": FIELDS}, missing=True
        )
        return found if isinstance(found, dict) else None

    async def items(self, user_id: str, **query: str) -> list[Item]:
        """``/Items`` with Jellyfin's filters (``parentId``, ``includeItemTypes``, ...)."""
        params = {"userId": user_id, "recursive": "true", "fields": FIELDS, **query}
        return _items(await self._call("GET", "/Items", params))

    async def latest(self, user_id: str, parent_id: str | None, limit: int) -> list[Item]:
        params = {"userId": user_id, "limit": str(limit), "fields": FIELDS}
        params |= {"includeItemTypes": "Movie"} | ({"parentId": parent_id} if parent_id else {})
        return _list(await self._call("GET", "/Items/Latest", params))

    async def next_up(self, user_id: str, parent_id: str | None = None) -> list[Item]:
        params = {"userId": user_id, "limit": "100", "fields": FIELDS}
        params |= {"parentId": parent_id} if parent_id else {}
        return _items(await self._call("GET", "/Shows/NextUp", params))

    async def episodes(self, user_id: str, series_id: str, start_id: str, limit: int) -> list[Item]:
        """The series' episodes from ``start_id`` on, in order."""
        params = {"userId": user_id, "startItemId": start_id, "limit": str(limit)}
        params["fields"] = FIELDS
        return _items(await self._call("GET", f"/Shows/{series_id}/Episodes", params))

    async def playlist_items(self, user_id: str, playlist_id: str) -> list[Item]:
        params = {"userId": user_id, "fields": FIELDS}
        return _items(await self._call("GET", f"/Playlists/{playlist_id}/Items", params))

    async def sessions(self) -> list[Item]:
        return _list(await self._call("GET", "/Sessions"))

    async def refresh(self, item_id: str) -> None:
        """Ask Jellyfin to look at a folder again (queued there; it answers at once)."""
        await self._call("POST", f"/Items/{item_id}/Refresh", {"metadataRefreshMode": "Default"})

    async def merge_versions(self, ids: list[str]) -> None:
        await self._call("POST", "/Videos/MergeVersions", {"ids": ",".join(ids)})

    async def unlink_versions(self, item_id: str) -> None:
        await self._call("DELETE", f"/Videos/{item_id}/AlternateSources")

    async def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        *,
        auth: bool = True,
        missing: bool = False,
    ) -> Any:
        """Jellyfin's JSON answer (None for an empty one, or for 404 when ``missing``)."""
        url = self.base_url + path
        headers = self._headers if auth else {}
        try:
            async with self._session.request(
                method, url, params=params, headers=headers, timeout=self._timeout
            ) as resp:
                if resp.status == 404 and missing:
                    return None
                if resp.status not in (200, 204):
                    raise Unavailable(f"Jellyfin answered {method} {path} with HTTP {resp.status}")
                if resp.status == 204 or (not resp.content_length and method != "GET"):
                    return None
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(
                f"Jellyfin could not be reached for {method} {path} ({type(exc).__name__})"
            ) from None


def _list(answer: Any) -> list[Item]:
    return [x for x in answer if isinstance(x, dict)] if isinstance(answer, list) else []


def _items(answer: Any) -> list[Item]:
    return _list(answer.get("Items")) if isinstance(answer, dict) else []
