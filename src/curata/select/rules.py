"""QC rules: named queries that exclude a series or warn about it, loaded from TOML.

A rule set is the defaults (``default_rules.toml``, next to this module) with a project's overrides:

    defaults = true            # start from the defaults (the default)
    disable = ["oblique"]      # drop these defaults

    [[rule]]
    name = "ct_noise"          # same name: replaces the default
    when = "modality = CT and qc.noise_hu > 25"
    action = "exclude"         # or "warn"
    reason = "CT noise above 25 HU"

Every decision records the rule, the values of the fields its query read, and the code version.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curata.errors import ConfigError, QueryError
from curata.select.query import Query, evaluate, parse

DEFAULT_RULES = Path(__file__).with_name("default_rules.toml")
ACTIONS = ("exclude", "warn")


@dataclass
class Rule:
    name: str
    when: str
    action: str
    reason: str
    query: Query

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "when": self.when, "action": self.action, "reason": self.reason}


@dataclass
class RuleSet:
    rules: list[Rule]
    source: str

    @property
    def digest(self) -> str:
        canon = json.dumps([r.as_dict() for r in self.rules], sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()


@dataclass
class Firing:
    rule: str
    action: str
    reason: str
    when: str
    values: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "action": self.action,
            "reason": self.reason,
            "when": self.when,
            "values": self.values,
        }


def _rule(entry: Any, where: str) -> Rule:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: a rule is a table with name, when, action, reason")
    missing = [k for k in ("name", "when") if not entry.get(k)]
    if missing:
        raise ConfigError(f"{where}: rule lacks {', '.join(missing)}")
    action = str(entry.get("action", "exclude"))
    if action not in ACTIONS:
        raise ConfigError(f"{where} ({entry['name']}): action must be exclude or warn, not {action!r}")
    try:
        query = parse(str(entry["when"]))
    except QueryError as exc:
        raise ConfigError(f"{where} ({entry['name']}): {exc.message}", hint=exc.hint) from exc
    return Rule(
        str(entry["name"]), str(entry["when"]), action, str(entry.get("reason") or entry["name"]), query
    )


def _rules_of(text: str, origin: str) -> tuple[dict[str, Any], list[Rule]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: {exc}", hint="fix the TOML syntax") from exc
    entries = data.get("rule", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{origin}: rules are written as [[rule]] tables")
    return data, [_rule(e, f"{origin} rule {i + 1}") for i, e in enumerate(entries)]


@functools.cache
def default_ruleset() -> RuleSet:
    text = DEFAULT_RULES.read_text()
    return RuleSet(_rules_of(text, str(DEFAULT_RULES))[1], text)


@functools.lru_cache(maxsize=16)
def load_ruleset(text: str, origin: str = "rules") -> RuleSet:
    """The defaults overridden by a project's TOML ``text``."""
    data, own = _rules_of(text, origin)
    rules: dict[str, Rule] = {}
    if data.get("defaults", True):
        rules = {r.name: r for r in default_ruleset().rules}
    for name in data.get("disable", []) or []:
        if name not in rules:
            raise ConfigError(
                f"{origin}: disable names an unknown rule {name!r}", hint=f"known: {', '.join(rules)}"
            )
        del rules[name]
    for r in own:
        rules[r.name] = r
    return RuleSet(list(rules.values()), text)


def apply(ruleset: RuleSet, record: dict[str, Any]) -> tuple[bool, bool, list[Firing]]:
    """(passed, warned, firings) of one series' record."""
    firings = []
    for rule in ruleset.rules:
        if evaluate(rule.query.root, record) is True:
            values = {f: record.get(f) for f in dict.fromkeys(rule.query.fields)}
            firings.append(Firing(rule.name, rule.action, rule.reason, rule.when, values))
    passed = not any(f.action == "exclude" for f in firings)
    warned = any(f.action == "warn" for f in firings)
    return passed, warned, firings
