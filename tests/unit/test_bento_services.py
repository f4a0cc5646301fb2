"""The bento's services as a preparation reads them (kubento.runtime.services)
and what they become: the pods' defaults (kubento.builders.defaults) and
status.environment.services (kubento.controller.environment)."""

from __future__ import annotations

import json

from hypothesis import given, strategies as st

from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders import defaults
from kubento.builders.bento import ServedBento
from kubento.builders.deployment import pod_spec
from kubento.controller.environment import EnvState, recorded_result, services_of, with_environment
from kubento.runtime import services
from tests.specs import VALID_SPEC

# bento.yaml of a two-service bento as bentoml 1.4.39 builds it (the parts read here)
TWO_SERVICES = """
service: service:Entry
name: entry
version: htplyfhskg3ceax4
bentoml_version: 1.4.39
entry_service: Entry
services:
- name: Model
  service: ''
  models: []
  dependencies: []
  config:
    resources: {cpu: '2', memory: 1Gi, gpu: 1, gpu_type: nvidia-tesla-t4}
    traffic: {timeout: 120, concurrency: 8, max_concurrency: 32}
    workers: 2
- name: Entry
  service: ''
  models: []
  dependencies:
  - service: Model
  - url: http://elsewhere:3000
  config:
    resources: {cpu: 500m, memory: 512MiB}
envs:
- {name: A, value: '1', stage: all}
"""


def test_a_two_service_bento_is_read_entry_first_with_its_settings() -> None:
    assert services.read(TWO_SERVICES) == {"entry": "Entry", "services": [
        {"name": "Entry", "dependsOn": ["Model"], "resources": {"cpu": "500m", "memory": "512Mi"}},
        {"name": "Model", "resources": {"cpu": "2", "memory": "1Gi", "gpu": 1, "gpuType": "nvidia-tesla-t4"},
         "workers": "2", "timeout": 120, "concurrency": 8, "maxConcurrency": 32}]}


def test_a_bento_without_services_has_none() -> None:
    assert services.read("service: service:svc\nname: old\nversion: v1\n") is None
    assert services.read(": not yaml [") is None
    assert services.read("") is None


def test_many_services_are_counted_but_listed_within_the_budget() -> None:
    many = {"entry_service": "S0", "services": [
        {"name": f"S{i}", "dependencies": [{"service": f"S{i + 1}"}],
         "config": {"resources": {"cpu": "1", "memory": "1Gi", "gpu": 1, "gpu_type": "x" * 200},
                    "traffic": {"timeout": 60, "concurrency": 4, "max_concurrency": 8}, "workers": 4}}
        for i in range(40)]}
    out = services.services(many)
    assert out is not None and out["services"][0]["name"] == "S0"
    assert len(json.dumps(out["services"])) <= services.BUDGET
    assert len(out["services"]) + out["more"] == 40
    assert all(len(s["resources"]["gpuType"]) <= 63 for s in out["services"])


def test_the_termination_message_keeps_its_json_whole() -> None:
    summary = services.services({"services": [{"name": f"Service{i}", "config": {"resources": {"cpu": "1"}}}
                                              for i in range(16)]})
    message = {"environment": {"hash": "h", "uri": "s3://b/" + "k" * 1500, "services": summary}}
    services.fit(message, message["environment"], 2000)
    assert len(json.dumps(message)) <= 2000 and summary["more"] > 0


junk = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                                   max_size=5), max_leaves=30)


@given(st.dictionaries(st.sampled_from(["services", "entry_service", "name"]), junk) | junk)
def test_any_bento_yaml_gives_a_summary_status_accepts_or_none(doc) -> None:
    out = services.services(doc)
    assert out is None or services_of({"services": out}) is not None


@given(name=st.sampled_from(["A", "Svc_1"]), cpu=st.sampled_from([1, "1.5", "250m", True, "lots", -1]),
       memory=st.sampled_from(["4GB", "512MiB", "1Gi", "1e3", "much", 7]),
       gpu=st.sampled_from([0, 2, -1, "1", True]), timeout=st.sampled_from([0, 30, 2.5, -4, "60", 10 ** 9]))
