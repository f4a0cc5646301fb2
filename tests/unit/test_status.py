from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.controller import status as status_module
from kubento.controller.status import Observed, Problem, parse_status, pod_problems, to_wire
from tests.specs import VALID_SPEC


# The status code takes and returns the API's model; these tests read and write it as the API stores it.
def compute_status(obs, previous, now):
    return to_wire(status_module.compute_status(obs, parse_status(previous), now))


def status_patch(previous, new):
    return status_module.status_patch(previous, parse_status(new))


def transition_event(previous, new):
    return status_module.transition_event(parse_status(previous), parse_status(new))

SPEC = ModelDeploymentSpec.model_validate(VALID_SPEC)


def deployment(desired=2, ready=2, updated=2, replicas=2, generation=1, observed=1, available=True, progressing_reason="NewReplicaSetAvailable"):
    return {
        "metadata": {"generation": generation, "labels": {}},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "conditions": [
                {"type": "Available", "status": "True" if available else "False"},
                {"type": "Progressing", "status": "True", "reason": progressing_reason, "message": "deadline message"},
            ],
        },
    }


def observe(dep=None, problems=(), generation=3):
    return Observed(SPEC, generation, "abc123", "http://iris.ns.svc.cluster.local", "k=v", dep, list(problems))


def cond(status, type_):
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_all_replicas_ready_is_ready_with_url_and_revision():
    st = compute_status(observe(deployment()), {}, "T1")
    assert st["phase"] == "Ready"
    assert cond(st, "Ready")["status"] == "True"
    assert cond(st, "Progressing")["status"] == "False"
    assert st["url"] == "http://iris.ns.svc.cluster.local"
    assert (st["currentRevision"], st["stableRevision"]) == ("abc123", "abc123")
    assert (st["replicas"], st["readyReplicas"], st["observedGeneration"]) == (2, 2, 3)


def test_rolling_out_is_progressing_and_not_ready():
    st = compute_status(observe(deployment(ready=1, updated=1, replicas=3)), {}, "T1")
    assert st["phase"] == "Progressing"
    assert cond(st, "Ready")["reason"] == "RollingOut"
    assert "stableRevision" not in st


def test_deployment_not_yet_observed_is_not_ready():
    st = compute_status(observe(deployment(generation=2, observed=1)), {}, "T1")
    assert st["phase"] == "Progressing"
    assert cond(st, "Ready")["status"] == "False"


def test_progress_deadline_exceeded_fails():
    st = compute_status(observe(deployment(ready=0, progressing_reason="ProgressDeadlineExceeded", available=False)), {}, "T1")
    assert st["phase"] == "Failed"
    assert cond(st, "Ready")["reason"] == "ProgressDeadlineExceeded"
    assert cond(st, "Degraded")["status"] == "True"


def test_blocking_problem_without_deployment_fails_with_its_reason():
    st = compute_status(observe(None, [Problem("SecretNotFound", "missing: regcred")]), {}, "T1")
    assert st["phase"] == "Failed"
    assert cond(st, "Ready") | {"lastTransitionTime": None} == {
        "type": "Ready", "status": "False", "reason": "SecretNotFound", "message": "missing: regcred",
        "lastTransitionTime": None, "observedGeneration": 3,
    }
    assert "url" not in st


def test_non_blocking_problem_keeps_serving_but_degraded():
    st = compute_status(observe(deployment(), [Problem("NotImplemented", "Canary later", blocking=False)]), {}, "T1")
    assert st["phase"] == "Degraded"
    assert cond(st, "Ready")["status"] == "True"
    assert cond(st, "Degraded")["reason"] == "NotImplemented"


def test_unchanged_world_gives_identical_status_and_no_patch():
    first = compute_status(observe(deployment()), {}, "T1")
    second = compute_status(observe(deployment()), first, "T2")
    assert second == first
    assert status_patch(first, second) is None
    assert transition_event(first, second) is None


def test_transition_times_move_only_when_status_flips():
    ready = compute_status(observe(deployment()), {}, "T1")
    rolling = compute_status(observe(deployment(ready=1, updated=1, replicas=3)), ready, "T2")
    assert cond(rolling, "Ready")["lastTransitionTime"] == "T2"
    assert cond(rolling, "Available")["lastTransitionTime"] == "T1"
    patch = status_patch(ready, rolling)
    assert patch["phase"] == "Progressing" and "selector" not in patch


def stored(status):
    """A status as the API server stores it (kubento wrote it)."""
    return to_wire(parse_status(status))


def test_status_patch_nulls_removed_fields():
    assert status_patch(stored({"url": "x", "phase": "Ready"}), {"phase": "Ready"}) == {"url": None}
    assert status_patch(stored({"phase": "Ready"}), {"phase": "Ready"}) is None  # a settled model: no write


