"""The rules, run: every RULES_INTERVAL (and on demand) each rule's items are held, a job is
made for each held item that has no copy yet, a finished copy is published, and a copy no
rule holds any more is taken back.

A hold is (rule, item, profile). It ends when the rule no longer wants an unwatched item,
``WATCHED_GRACE`` hours after the rule's user watched it (``keep: until-watched``), or after
``keep`` days. Rule jobs are owned by the rule's user on the client device ``rules``: they
queue behind people's requests, share an encode with anyone asking for the same copy, and
none is made while Jellyfin transcodes for a viewer or when PUBLISH_MAX_BYTES would be
passed (the rule's state says which).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog.profiles import Profile
from ..config import Config
from ..errors import ServiceError, Unavailable
from ..jellyfin.library import Item, JellyfinLibrary
from ..jobs.lifecycle import Lifecycle
from ..jobs.models import ACTIVE, RULES_DEVICE, Job, JobStatus, Principal
from ..jobs.service import JobService
from ..jobs.store import JobStore
from .holds import settle
from .ledger import Hold, Ledger
from .publisher import Copy, Publisher
from .rules import Rule, RuleProblem, RuleState, bitrate, estimate, job_item, title, wanted

log = logging.getLogger(__name__)
_KEEP = (*ACTIVE, JobStatus.COMPLETED)
RETRY_FAILED = 24 * 3600.0  # a publish that failed is tried again a day later


@dataclass(slots=True)
class Status:
    last_pass: float | None = None
    waiting: str | None = None  # why no new rule job was made in the last pass
    rules: dict[str, RuleState] = field(default_factory=dict)


class RulesEngine:
    def __init__(
        self,
        config: Config,
        library: JellyfinLibrary,
        ledger: Ledger,
        publisher: Publisher,
        store: JobStore,
        lifecycle: Lifecycle,
        service: JobService,
        profiles: dict[str, Profile],
        clock: Callable[[], float],
    ) -> None:
        self._config = config
        self._library = library
        self._ledger = ledger
        self._publisher = publisher
        self._store = store
        self._lifecycle = lifecycle
        self._service = service
        self._profiles = profiles
        self._clock = clock
        self.status = Status()
        self._names: dict[str, str] = {}  # Jellyfin user id -> name, from the last pass
        self._wake = asyncio.Event()
        self._full = False
        self._pass = asyncio.Lock()

    def rules(self) -> list[Rule]:
        default = self._config.default_profile
        found = [Rule.of(f"file:{n}", spec, default) for n, spec in enumerate(self._config.rules)]
        found += [Rule.saved(row, default) for row in self._ledger.rules()]
        return found

    def wake(self) -> None:
        """Evaluate the rules now (the Rules page, a saved rule)."""
        self._full = True
        self._wake.set()

    def changed(self, job_id: str, device_id: str | None, version: int) -> None:
        """The store's change feed: a rule job changed, perhaps finished."""
        if device_id == RULES_DEVICE:
            self._wake.set()

    async def run(self) -> None:
        """Evaluate at once and every RULES_INTERVAL (or when woken); between, publish
        what rule jobs finish as they finish."""
        next_full = 0.0
        while True:
            self._wake.clear()  # before the pass: a job that ends during it wakes the next
            try:
                if self._full or time.monotonic() >= next_full:
                    self._full = False
                    next_full = time.monotonic() + self._config.rules_interval
                    await self.evaluate()
                else:
                    await self.publish_finished()
            except Exception:  # one bad pass must not end the rules
                log.exception("rules: the pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), next_full - time.monotonic())

    async def publish_finished(self) -> None:
        """Publish the copies of held items whose rule job has just completed."""
        async with self._pass:
            holds = {(h.user_id, h.item_id, h.profile): h for h in self._ledger.holds()}
            done = self._store.jobs(device_id=RULES_DEVICE, statuses=[JobStatus.COMPLETED])
            for job in done:
                hold = holds.get((job.owner_id, job.item_id, job.profile))
                row = self._ledger.get(job.item_id, job.profile)
                if hold is not None and (row is None or row.state == "writing"):
                    await self._publish(job, hold)  # refused and failed: at the next pass

    async def evaluate(self) -> None:
        async with self._pass:
            now = self._clock()
            try:
                users = {str(u.get("Name", "")).lower(): u for u in await self._library.users()}
            except Unavailable as exc:
                self.status.waiting = str(exc)
                return
            self._names = {str(u.get("Id")): str(u.get("Name")) for u in users.values()}
            wanted_now = await self._hold_wanted(users, now)
            rules = {rule.key: rule for rule in self.rules()}
            unread = {key for key, state in self.status.rules.items() if state.problem}
            grace = self._config.watched_grace * 3600.0
            holds = await settle(self._ledger, self._library, rules, unread, wanted_now, grace, now)
            await self._make_and_publish(holds, now)
            await self._take_back(holds)
            self.status.last_pass = now

    async def preview(self, rule: Rule) -> RuleState:
        """What ``rule`` would optimize now (the Rules page, before saving)."""
        users = {str(u.get("Name", "")).lower(): u for u in await self._library.users()}
        return await self._evaluate_rule(rule, users)

    # --- the steps of a pass ---
    async def _evaluate_rule(self, rule: Rule, users: dict[str, Item]) -> RuleState:
        user = users.get(rule.user.lower())
        if user is None:
            return RuleState(problem=f"Jellyfin has no user named {rule.user!r}")
        if rule.profile not in self._profiles:
            return RuleState(problem=f"there is no profile {rule.profile!r}")
        try:
            items = await wanted(self._library, rule, str(user["Id"]))
        except (RuleProblem, Unavailable) as exc:
            return RuleState(problem=str(exc))
        bitrate = self._bitrate(rule.profile)
        return RuleState([(str(i["Id"]), title(i), estimate(i, bitrate)) for i in items])

    async def _hold_wanted(self, users: dict[str, Item], now: float) -> set[tuple[str, str]]:
        wanted_now: set[tuple[str, str]] = set()
        states: dict[str, RuleState] = {}
        for rule in self.rules():
            state = states[rule.key] = await self._evaluate_rule(rule, users)
            if state.problem is not None:
                continue
            user_id = str(users[rule.user.lower()]["Id"])
            for item_id, name, _ in state.items:
                self._ledger.hold(Hold(rule.key, user_id, item_id, rule.profile, name, now, None))
                wanted_now.add((rule.key, item_id))
        self.status.rules = states
        return wanted_now

    async def _make_and_publish(self, holds: list[Hold], now: float) -> None:
        by_copy: dict[tuple[str, str], list[Hold]] = defaultdict(list)
        for hold in holds:
            by_copy[(hold.item_id, hold.profile)].append(hold)
        self.status.waiting = None
        for (item_id, profile), holders in by_copy.items():
            row = self._ledger.get(item_id, profile)
            if row is not None and row.state == "published":
                continue
            if row is not None and row.state == "failed" and now - row.updated_at < RETRY_FAILED:
                continue
            for hold in holders:
                job = self._store.find_duplicate(
                    hold.user_id, RULES_DEVICE, item_id, profile, _KEEP
                )
                if job is not None and job.status is JobStatus.COMPLETED:
                    await self._publish(job, hold)
                    break
                if job is None:
                    await self._submit(hold, now)

    async def _publish(self, job: Job, hold: Hold) -> None:
        if not self._config.jellyfin_url or job.checksum is None:
            return
        copy = Copy(
            job.id,
            hold.user_id,
            hold.item_id,
            hold.profile,
            hold.name,
            Path(job.output_path),
            job.size,
            job.checksum,
        )
        row = await self._publisher.publish(copy)
        if row is None or row.state != "published":
            return
        done = self._store.jobs(device_id=RULES_DEVICE, statuses=[JobStatus.COMPLETED])
        for same in done:  # every rule's record of it: the copy lives in Jellyfin now
            if (same.item_id, same.profile) == (job.item_id, job.profile):
                self._lifecycle.collect(same)  # retention frees the cache's file

    async def _submit(self, hold: Hold, now: float) -> None:
        if self.status.waiting is not None:
            return  # one reason per pass: the first one met stops new jobs
        if not self._config.rules_while_transcoding and await self._jellyfin_transcodes():
            self.status.waiting = "Jellyfin is transcoding for a viewer (RULES_WHILE_TRANSCODING)"
            return
        item = await self._library.item(hold.user_id, hold.item_id)
        if item is None:
            return
        placement = await self._publisher.check(item, hold.profile)
        if placement is not None:
            self._refuse(hold, placement, now)
            return
        cap = self._config.publish_max_bytes
        need = estimate(item, self._bitrate(hold.profile))
        used = self._ledger.published_bytes() + self._making_bytes()
        if cap and used + need > cap:
            self.status.waiting = (
                f"PUBLISH_MAX_BYTES: {used + need} bytes would pass the cap of {cap}"
            )
            return
        principal = Principal(hold.user_id, self._names.get(hold.user_id, hold.user_id), False)
        body: dict[str, Any] = {
            "url": f"{self._config.jellyfin_url}/Videos/{hold.item_id}/stream?static=true",
            "deviceId": RULES_DEVICE,
            "itemId": hold.item_id,
            "item": job_item(item),
            "profile": hold.profile,
        }
        try:
            key = self._config.jellyfin_api_key or ""
            job_id = await self._service.submit(principal, key, body)
        except ServiceError as exc:
            self._refuse(hold, str(exc), now)
            return
        log.info("rules: %s asked for %s (job %s)", hold.rule, hold.name, job_id)

    def _refuse(self, hold: Hold, reason: str, now: float) -> None:
        """Nothing is made for this item; the pages say why (tried again next pass)."""
        self._ledger.note(
            hold.item_id, hold.profile, hold.name, now, state="refused", reason=reason, path=None
        )

    async def _take_back(self, holds: list[Hold]) -> None:
        held = {(h.item_id, h.profile) for h in holds}
        users = {(h.item_id, h.profile): h.user_id for h in holds}
        for row in self._ledger.all():
            if (row.item_id, row.profile) in held:
                continue
            if row.state == "published":
                owner = self._store.get(row.job_id) if row.job_id else None
                user_id = owner.owner_id if owner else users.get((row.item_id, row.profile), "")
                await self._publisher.unpublish(row, user_id)
                log.info("rules: took back the copy of %s", row.name)
            else:
                self._ledger.forget(row.item_id, row.profile)
        for job in self._store.jobs(device_id=RULES_DEVICE, statuses=_KEEP):
            if not any(h.user_id == job.owner_id for h in holds if h.item_id == job.item_id):
                await self._lifecycle.cancel(job)

    async def _jellyfin_transcodes(self) -> bool:
        try:
            sessions = await self._library.sessions()
        except Unavailable:
            return False
        return any(s.get("TranscodingInfo") for s in sessions)

    def _bitrate(self, profile: str) -> int:
        return bitrate(self._profiles[profile])

    def _making_bytes(self) -> int:
        jobs = self._store.jobs(device_id=RULES_DEVICE, statuses=ACTIVE)
        bitrate = {name: self._bitrate(name) for name in self._profiles}
        return sum(estimate(job.item, bitrate.get(job.profile, 0)) for job in jobs)
