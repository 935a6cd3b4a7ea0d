"""Load and check the alert rules file (YAML): schema, then semantic checks, every problem with its line.

A problem reads ``FILE:LINE: rule[id].field: message``.  :func:`check_rules`
returns all of them (``moodwire rules check``); :func:`load_rules` raises
:class:`RulesError` carrying them, or returns typed :class:`Rules`.  Target
URLs may use ``${VAR}`` / ``${VAR:-default}``, expanded from the ``env``
mapping the caller passes (the worker and CLI pass the process environment);
secrets are never read here, only the *name* of the variable that holds them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DEFAULT_RULES = Path(__file__).resolve().parent / "default_rules.yaml"
DIMENSIONS = ("topic", "source", "kind", "lang", "entity")
_DURATION = re.compile(r"^([0-9]+)(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class RulesError(Exception):
    """The rules file is invalid; ``problems`` lists every one (``FILE:LINE: where: message``)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            problems[0] if len(problems) == 1 else f"{len(problems)} problems: {problems[0]} ..."
        )
        self.problems = problems


def parse_duration(text: str) -> int:
    """``30s`` / ``5m`` / ``1h`` / ``1d`` -> seconds (ValueError otherwise)."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h or 1d")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """``${VAR}`` / ``${VAR:-default}`` from ``env``; KeyError names an unset variable without default."""

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _ENV_REF.sub(repl, text)


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    secret_env: str
    format: str = "standard"  # standard | slack
    allow_http: bool = False
    allow_networks: tuple[Any, ...] = ()  # from allow_private: non-public networks it may reach (SSRF)
    rate_limit_per_minute: float = 60.0
    max_age_s: int = 3600
    timeout_s: int = 10


@dataclass(frozen=True)
class Escalation:
    severity: str
    negative_share: float


@dataclass(frozen=True)
class Rule:
    id: str
    dim: str
    value: str  # "*" = each value separately
    window_s: int
    min_volume: int
    targets: tuple[str, ...]
    negative_share: float | None = None
    baseline_factor: float | None = None
    zscore: float | None = None
    match: str = "all"
    baseline_s: int = 86400
    min_baseline_volume: int = 100
    severity: str = "warning"
    escalate: tuple[Escalation, ...] = ()
    hold_s: int = 120
    cooldown_s: int = 600
    enabled: bool = True

    @property
    def uses_baseline(self) -> bool:
        return self.baseline_factor is not None or self.zscore is not None


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    targets: dict[str, Target] = field(default_factory=dict)
    path: str = ""

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def _schema() -> dict[str, Any]:
    text = resources.files("streams").joinpath("schemas/rules.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def _line_index(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    """Map every JSON path in the composed YAML tree to its 1-based line (keys: the key's line)."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            out[child] = key.start_mark.line + 1
            _line_index(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), out)


class _Report:
    def __init__(self, name: str, lines: dict[tuple[Any, ...], int], data: Any) -> None:
        self.name, self.lines, self.data, self.problems = name, lines, data, []

    def where(self, path: tuple[Any, ...]) -> str:
        parts: list[str] = []
        for i, p in enumerate(path):
            if isinstance(p, int) and i > 0 and path[i - 1] == "rules":
                rid = None
                if isinstance(self.data, dict) and isinstance(self.data.get("rules"), list):
                    rules = self.data["rules"]
                    if p < len(rules) and isinstance(rules[p], dict):
                        rid = rules[p].get("id")
                parts[-1] = f"rule[{rid if isinstance(rid, str) else f'#{p + 1}'}]"
            elif isinstance(p, int):
                parts[-1] += f"[{p}]"
            elif i > 0 and path[i - 1] == "targets" and len(parts) == 1:
                parts[-1] = f"target[{p}]"
            else:
                parts.append(str(p))
        return ".".join(parts) or "(top level)"

    def add(self, path: tuple[Any, ...], message: str) -> None:
        line = 1
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                line = self.lines[path[:n]]
                break
        self.problems.append((line, f"{self.name}:{line}: {self.where(path)}: {message}"))