def test_events_on_phase_changes():
    ready = compute_status(observe(deployment()), {}, "T1")
    assert transition_event({}, ready) == ("Normal", "Ready", "2 of 2 replicas ready")
    failed = compute_status(observe(None, [Problem("SecretNotFound", "missing: regcred")]), {}, "T1")
    assert transition_event({}, failed) == ("Warning", "SecretNotFound", "missing: regcred")


def pod(name="iris-abc", waiting=None, last=None, restarts=0, unschedulable=None):
    status = {"containerStatuses": [{
        "name": "bento", "image": "registry.local/iris:9", "restartCount": restarts,
        "state": {"waiting": waiting} if waiting else {"running": {}},
        "lastState": {"terminated": last} if last else {},
    }]}
    if unschedulable:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}]
    return {"metadata": {"name": name}, "status": status}


def test_image_pull_failure_names_the_image_and_fails_when_nothing_serves():
    pods = [pod(waiting={"reason": "ImagePullBackOff", "message": "not found"})]
    obs = observe(deployment(ready=0, updated=1, replicas=1, desired=1, available=False))
    obs.pods = pods
    st = compute_status(obs, {}, "T1")
    assert st["phase"] == "Failed"
    ready = cond(st, "Ready")
    assert ready["reason"] == "ImagePullBackOff"
    assert "registry.local/iris:9" in ready["message"] and "iris-abc" in ready["message"]
    assert transition_event({}, st)[:2] == ("Warning", "ImagePullBackOff")


def test_crash_loop_and_oom_are_told_apart():
    crash = pod(waiting={"reason": "CrashLoopBackOff"}, last={"exitCode": 1, "reason": "Error"}, restarts=4)
    oom = pod(name="iris-def", waiting={"reason": "CrashLoopBackOff"}, last={"exitCode": 137, "reason": "OOMKilled"}, restarts=2)
    problems = pod_problems([crash, oom])
    assert [p.reason for p in problems] == ["CrashLoopBackOff", "OOMKilled"]
    assert "code 1" in problems[0].message and "4 restarts" in problems[0].message
    assert "resources.limits.memory" in problems[1].message


def test_a_model_killed_by_its_startup_probe_says_so():
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 20}
    killed = pod(waiting={"reason": "CrashLoopBackOff"}, restarts=2, last={
        "exitCode": 137, "reason": "Error", "startedAt": "2025-01-01T00:00:00Z", "finishedAt": "2025-01-01T00:00:21Z"})
    killed["spec"] = {"containers": [{"name": "bento", "startupProbe": probe}]}
    killed["status"]["containerStatuses"][0]["started"] = False
    (problem,) = pod_problems([killed])
    assert problem.reason == "CrashLoopBackOff"
    assert "did not answer its startup probe within 20s" in problem.message and "startupTimeoutSeconds" in problem.message
    # the operator's pod cache keeps what that takes
    from kubento.controller.kinds.pod import strip as strip_pod
    assert "startup probe within 20s" in pod_problems([strip_pod(killed)])[0].message
    # a crash at start (before the budget ran out) is not blamed on the budget
    killed["status"]["containerStatuses"][0]["lastState"]["terminated"]["finishedAt"] = "2025-01-01T00:00:03Z"
    assert "startup probe" not in pod_problems([killed])[0].message


def test_unschedulable_and_healthy_pods():
    assert [p.reason for p in pod_problems([pod(unschedulable="0/1 nodes: insufficient cpu")])] == ["Unschedulable"]
    assert pod_problems([pod()]) == []


def test_pod_failures_while_some_replicas_serve_is_degraded_but_ready():
    obs = observe(deployment(desired=2, ready=1, updated=2, replicas=2))
    obs.pods = [pod(), pod(name="iris-x", waiting={"reason": "CrashLoopBackOff"}, last={"exitCode": 2})]
    st = compute_status(obs, {}, "T1")
    assert st["phase"] == "Degraded"
    assert cond(st, "Ready")["status"] == "True"  # the model answers
    assert cond(st, "Degraded")["reason"] == "CrashLoopBackOff"


def test_crash_loop_does_not_flap_between_restarts():
    waiting = observe(deployment(desired=1, ready=0, updated=1, replicas=1, progressing_reason="ReplicaSetUpdated"))
    waiting.pods = [pod(waiting={"reason": "CrashLoopBackOff"}, last={"exitCode": 1}, restarts=3)]
    running = observe(deployment(desired=1, ready=0, updated=1, replicas=1, progressing_reason="ReplicaSetUpdated"))
    running.pods = [pod(last={"exitCode": 1, "reason": "Error"}, restarts=4)]  # started again, not ready yet
    first = compute_status(waiting, {}, "T1")
    second = compute_status(running, first, "T2")
    assert first["phase"] == second["phase"] == "Failed"
    assert cond(second, "Ready")["reason"] == "CrashLoopBackOff"
    assert transition_event(first, second) is None


