"""A bento of several BentoML services, one Deployment and one Service per
service (kubento.builders.graph), and when the plan lets them go
(kubento.controller.plan_children)."""

from __future__ import annotations

import dataclasses
import re

from hypothesis import given, strategies as st

from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders import graph
from kubento.builders.bento import ServedBento
from kubento.builders.deployment import deployment, revision
from kubento.builders.meta import LABEL_MODEL, Owner
from kubento.controller.observation import Inputs
from kubento.controller.plan_children import _Children, plan_other_services, plan_services_gone
from kubento.controller.world import Revisions, World
from kubento.rollout.revisions import Decision
from tests.specs import VALID_SPEC, checks
from tests.unit.test_bento_services import TWO_SERVICES, served
from kubento.runtime import services

OWNER = Owner("iris", "ns", "uid-1")
SPEC = ModelDeploymentSpec.model_validate(VALID_SPEC)
TWO = ServedBento("rt:1", archive_uri="s3://m/a.bento", services=served(services.read(TWO_SERVICES)))
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_one_service_an_image_or_a_list_status_cut_short_is_served_in_one_pod_as_before() -> None:
    one = ServedBento("rt:1", archive_uri="s3://m/a.bento",
                      services=served({"entry": "A", "services": [{"name": "A", "resources": {"cpu": "1"}}]}))
    image = ServedBento("img:1", services=TWO.services)
    cut = dataclasses.replace(TWO, services=served({**services.read(TWO_SERVICES), "more": 3}))
    for bento in (one, image, cut, ServedBento("rt:1", archive_uri="s3://m/a.bento")):
        same, none = graph.split(SPEC, OWNER, bento)
        assert (same, none) == (bento, None)
        assert revision(SPEC, same) == revision(SPEC, bento)


def test_the_revision_runs_the_entry_wired_to_its_dependency_which_runs_alone_guarded() -> None:
    entry, g = graph.split(SPEC, OWNER, TWO)
    assert g is not None and [s.name for s in g.dependencies] == ["Model"]
    rev = revision(SPEC, entry)
    (server,) = deployment(SPEC, OWNER, entry, 2)["spec"]["template"]["spec"]["containers"]
    name = graph.dependency_name(OWNER, g.key, "Model")
    env = env_of(server)
    assert env["BENTOML_SERVE_SERVICE_NAME"] == "Entry"
    assert env["BENTOML_SERVE_DEPENDS"] == f"Model=http://{name}.ns:80"
    assert env["BENTO_CLOUD_API_KEY"] == g.token and "KUBENTO_GRAPH_TOKEN" not in env
    assert server["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"}}  # the entry's own, not the sum

    dep, svc = graph.dependencies(SPEC, OWNER, g, rev, 2)
    assert (dep["kind"], svc["kind"], dep["metadata"]["name"], svc["metadata"]["name"]) == (
        "Deployment", "Service", name, name)
    pod = dep["spec"]["template"]
    (model,) = pod["spec"]["containers"]
    own = env_of(model)
    assert (own["BENTOML_SERVE_SERVICE_NAME"], own["KUBENTO_GRAPH_TOKEN"], own["BENTO_CLOUD_API_KEY"]) == (
        "Model", g.token, g.token)
    assert "BENTOML_SERVE_DEPENDS" not in own
    assert model["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": "1"}}
    assert pod["spec"]["terminationGracePeriodSeconds"] == 5 + 120 + 5  # its own timeout
    assert dep["spec"]["replicas"] == 2
    # the model's Service selects the model label: a dependency's pods never carry it
    assert LABEL_MODEL not in pod["metadata"]["labels"] and LABEL_MODEL in dep["metadata"]["labels"]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"] == {
        graph.LABEL_SERVICE_OF: "iris", graph.LABEL_GRAPH_REVISION: rev, graph.LABEL_BENTO_SERVICE: "Model"}
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == "uid-1" for o in (dep, svc))


def test_checks_and_monitoring_are_the_entrys() -> None:
    spec = ModelDeploymentSpec.model_validate(checks())
    entry, g = graph.split(spec, OWNER, dataclasses.replace(TWO, monitoring='{"sample": 1}'))
    assert g is not None
    assert "readinessGates" in deployment(spec, OWNER, entry, 1)["spec"]["template"]["spec"]
    dep, _ = graph.dependencies(spec, OWNER, g, revision(spec, entry), 1)
    assert "readinessGates" not in dep["spec"]["template"]["spec"]
    assert "KUBENTO_MONITORING" not in env_of(dep["spec"]["template"]["spec"]["containers"][0])


def test_another_model_or_revision_has_another_token_and_other_names() -> None:
    _, a = graph.split(SPEC, OWNER, TWO)
    _, b = graph.split(SPEC, Owner("iris", "ns", "uid-2"), TWO)
    _, c = graph.split(ModelDeploymentSpec.model_validate({**VALID_SPEC, "port": 3001}), OWNER, TWO)
    assert a and b and c and len({a.token, b.token, c.token}) == 3
    assert graph.dependency_name(OWNER, a.key, "Model") != graph.dependency_name(OWNER, c.key, "Model")