def test_declared_values_are_kept_only_when_kubernetes_takes_them(name, cpu, memory, gpu, timeout) -> None:
    out = services.services({"services": [{"name": name, "config": {
        "resources": {"cpu": cpu, "memory": memory, "gpu": gpu}, "traffic": {"timeout": timeout}}}]})
    parsed = services_of({"services": out})
    assert parsed is not None
    resources = defaults.resources(parsed.model_dump_json(by_alias=True, exclude_none=True))
    from kubento.api.common import quantity_value
    for value in resources.get("requests", {}).values():
        quantity_value(value)  # a Kubernetes quantity
    assert out["services"][0].get("timeout", 1) > 0


def served(summary) -> str:
    return services_of({"services": summary}).model_dump_json(by_alias=True, exclude_none=True)


def test_a_pod_asks_for_what_all_its_services_declare_unless_the_spec_says() -> None:
    bento = ServedBento("img:1", services=served(services.read(TWO_SERVICES)))
    spec = ModelDeploymentSpec.model_validate(VALID_SPEC)
    pod = pod_spec(spec, bento)
    (server,) = pod["containers"]
    assert server["resources"] == {"requests": {"cpu": "2500m", "memory": "1536Mi"},
                                   "limits": {"nvidia.com/gpu": "1"}}
    assert pod["terminationGracePeriodSeconds"] == 5 + 120 + 5  # preStop, the slowest timeout, the margin
    told = ModelDeploymentSpec.model_validate({**VALID_SPEC, "resources": {"requests": {"cpu": "1"}},
                                              "terminationGracePeriodSeconds": 40})
    pod = pod_spec(told, bento)
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "1"}}
    assert pod["terminationGracePeriodSeconds"] == 40


def test_without_services_known_the_pod_is_as_before() -> None:
    spec = ModelDeploymentSpec.model_validate(VALID_SPEC)
    assert pod_spec(spec, ServedBento("img:1")) == pod_spec(spec, ServedBento("img:1", services=None))
    quiet = served({"entry": "A", "services": [{"name": "A", "timeout": 20}]})
    assert pod_spec(spec, ServedBento("img:1", services=quiet)) == pod_spec(spec, ServedBento("img:1"))


def test_an_archive_pod_waits_for_its_tasks_as_long_as_the_bentos_timeout_allows() -> None:
    bento = ServedBento("rt:1", archive_uri="s3://m/a.bento", services=served(services.read(TWO_SERVICES)))
    env = pod_spec(ModelDeploymentSpec.model_validate(VALID_SPEC), bento)["containers"][0]["env"]
    assert {"name": "KUBENTO_TASK_LINGER_SECONDS", "value": str(130 - 5 - 5)} in env


def test_status_keeps_the_services_and_gives_them_back() -> None:
    summary = services.read(TWO_SERVICES)
    result = {"hash": "h1", "packages": 0, "python": "3.11", "services": summary}
    status = EnvState("Ready", "EnvironmentReady", "", "src", "job", result).status()
    assert status.services is not None and status.services.entry == "Entry"
    assert status.wire()["services"]["services"][1]["maxConcurrency"] == 32
    again = recorded_result(status, "src")
    bento = with_environment(ServedBento("rt:1", archive_uri="s3://m/a.bento"), again)
    assert json.loads(bento.services) == json.loads(served(summary))


def test_services_of_another_form_are_left_out_not_fatal() -> None:
    result = {"hash": "h1", "packages": 0, "services": {"entry": "E", "services": [{"name": "E", "color": "red"}]}}
    assert EnvState("Ready", "EnvironmentReady", "", "src", "job", result).status().services is None
    assert with_environment(ServedBento("rt:1"), result).services is None


def test_kubento_status_names_the_services_and_says_where_they_run() -> None:
    from kubento.cli.status import services_line

    app = services_of({"services": services.read(TWO_SERVICES)})
    assert services_line(app) == ("Entry (cpu 500m, memory 512Mi) -> Model; Model (cpu 2, memory 1Gi, gpu 1, "
                                  "timeout 120s) [each service in its own Deployment; PODS: the entry's, then the others']")
    assert services_line(services_of({"services": {"entry": "Svc", "services": [{"name": "Svc"}]}})) == "Svc"


