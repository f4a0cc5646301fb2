"""Gateway API data planes on the local cluster, before kubento drives them
(issue #25): two versions of the iris model (plain Deployments and Services,
MODEL_VERSION 1 and 2, told apart by the X-Model-Version header) behind an
HTTPRoute written here, through Envoy Gateway and through Traefik
(e2e/gateway/dataplane; fail, never skip, when one cannot be built or started).

What each data plane does with a route's weights (per request, for new
connections and for one keep-alive connection alike), a header match, and the
standard RequestMirror filter: Envoy Gateway mirrors the asked share (counted
on the mirror's own /metrics); Traefik accepts the route and answers 500, which
kubento will have to detect. Shares are printed with ``-s``.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from e2e import gateway, traffic
from e2e.conftest import NAMESPACE
from e2e.gateway import DataPlane, backend, http_route, route_conditions, wait_serving
from e2e.support import IRIS_ROWS, http_get, tally
from tests.helpers import wait_for

REQUESTS = 1000  # per measured share (weights: both data planes split by weighted round robin: exact)
# Mirroring samples each request at random: at 50 %, 4,000 requests put ±3 points at 3.8 standard
# deviations (1,000 would fail one run in 17).
MIRROR_REQUESTS = 4000
TOLERANCE = 3.0
PORT = 3000
CANDIDATE_HEADER = "x-kubento-revision"
BODY = json.dumps({"features": IRIS_ROWS[:1]}).encode()


def deployment(name: str, version: str, image: str) -> dict:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1034, "runAsGroup": 1034,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "bento", "image": image, "imagePullPolicy": "IfNotPresent",
                        "env": [{"name": "MODEL_VERSION", "value": version}],
                        "ports": [{"name": "http", "containerPort": PORT}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1,
                                           "timeoutSeconds": 3},
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        "resources": {"requests": {"cpu": "50m", "memory": "200Mi"}},
                    }],
                },
            },
        },
    }


def service(name: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"selector": {"app.kubernetes.io/name": name},
                 "ports": [{"name": "http", "port": PORT, "targetPort": "http"}]},
    }


@pytest.fixture(scope="module")
def backends(cluster, images):
    """Two plain iris Deployments + Services in the e2e namespace: gw-v1
    (MODEL_VERSION 1) and gw-v2 (2). {"v1": name, "v2": name, "v2-pod": IP}."""
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    suffix = uuid.uuid4().hex[:4]
    names = {"v1": f"gw-v1-{suffix}", "v2": f"gw-v2-{suffix}"}
    for version, name in names.items():
        gateway.apply(cluster, deployment(name, version[1:], images["iris"]))
        gateway.apply(cluster, service(name))
    try:
        for name in names.values():
            cluster.kubectl("rollout", "status", "-n", NAMESPACE, f"deployment/{name}", "--timeout=180s")
        pods = cluster.get("pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/name={names['v2']}")["items"]
        yield {**names, "v2-pod": pods[0]["status"]["podIP"]}
    finally:
        for name in names.values():
            cluster.kubectl("delete", "deployment,service", name, "-n", NAMESPACE, "--ignore-not-found",
                            "--wait=false", check=False)


@pytest.fixture(params=["envoy-gateway", "traefik"])
def plane(request) -> DataPlane:
    """Each test below runs on both data planes (each started once per session)."""
    return request.getfixturevalue({"envoy-gateway": "envoy_gateway", "traefik": "traefik_gateway"}[request.param])


class Route:
    """An HTTPRoute of one test on one data plane, for its own hostname;
    deleted afterwards."""

    def __init__(self, cluster, plane: DataPlane, rules: list[dict]):
        self.cluster, self.plane = cluster, plane
        self.name = f"gw-{uuid.uuid4().hex[:6]}"
        self.host = f"{self.name}.kubento.test"
        self.url = f"{plane.url}/classify"
        gateway.apply(cluster, http_route(self.name, NAMESPACE, plane, self.host, rules))

    def accepted(self) -> dict:
        return wait_for(f"HTTPRoute {self.name} Accepted by {self.plane.name}",
                        lambda: (c := route_conditions(self.cluster, self.name, NAMESPACE)).get("Accepted") and c,
                        timeout=60, interval=0.3)

    def tally(self, requests: int, keep_alive: bool = False, headers: dict | None = None) -> traffic.Tally:
        return tally(self.cluster, self.url, requests, keep_alive=keep_alive, headers={"host": self.host, **(headers or {})})

    def delete(self) -> None:
        self.cluster.kubectl("delete", "httproute", self.name, "-n", NAMESPACE, "--ignore-not-found", check=False)


@pytest.fixture
def route(cluster):
    made: list[Route] = []

    def make(plane: DataPlane, rules: list[dict]) -> Route:
        made.append(Route(cluster, plane, rules))
        return made[-1]

    yield make
    for r in made:
        r.delete()


def report(plane: DataPlane, what: str, result: traffic.Tally | str) -> None:
    print(f"\n[gateway] {plane.name}: {what}: {result}")


@pytest.mark.parametrize("keep_alive", [False, True], ids=["new-connections", "keep-alive"])
def test_weights_split_each_request(cluster, backends, plane, route, keep_alive):
    r = route(plane, [{"backendRefs": [backend(backends["v1"], PORT, 90), backend(backends["v2"], PORT, 10)]}])
    assert r.accepted()["Accepted"]["status"] == "True"
    wait_serving(r.url, r.host, body=BODY, cluster=r.cluster)
    got = r.tally(REQUESTS, keep_alive=keep_alive)
    report(plane, f"weights 90/10, {'one keep-alive connection' if keep_alive else 'new connections'}", got)
    assert not got.failures, got
    assert set(got.versions) == {"1", "2"}, got
    assert abs(got.share("2") - 10) <= TOLERANCE, got
    if keep_alive:
        assert got.connections == 1, got  # every request on one connection, split all the same


def test_a_header_match_sends_every_request_to_the_candidate(cluster, backends, plane, route):
    r = route(plane, [
        {"matches": [{"headers": [{"name": CANDIDATE_HEADER, "value": "candidate"}]}],
         "backendRefs": [backend(backends["v2"], PORT)]},
        {"backendRefs": [backend(backends["v1"], PORT, 90), backend(backends["v2"], PORT, 10)]},
    ])
    assert r.accepted()["Accepted"]["status"] == "True"
    wait_serving(r.url, r.host, body=BODY, cluster=r.cluster)
    for keep_alive in (False, True):
        got = r.tally(200, keep_alive=keep_alive, headers={CANDIDATE_HEADER: "candidate"})
        report(plane, f"header {CANDIDATE_HEADER}: candidate, {'keep-alive' if keep_alive else 'new connections'}", got)
        assert got.versions == {"2": 200} and not got.failures, got


def classify_requests(cluster, pod_ip: str) -> float:
    return traffic.counter(http_get(cluster, f"http://{pod_ip}:{PORT}/metrics"), "bentoml_service_request_total",
                           endpoint="/classify")


def test_request_mirror(cluster, backends, plane, route):
    """v1 answers every request; RequestMirror percent 50 copies requests to v2,
    whose own /metrics count them. Envoy Gateway mirrors the asked share;
    Traefik accepts the route (status Accepted) and then answers 500."""
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": backend(backends["v2"], PORT), "percent": 50}}
    before = classify_requests(cluster, backends["v2-pod"])
    r = route(plane, [{"filters": [mirror], "backendRefs": [backend(backends["v1"], PORT)]}])
    conditions = r.accepted()
    print(f"\n[gateway] {plane.name}: RequestMirror route status: "
          + ", ".join(f"{t}={c['status']} ({c.get('reason')})" for t, c in sorted(conditions.items())))
    assert conditions["Accepted"]["status"] == "True"  # both say so
    if not plane.mirrors:
        # Traefik: Accepted and ResolvedRefs, then every request answers 500
        # (it mirrors only through its own TraefikService kind).
        status = wait_serving(r.url, r.host, body=BODY, ok=lambda s: s != 404, cluster=r.cluster)
        got = r.tally(100)
        report(plane, "RequestMirror 50 %", got)
        assert status == 500 and got.failures == {"HTTP 500": 100}, (status, got)
        return
    wait_serving(r.url, r.host, body=BODY, cluster=r.cluster)
    start = classify_requests(cluster, backends["v2-pod"])
    got = r.tally(MIRROR_REQUESTS)
    # Mirrored requests are sent beside the answered ones, without waiting: let them land.
    mirrored, settle = None, time.monotonic() + 10
    while time.monotonic() < settle:
        now = classify_requests(cluster, backends["v2-pod"]) - start
        if now == mirrored:
            break
        mirrored = now
        time.sleep(1)
    share = 100.0 * mirrored / MIRROR_REQUESTS
    report(plane, "RequestMirror 50 %", f"{got}; mirrored to v2: {mirrored:.0f} ({share:.1f} %); "
                                        f"v2 had {start - before:.0f} before the measure (the route's warm-up)")
    assert got.versions == {"1": MIRROR_REQUESTS} and not got.failures, got
    assert abs(share - 50) <= TOLERANCE, share
