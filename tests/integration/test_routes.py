"""Gateway mode against a real API server with the Gateway API's CRDs
(standard channel, conftest): the HTTPRoute kubento writes passes the real
schema and CEL rules; the test plays the Gateway controller (it writes the
route's status, as Envoy Gateway does once it has programmed a version) and
the Deployment controller. No data plane here: e2e/test_gateway_routes.py
sends requests through Envoy Gateway and Traefik.

- the route's contents, the revision Services, RouteAccepted and status.url
  from the route's status and the Gateway's address;
- a Gateway that does not exist, or does not allow the namespace: a
  condition and a Warning event;
- a canary's weights on the route, and `kubento abort`: the route moves back
  first, the candidate's pods go only once the Gateway has the change;
- the mirror probe, through a stand-in data plane on this machine that
  answers 500 through a RequestMirror rule (as Traefik does): the shadow
  step fails with MirrorNotSupported before the filter touches the route's
  traffic.
"""

from __future__ import annotations

import datetime
import http.server
import threading
import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.helpers import condition, wait_for
from tests.integration.conftest import RESYNC_SECONDS, get_json, model_deployments
from tests.integration.test_reconcile import md_get, play_deployment_controller
from tests.integration.test_rollout import events, kubento
from tests.specs import VALID_SPEC

GROUP, VERSION = "gateway.networking.k8s.io", "v1"
REVISION = "serving.kubento.io/revision"