def test_scaling_up_stays_ready():
    st = compute_status(observe(deployment(desired=3, ready=2, updated=3, replicas=3)), {}, "T1")
    assert st["phase"] == "Ready" and cond(st, "Ready")["status"] == "True"
    assert cond(st, "Ready")["message"] == "2 of 3 replicas ready"


def test_replica_failure_is_reported_with_the_controllers_message():
    dep = deployment(desired=1, ready=0, updated=0, replicas=0, progressing_reason="ReplicaSetUpdated")
    dep["status"]["conditions"].append({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                                        "message": 'pods "iris-1" is forbidden: exceeded quota'})
    st = compute_status(observe(dep), {}, "T1")
    assert st["phase"] == "Failed"
    assert cond(st, "Ready")["reason"] == "ReplicaFailure"
    assert "exceeded quota" in cond(st, "Ready")["message"]


# ------------------------------------------------------------ build sources

def build(phase, reason, message="m"):
    from kubento.controller.build import BuildState

    return BuildState(phase, reason, message, source="configMap iris-src", source_hash="h1", job="iris-build-h1",
                      archive="s3://b/ns-iris-h1.bento")


def observe_build(dep, state):
    obs = observe(dep, [] if state.phase == "Succeeded" else [Problem(state.reason, state.summary)])
    obs.build = state
    if dep is not None and state.phase != "Succeeded":
        obs.revision = "v1rev"
    return obs


def test_first_build_is_phase_building_and_not_degraded():
    st = compute_status(observe_build(None, build("Building", "Building", "building configMap iris-src")), {}, "T1")
    assert st["phase"] == "Building"
    assert cond(st, "BuildSucceeded")["status"] == "Unknown"
    assert cond(st, "Progressing")["status"] == "True"
    assert cond(st, "Degraded")["status"] == "False"
    assert cond(st, "Ready")["reason"] == "Building"
    assert st["build"] == {"source": "configMap iris-src", "sourceHash": "h1", "job": "iris-build-h1"}


def test_a_failed_build_while_v1_serves_is_degraded_with_a_warning_and_v1_stays():
    before = compute_status(observe_build(deployment(), build("Building", "Building")), {}, "T1")
    assert before["phase"] == "Building" and cond(before, "Available")["status"] == "True"
    after = compute_status(observe_build(deployment(), build("Failed", "BuildFailed", "SyntaxError: bad")), before, "T2")
    assert after["phase"] == "Degraded"
    assert cond(after, "BuildSucceeded")["status"] == "False"
    assert cond(after, "Ready")["reason"] == "BuildFailed"
    assert "BuildSucceeded condition" in cond(after, "Ready")["message"]  # the log tail is said once
    assert cond(after, "Available")["status"] == "True"
    assert after["currentRevision"] == "v1rev"
    assert transition_event(before, after) == ("Warning", "BuildFailed", "SyntaxError: bad")


def test_a_failed_first_build_is_failed():
    st = compute_status(observe_build(None, build("Failed", "BuildFailed")), {}, "T1")
    assert st["phase"] == "Failed" and cond(st, "BuildSucceeded")["reason"] == "BuildFailed"


def test_a_succeeded_build_serves_and_records_its_archive():
    st = compute_status(observe_build(deployment(), build("Succeeded", "BuildSucceeded")), {}, "T1")
    assert st["phase"] == "Ready"
    assert cond(st, "BuildSucceeded")["status"] == "True"
    assert st["build"]["archive"] == "s3://b/ns-iris-h1.bento"


def test_a_failing_archive_fetch_is_reported_with_the_fetchers_message():
    pod = {"metadata": {"name": "iris-1"}, "status": {"initContainerStatuses": [{
        "name": "fetch-bento", "restartCount": 2, "ready": False,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                     "message": "cannot fetch s3://models/iris.bento: NoSuchKey — the object does not exist"}}}]}}
    (problem,) = pod_problems([pod])
    assert problem.reason == "BentoFetchFailed"
    assert "NoSuchKey" in problem.message and "iris-1" in problem.message


def test_status_patch_clears_keys_gone_from_nested_objects():
    old = {"phase": "Ready", "build": {"source": "cm", "sourceHash": "h1", "job": "j1", "archive": "s3://b/h1.bento",
                                       "sha256": "a"}}
    new = {"phase": "Building", "build": {"source": "cm", "sourceHash": "h2", "job": "j2"}}
    patch = status_patch(stored(old), new)
    assert patch == {"phase": "Building", "build": {"sourceHash": "h2", "job": "j2", "archive": None, "sha256": None}}
