"""Checks the Helm chart with Helm's own engine (helm-python-sdk) and every
rendered manifest against Kubernetes' schemas (kubernetes-validate), on the
default values and on values-production.yaml; refuses values that break the
schema; checks that the chart deploys the image the Dockerfile builds.

Usage: check_chart.py OUT_DIR -- writes each rendering's config.toml to
OUT_DIR/<values>.toml (and the generated tokens file to
OUT_DIR/default.tokens.toml) for the Rust side to load with the service's own
settings loader. Exits non-zero with every failure listed.
"""
import base64
import copy
import hashlib
import pathlib
import re
import sys
import tomllib

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "association-service"
KUBE_VERSION = "1.30.0"
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def documents(rendered):
    """Every manifest of a rendering, with the template it came from."""
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                yield template, doc


def by_kind(docs, kind):
    return [d for _, d in docs if d["kind"] == kind]


def cargo_package():
    text = (ROOT / "Cargo.toml").read_text()
    return tomllib.loads(text)["package"]


def dockerfile_final_stage():
    """The final stage's instructions of the Dockerfile: (keyword, argument)."""
    stages, current = [], None
    for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, argument = line.partition(" ")
        if keyword.upper() == "FROM":
            current = []
            stages.append(current)
        current.append((keyword.upper(), argument.strip()))
    return stages[-1]


def lint(name, values):
    report = helm.lint(str(CHART), values, strict=True, kube_version="v" + KUBE_VERSION)
    check(not report["errors"], f"{name}: helm lint errors {report['errors']}")
    for message in report["messages"]:
        # 1 is info ("icon is recommended"); warnings and errors fail.
        check(message["severity"] < 2, f"{name}: helm lint {message}")


def render(values, name="assoc"):
    chart = helm.Chart.load(str(CHART))
    chart.validate_schema(values)
    return chart.render(values, name=name, namespace="crm", is_install=True)


def validate_manifests(name, docs):
    kinds = []
    for template, doc in docs:
        kinds.append(doc["kind"])
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            # A CRD kubernetes-validate has no schema for: check its shape here.
            endpoints = doc["spec"]["endpoints"]
            check(endpoints and endpoints[0]["port"] == "metrics", f"{name}: ServiceMonitor scrapes the metrics port")
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            failures.append(f"{name}: {template}: {err.message} at {list(err.path)}")
        annotations = (doc["metadata"].get("annotations") or {})
        hook = annotations.get("helm.sh/hook")
        # Hooks only for `helm test`: Argo CD and Flux mishandle the others.
        check(hook in (None, "test"), f"{name}: {template} is a {hook} hook")
    return kinds


def check_deployment(name, docs, values):
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    check(pod["securityContext"]["runAsNonRoot"] is True, f"{name}: pod runs as non-root")
    security = container["securityContext"]
    check(security["readOnlyRootFilesystem"] is True, f"{name}: read-only root filesystem")
    check(security["allowPrivilegeEscalation"] is False, f"{name}: no privilege escalation")
    check(security["capabilities"]["drop"] == ["ALL"], f"{name}: every capability dropped")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    check(set(ports) == {"grpc", "http", "metrics"}, f"{name}: container ports {ports}")
    for probe in ("livenessProbe", "readinessProbe"):
        grpc = container[probe].get("grpc")
        check(grpc and grpc["port"] == ports["grpc"], f"{name}: {probe} is a native gRPC probe")
    check(container["livenessProbe"]["grpc"].get("service") == "liveness", f"{name}: liveness asks the liveness service")
    check("requests" in container["resources"], f"{name}: resource requests")
    spread = pod.get("topologySpreadConstraints") or []
    check(any(c["topologyKey"] == "kubernetes.io/hostname" for c in spread), f"{name}: spread across nodes")
    check(pod["automountServiceAccountToken"] is False, f"{name}: no API token mounted")
    package = cargo_package()
    tag = values.get("image", {}).get("tag") or package["version"]
    repository = values.get("image", {}).get("repository", "association-service")
    check(container["image"] == f"{repository}:{tag}", f"{name}: image {container['image']}")
    env = {e["name"]: e for e in container["env"]}
    check("ASSOC__READ__CURSOR_SECRET" in env, f"{name}: cursor secret from a Secret")
    return deployment, container, ports


