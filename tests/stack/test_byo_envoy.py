"""Bring your own Envoy (docs/byo-envoy.md): the three examples agree with envoy/envoy.yaml.

- docs/examples/envoy-byo.yaml: validated by Envoy, and run for real in front
  of the extproc and the Bedrock emulator;
- docs/examples/istio-envoyfilter.yaml: its ext_proc filter is envoy.yaml's,
  and Envoy accepts it;
- docs/examples/envoy-gateway.yaml: Envoy Gateway's fields say the same
  processing modes, timeouts and headers (no Kubernetes cluster here to apply it).
"""

from __future__ import annotations

import copy
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
import yaml

from devstack import ENVOY_YAML, ROOT, Ports, Stack, _bin, free_port
from extproc.bedrock.endpoint import ROUTING_HEADER, Endpoint
from extproc.keys import mint_key
from tests.integration.conftest import Emulator, Keys, write_gateway_files

EXAMPLES = ROOT / "docs" / "examples"
BYO = EXAMPLES / "envoy-byo.yaml"
ISTIO = EXAMPLES / "istio-envoyfilter.yaml"
ENVOY_GATEWAY = EXAMPLES / "envoy-gateway.yaml"
DOC = ROOT / "docs" / "byo-envoy.md"

EXT_PROC = "envoy.filters.http.ext_proc"


def http_filters(bootstrap: dict[str, Any]) -> list[dict[str, Any]]:
    (listener,) = bootstrap["static_resources"]["listeners"]
    (hcm,) = listener["filter_chains"][0]["filters"]
    return hcm["typed_config"]["http_filters"]


def ext_proc_of(bootstrap: dict[str, Any]) -> dict[str, Any]:
    (found,) = [f["typed_config"] for f in http_filters(bootstrap) if f["name"] == EXT_PROC]
    return found


