"""Deployment files, checked offline (no Docker engine here): Kubernetes schemas, the compose spec, the Grafana
dashboard's queries against the metrics the server really exports, and the container's entrypoint command."""

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from helpers import REPO

DEPLOY = REPO / "deploy"
K8S_VERSION = "1.30.0"


def _documents(path: Path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", sorted((DEPLOY / "k8s" / "base").glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_validate(path):
    import kubernetes_validate

    for doc in _documents(path):
        if doc.get("kind") == "Kustomization":
            for resource in doc["resources"]:
                assert (path.parent / resource).is_file(), resource
        elif doc["apiVersion"].startswith("monitoring.coreos.com"):  # a CRD: check the fields Prometheus Operator needs
            if doc["kind"] == "PrometheusRule":  # the plain rules file's groups, which promtool checks
                assert doc["spec"]["groups"] == _documents(DEPLOY / "prometheus" / "alerts.yml")[0]["groups"]
            else:
                assert doc["kind"] == "ServiceMonitor" and doc["spec"]["endpoints"][0]["path"] == "/metrics"
                assert doc["spec"]["jobLabel"] == "app.kubernetes.io/name"  # job="mathtune", as the alerts expect
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_deployment_probes_and_resources():
    deployment = _documents(DEPLOY / "k8s" / "base" / "deployment.yaml")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert {"requests", "limits"} <= set(container["resources"])


def _merge(base, patch):
    """Strategic-merge enough for these patches: mappings merge, lists of named items merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in base + patch):
        named = {i["name"]: i for i in base}
        for item in patch:
            named[item["name"]] = _merge(named[item["name"]], item) if item["name"] in named else item
        return list(named.values())
    return patch


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_kustomize_overlays_patch_real_resources(overlay):
    import kubernetes_validate

    folder = DEPLOY / "k8s" / "overlays" / overlay
    kustomization = _documents(folder / "kustomization.yaml")[0]
    assert kustomization["resources"] == ["../../base"]
    base = {(d["kind"], d["metadata"]["name"]): d for p in (DEPLOY / "k8s" / "base").glob("*.yaml")
            for d in _documents(p) if d.get("kind") != "Kustomization"}
    for patch in kustomization.get("patches", []):
        doc = _documents(folder / patch["path"])[0]
        key = (doc["kind"], doc["metadata"]["name"])
        assert key in base, f"{patch['path']} patches {key}, which the base does not have"
        merged = _merge(base[key], doc)
        kubernetes_validate.validate(merged, K8S_VERSION, strict=True)
        if overlay == "gpu":
            limits = merged["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
            assert limits["nvidia.com/gpu"] == "1"


def test_compose_file_matches_the_compose_spec():
    import importlib.resources

    import jsonschema

    schema = json.loads((importlib.resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json").read_text())
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    jsonschema.validate(compose, schema)
    assert {"api", "mlflow", "postgres", "prometheus", "grafana"} <= set(compose["services"])
    assert "postgresql://" in compose["services"]["mlflow"]["command"]


def test_dockerfile_shape():
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2  # multi-stage
    assert re.search(r"^USER mathtune", text, re.M) and "ARG VARIANT=cpu" in text
    assert re.search(r"^HEALTHCHECK .*\n?.*livez", text, re.M)


def _exported_metric_names(tmp_path) -> set[str]:
    import pandas as pd
    from fastapi.testclient import TestClient

    from helpers import _rows
    from mathtune.config import recipe_from_dict
    from mathtune.serve.app import create_app
    from mathtune.train.run import train_from_recipe

    pd.DataFrame(_rows(10, seed=1))[["Question", "label"]].to_csv(tmp_path / "t.csv", index=False)
    model = train_from_recipe(recipe_from_dict({"trainer": "tfidf", "data": {"train": str(tmp_path / "t.csv")},
                                                "tracking": "none"}), tmp_path / "m")
    client = TestClient(create_app([str(model.output)]))
    client.post("/v1/topics", json={"questions": ["Solve 2x = 4."]})
    client.post("/v1/topics", json={"questions": []})  # a 4xx too
    text = client.get("/metrics").text
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_grafana_queries_use_exported_metrics(tmp_path):
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "mathtune.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bmathtune_[a-z_]+", expr)}
    exported = _exported_metric_names(tmp_path)
    missing = used - exported
    assert not missing, f"dashboard queries metrics the server does not export: {missing}"
    assert any("mathtune_drift" in e for e in exprs) and any("latency" in e for e in exprs)


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="needs promtool: `make promtool` as root (Debian's prometheus package)")
def test_alert_rules_pass_promtools_checks_and_unit_tests():
    """Each alert fires on the synthetic series it is for and not on a healthy server's (alerts_test.yml)."""
    folder = DEPLOY / "prometheus"
    for args in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"],
                 ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run([PROMTOOL, *args], cwd=folder, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    rules = _documents(folder / "alerts.yml")[0]["groups"][0]["rules"]
    tested = (folder / "alerts_test.yml").read_text()
    assert all(f"alertname: {rule['alert']}" in tested for rule in rules)  # every rule has a unit test


def test_alerts_and_dashboard_query_metrics_the_server_exports(tmp_path):
    exported = _exported_metric_names(tmp_path)
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
            "process_start_time_seconds", "mathtune_process_threads", "mathtune_memory_limit_bytes",
            "mathtune_tutor_line", "mathtune_tutor_line_limit"} <= exported
    exprs = [rule["expr"] for rule in _documents(DEPLOY / "prometheus" / "alerts.yml")[0]["groups"][0]["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "mathtune.json").read_text())
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name.removesuffix("_bucket") for expr in exprs for name in re.findall(r"\b(?:mathtune|process)_[a-z_]+", expr)}
    exported |= {re.sub(r"_(bucket|count|sum)$", "", name) for name in exported}
    assert not used - exported, f"queries of metrics the server does not export: {used - exported}"


def test_makefile_targets():
    text = (REPO / "Makefile").read_text()
    for target in ("all-training", "all-serving", "clean", "test", "docker-build", "run"):
        assert re.search(rf"^{target}:", text, re.M), target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_container_entrypoint_command_serves(tmp_path, topic_csv):
    """Run the image's ENTRYPOINT + CMD directly (no Docker engine here), with the model path and port swapped."""
    from mathtune.config import recipe_from_dict
    from mathtune.train.run import train_from_recipe

    model = train_from_recipe(recipe_from_dict({"trainer": "tfidf", "data": {"train": "topics.csv"}, "tracking": "none"}), "runs/m")
    text = (DEPLOY / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])", text, re.M).group(1))
    port = _free_port()
    args = [str(model.output.resolve()) if a == "/models/topic" else ("127.0.0.1" if a == "0.0.0.0" else str(port) if a == "8000" else a)
            for a in cmd]
    assert entry == ["mathtune"]
    proc = subprocess.Popen([sys.executable, "-m", "mathtune.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                    assert json.loads(response.read())["ready"] is True
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the entrypoint command did not become ready: " + shlex.join(args))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_api_pod_is_locked_down_and_its_sandbox_can_still_start():
    """#46: non-root, read-only root filesystem, no privilege escalation, no capabilities; the seccomp profile it
    names lets bubblewrap make namespaces (unshare, mount, pivot_root) and denies the kernel interfaces no part of
    mathtune uses; the image installs bubblewrap."""
    deployment = _documents(DEPLOY / "k8s" / "base" / "deployment.yaml")[0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}
    seccomp = pod["securityContext"]["seccompProfile"]
    assert seccomp["type"] == "Localhost" and seccomp["localhostProfile"].endswith("mathtune-sandbox.json")
    profile = json.loads((DEPLOY / "k8s" / "seccomp" / "mathtune-sandbox.json").read_text())
    denied = {name for rule in profile["syscalls"] if rule["action"] != "SCMP_ACT_ALLOW" for name in rule["names"]}
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert {"ptrace", "bpf", "kexec_load", "init_module", "keyctl", "userfaultfd", "perf_event_open"} <= denied
    assert not denied & {"unshare", "clone", "clone3", "mount", "umount2", "pivot_root", "setresuid", "execve",
                         "socket", "prctl", "seccomp"}
    job = _documents(DEPLOY / "k8s" / "base" / "training-job.yaml")[0]["spec"]["template"]["spec"]
    assert job["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "bubblewrap" in dockerfile and re.search(r"^USER mathtune", dockerfile, re.M)


def test_azure_ml_files_load_with_azures_own_sdk(tmp_path):
    """#45: deploy/azureml/*.yml loaded and validated by azure-ai-ml's own loaders (offline: no workspace)."""
    pytest.importorskip("azure.ai.ml", reason="azure-ai-ml is a dev dependency: make install-all")
    from azure.ai.ml import load_online_deployment, load_online_endpoint
    from marshmallow.exceptions import ValidationError

    endpoint = load_online_endpoint(DEPLOY / "azureml" / "endpoint.yml")
    deployment = load_online_deployment(DEPLOY / "azureml" / "deployment.yml")
    assert endpoint.auth_mode == "key" and deployment.endpoint_name == endpoint.name
    assert deployment.model == "math-topics:1" and deployment.instance_count >= 1  # the registered model
    broken = {**_documents(DEPLOY / "azureml" / "deployment.yml")[0], "instance_count": "two"}
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    with pytest.raises(ValidationError, match="instance_count"):  # the loader does validate
        load_online_deployment(tmp_path / "broken.yml")