def check_rules(text: str, name: str = "<rules>") -> list[str]:
    """Every problem in a rules file, in line order (empty list = valid)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        return [f"{name}:{line}: (yaml): {getattr(exc, 'problem', None) or exc}"]
    lines: dict[tuple[Any, ...], int] = {}
    if root is not None:
        _line_index(root, (), lines)
    report = _Report(name, lines, data)
    if data is None:
        report.add((), "the file is empty: it needs a 'rules' list")
        return [p for _, p in report.problems]
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    for err in validator.iter_errors(data):
        path = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = set(err.schema.get("properties", {}))
            for key in (k for k in err.instance if k not in known):
                report.add((*path, key), "unknown field")
            continue
        report.add(path, _schema_message(err))
    if isinstance(data, dict):
        _semantic_checks(data, report)
    return [p for _, p in sorted(report.problems, key=lambda lp: lp[0])]


def _schema_message(err: Any) -> str:
    if err.validator == "pattern" and err.validator_value == "^[0-9]+(s|m|h|d)$":
        return f"{err.instance!r} is not a duration like 30s, 5m, 1h or 1d"
    return err.message


def _duration_or_none(value: Any) -> int | None:
    try:
        return parse_duration(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _semantic_checks(data: dict[str, Any], report: _Report) -> None:
    """Checks a schema cannot express; defensive, because they also run on a file with schema errors."""
    targets = data.get("targets") if isinstance(data.get("targets"), dict) else {}
    rules = data.get("rules") if isinstance(data.get("rules"), list) else []
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        base = ("rules", i)
        rid = rule.get("id")
        if isinstance(rid, str):
            if rid in seen:
                report.add((*base, "id"), f"duplicate rule id (first used by rule #{seen[rid] + 1})")
            seen.setdefault(rid, i)
        rule_targets = rule.get("targets") if isinstance(rule.get("targets"), list) else []
        for j, name in enumerate(rule_targets):
            if isinstance(name, str) and name not in targets:
                known = ", ".join(sorted(targets)) or "none defined"
                report.add((*base, "targets", j), f"unknown target {name!r} (targets: {known})")
        cond = rule.get("conditions") if isinstance(rule.get("conditions"), dict) else {}
        if cond and not any(k in cond for k in ("negative_share", "baseline_factor", "zscore")):
            report.add((*base, "conditions"), "needs at least one of negative_share, baseline_factor, zscore")
        window = _duration_or_none(rule.get("window"))
        if window is not None and window < 60:
            report.add((*base, "window"), "must be at least 1m (the aggregates are per minute)")
        if window is not None and window > 86400:
            report.add((*base, "window"), "must be at most 1d")
        baseline = _duration_or_none(cond.get("baseline"))
        if window is not None and baseline is not None and baseline < 2 * window:
            report.add((*base, "conditions", "baseline"), "must be at least twice the window")
        previous = cond.get("negative_share")
        escalate = rule.get("escalate") if isinstance(rule.get("escalate"), list) else []
        for k, level in enumerate(escalate):
            if not isinstance(level, dict):
                continue
            if level.get("severity") == rule.get("severity", "warning"):
                report.add((*base, "escalate", k, "severity"), "repeats the rule's base severity")
            share = level.get("negative_share")
            if isinstance(previous, int | float) and isinstance(share, int | float) and share <= previous:
                report.add(
                    (*base, "escalate", k, "negative_share"),
                    f"must be above the previous threshold ({previous}): levels go up",
                )
            previous = share
    for name, target in targets.items():
        if not isinstance(target, dict) or not isinstance(target.get("url"), str):
            continue
        try:
            expanded = expand_env(target["url"], {})
        except KeyError:
            continue  # depends on the environment: checked when loaded with one
        problem = url_problem(expanded, target.get("allow_http") is True)
        if problem:
            report.add(("targets", name, "url"), problem)
        allow_private = target.get("allow_private")
        if isinstance(allow_private, list):
            try:
                parse_allow_private(allow_private)
            except ValueError as exc:
                report.add(("targets", name, "allow_private"), f"not a network (CIDR): {exc}")


def parse_allow_private(value: Any) -> tuple[Any, ...]:
    from streams.alerts.webhooks import parse_allow_private as parse

    return parse(value)


def url_problem(url: str, allow_http: bool) -> str | None:
    from streams.alerts.webhooks import TargetUrlError, validate_target_url

    try:
        validate_target_url(url, allow_http)
    except TargetUrlError as exc:
        return str(exc)
    return None


def load_rules(path: Path | None, env: Mapping[str, str]) -> Rules:
    """Typed rules from ``path`` (None: the bundled defaults); RulesError lists every problem."""
    path = path or DEFAULT_RULES
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    problems = check_rules(text, str(path))
    if problems:
        raise RulesError(problems)
    data = yaml.safe_load(text)
    targets: dict[str, Target] = {}
    env_problems: list[str] = []
    for name, t in (data.get("targets") or {}).items():
        try:
            url = expand_env(t["url"], env)
        except KeyError as exc:
            env_problems.append(f"{path}: target[{name}].url: environment variable {exc.args[0]} is not set")
            continue
        problem = url_problem(url, t.get("allow_http", False))
        if problem:
            env_problems.append(f"{path}: target[{name}].url: {problem}")
        targets[name] = Target(
            name=name,
            url=url,
            secret_env=t["secret_env"],
            format=t.get("format", "standard"),
            allow_http=t.get("allow_http", False),
            allow_networks=parse_allow_private(t.get("allow_private")),
            rate_limit_per_minute=float(t.get("rate_limit_per_minute", 60)),
            max_age_s=parse_duration(t.get("max_age", "1h")),
            timeout_s=parse_duration(t.get("timeout", "10s")),
        )
    if env_problems:
        raise RulesError(env_problems)
    rules = []
    for r in data["rules"]:
        cond = r["conditions"]
        scope = r["scope"]
        rules.append(
            Rule(
                id=r["id"],
                dim=scope["dim"],
                value=scope.get("value", "*"),
                window_s=parse_duration(r["window"]),
                min_volume=r.get("min_volume", 20),
                targets=tuple(r["targets"]),
                negative_share=cond.get("negative_share"),
                baseline_factor=cond.get("baseline_factor"),
                zscore=cond.get("zscore"),
                match=cond.get("match", "all"),
                baseline_s=parse_duration(cond.get("baseline", "24h")),
                min_baseline_volume=cond.get("min_baseline_volume", 100),
                severity=r.get("severity", "warning"),
                escalate=tuple(Escalation(e["severity"], e["negative_share"]) for e in r.get("escalate", [])),
                hold_s=parse_duration(r.get("hold", "2m")),
                cooldown_s=parse_duration(r.get("cooldown", "10m")),
                enabled=r.get("enabled", True),
            )
        )
    return Rules(tuple(rules), targets, str(path))
