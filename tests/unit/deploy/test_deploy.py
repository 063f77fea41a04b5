"""The Kubernetes manifests: valid for the Kubernetes API (kubernetes-validate, strict), and true
to the service: its probes, port, metrics path and settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from bentoml._internal.container.generate import BENTO_UID_GID

from bench.launcher import REPO
from bench.proxy import SESSION_HEADER
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
    # The image make containerize tags, which runs as BentoML's user, not root.
    assert container["image"] == f"{containerize_default('IMAGE')}:latest"
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["runAsUser"] == BENTO_UID_GID
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


def containerize_default(variable: str) -> str:
    """The default that deploy/container/containerize.sh gives ``variable``."""
    script = (REPO / "deploy" / "container" / "containerize.sh").read_text()
    found = re.search(rf'="\$\{{{variable}:-([^}}]+)\}}"', script)
    assert found, f"containerize.sh sets no default for {variable}"
    return found.group(1)


# -- Envoy Gateway: session affinity ---------------------------------------------------------------
# The Gateway API (v1.6.1) and Envoy Gateway CRDs' schemas, from github.com/envoyproxy/gateway at
# d32f2829 (2026-08-21, charts/gateway-crds-helm/templates/), descriptions left out: nothing can be
# downloaded at test time. CEL rules (x-kubernetes-validations) are not checked here.
GATEWAY = MANIFESTS / "gateway"
CRD_SCHEMAS = Path(__file__).parent / "crd_schemas"


def gateway_resources() -> list[tuple[Path, dict]]:
    files = yaml.safe_load((GATEWAY / "kustomization.yaml").read_text())["resources"]
    return [(GATEWAY / f, doc) for f in files if f != "../" for doc in yaml.safe_load_all((GATEWAY / f).read_text())]


def strict(schema: object) -> object:
    """A CRD schema that refuses unknown fields, as the API server prunes them (kubernetes-validate's strict)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@pytest.mark.parametrize(("path", "resource"), gateway_resources(), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_every_gateway_manifest_is_valid_against_its_published_crd(path: Path, resource: dict) -> None:
    group, version = resource["apiVersion"].split("/")
    schema = json.loads((CRD_SCHEMAS / f"{group}_{version}_{resource['kind']}.json").read_text())
    jsonschema.Draft7Validator(strict(schema)).validate(resource)


def test_an_unknown_field_fails_the_crd_check() -> None:
    """The check above can fail: a misspelled field is refused, not ignored."""
    (_, policy), *_ = [(p, r) for p, r in gateway_resources() if r["kind"] == "BackendTrafficPolicy"]
    schema = json.loads((CRD_SCHEMAS / "gateway.envoyproxy.io_v1alpha1_BackendTrafficPolicy.json").read_text())
    wrong = json.loads(json.dumps(policy))
    wrong["spec"]["loadBalancer"]["consistentHash"]["header"] = {"nmae": "X-Session-ID"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(strict(schema)).validate(wrong)


def test_the_gateway_hashes_the_header_the_page_sends_and_routes_to_the_service() -> None:
    by_kind = {resource["kind"]: resource for _, resource in gateway_resources()}
    policy = by_kind["BackendTrafficPolicy"]["spec"]
    assert policy["loadBalancer"]["type"] == "ConsistentHash"
    (hashed,) = policy["loadBalancer"]["consistentHash"]["headers"]
    page = (REPO / "service" / "demo" / "demo.js").read_text()
    assert hashed["name"].lower() == SESSION_HEADER and f'"{SESSION_HEADER}": session' in page
    assert policy["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": by_kind["HTTPRoute"]["metadata"]["name"]}
    ]
    route = by_kind["HTTPRoute"]["spec"]
    assert route["parentRefs"] == [{"name": by_kind["Gateway"]["metadata"]["name"]}]
    service = {resource["kind"]: resource for _, resource in resources()}["Service"]
    assert route["rules"][0]["backendRefs"] == [
        {"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}
    ]


# -- Autoscaling on load ---------------------------------------------------------------------------
AUTOSCALING = MANIFESTS / "autoscaling"


def test_the_hpa_on_load_is_valid_and_reads_the_metrics_the_adapter_serves() -> None:
    overlay = yaml.safe_load((AUTOSCALING / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../gateway"]
    (patch,) = [yaml.safe_load((AUTOSCALING / p["path"]).read_text()) for p in overlay["patches"]]
    kubernetes_validate.validate(patch, KUBERNETES_VERSION, strict=True)
    base = {resource["kind"]: resource for _, resource in resources()}
    assert patch["metadata"]["name"] == base["HorizontalPodAutoscaler"]["metadata"]["name"]  # it patches the base's
    assert patch["spec"]["scaleTargetRef"] == base["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    kinds = [metric["type"] for metric in patch["spec"]["metrics"]]
    assert "Resource" in kinds and "Pods" in kinds  # load first, CPU kept as a second signal
    adapter = yaml.safe_load((AUTOSCALING / "prometheus-adapter-values.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    read = {metric["pods"]["metric"]["name"] for metric in patch["spec"]["metrics"] if metric["type"] == "Pods"}
    assert read == served
    scale_down = patch["spec"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 300 and scale_down["policies"][0]["value"] == 1