def without_cluster(config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    config["grpc_service"]["envoy_grpc"].pop("cluster_name")
    return config


def reference() -> dict[str, Any]:
    """The ext_proc filter of envoy/envoy.yaml: what every example must say."""
    return ext_proc_of(yaml.safe_load(ENVOY_YAML.read_text()))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def only(path: Path, kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in documents(path) if doc["kind"] == kind]
    return found


def envoy_validate(config: dict[str, Any] | Path, tmp_path: Path) -> None:
    if isinstance(config, dict):
        path = tmp_path / "bootstrap.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    else:
        path = config
    result = subprocess.run([_bin("envoy"), "--mode", "validate", "-c", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


# --- plain Envoy -------------------------------------------------------------------


def test_byo_bootstrap_is_valid(tmp_path: Path) -> None:
    envoy_validate(BYO, tmp_path)


def test_byo_ext_proc_filter_is_envoy_yamls() -> None:
    byo = yaml.safe_load(BYO.read_text())
    assert ext_proc_of(byo) == reference()
    names = [f["name"] for f in http_filters(byo)]
    assert names.index(EXT_PROC) < names.index("envoy.filters.http.dynamic_forward_proxy") < names.index(
        "envoy.filters.http.router"), "the extproc must see the request before it is forwarded"


def test_byo_routes_follow_the_extprocs_routing_header() -> None:
    """Both values the extproc sets route to a cluster and are removed before the request leaves."""
    byo = yaml.safe_load(BYO.read_text())
    (listener,) = byo["static_resources"]["listeners"]
    routes = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    clusters = {c["name"] for c in byo["static_resources"]["clusters"]}
    by_value = {}
    for route in routes:
        for header in route["match"].get("headers", []):
            assert header["name"] == ROUTING_HEADER
            by_value[header["string_match"]["exact"]] = route
    assert set(by_value) == {Endpoint.from_url("https://h").routing, Endpoint.from_url("http://h:1").routing}
    for route in by_value.values():
        assert route["route"]["cluster"] in clusters
        assert route["route"]["timeout"] == "0s", "streams last longer than any total timeout"
        assert ROUTING_HEADER in route["request_headers_to_remove"]
    assert "direct_response" in routes[-1], "a request the extproc did not route goes nowhere"
    assert listener["per_connection_buffer_limit_bytes"] >= 32 * 1024 * 1024


@pytest.fixture(scope="module")
def byo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int, Keys]]:
    """The extproc and the emulator (devstack), behind docs/examples/envoy-byo.yaml with only its ports changed."""
    workdir = tmp_path_factory.mktemp("byo")
    keys = Keys(alpha=mint_key(), haiku_only=mint_key())
    stack = Stack(workdir=workdir, ports=Ports.free(), env=write_gateway_files(workdir, keys))
    try:
        stack.start_emulator()
        stack.start_extproc()
        config = yaml.safe_load(BYO.read_text())
        listen = free_port()
        config["admin"]["address"]["socket_address"]["port_value"] = stack.ports.admin
        (listener,) = config["static_resources"]["listeners"]
        listener["address"]["socket_address"].update(address="127.0.0.1", port_value=listen)
        (extproc,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "extproc"]
        endpoint = extproc["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        endpoint["address"]["socket_address"]["port_value"] = stack.ports.extproc
        path = workdir / "envoy-byo.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        stack.start_envoy(path)
        # No /health route here: wait until Envoy's gRPC health check finds the extproc serving.
        deadline = time.monotonic() + 15
        while "extproc::127.0.0.1:%d::health_flags::healthy" % stack.ports.extproc not in httpx.get(
                f"http://127.0.0.1:{stack.ports.admin}/clusters").text:
            assert time.monotonic() < deadline, "Envoy never saw the extproc healthy"
            time.sleep(0.2)
        yield stack, listen, keys
    finally:
        stack.stop()


def test_byo_bootstrap_serves_the_gateway(byo: tuple[Stack, int, Keys]) -> None:
    stack, listen, keys = byo
    emulator = Emulator(stack.emulator_url)
    emulator.clear()
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{listen}", api_key=keys.alpha, max_retries=0)
    message = client.messages.create(model="claude-haiku-4-5", max_tokens=16,
                                      messages=[{"role": "user", "content": "Hello"}])
    assert message.content[0].text
    (seen,) = emulator.requests()
    assert seen["path"].startswith("/model/")
    # Streams switch to STREAMED (allow_mode_override) and arrive as Anthropic events.
    with client.messages.stream(model="haiku", max_tokens=16, messages=[{"role": "user", "content": "Hi"}]) as stream:
        assert "".join(stream.text_stream)
    # Fail closed on a bad key, in the client's shape, with nothing forwarded.
    response = httpx.post(f"http://127.0.0.1:{listen}/v1/messages", headers={"x-api-key": "gwk_wrong"},
                          json={"model": "haiku", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 401 and response.json()["type"] == "error"
    assert len(emulator.requests()) == 2
    # The request id comes back to the client.
    assert response.headers["x-request-id"]


# --- Istio ----------------------------------------------------------------------------


def istio_filter() -> dict[str, Any]:
    envoy_filter = only(ISTIO, "EnvoyFilter")
    (patch,) = [p for p in envoy_filter["spec"]["configPatches"] if p["applyTo"] == "HTTP_FILTER"]
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    assert patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"
    value = patch["patch"]["value"]
    assert value["name"] == EXT_PROC
    return value


def test_istio_ext_proc_filter_is_envoy_yamls() -> None:
    config = istio_filter()["typed_config"]
    assert without_cluster(config) == without_cluster(reference())
    service = only(ISTIO, "Service")
    cluster = config["grpc_service"]["envoy_grpc"]["cluster_name"]
    port = service["spec"]["ports"][0]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert cluster == f"outbound|{port['port']}||{name}.{namespace}.svc.cluster.local"
    assert port["appProtocol"] == "grpc", "Istio must speak HTTP/2 to the extproc"


def test_envoy_accepts_the_istio_filter(tmp_path: Path) -> None:
    """The EnvoyFilter's filter in place of the BYO bootstrap's, with a cluster of Istio's name."""
    value = istio_filter()
    config = yaml.safe_load(BYO.read_text())
    filters = http_filters(config)
    filters[[f["name"] for f in filters].index(EXT_PROC)] = value
    (extproc,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "extproc"]
    extproc["name"] = extproc["load_assignment"]["cluster_name"] = value["typed_config"]["grpc_service"][
        "envoy_grpc"]["cluster_name"]
    envoy_validate(config, tmp_path)


def test_istio_routes_the_bedrock_host_by_the_routing_header() -> None:
    services = {doc["metadata"]["name"]: doc for doc in documents(ISTIO) if doc["kind"] == "VirtualService"}
    bedrock = services["bedrock-runtime"]["spec"]
    first = bedrock["http"][0]
    assert first["match"][0]["headers"][ROUTING_HEADER] == {"exact": "tls"}
    assert first["headers"]["request"]["remove"] == [ROUTING_HEADER]
    assert first["timeout"] == "0s"
    host = bedrock["hosts"][0]
    assert first["route"][0]["destination"]["host"] == host
    gateway = only(ISTIO, "Gateway")
    assert any(h.endswith("/" + host) for server in gateway["spec"]["servers"] for h in server["hosts"]), (
        "requests are routed by the Bedrock host once the extproc set it: the gateway must serve that host")
    rule = only(ISTIO, "DestinationRule")
    assert rule["spec"]["host"] == host
    assert rule["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["mode"] == "SIMPLE"
    patches = only(ISTIO, "EnvoyFilter")["spec"]["configPatches"]
    limits = [p["patch"]["value"]["per_connection_buffer_limit_bytes"] for p in patches
              if p["applyTo"] != "HTTP_FILTER"]
    assert limits and all(limit >= 32 * 1024 * 1024 for limit in limits)


# --- Envoy Gateway ------------------------------------------------------------------------


def test_envoy_gateway_policy_says_what_envoy_yaml_says() -> None:
    ref = reference()
    policy = only(ENVOY_GATEWAY, "EnvoyExtensionPolicy")
    (ext_proc,) = policy["spec"]["extProc"]
    mode = ext_proc["processingMode"]
    # Envoy Gateway sends request and response headers when `request`/`response` are present.
    assert ref["processing_mode"]["request_header_mode"] == ref["processing_mode"]["response_header_mode"] == "SEND"
    assert mode["request"]["body"].upper() == ref["processing_mode"]["request_body_mode"]
    assert mode["response"]["body"].upper() == ref["processing_mode"]["response_body_mode"]
    assert mode["allowModeOverride"] is ref["allow_mode_override"] is True
    assert ext_proc["failOpen"] is ref["failure_mode_allow"] is False
    # One timeout for every phase, large bodies included (no max_message_timeout in Envoy Gateway).
    assert seconds(ref["message_timeout"]) <= seconds(ext_proc["messageTimeout"]) <= seconds(ref["max_message_timeout"])
    service = only(ENVOY_GATEWAY, "Service")
    port = service["spec"]["ports"][0]["port"]
    assert ext_proc["backendRefs"] == [{"name": service["metadata"]["name"], "port": port}]
    route = only(ENVOY_GATEWAY, "HTTPRoute")
    assert policy["spec"]["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                            "name": route["metadata"]["name"]}]


def test_envoy_gateway_route_follows_the_routing_header_and_fixes_the_host() -> None:
    route = only(ENVOY_GATEWAY, "HTTPRoute")["spec"]
    bedrock, fallback = route["rules"]
    assert bedrock["matches"][0]["headers"] == [{"type": "Exact", "name": ROUTING_HEADER, "value": "tls"}]
    filters = {f["type"]: f for f in bedrock["filters"]}
    host = filters["URLRewrite"]["urlRewrite"]["hostname"]
    assert filters["RequestHeaderModifier"]["requestHeaderModifier"]["remove"] == [ROUTING_HEADER]
    assert bedrock["timeouts"]["request"] == "0s"
    backend = only(ENVOY_GATEWAY, "Backend")["spec"]
    assert backend["endpoints"][0]["fqdn"] == {"hostname": host, "port": 443}
    assert backend["tls"]["sni"] == host and backend["tls"]["wellKnownCACertificates"] == "System"
    assert "backendRefs" not in fallback
    for kind in ("ClientTrafficPolicy", "BackendTrafficPolicy"):
        assert only(ENVOY_GATEWAY, kind)["spec"]["connection"]["bufferLimit"] == "32Mi"


def test_the_doc_names_every_example_and_setting() -> None:
    text = DOC.read_text()
    for example in (BYO, ISTIO, ENVOY_GATEWAY):
        assert example.relative_to(ROOT).as_posix() in text
    for setting in ("request_body_mode", "response_body_mode", "allow_mode_override", "message_timeout",
                    "max_message_timeout", "mutation_rules", "failure_mode_allow", "clear_route_cache",
                    ROUTING_HEADER, "max_receive_message_length", "per_connection_buffer_limit_bytes",
                    "x-request-id", "receiving_namespaces"):
        assert setting in text, setting
