"""The Kubernetes manifests: valid for the Kubernetes API (kubernetes-validate, strict), and true
to the service: its probes, port, metrics path and settings."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from bench.launcher import REPO
from service.settings import VARIABLES, Settings

MANIFESTS = REPO / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"


def resources() -> list[tuple[Path, dict]]:
    files = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    return [(MANIFESTS / f, doc) for f in files for doc in yaml.safe_load_all((MANIFESTS / f).read_text()) if doc]


@pytest.mark.parametrize(("path", "resource"), resources(), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_every_manifest_is_valid_kubernetes(path: Path, resource: dict) -> None:
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_manifests_match_the_service() -> None:
    by_kind = {resource["kind"]: resource for _, resource in resources()}
    assert set(by_kind) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    pod = by_kind["Deployment"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 3000}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "3000"
    assert container["resources"]["limits"]["cpu"] == container["resources"]["requests"]["cpu"]
    assert {item["name"] for item in container["env"]} <= set(VARIABLES)
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    secret = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in container["env"] if "valueFrom" in item}
    assert secret["NEXTWORD_API_KEY"]["optional"] is True  # without the Secret the service runs open
    settings = Settings.from_env(env)  # every value is one the service accepts
    # On SIGTERM the server stops taking connections and finishes what is in flight, each request
    # bounded by the timeout: the pod's grace period must outlast it, or Kubernetes kills them.
    assert pod["spec"]["terminationGracePeriodSeconds"] >= settings.timeout_s + 10
    assert by_kind["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert (
        by_kind["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"]
        == by_kind["Deployment"]["metadata"]["name"]
    )
    selector = by_kind["Deployment"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items() and by_kind["Service"]["spec"]["selector"] == selector