def test_the_concurrency_autoscaler_aims_at_what_the_entry_service_is_sized_for() -> None:
    from kubento.api.v1alpha1 import Autoscaling
    from kubento.controller.autoscaler import with_bento_target

    app = services_of({"services": {"entry": "Entry", "services": [
        {"name": "Entry", "concurrency": 4}, {"name": "Model", "concurrency": 32}]}})
    untold = Autoscaling.model_validate({"metric": "concurrency", "maxReplicas": 5})
    assert with_bento_target(untold, app).effective_target == 4
    assert with_bento_target(untold, None).effective_target == 10  # kubento's default
    told = Autoscaling.model_validate({"metric": "concurrency", "target": 7, "maxReplicas": 5})
    assert with_bento_target(told, app).effective_target == 7
    rps = Autoscaling.model_validate({"metric": "rps", "maxReplicas": 5})
    assert with_bento_target(rps, app).effective_target == 50


def test_gpu_settings_are_checked_when_read() -> None:
    import pytest

    from kubento.builders.defaults import Gpus, parse_gpus

    assert parse_gpus("") == Gpus()
    told = parse_gpus('{"resource": "amd.com/gpu", "types": {"mi300x": {"node.example/accelerator": "mi300x"}}}')
    assert told.resource == "amd.com/gpu" and told.node_selector("mi300x") == {"node.example/accelerator": "mi300x"}
    assert told.node_selector("h100") == {} and told.node_selector(None) == {}
    for bad in ('{"resource": "gpu"}', '{"types": {"t4": {}}}', '{"types": {"t4": {"bad key!": "x"}}}',
                '{"colour": 1}', '[1]'):
        with pytest.raises(ValueError):
            parse_gpus(bad)


def test_a_bento_asking_for_a_known_gpu_type_lands_on_those_nodes() -> None:
    from kubento.builders.defaults import parse_gpus

    gpus = parse_gpus('{"resource": "amd.com/gpu", "types": {"nvidia-tesla-t4": {"pool": "t4"}}}')
    bento = ServedBento("img:1", services=served(services.read(TWO_SERVICES)), gpus=gpus)
    pod = pod_spec(ModelDeploymentSpec.model_validate(VALID_SPEC), bento)
    assert pod["nodeSelector"] == {"pool": "t4"}
    assert pod["containers"][0]["resources"]["limits"] == {"amd.com/gpu": "1"}
    placed = ModelDeploymentSpec.model_validate({**VALID_SPEC, "nodeSelector": {"zone": "a"}})
    assert pod_spec(placed, bento)["nodeSelector"] == {"zone": "a"}  # the spec's placement wins
    unknown = ServedBento("img:1", services=served(services.read(TWO_SERVICES)))
    assert "nodeSelector" not in pod_spec(ModelDeploymentSpec.model_validate(VALID_SPEC), unknown)


def test_workers_per_cpu_get_a_cpu_limit_to_count_from() -> None:
    counted = served({"entry": "A", "services": [
        {"name": "A", "resources": {"cpu": "2"}, "workers": "cpu_count"}]})
    assert defaults.resources(counted) == {"requests": {"cpu": "2"}, "limits": {"cpu": "2"}}
    fixed = served({"entry": "A", "services": [{"name": "A", "resources": {"cpu": "2"}, "workers": "4"}]})
    assert defaults.resources(fixed) == {"requests": {"cpu": "2"}}


def test_a_task_services_queue_setting_is_not_a_sizing() -> None:
    # bentoml gives a service with a task endpoint traffic {external_queue: true, concurrency: 1} (BentoCloud's queue)
    out = services.services({"services": [{"name": "Tasks", "config": {"traffic": {
        "external_queue": True, "concurrency": 1, "timeout": 60}}}]})
    assert out["services"] == [{"name": "Tasks", "timeout": 60}]
