"""Gateway mode's passes (spec.traffic.gateway) over the toy cluster of
test_plan, with a toy Gateway controller that answers for the route one pass
after each change (as Envoy Gateway writes the route's status once it has
programmed it): the HTTPRoute and the revision Services kubento asks for,
the route's weights through a canary (and the pods that follow it), the
conditions a route's status and a missing Gateway give, a shadow step, and
going back to replicas mode. Every status written is checked against the
CRD's schema (Toy.step)."""

from __future__ import annotations

import copy

import pytest

from kubento.api.traffic import MirrorCheck
from kubento.controller import kinds
from kubento.controller.observation import Inputs
from tests.specs import VALID_SPEC
from tests.unit.test_plan import Toy, settle, stored_condition

GATEWAY = {"parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "http"}],
           "hostnames": ["iris.example.com"], "requestTimeout": "30s"}
LISTENING = {("infra", "public"): {"class": "eg", "listeners": [{"name": "http", "protocol": "HTTP", "port": 8080}],
                                   "addresses": ["203.0.113.7"]}}


class RoutedToy(Toy):
    """The toy cluster with a Gateway controller: it answers for each new
    version of the route one pass later (``answer``: the Accepted condition it
    writes; None: it never answers)."""

    def __init__(self, spec: dict, answer: dict | None = None, **kw) -> None:
        super().__init__(spec, **kw)
        self.answer = {"status": "True", "reason": "Accepted"} if answer is None else answer
        self.silent = False
        self.carried: list[dict] = []  # the main rule's weights the Gateway routed by, after each pass

    def world(self):
        w = super().world()
        w.children["HTTPRoute"] = [kinds.of("HTTPRoute").strip(copy.deepcopy(o))
                                   for (k, _), o in sorted(self.children.items()) if k == "HTTPRoute"]
        return w

    def tick(self) -> None:
        super().tick()
        for (kind, _), route in self.children.items():
            if kind != "HTTPRoute" or self.silent:
                continue
            gen = route["metadata"]["generation"]
            route["status"] = {"parents": [{
                "parentRef": ref, "controllerName": "toy.example/gateway",
                "conditions": [{"type": "Accepted", "observedGeneration": gen, "message": "", **self.answer},
                               {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs",
                                "observedGeneration": gen}]} for ref in route["spec"]["parentRefs"]]}
            main = [r for r in route["spec"]["rules"] if not any(m.get("headers") for m in r["matches"])][0]
            self.carried.append({b["name"]: b["weight"] for b in main["backendRefs"]})

    def route(self) -> dict:
        return self.children[("HTTPRoute", "iris")]

    def replicas(self) -> dict[str, int]:
        return {n.removeprefix("iris-"): o["spec"]["replicas"] for (k, n), o in self.children.items() if k == "Deployment"}


def inputs(toy: Toy, **kw) -> Inputs:
    return Inputs(now=toy.now, gateways=kw.pop("gateways", LISTENING), **kw)


def routed(spec: dict, **kw) -> RoutedToy:
    return RoutedToy({**spec, "traffic": {"gateway": GATEWAY}}, **kw)


