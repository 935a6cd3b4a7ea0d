"""Rules file: schema + semantic checks with line numbers, and ``moodwire rules check``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.alerts.rules import (
    DEFAULT_RULES,
    RulesError,
    check_rules,
    expand_env,
    load_rules,
    parse_duration,
)

ROOT = Path(__file__).resolve().parent.parent

BROKEN = """\
targets:
  ops:
    url: http://example.com/hook
    secret_env: OPS_SECRET
    format: teams
rules:
  - id: a
    scope: {dim: topic}
    window: 5x
    min_volume: 0
    conditions:
      negative_share: 1.5
    targets: [ops, nobody]
  - id: a
    scope: {dim: colour, value: red}
    window: 30s
    conditions: {baseline_factor: 2, baseline: 1m}
    targets: [ops]
    severity: warning
    escalate:
      - {severity: warning, negative_share: 0.5}
    surprise: 1
"""


def test_default_rules_are_valid_and_typed():
    rules = load_rules(None, {})
    assert {r.id for r in rules.rules} >= {"topic-negative-surge"}
    topic = rules.rule("topic-negative-surge")
    assert topic is not None and topic.dim == "topic" and topic.value == "*"
    assert topic.window_s == 300 and topic.negative_share == 0.6 and topic.targets == ("local",)
    assert rules.targets["local"].url == "http://127.0.0.1:8765/moodwire"  # ${...:-default}
    assert load_rules(None, {"MOODWIRE_WEBHOOK_URL": "https://hooks.example/x"}).targets["local"].url == (
        "https://hooks.example/x"
    )


def test_every_problem_is_reported_with_its_line():
    problems = check_rules(BROKEN, "r.yaml")
    expected = [
        "r.yaml:3: target[ops].url: plain http to example.com is refused",
        "r.yaml:5: target[ops].format: 'teams' is not one of",
        "r.yaml:9: rule[a].window: '5x' is not a duration",
        "r.yaml:10: rule[a].min_volume: 0 is less than the minimum of 1",
        "r.yaml:12: rule[a].conditions.negative_share: 1.5 is greater than the maximum of 1",
        "r.yaml:13: rule[a].targets[1]: unknown target 'nobody'",
        "r.yaml:14: rule[a].id: duplicate rule id",
        "r.yaml:15: rule[a].scope.dim: 'colour' is not one of",
        "r.yaml:16: rule[a].window: must be at least 1m",
        "r.yaml:21: rule[a].escalate[0].severity: repeats the rule's base severity",
        "r.yaml:22: rule[a].surprise: unknown field",
    ]
    assert len(problems) == len(expected), "\n".join(problems)
    for got, want in zip(problems, expected, strict=True):
        assert got.startswith(want), f"{got!r} does not start with {want!r}"


def test_yaml_syntax_error_has_a_line():
    problems = check_rules("rules:\n  - id: a\n   bad: [\n", "x.yaml")
    assert len(problems) == 1 and problems[0].startswith("x.yaml:3: (yaml):")


def test_load_rules_raises_with_all_problems(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(BROKEN)
    with pytest.raises(RulesError) as info:
        load_rules(path, {})
    assert len(info.value.problems) == 11


def test_env_references():
    assert expand_env("https://${HOST}/x", {"HOST": "h.example"}) == "https://h.example/x"
    assert expand_env("${A:-http://127.0.0.1:1/}", {}) == "http://127.0.0.1:1/"
    with pytest.raises(KeyError):
        expand_env("${MISSING}", {})


def test_unset_url_variable_is_a_load_problem(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "targets:\n  t: {url: '${HOOK_URL}', secret_env: S}\nrules:\n"
        "  - {id: r, scope: {dim: topic}, window: 5m, conditions: {negative_share: 0.5}, targets: [t]}\n"
    )
    assert check_rules(path.read_text()) == []  # depends on the environment, fine statically
    with pytest.raises(RulesError, match="HOOK_URL is not set"):
        load_rules(path, {})
    assert load_rules(path, {"HOOK_URL": "https://h.example/"}).targets["t"].url == "https://h.example/"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("24h", 86400), ("1d", 86400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_rules_check(tmp_path):
    ok = _cli("rules", "check", str(DEFAULT_RULES))
    assert ok.returncode == 0, ok.stderr
    assert "OK, 3 rules" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    res = _cli("rules", "check", str(bad))
    assert res.returncode == 1
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 11 and all(line.startswith(f"{bad}:") for line in lines)
    assert res.stderr.strip() == f"moodwire: error: {bad}: 11 problems"


def test_allow_private_is_typed_and_checked(tmp_path):
    rule = "  - {id: r, scope: {dim: topic}, window: 5m, conditions: {negative_share: 0.5}, targets: [t]}\n"
    path = tmp_path / "r.yaml"
    for value, networks in (("true", ("0.0.0.0/0", "::/0")), ("['10.1.0.0/16']", ("10.1.0.0/16",))):
        path.write_text(
            f"targets:\n  t: {{url: 'https://h.example/', secret_env: S, allow_private: {value}}}\nrules:\n{rule}"
        )
        assert tuple(str(n) for n in load_rules(path, {}).targets["t"].allow_networks) == networks
    path.write_text("targets:\n  t: {url: 'https://h.example/', secret_env: S}\nrules:\n" + rule)
    assert load_rules(path, {}).targets["t"].allow_networks == ()
    bad = "targets:\n  t: {url: 'https://h.example/', secret_env: S, allow_private: ['not-a-net']}\nrules:\n"
    assert any("allow_private" in p for p in check_rules(bad + rule))