@given(model=st.from_regex(r"[a-z]([-a-z0-9]{0,50}[a-z0-9])?", fullmatch=True),
       service=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,62}", fullmatch=True))
def test_a_dependencys_names_are_always_dns_labels(model: str, service: str) -> None:
    name = graph.dependency_name(Owner(model, "ns", "u"), "0123456789", service)
    assert len(name) <= 63 and DNS_1035.fullmatch(name), name
    assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", graph.label_value(service))


def test_a_revisions_services_go_once_it_has_neither_deployment_nor_pods() -> None:
    _, g = graph.split(SPEC, OWNER, TWO)
    assert g is not None
    children = {r: graph.dependencies(SPEC, OWNER, g, r, 1) for r in ("old", "serving", "draining")}
    world = World({"metadata": {"name": "iris", "namespace": "ns", "uid": "uid-1"}},
                  {"Deployment": [m for r in children for m in children[r] if m["kind"] == "Deployment"],
                   "Service": [m for r in children for m in children[r] if m["kind"] == "Service"]})
    out = _Children(world, Inputs(now=0))
    plan_services_gone(out, {"serving", "draining"}, set())
    assert sorted((d.kind, d.name) for d in out.deletes) == sorted(
        (m["kind"], m["metadata"]["name"]) for m in children["old"])


def test_spec_services_sets_a_services_replicas_resources_or_its_own_autoscaler() -> None:
    spec = ModelDeploymentSpec.model_validate({**VALID_SPEC, "services": {
        "Model": {"autoscaling": {"maxReplicas": 4, "target": 60}, "resources": {"requests": {"cpu": "1"}}}}})
    entry, g = graph.split(spec, OWNER, TWO)
    assert g is not None
    dep, svc, hpa = graph.dependencies(spec, OWNER, g, revision(spec, entry), 2)
    assert "replicas" not in dep["spec"]  # its HPA's
    assert dep["spec"]["template"]["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "1"}}
    assert hpa["kind"] == "HorizontalPodAutoscaler" and hpa["metadata"]["name"] == dep["metadata"]["name"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": dep["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert hpa["spec"]["metrics"][0]["resource"] == {"name": "cpu", "target": {"type": "Utilization",
                                                                               "averageUtilization": 60}}
    assert hpa["metadata"]["labels"][graph.LABEL_GRAPH_REVISION] == revision(spec, entry)
    fixed = ModelDeploymentSpec.model_validate({**VALID_SPEC, "services": {"Model": {"replicas": 3}}})
    entry, g = graph.split(fixed, OWNER, TWO)
    assert g is not None
    dep, _ = graph.dependencies(fixed, OWNER, g, revision(fixed, entry), 1)
    assert dep["spec"]["replicas"] == 3
    assert graph.settings_problems(fixed, g) == []


def test_spec_services_that_name_no_other_service_are_said() -> None:
    spec = ModelDeploymentSpec.model_validate({**VALID_SPEC, "services": {
        "Entry": {"replicas": 2}, "Modle": {"replicas": 2}}})
    _, g = graph.split(spec, OWNER, TWO)
    assert graph.settings_problems(spec, g) == [
        "spec.services.Entry: Entry is the entry service; spec.replicas, spec.resources and spec.autoscaling size it",
        "spec.services.Modle: the bento has no service Modle (its other services: Model)"]
    (one,) = graph.settings_problems(spec, None)
    assert "served in one pod" in one


def test_other_revisions_services_follow_their_entry_and_keep_nothing_once_drained() -> None:
    _, g = graph.split(SPEC, OWNER, TWO)
    assert g is not None

    def live(r: str, replicas: int) -> dict:
        dep = graph.dependencies(SPEC, OWNER, g, r, replicas)[0]
        return {**dep, "metadata": {**dep["metadata"], "name": f"dep-{r}"}}

    world = World({"metadata": {"name": "iris", "namespace": "ns", "uid": "uid-1"}},
                  {"Deployment": [live("spec", 1), live("drained", 2), live("draining", 2), live("stable", 1)]})
    out = _Children(world, Inputs(now=0))
    decision = Decision(replicas={"spec": 1, "stable": 3}, delete=(), selects=None, stable="stable", rollout=None,
                        failed=None, history=[])
    revisions = Revisions({}, {"draining": [{"metadata": {"name": "p"}}]})
    plan_other_services(out, "spec", decision, revisions)
    assert sorted((s.name, s.replicas) for s in out.scales) == [("dep-drained", 0), ("dep-stable", 3)]


def test_a_services_own_resources_make_a_new_revision_of_the_graph_its_replicas_do_not() -> None:
    def entry_revision(services: dict) -> str:
        spec = ModelDeploymentSpec.model_validate({**VALID_SPEC, "services": services} if services else VALID_SPEC)
        return revision(spec, graph.split(spec, OWNER, TWO)[0])

    plain = entry_revision({})
    assert entry_revision({"Model": {"replicas": 3}}) == plain
    assert entry_revision({"Model": {"autoscaling": {"maxReplicas": 3}}}) == plain
    assert entry_revision({"Model": {"resources": {"limits": {"memory": "1Gi"}}}}) != plain
