"""Holds: which items each rule keeps. A hold ends when its rule is gone, when the rule no
longer wants an item its user has not watched, ``WATCHED_GRACE`` after the user watched it
(``keep: until-watched``), or after ``keep`` days. A rule that cannot be read now (Jellyfin
away, a user renamed) keeps what it holds."""

from __future__ import annotations

import logging

from ..jellyfin.library import JellyfinLibrary
from .ledger import Hold, Ledger
from .rules import Rule

log = logging.getLogger(__name__)


async def settle(
    ledger: Ledger,
    library: JellyfinLibrary,
    rules: dict[str, Rule],
    unread: set[str],
    wanted_now: set[tuple[str, str]],
    grace: float,
    now: float,
) -> list[Hold]:
    """End the holds that should end (``wanted_now``: (rule, item) pairs); the ones left."""
    kept = []
    for hold in ledger.holds():
        rule = rules.get(hold.rule)
        if rule is None:
            ledger.release(hold)
            continue
        if hold.rule in unread:
            kept.append(hold)
            continue
        watched_at = hold.watched_at
        if watched_at is None and await watched(ledger, library, hold):
            ledger.watched(hold, now)
            watched_at = now
        if rule.keep_days is not None:
            ends = now - hold.since >= rule.keep_days * 86400.0
        elif watched_at is not None:
            ends = now - watched_at >= grace
        else:
            ends = (hold.rule, hold.item_id) not in wanted_now
        if ends:
            log.info("rules: %s no longer holds %s", hold.rule, hold.name)
            ledger.release(hold)
        else:
            kept.append(hold)
    return kept


async def watched(ledger: Ledger, library: JellyfinLibrary, hold: Hold) -> bool:
    """Whether the rule's user has watched the item (10.x keeps played per version)."""
    item = await library.item(hold.user_id, hold.item_id)
    if item is None:
        return False
    if (item.get("UserData") or {}).get("Played"):
        return True
    row = ledger.get(hold.item_id, hold.profile)
    if row is None or row.version_id is None or row.version_id == hold.item_id:
        return False
    version = await library.item(hold.user_id, row.version_id)
    return bool(version and (version.get("UserData") or {}).get("Played"))