def check_image(container, ports):
    """The chart runs the image the Dockerfile builds, as the user it sets."""
    package = cargo_package()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    check(chart["appVersion"] == package["version"], f"appVersion {chart['appVersion']} is not Cargo's {package['version']}")
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    check(defaults["image"]["repository"] == package["name"], "the default image is the package's name")
    dockerfile = (ROOT / "Dockerfile").read_text()
    check(f"docker build -t {package['name']}:{package['version']} ." in dockerfile, "the Dockerfile names its tag")
    stage = dict(dockerfile_final_stage())
    user = stage["USER"].split(":")[0]
    check(int(user) == container["securityContext"]["runAsUser"], f"USER {user} is the chart's runAsUser")
    exposed = {int(p) for p in stage["EXPOSE"].split()}
    check(exposed == set(ports.values()), f"EXPOSE {exposed} vs the chart's ports {ports}")
    entrypoint = yaml.safe_load(stage["ENTRYPOINT"])
    check(entrypoint == [f"/usr/local/bin/{package['name']}"], f"ENTRYPOINT {entrypoint}")
    check(container["args"] == ["serve"], f"the chart runs serve: {container['args']}")


def config_of(docs):
    (configmap,) = by_kind(docs, "ConfigMap")
    return configmap["data"]["config.toml"]


def check_default(out):
    values = {}
    lint("default", values)
    docs = list(documents(render(values)))
    kinds = validate_manifests("default", docs)
    for kind in ("Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount", "PodDisruptionBudget", "Pod"):
        check(kind in kinds, f"default: renders a {kind}")
    deployment, container, ports = check_deployment("default", docs, values)
    check_image(container, ports)
    check("initContainers" not in deployment["spec"]["template"]["spec"], "default: no migration container for SQLite")
    (secret,) = by_kind(docs, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    tokens = tomllib.loads(data["tokens.toml"])["tokens"]
    admin = hashlib.sha256(data["admin-token"].encode()).hexdigest()
    check([t["sha256"] for t in tokens] == [admin], "default: the generated token's hash is the one configured")
    check(len(data["cursor-secret"]) >= 16, "default: a cursor secret of 16 or more characters")
    (test_pod,) = by_kind(docs, "Pod")
    check(test_pod["spec"]["containers"][0]["args"][0] == "health", "default: helm test calls the health check")
    (out / "default.toml").write_text(config_of(docs))
    (out / "default.tokens.toml").write_text(data["tokens.toml"])


def check_production(out):
    values = yaml.safe_load((CHART / "values-production.yaml").read_text())
    lint("production", values)
    docs = list(documents(render(values)))
    kinds = validate_manifests("production", docs)
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "NetworkPolicy", "Job"):
        check(kind in kinds, f"production: renders a {kind}")
    check("Secret" not in kinds, "production: every secret is referenced, none generated")
    deployment, container, _ = check_deployment("production", docs, values)
    check("replicas" not in deployment["spec"], "production: the autoscaler owns the replica count")
    env = {e["name"]: e for e in container["env"]}
    check(env["ASSOC__STORE__URL"]["valueFrom"]["secretKeyRef"]["name"] == "association-service-db", "production: database URL from its Secret")
    (job,) = by_kind(docs, "Job")
    check(job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"], "production: the Job migrates")
    (out / "production.toml").write_text(config_of(docs))


def check_refusals():
    defaults = {}
    # Each bad value, and the place the schema's refusal must name.
    bad_values = {
        "replicaCount zero": ({"replicaCount": 0}, "/replicaCount"),
        "unknown pull policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        "unknown top-level key": ({"replicas": 3}, "'replicas' not allowed"),
        "a token hash that is not SHA-256": (
            {"auth": {"tokens": [{"name": "x", "sha256": "abc", "roles": ["read"]}]}},
            "/auth/tokens/0/sha256",
        ),
        "a port out of range": ({"service": {"grpcPort": 70000}}, "/service/grpcPort"),
        "a database URL that is not PostgreSQL": ({"database": {"url": "mysql://db"}}, "/database/url"),
        "an unknown migration mode": ({"migrations": {"mode": "hook"}}, "/migrations/mode"),
    }
    for reason, (values, place) in bad_values.items():
        merged = copy.deepcopy(defaults)
        merged.update(values)
        try:
            render(merged)
        except helm.HelmValuesError as err:
            check(place in str(err), f"{reason}: the refusal does not name {place}: {err}")
        except helm.HelmError as err:
            failures.append(f"{reason}: refused, but not by the schema: {err}")
        else:
            failures.append(f"{reason}: the values were accepted")
    # Rules the schema cannot state, refused by the templates with a reason.
    try:
        render({"replicaCount": 3})
    except helm.HelmError as err:
        check("embedded SQLite store serves one replica" in str(err), f"SQLite with 3 replicas: {err}")
    else:
        failures.append("3 replicas on the embedded SQLite store were accepted")


def main():
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    check_default(out)
    check_production(out)
    check_refusals()
    for failure in failures:
        print("FAIL:", failure)
    print(f"chart checks: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
