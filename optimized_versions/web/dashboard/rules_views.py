"""What the Rules page shows: each rule a viewer may see, its last evaluation, where each of
its copies is published (the ledger's row) or why not; and a posted rule form read back into
a Rule, each bad field refused by name (400). Plain dicts for the templates."""

from __future__ import annotations

from typing import Any

from ...config import Config
from ...config.publish_settings import RULE_KINDS, UNTIL_WATCHED
from ...errors import BadRequest, Forbidden
from ...jobs.models import Principal
from ...publish.engine import RulesEngine
from ...publish.ledger import Ledger, Published
from ...publish.rules import Rule, RuleState
from . import views

MISSING = "Rules need JELLYFIN_API_KEY and PUBLISH=alongside or library"
COUNT = (1, 100)
DAYS = (1, 3650)
LONGEST = {"user": 128, "library": 256, "playlist": 256}


def missing(config: Config) -> list[str]:
    """What this server lacks for the rules to run, one line each."""
    lines = []
    if config.jellyfin_url is None:
        lines.append("JELLYFIN_URL is not set: the server runs standalone")
    if not config.jellyfin_api_key:
        lines.append("JELLYFIN_API_KEY is not set")
    if config.publish == "off":
        lines.append("PUBLISH is off")
    return lines


def approx_bytes(size: int) -> str:
    """An estimate as people read one: "~9.3 GB" (decimal units)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"~{value:.0f} {unit}" if unit == "B" else f"~{value:.1f} {unit}"
        value /= 1000
    return f"~{value:.1f} TB"


def published_line(row: Published | None, publish: str) -> str:
    """Where an item's copy is published, or why it is not, in a line."""
    if row is None:
        return "not published yet"
    if row.state == "published":
        where = "beside the original" if publish == "alongside" else "in PUBLISH_DIR"
        how = " (merged with MergeVersions)" if row.method == "merge" else ""
        return f"published {where}{how}: {row.path}"
    if row.state == "writing":
        return f"being published: {row.path}"
    if row.state in ("refused", "failed"):
        return f"{row.state}: {row.reason or 'no reason given'}"
    return row.state


def mine(principal: Principal, user: str) -> bool:
    return user.lower() == principal.name.lower()


def evaluation(
    state: RuleState | None, ledger: Ledger | None, profile: str, publish: str
) -> dict[str, Any]:
    """A rule's last evaluation: its items (with where each copy is) and their size."""
    if state is None:
        return {"evaluated": False, "problem": None, "items": [], "summary": None}
    items = [
        {
            "id": item_id,
            "name": name,
            "size": approx_bytes(size),
            "published": published_line(ledger.get(item_id, profile) if ledger else None, publish),
        }
        for item_id, name, size in state.items
    ]
    total = sum(size for _, _, size in state.items)
    count = len(items)
    summary = f"would optimize {'this item' if count == 1 else f'these {count} items'}"
    return {
        "evaluated": True,
        "problem": state.problem,
        "items": items,
        "summary": f"{summary}, {approx_bytes(total)}" if count else "nothing to optimize now",
    }


def rules_view(
    engine: RulesEngine, ledger: Ledger, principal: Principal, publish: str
) -> list[dict[str, Any]]:
    """The rules the viewer sees: their own (the page's and the file's), or all for an admin."""
    shown = []
    for rule in engine.rules():
        if not (principal.is_admin or mine(principal, rule.user)):
            continue
        from_file = rule.key.startswith("file:")
        shown.append(
            {
                "key": rule.key,
                "id": None if from_file else rule.key.removeprefix("page:"),
                "user": rule.user,
                "describe": rule.describe(),
                "from_file": from_file,
                "created_by": rule.created_by,
                "can_delete": not from_file and (principal.is_admin or mine(principal, rule.user)),
                **evaluation(engine.status.rules.get(rule.key), ledger, rule.profile, publish),
            }
        )
    return shown


def engine_status(engine: RulesEngine) -> dict[str, Any]:
    status = engine.status
    return {"last_pass": views.iso_at(status.last_pass), "waiting": status.waiting}


def _number(form: dict[str, str], field: str, low: int, high: int, what: str) -> int:
    text = form.get(field, "").strip()
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise BadRequest(f"{field}: {what} from {low} to {high}, not {text!r}")
    return int(text)


def read_rule(
    form: dict[str, str], principal: Principal, profiles: frozenset[str], default_profile: str
) -> Rule:
    """The posted form as a Rule (key "new"); 400 naming the field that is wrong, 403 for
    a rule for another user by anyone but an admin."""
    for field, longest in LONGEST.items():
        if len(form.get(field, "")) > longest:
            raise BadRequest(f"{field}: at most {longest} characters")
    user = form.get("user", "").strip() or principal.name
    if not principal.is_admin and not mine(principal, user):
        raise Forbidden("only an administrator can add a rule for another user")
    kind = form.get("kind", "")
    if kind not in RULE_KINDS:
        raise BadRequest(f"kind: one of {', '.join(RULE_KINDS)}, not {kind!r}")
    count = _number(form, "count", *COUNT, "a whole number")
    profile = form.get("profile", "").strip() or default_profile
    if profile not in profiles:
        raise BadRequest(f"profile: one of {', '.join(sorted(profiles))}, not {profile!r}")
    keep_text = form.get("keep", "").strip() or UNTIL_WATCHED
    keep: str | int = UNTIL_WATCHED
    if keep_text != UNTIL_WATCHED:
        keep = _number({"keep": keep_text}, "keep", *DAYS, f"{UNTIL_WATCHED} or days")
    playlist = form.get("playlist", "").strip() or None
    if kind == "playlist" and playlist is None:
        raise BadRequest("playlist: a playlist rule needs the playlist's name")
    library = form.get("library", "").strip() or None
    return Rule(
        "new",
        user,
        kind,
        count,
        profile,
        library,
        playlist if kind == "playlist" else None,
        keep,
        principal.name,
    )


def form_values(form: dict[str, str], principal: Principal, default_profile: str) -> dict[str, str]:
    """What the form shows again (after a preview or a refusal), or its defaults."""
    defaults = {"user": principal.name, "kind": RULE_KINDS[0], "count": "1"}
    defaults |= {"library": "", "playlist": "", "profile": default_profile, "keep": UNTIL_WATCHED}
    return {k: form.get(k, v) for k, v in defaults.items()}
