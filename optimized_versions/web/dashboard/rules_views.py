"""What the Rules page shows: each rule a viewer may see, its last evaluation, where each of
its copies is published (the ledger's row) or why not; and a posted rule form read back into
a Rule, each bad field refused by name (400). Plain dicts for the templates."""

from __future__ import annotations

from typing import Any

import jsonschema

from ...config import Config
from ...config.publish_settings import RULE_KINDS, RULE_SCHEMA, UNTIL_WATCHED
from ...errors import BadRequest, Forbidden
from ...jobs.models import Principal
from ...publish.engine import RulesEngine
from ...publish.ledger import Ledger, Published
from ...publish.rules import Rule, RuleState
from . import views

MISSING = "Rules need JELLYFIN_API_KEY and PUBLISH=alongside or library"


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
            "size": "~" + views.human_bytes(size),
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
        "summary": f"{summary}, ~{views.human_bytes(total)}"
        if count
        else "nothing to optimize now",
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


_RULE = jsonschema.Draft202012Validator(RULE_SCHEMA)


def read_rule(
    form: dict[str, str], principal: Principal, profiles: frozenset[str], default_profile: str
) -> Rule:
    """The posted form as a Rule (key "new"), held against the schema the YAML file's rules
    are: 400 naming the field that is wrong; 403 for another user's rule but an admin's."""
    user = form.get("user", "").strip() or principal.name
    spec: dict[str, Any] = {"user": user, "kind": form.get("kind", "")}
    for field in ("count", "keep", "library", "playlist", "profile"):
        text = form.get(field, "").strip()
        if text:
            spec[field] = int(text) if text.isascii() and text.isdigit() else text
    spec.setdefault("count", 1)
    if error := jsonschema.exceptions.best_match(_RULE.iter_errors(spec)):
        where = error.absolute_path
        field = str(where[0]) if where else "playlist"  # the one field required by a kind
        raise BadRequest(f"{field}: {_explain(error)}")
    if not principal.is_admin and not mine(principal, user):
        raise Forbidden("only an administrator can add a rule for another user")
    profile = spec.get("profile", default_profile)
    if profile not in profiles:
        raise BadRequest(f"profile: one of {', '.join(sorted(profiles))}, not {profile!r}")
    kind = spec["kind"]
    return Rule(
        "new",
        user,
        kind,
        spec["count"],
        profile,
        spec.get("library"),
        spec.get("playlist") if kind == "playlist" else None,
        spec.get("keep", UNTIL_WATCHED),
        principal.name,
    )


def _explain(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and isinstance(error.schema, dict):
        return str(error.schema.get("description", error.message))
    if error.validator == "maxLength":
        return f"at most {error.validator_value} characters"
    return error.message


def form_values(form: dict[str, str], principal: Principal, default_profile: str) -> dict[str, str]:
    """What the form shows again (after a preview or a refusal), or its defaults."""
    defaults = {"user": principal.name, "kind": RULE_KINDS[0], "count": "1"}
    defaults |= {"library": "", "playlist": "", "profile": default_profile, "keep": UNTIL_WATCHED}
    return {k: form.get(k, v) for k, v in defaults.items()}