@pytest.fixture(scope="module")
def gateways(controlplane, admin):
    """A namespace of Gateways, which the operator (namespaced: it watches
    only the test namespace) reads by name; make(name, port, address)."""
    ns = f"gw-{uuid.uuid4().hex[:5]}"
    controlplane.kubectl("create", "namespace", ns)
    api = client.CustomObjectsApi(admin)

    def make(name: str, port: int = 8080, address: str = "203.0.113.7") -> str:
        api.create_namespaced_custom_object(GROUP, VERSION, ns, "gateways", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Gateway", "metadata": {"name": name},
            "spec": {"gatewayClassName": "test", "listeners": [{
                "name": "http", "protocol": "HTTP", "port": port, "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
        api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "gateways", name, {"status": {
            "addresses": [{"type": "IPAddress", "value": address}]}})
        return name

    yield ns, make
    controlplane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def route_of(admin, namespace, name):
    try:
        return client.CustomObjectsApi(admin).get_namespaced_custom_object(GROUP, VERSION, namespace, "httproutes", name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def answer(admin, namespace, name, status="True", reason="Accepted", message="route accepted"):
    """Play the Gateway controller: write the route's status for its current generation."""
    route = route_of(admin, namespace, name)
    if route is None:
        return None
    gen = route["metadata"]["generation"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    parents = [{"parentRef": ref, "controllerName": "kubento.test/gateway", "conditions": [
        {"type": "Accepted", "status": status, "reason": reason, "message": message, "observedGeneration": gen,
         "lastTransitionTime": now},
        {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "backends resolved",
         "observedGeneration": gen, "lastTransitionTime": now}]} for ref in route["spec"]["parentRefs"]]
    current = [p for p in (route.get("status") or {}).get("parents") or []]
    if [c.get("observedGeneration") for p in current for c in p["conditions"]] != [gen] * len(parents) * 2 or \
            current[0]["conditions"][0]["reason"] != reason:
        client.CustomObjectsApi(admin).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "httproutes", name, {"status": {"parents": parents}})
    return route


def main_rule(route):
    return [r for r in route["spec"]["rules"] if not any(m.get("headers") for m in r["matches"])][0]


def weights(route):
    return {b["name"]: b["weight"] for b in main_rule(route)["backendRefs"]}


def when(pred, get):
    """get(), if pred holds for it (for wait_for)."""
    obj = get()
    return obj if pred(obj) else None


def gateway_spec(gw_ns, gateway, **extra):
    return {"parentRefs": [{"name": gateway, "namespace": gw_ns, "sectionName": "http"}], **extra}


def test_the_route_its_services_and_its_conditions(controlplane, admin, namespace, md, gateways):
    gw_ns, make = gateways
    gw = make("public")
    name = md({**VALID_SPEC, "replicas": 2, "traffic": {"gateway": gateway_spec(
        gw_ns, gw, hostnames=["iris.example.com"], pathPrefix="/iris", requestTimeout="10s")}})
    def model():
        play_deployment_controller(admin, namespace, name)
        return md_get(controlplane, namespace, name)
    obj = wait_for("the model Ready, its route pending",
                   lambda: when(lambda o: condition(o, "Ready").get("status") == "True", model), timeout=30)
    rev = obj["status"]["currentRevision"]
    assert condition(obj, "RouteAccepted")["reason"] == "Pending"
    assert obj["status"]["url"] == f"http://{name}.{namespace}.svc.cluster.local"  # until a Gateway accepts it
    route = route_of(admin, namespace, name)
    assert route["metadata"]["ownerReferences"][0]["name"] == name
    assert route["spec"]["hostnames"] == ["iris.example.com"]
    assert route["spec"]["parentRefs"][0] == {"group": GROUP, "kind": "Gateway", "name": gw, "namespace": gw_ns,
                                              "sectionName": "http"}
    main = main_rule(route)
    assert main["backendRefs"] == [{"group": "", "kind": "Service", "name": f"{name}-{rev}", "port": 80, "weight": 100}]
    assert main["matches"][0]["path"] == {"type": "PathPrefix", "value": "/iris"}
    assert main["filters"][0]["urlRewrite"]["path"] == {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}
    assert main["timeouts"] == {"request": "10s"}
    svc = get_json(controlplane, "service", f"{name}-{rev}", "-n", namespace)
    assert svc["spec"]["selector"] == {"serving.kubento.io/model-deployment": name, REVISION: rev}

    def accepted():
        answer(admin, namespace, name)
        o = md_get(controlplane, namespace, name)
        return o if condition(o, "RouteAccepted").get("status") == "True" else None
    obj = wait_for("RouteAccepted", accepted, timeout=30)
    assert obj["status"]["url"] == "http://iris.example.com:8080/iris"
    assert obj["status"]["traffic"]["parents"] == [{"gateway": f"{gw_ns}/{gw}", "sectionName": "http",
                                                    "accepted": "True", "resolvedRefs": "True", "reason": "Accepted",
                                                    "message": "route accepted"}]
    # The Gateway stops allowing the namespace.
    answer(admin, namespace, name, "False", "NotAllowedByListeners", "namespace not allowed by listener http")
    obj = wait_for("RouteAccepted False", lambda: when(
        lambda o: condition(o, "RouteAccepted").get("reason") == "NotAllowedByListeners", model), timeout=30)
    assert obj["status"]["phase"] == "Degraded" and condition(obj, "Ready")["status"] == "True"
    assert "namespace not allowed by listener http" in condition(obj, "RouteAccepted")["message"]
    wait_for("a Warning event", lambda: [e for e in events(controlplane, namespace, name, "NotAllowedByListeners")
                                         if e["type"] == "Warning"], timeout=15)


def test_a_gateway_that_does_not_exist_is_a_condition_and_an_event(controlplane, admin, namespace, md, gateways):
    gw_ns, _ = gateways
    name = md({**VALID_SPEC, "traffic": {"gateway": gateway_spec(gw_ns, "nowhere")}})

    def model():
        play_deployment_controller(admin, namespace, name)
        return md_get(controlplane, namespace, name)
    obj = wait_for("GatewayNotFound", lambda: when(
        lambda o: condition(o, "RouteAccepted").get("reason") == "GatewayNotFound", model), timeout=30)
    assert f"Gateway {gw_ns}/nowhere does not exist" in condition(obj, "RouteAccepted")["message"]
    wait_for("a Warning event", lambda: events(controlplane, namespace, name, "GatewayNotFound"), timeout=15)
    obj = wait_for("serving through its Service", lambda: when(
        lambda o: condition(o, "Ready").get("status") == "True", model), timeout=30)
    assert obj["status"]["phase"] == "Degraded" and condition(obj, "Degraded")["reason"] == "GatewayNotFound"


def deployments(controlplane, namespace, name):
    return {d["metadata"]["labels"][REVISION]: d["spec"]["replicas"] for d in model_deployments(controlplane, namespace, name)}


def test_a_routed_canary_and_an_abort_move_the_route_before_the_pods(controlplane, admin, namespace, md, gateways):
    gw_ns, make = gateways
    gw = make("canary")
    spec = {**VALID_SPEC, "replicas": 2, "rollout": {"strategy": "Canary", "steps": [{"weight": 25, "pause": "1h"}]},
            "traffic": {"gateway": gateway_spec(gw_ns, gw)}}
    name = md(spec)

    def played(ack=True):
        play_deployment_controller(admin, namespace, name)
        if ack:
            answer(admin, namespace, name)
        return md_get(controlplane, namespace, name)
    v1 = wait_for("v1 stable", lambda: played()["status"].get("stableRevision"), timeout=30)
    md({**spec, "env": [{"name": "MODEL_VERSION", "value": "2"}]}, name=name)
    obj = wait_for("the 25% step held", lambda: when(lambda o: condition(o, "Ready").get("reason") == "CanaryPaused",
                                                       played), timeout=60)
    v2 = obj["status"]["rollout"]["revision"]
    assert obj["status"]["canaryWeight"] == 25 and obj["status"]["traffic"]["mode"] == "gateway"
    assert weights(route_of(admin, namespace, name)) == {f"{name}-{v1}": 75, f"{name}-{v2}": 25}
    assert deployments(controlplane, namespace, name) == {v1: 2, v2: 1}  # pods_for(2, 25) beside both stable pods
    candidate_rule = [r for r in route_of(admin, namespace, name)["spec"]["rules"]
                      if r["matches"][0].get("headers") == [{"type": "Exact", "name": "x-kubento-revision",
                                                              "value": "candidate"}]]
    assert [b["name"] for b in candidate_rule[0]["backendRefs"]] == [f"{name}-{v2}"]

    # Abort with a Gateway that does not answer: the route goes back, the candidate keeps its pod meanwhile.
    kubento(controlplane, "abort", name, "-n", namespace)
    wait_for("the route back on stable", lambda: (played(ack=False), weights(route_of(admin, namespace, name))
                                                  == {f"{name}-{v1}": 100})[1], timeout=30)
    time.sleep(3 * RESYNC_SECONDS)  # passes come and go (resync): the candidate's pod is held all the while
    played(ack=False)
    assert deployments(controlplane, namespace, name)[v2] == 1
    wait_for("the candidate gone once the Gateway has the route", lambda: when(
        lambda o: deployments(controlplane, namespace, name)[v2] == 0, played), timeout=30)
    wait_for("RolledBack", lambda: when(lambda o: o["status"].get("phase") == "RolledBack", played), timeout=30)
    assert get_json(controlplane, "service", f"{name}-{v2}", "-n", namespace) is None  # its Service went too


class StandIn(http.server.BaseHTTPRequestHandler):
    """A data plane that breaks the RequestMirror filter as Traefik does: 500
    for the probe rule's requests, 200 for the others."""

    seen: list[dict] = []

    def do_GET(self):  # noqa: N802
        StandIn.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        code = 500 if self.headers.get("x-kubento-probe") else 200
        self.send_response(code)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_gateway_that_breaks_mirroring_fails_the_shadow_step_before_it_touches_traffic(
        controlplane, admin, namespace, md, gateways):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gw_ns, make = gateways
        gw = make("traefik-like", port=server.server_address[1], address="127.0.0.1")
        spec = {**VALID_SPEC, "replicas": 1, "rollout": {"strategy": "Canary", "steps": [
            {"weight": 0, "mirror": 100, "pause": "1h"}, {"weight": 50}]},
            "traffic": {"gateway": gateway_spec(gw_ns, gw, hostnames=["shadow.example.com"])}}
        name = md(spec)

        def played():
            play_deployment_controller(admin, namespace, name)
            answer(admin, namespace, name)
            route = route_of(admin, namespace, name)
            assert route is None or not main_rule(route).get("filters"), route  # never a mirror on real traffic
            return md_get(controlplane, namespace, name)
        wait_for("v1 stable", lambda: played()["status"].get("stableRevision"), timeout=30)
        md({**spec, "env": [{"name": "MODEL_VERSION", "value": "2"}]}, name=name)
        obj = wait_for("the rollback", lambda: when(lambda o: o["status"].get("phase") == "RolledBack", played),
                       timeout=60)
        rolled = condition(obj, "RolledBack")
        assert rolled["reason"] == "MirrorNotSupported" and "does not implement the filter" in rolled["message"]
        check = obj["status"]["traffic"]["mirrorCheck"]
        assert check["supported"] == "False" and "HTTP 500" in check["message"] and "HTTP 200" in check["message"]
        probes = [r for r in StandIn.seen if r.get("x-kubento-probe")]
        assert probes and probes[0]["path"] == "/readyz" and probes[0]["host"] == "shadow.example.com"
        assert any(r.get("x-kubento-revision") == "stable" for r in StandIn.seen)  # the same request without it
    finally:
        server.shutdown()