def test_a_model_in_gateway_mode_gets_its_route_and_a_service_per_revision():
    toy = routed({**VALID_SPEC, "replicas": 2})
    first = toy.step(inputs(toy))
    made = [(a.manifest["kind"], a.manifest["metadata"]["name"], a.read_first) for a in first.applies]
    rev = first.applies[0].manifest["metadata"]["labels"]["serving.kubento.io/revision"]
    assert made == [("Deployment", f"iris-{rev}", True), ("Service", "iris", False),
                    ("Service", f"iris-{rev}", True), ("HTTPRoute", "iris", True)]
    route = toy.route()
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public",
                                            "namespace": "infra", "sectionName": "http"}]
    assert route["spec"]["hostnames"] == ["iris.example.com"]
    assert route["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    headers = [[(h["name"], h["value"]) for h in r["matches"][0].get("headers", [])] for r in route["spec"]["rules"]]
    assert headers == [[], [("x-kubento-revision", "stable")], [("x-kubento-revision", rev)]]
    main = route["spec"]["rules"][0]
    assert main["backendRefs"] == [{"group": "", "kind": "Service", "name": f"iris-{rev}", "port": 80, "weight": 100}]
    assert main["timeouts"] == {"request": "30s"} and "filters" not in main
    assert main["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    svc = toy.children[("Service", f"iris-{rev}")]
    assert svc["spec"]["selector"] == {"serving.kubento.io/model-deployment": "iris", "serving.kubento.io/revision": rev}
    status = toy.model["status"]
    assert status["traffic"]["mode"] == "gateway" and stored_condition(first, "RouteAccepted")["status"] == "Unknown"
    last = settle(toy, inputs=inputs(toy))
    status = toy.model["status"]
    accepted = next(c for c in status["conditions"] if c["type"] == "RouteAccepted")
    assert (accepted["status"], accepted["reason"]) == ("True", "Accepted")
    assert status["url"] == "http://iris.example.com:8080/"
    assert status["traffic"]["parents"] == [{"gateway": "infra/public", "sectionName": "http", "accepted": "True",
                                             "resolvedRefs": "True", "reason": "Accepted", "message": ""}]
    assert status["traffic"]["backends"] == [{"revision": rev, "weight": 100}] and status["phase"] == "Ready"
    assert (last.applies, last.status, last.requeue_after) == ([], None, None)  # settled: nothing, no timer


def test_replicas_mode_says_so_and_has_no_route():
    toy = Toy(VALID_SPEC)
    settle(toy)
    assert toy.model["status"]["traffic"] == {"mode": "replicas"}
    assert not [k for k in toy.children if k[0] == "HTTPRoute"]
    assert not any(c["type"] == "RouteAccepted" for c in toy.model["status"]["conditions"])


def test_a_path_prefix_is_rewritten_away_and_the_url_has_it():
    toy = RoutedToy({**VALID_SPEC, "traffic": {"gateway": {**GATEWAY, "pathPrefix": "/models/iris"}}})
    settle(toy, inputs=inputs(toy))
    main = toy.route()["spec"]["rules"][0]
    assert main["matches"][0]["path"] == {"type": "PathPrefix", "value": "/models/iris"}
    assert main["filters"] == [{"type": "URLRewrite", "urlRewrite": {"path": {
        "type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}]
    assert toy.model["status"]["url"] == "http://iris.example.com:8080/models/iris"


def change(toy: Toy, spec: dict) -> None:
    toy.model["spec"] = spec
    toy.model["metadata"]["generation"] += 1


@pytest.mark.parametrize("replicas", [1, 2, 4])
def test_a_routed_canary_holds_each_weight_on_the_route_and_the_pods_follow_it(replicas):
    steps = [{"weight": 10, "pause": "20s"}, {"weight": 50, "pause": "20s"}]
    spec = {**VALID_SPEC, "replicas": replicas, "rollout": {"strategy": "Canary", "steps": steps},
            "traffic": {"gateway": GATEWAY}}
    toy = RoutedToy({**spec, "env": [{"name": "V", "value": "1"}]})
    settle(toy, inputs=inputs(toy))
    v1 = toy.model["status"]["stableRevision"]
    change(toy, {**spec, "env": [{"name": "V", "value": "2"}]})
    held = []
    for _ in range(80):
        actions = toy.step(inputs(toy))
        status = toy.model["status"]
        # Never a Deployment scaled to zero while the Gateway still routes to it.
        carried = toy.carried[-1] if toy.carried else {}
        for rev, n in toy.replicas().items():
            assert n > 0 or carried.get(f"iris-{rev}", 0) == 0, (rev, carried, toy.replicas())
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        if ready["reason"] == "CanaryPaused":
            v2 = status["rollout"]["revision"]
            held.append((status["rollout"]["requestedWeight"], status["canaryWeight"], carried.get(f"iris-{v2}"),
                         toy.replicas()[v2], toy.replicas()[v1]))
            toy.now += 21
        if actions.writes == 0 and not status.get("rollout"):
            break
    from kubento.rollout.traffic import pods_for
    assert sorted(set(held)) == [(w, w, w, pods_for(replicas, w), replicas) for w in (10, 50)]
    status = toy.model["status"]
    v2 = status["stableRevision"]
    assert v2 != v1 and toy.replicas() == {v1: 0, v2: replicas}
    assert status["traffic"]["backends"] == [{"revision": v2, "weight": 100}]
    assert ("Service", f"iris-{v1}") not in toy.children  # the old revision's Service went with its pods


def test_a_missing_gateway_is_a_clear_condition_and_event_not_a_stuck_model():
    toy = routed(VALID_SPEC)
    toy.silent = True  # nothing answers for a Gateway that does not exist
    first = toy.step(inputs(toy, gateways={("infra", "public"): None}))
    accepted = stored_condition(first, "RouteAccepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "GatewayNotFound")
    assert "Gateway infra/public does not exist" in accepted["message"]
    settle(toy, inputs=inputs(toy, gateways={("infra", "public"): None}))
    status = toy.model["status"]
    assert status["phase"] == "Degraded" and status["url"].startswith("http://iris.ns.svc")  # serving in the cluster
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "GatewayNotFound"


def test_a_gateway_that_does_not_allow_the_namespace_is_named_with_its_reason():
    toy = routed(VALID_SPEC, answer={"status": "False", "reason": "NotAllowedByListeners",
                                     "message": "no listener allows routes from namespace ns"})
    events = []
    for _ in range(10):
        actions = toy.step(inputs(toy))
        events += actions.events
    accepted = next(c for c in toy.model["status"]["conditions"] if c["type"] == "RouteAccepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "NotAllowedByListeners")
    assert "Gateway infra/public (listener http): NotAllowedByListeners: no listener allows" in accepted["message"]
    assert ("Warning", "NotAllowedByListeners") in [e[:2] for e in events]


def shadow_rollout() -> RoutedToy:
    """A model of 2 replicas serving v1, rolling v2 out with a shadow step (mirror 50 %) first."""
    steps = [{"weight": 0, "mirror": 50, "pause": "20s"}, {"weight": 50}]
    spec = {**VALID_SPEC, "replicas": 2, "rollout": {"strategy": "Canary", "steps": steps},
            "traffic": {"gateway": GATEWAY}}
    toy = RoutedToy({**spec, "env": [{"name": "V", "value": "1"}]})
    settle(toy, inputs=inputs(toy))
    change(toy, {**spec, "env": [{"name": "V", "value": "2"}]})
    return toy


def test_a_shadow_step_probes_first_and_rolls_back_where_the_gateway_cannot_mirror():
    toy = shadow_rollout()
    probe_rules = []
    for _ in range(10):
        toy.step(inputs(toy))
        rules = toy.route()["spec"]["rules"]
        probe_rules += [r for r in rules if any(h["name"] == "x-kubento-probe" for h in r["matches"][0].get("headers", []))]
        assert not rules[0].get("filters")  # never a mirror on real traffic before the probe
    assert probe_rules and probe_rules[0]["filters"][0]["requestMirror"]["percent"] == 100
    assert probe_rules[0]["filters"][1] == {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
        "set": [{"name": "x-kubento-probe", "value": "mirror"}]}}  # its answers tell it from the main rule's
    v2 = toy.model["status"]["rollout"]["revision"]
    refused = MirrorCheck(revision=v2, supported="False", message="Gateway infra/public answers HTTP 500 to a request "
                          "through a rule with the RequestMirror filter and HTTP 200 to the same request without it")
    toy.step(inputs(toy, mirror_check=refused))
    settle(toy, 30, inputs=inputs(toy))
    status = toy.model["status"]
    rolled = next(c for c in status["conditions"] if c["type"] == "RolledBack")
    assert (status["phase"], rolled["reason"]) == ("RolledBack", "MirrorNotSupported") and "HTTP 500" in rolled["message"]
    assert status["traffic"]["mirrorCheck"]["supported"] == "False"
    assert not [r for r in toy.route()["spec"]["rules"] if r.get("filters")]


def test_a_shadow_step_mirrors_once_the_probe_passed():
    toy = shadow_rollout()
    for _ in range(5):
        toy.step(inputs(toy))
    v2 = toy.model["status"]["rollout"]["revision"]
    ok = MirrorCheck(revision=v2, supported="True", message="Gateway infra/public answered HTTP 200")
    toy.step(inputs(toy, mirror_check=ok))
    for _ in range(4):
        toy.step(inputs(toy))
    main = toy.route()["spec"]["rules"][0]
    assert main["filters"] == [{"type": "RequestMirror", "requestMirror": {"backendRef": {
        "group": "", "kind": "Service", "name": f"iris-{v2}", "port": 80}, "percent": 50}}]
    assert [b["weight"] for b in main["backendRefs"]] == [100]
    status = toy.model["status"]
    assert status["traffic"]["mirror"] == 50 and status["rollout"]["stepReached"]
    assert status["canaryWeight"] == 0


def test_retries_where_the_cluster_has_the_field_and_a_note_where_not():
    spec = {**VALID_SPEC, "traffic": {"gateway": {**GATEWAY, "retry": {"attempts": 2, "backoff": "100ms",
                                                                       "codes": [502, 503]}}}}
    toy = RoutedToy(spec)
    settle(toy, inputs=inputs(toy, retry_served=False))
    assert "retry" not in toy.route()["spec"]["rules"][0]
    accepted = next(c for c in toy.model["status"]["conditions"] if c["type"] == "RouteAccepted")
    assert accepted["status"] == "True" and "no rules[].retry" in accepted["message"]
    toy = RoutedToy(spec)
    settle(toy, inputs=inputs(toy, retry_served=True))
    assert toy.route()["spec"]["rules"][0]["retry"] == {"attempts": 2, "backoff": "100ms", "codes": [502, 503]}


def test_without_the_gateway_api_the_model_is_served_as_in_replicas_mode_and_says_why():
    toy = routed(VALID_SPEC)
    settle(toy, inputs=inputs(toy, routes_served=False))
    status = toy.model["status"]
    assert status["traffic"] == {"mode": "replicas"} and not [k for k in toy.children if k[0] == "HTTPRoute"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "GatewayAPINotInstalled"


def test_leaving_gateway_mode_deletes_the_route_and_the_revision_services():
    toy = routed(VALID_SPEC)
    settle(toy, inputs=inputs(toy))
    change(toy, VALID_SPEC)
    actions = toy.step(inputs(toy))
    assert sorted((d.kind, d.name) for d in actions.deletes) == [
        ("HTTPRoute", "iris"), ("Service", f"iris-{toy.model['status']['stableRevision']}")]
    settle(toy, inputs=inputs(toy))
    assert toy.model["status"]["traffic"] == {"mode": "replicas"}


def test_someone_elses_service_named_like_a_revision_service_is_read_first():
    toy = routed(VALID_SPEC)
    first = toy.step(inputs(toy))
    [svc] = [a for a in first.applies if a.manifest["kind"] == "Service" and a.manifest["metadata"]["name"] != "iris"]
    assert svc.read_first  # the apply layer reads it first: ChildConflict if it is not ours


def test_the_route_read_back_gives_shares_mirror_and_whether_every_gateway_has_it():
    from kubento.api.v1alpha1 import ModelDeploymentSpec
    from kubento.builders.meta import Owner
    from kubento.controller import route as routing

    owner = Owner("iris", "ns", "uid-1")
    spec = ModelDeploymentSpec.model_validate({**VALID_SPEC, "traffic": {"gateway": {"parentRefs": [
        {"name": "a", "namespace": "infra"}, {"name": "b"}]}}})
    raw = {"metadata": {"name": "iris", "generation": 3, "ownerReferences": [{"uid": "uid-1", "controller": True}]},
           "spec": {"parentRefs": [], "rules": [
               {"matches": [{"headers": [{"name": "x-kubento-revision", "value": "candidate"}]}],
                "backendRefs": [{"name": "iris-bbbbbbbbbb"}]},
               {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "iris-bbbbbbbbbb"},
                                                                        "fraction": {"numerator": 1, "denominator": 4}}}],
                "backendRefs": [{"name": "iris-aaaaaaaaaa", "weight": 3}, {"name": "iris-bbbbbbbbbb", "weight": 1}]}]},
           "status": {"parents": [{"parentRef": {"name": "a", "namespace": "infra"}, "conditions": [
               {"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 3},
               {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "observedGeneration": 3}]}]}}
    route = kinds.of("HTTPRoute").strip(raw)
    # Gateway ns/b: not looked up yet, no answer: the route is not on every Gateway yet.
    v = routing.view(spec, owner, [route], {}, None, None)
    assert v.seen.weights == {"aaaaaaaaaa": 75, "bbbbbbbbbb": 25} and v.seen.mirror == ("bbbbbbbbbb", 25)
    assert not v.seen.acked and [p.status.reason for p in v.parents] == ["Accepted", "Pending"]
    assert routing.accepted_condition(v.parents).status == "Unknown"
    # ns/b does not exist: nothing to wait for.
    v = routing.view(spec, owner, [route], {("ns", "b"): None}, None, None)
    assert v.seen.acked and routing.accepted_condition(v.parents).reason == "GatewayNotFound"
    # A new version not answered yet by infra/a.
    raw["metadata"]["generation"] = 4
    v = routing.view(spec, owner, [kinds.of("HTTPRoute").strip(raw)], {("ns", "b"): None}, None, None)
    assert not v.seen.acked and v.parents[0].status.reason == "Pending"


def test_route_events_say_when_a_gateway_stops_and_starts_accepting():
    from kubento.api.v1alpha1 import Condition, ModelDeploymentStatus
    from kubento.controller.status import route_event

    def status(st, reason):
        return ModelDeploymentStatus(conditions=[Condition(type="RouteAccepted", status=st, reason=reason, message=reason)])
    assert route_event(status("True", "Accepted"), status("False", "GatewayNotFound"))[:2] == ("Warning", "GatewayNotFound")
    assert route_event(status("False", "GatewayNotFound"), status("True", "Accepted"))[:2] == ("Normal", "RouteAccepted")
    assert route_event(status("True", "Accepted"), status("True", "Accepted")) is None
    assert route_event(ModelDeploymentStatus(), status("Unknown", "Pending")) is None


def test_the_mirror_probe_tells_a_broken_filter_from_a_broken_model():
    from kubento.controller.routeprobe import Target, verdict
    from kubento.predictions.expect import Response

    t = Target("infra/public", "http://203.0.113.7:8080", "iris.example.com")
    assert verdict("v2", [(t, Response(200, header="mirror"), Response(200))]).supported == "True"
    # a 200 without the probe rule's mark came through the main rule (the probe rule not programmed yet)
    fell = verdict("v2", [(t, Response(200), Response(200))])
    assert fell.supported == "Unknown" and "without the probe rule's mark" in fell.message
    no = verdict("v2", [(t, Response(500), Response(200))])
    assert no.supported == "False" and "does not implement the filter" in no.message
    assert verdict("v2", [(t, Response(500), Response(503))]).supported == "Unknown"  # the model itself fails
    assert verdict("v2", [(t, Response(None, error="connection refused"), Response(None))]).supported == "Unknown"
