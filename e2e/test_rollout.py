"""Safe releases on a real node, under live traffic: a client sends
predictions through the Service for the whole of each test and counts every
failed one. Real BentoML pods, the operator as a pod (installed by Helm).

Figures (rollout and rollback times, failed-request counts) are printed
with ``-s``; bench/test_rollback.py measures the rollback time on its own.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from e2e.conftest import NAMESPACE, OPERATOR_NAMESPACE, S3_SECRET
from e2e.support import TrafficCounter, apply_md, example_spec, kubento, md, settled
from e2e.test_sources import project_files, put_project
from tests.helpers import condition, wait_for

V2_ENV = [{"name": "MODEL_VERSION", "value": "2"}]


def serving(cluster, model, prefix: str, spec: dict) -> str:
    name = model(prefix, spec)
    wait_for(f"{name} to be Ready", lambda: settled(cluster, name), timeout=300, interval=1)
    return name


def events(cluster, name: str, reason: str) -> list[dict]:
    items = cluster.get("events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}")["items"]
    return [e for e in items if e["reason"] == reason]


def report(what: str, traffic: TrafficCounter, seconds: float, kept: TrafficCounter | None = None) -> None:
    print(f"\n[rollout] {what}: {seconds:.1f}s; {traffic.summary()}" + (f"; {kept.summary()}" if kept else ""))


# Failures a keep-alive client can see when the pod under its connection
# stops: the server closes the idle connection as a request goes out on it
# (BentoML's uvicorn closes idle keep-alive connections at SIGTERM and sends
# no "Connection: close" before; see README "Keep-alive clients"). Anything
# else (an HTTP error, a wrong answer, a timeout) is a real failure.
CONNECTION_CLOSED = ("RemoteProtocolError", "ReadError", "WriteError")


def only_connection_closed(kept: TrafficCounter) -> bool:
    return all(f.startswith(CONNECTION_CLOSED) for f in kept.failures)


def test_rolling_update_of_a_good_revision_loses_no_request(cluster, model, images):
    spec = {**example_spec(images), "replicas": 2}
    name = serving(cluster, model, "roll", spec)
    v1 = md(cluster, name)["status"]["stableRevision"]
    with TrafficCounter(cluster, name) as traffic, TrafficCounter(cluster, name, keep_alive=True) as kept:
        start = time.monotonic()
        apply_md(cluster, name, {**spec, "env": V2_ENV})
        obj = wait_for("v2 to be promoted", lambda: (o := settled(cluster, name)) and o["status"]["stableRevision"] != v1 and o,
                       timeout=300, interval=0.5)
        took = time.monotonic() - start
        time.sleep(2)
    report("RollingUpdate v1 -> v2 (2 replicas)", traffic, took, kept)
    assert traffic.failed == 0, traffic.failures
    assert only_connection_closed(kept), kept.failures
    assert traffic.ok > 50
    history = obj["status"]["history"]
    assert [h["outcome"] for h in history[-2:]] == ["Superseded", "Serving"]


def test_a_revision_crashing_at_start_is_rolled_back_without_a_failed_request(cluster, model, images):
    spec = example_spec(images)  # one replica: the hardest case for capacity
    name = serving(cluster, model, "crash", spec)
    v1 = md(cluster, name)["status"]["stableRevision"]
    with TrafficCounter(cluster, name) as traffic, TrafficCounter(cluster, name, keep_alive=True) as kept:
        start = time.monotonic()
        apply_md(cluster, name, {**spec, "bento": {"image": images["crashing"]}})
        obj = wait_for("the rollback", lambda: (o := md(cluster, name))["status"].get("phase") == "RolledBack" and o,
                       timeout=300, interval=0.5)
        took = time.monotonic() - start
        time.sleep(3)
    report("crashing v2 rolled back (1 replica)", traffic, took, kept)
    assert traffic.failed == 0, traffic.failures
    assert only_connection_closed(kept), kept.failures
    st = obj["status"]
    assert st["stableRevision"] == v1 and st["failedRevision"] == st["currentRevision"] != v1
    rolled = condition(obj, "RolledBack")
    assert rolled["status"] == "True" and rolled["reason"] == "CandidateFailed" and "crash-looping" in rolled["message"]
    assert events(cluster, name, "RolledBack")[0]["type"] == "Warning"
    wait_for("the failed revision's pods to go", lambda: not cluster.get(
        "pods", "-n", NAMESPACE, "-l", f"serving.kubento.io/revision={st['failedRevision']}")["items"], timeout=60)


def test_canary_failing_30_percent_is_stopped_by_analysis(cluster, model, images, s3):
    """v2 answers 500 to 3 requests in 10: its own /metrics say so, the
    analysis fails the step and the rollout goes back to v1."""
    spec = {**example_spec(images), "replicas": 2}
    name = serving(cluster, model, "canary-bad", spec)
    files = project_files()
    files["service.py"] = files["service.py"].replace(
        '        """Predict the species of each row of four measurements."""\n',
        '        """Predict the species of each row of four measurements."""\n'
        '        self.calls = getattr(self, "calls", 0) + 1\n'
        '        if self.calls % 10 < 3:\n'
        '            raise RuntimeError("injected failure")\n',
    )
    assert "injected failure" in files["service.py"]
    put_project(cluster, f"{name}-v2", files)
    with TrafficCounter(cluster, name) as traffic, TrafficCounter(cluster, name, keep_alive=True) as kept:
        start = time.monotonic()
        apply_md(cluster, name, {
            "bento": {"build": {"source": {"configMap": {"name": f"{name}-v2"}},
                                "output": {"uri": "s3://built/rollout", "secretRef": {"name": S3_SECRET}}}},
            "runtimeImage": images["iris"],
            "replicas": 2,
            "rollout": {"strategy": "Canary", "steps": [{"weight": 50}],
                        "analysis": {"maxErrorRate": 0.1, "minRequests": 20, "interval": "5s"}},
        })
        obj = wait_for("the rollback", lambda: (o := md(cluster, name))["status"].get("phase") == "RolledBack" and o,
                       timeout=300, interval=0.5)
        took = time.monotonic() - start
        time.sleep(2)
    report("canary failing 30% rolled back by analysis", traffic, took, kept)
    rolled = condition(obj, "RolledBack")
    assert rolled["reason"] == "AnalysisFailed", rolled
    assert "error rate" in rolled["message"] and "maxErrorRate 10.0%" in rolled["message"]
    # Only the canary's share failed, and only while it served.
    assert 0 < traffic.failed < traffic.ok
    assert all("500" in f for f in traffic.failures), traffic.failures


def test_healthy_canary_passes_analysis_at_every_step_and_is_promoted(cluster, model, images):
    rollout = {"strategy": "Canary", "steps": [{"weight": 33}, {"weight": 66}],
               "analysis": {"maxErrorRate": 0.01, "minRequests": 10, "interval": "3s"}}
    spec = {**example_spec(images), "replicas": 3, "rollout": rollout}
    name = serving(cluster, model, "canary-ok", spec)
    v1 = md(cluster, name)["status"]["stableRevision"]
    weights = set()
    with TrafficCounter(cluster, name) as traffic, TrafficCounter(cluster, name, keep_alive=True) as kept:
        start = time.monotonic()
        apply_md(cluster, name, {**spec, "env": V2_ENV})

        def promoted():
            obj = md(cluster, name)
            if obj["status"].get("canaryWeight") is not None:
                weights.add(obj["status"]["canaryWeight"])
            return (o := settled(cluster, name)) and o["status"]["stableRevision"] != v1 and o

        wait_for("v2 to be promoted", promoted, timeout=300, interval=0.5)
        took = time.monotonic() - start
    report("healthy canary 33% -> 66% -> 100% with analysis", traffic, took, kept)
    assert traffic.failed == 0, traffic.failures
    assert only_connection_closed(kept), kept.failures
    # Both steps were held: 33% of 3 replicas is 1 new beside 3 stable pods (25%), 66% is 2 beside 2 (50%).
    assert {25, 50} <= weights, weights
    assert events(cluster, name, "Promoted")


def test_blue_green_switches_with_no_failed_request(cluster, model, images):
    spec = {**example_spec(images), "replicas": 2, "rollout": {"strategy": "BlueGreen"}}
    name = serving(cluster, model, "bg", spec)
    v1 = md(cluster, name)["status"]["stableRevision"]
    with TrafficCounter(cluster, name) as traffic, TrafficCounter(cluster, name, keep_alive=True) as kept:
        start = time.monotonic()
        apply_md(cluster, name, {**spec, "env": V2_ENV})
        v2 = wait_for("a rollout", lambda: (md(cluster, name)["status"].get("rollout") or {}).get("revision"), timeout=60)
        preview = wait_for("the preview Service", lambda: cluster.get("service", f"{name}-preview", "-n", NAMESPACE))
        assert preview["spec"]["selector"]["serving.kubento.io/revision"] == v2
        wait_for("the switch", lambda: (o := settled(cluster, name)) and o["status"]["stableRevision"] == v2 and o,
                       timeout=300, interval=0.5)
        took = time.monotonic() - start
        time.sleep(2)
    report("BlueGreen switch (2 replicas)", traffic, took, kept)
    assert traffic.failed == 0, traffic.failures
    assert only_connection_closed(kept), kept.failures
    assert cluster.get("service", name, "-n", NAMESPACE)["spec"]["selector"]["serving.kubento.io/revision"] == v2 != v1


def pod_processes(pod: str) -> list[int]:
    """The host pids of the operator's processes in ``pod`` (the local
    cluster's pods are processes of this machine; the chart gives them
    POD_NAME)."""
    mark = f"POD_NAME={pod}".encode() + b"\0"
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and mark in (proc / "environ").read_bytes() \
                    and b"kubento" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    assert found, f"no process of pod {pod} on this machine"
    return found


def canary_through(cluster, model, images, prefix: str, pause: str, trouble, what: str) -> None:
    """A canary of v2 under live traffic; ``trouble()`` happens to the
    operator while the step holds and returns what to say of it. The rollout
    still completes once, and no request fails."""
    spec = {**example_spec(images), "replicas": 2,
            "rollout": {"strategy": "Canary", "steps": [{"weight": 50, "pause": pause}]}}
    name = serving(cluster, model, prefix, spec)
    v1 = md(cluster, name)["status"]["stableRevision"]
    with TrafficCounter(cluster, name) as traffic, TrafficCounter(cluster, name, keep_alive=True) as kept:
        start = time.monotonic()
        apply_md(cluster, name, {**spec, "env": V2_ENV})
        wait_for("the canary step to hold", lambda: condition(md(cluster, name), "Ready").get("reason") == "CanaryPaused",
                 timeout=180, interval=0.5)
        said = trouble()
        obj = wait_for("v2 to be promoted by the operator that took over",
                       lambda: (o := settled(cluster, name)) and o["status"]["stableRevision"] != v1 and o,
                       timeout=300, interval=0.5)
        took = time.monotonic() - start
    report(f"{what} ({said})" if said else what, traffic, took, kept)
    assert traffic.failed == 0, traffic.failures
    assert only_connection_closed(kept), kept.failures
    assert [h["outcome"] for h in obj["status"]["history"]].count("Serving") == 1


def test_two_replicas_the_standby_finishes_a_canary_whose_leader_was_sigkilled(cluster, model, images):
    """The chart with replicaCount 2: the leader is SIGKILLed (a node lost)
    while a canary step holds; another replica takes the Lease and finishes."""
    ops = ("-n", OPERATOR_NAMESPACE)

    def kill_the_leader() -> str:
        holder = cluster.get("lease", "kubento", *ops)["spec"]["holderIdentity"]
        pods = [p["metadata"]["name"] for p in cluster.get("pods", *ops, "-l", "app.kubernetes.io/name=kubento")["items"]]
        leader = next(p for p in pods if holder.startswith(p))
        killed = time.monotonic()
        for pid in pod_processes(leader):
            os.kill(pid, signal.SIGKILL)  # as a node lost: no SIGTERM, the Lease is not released
        new = wait_for("another replica to take the Lease",
                       lambda: (h := cluster.get("lease", "kubento", *ops)["spec"].get("holderIdentity")) and h != holder and h,
                       timeout=60, interval=0.5)
        who = "the restarted leader" if new.startswith(leader) else "the standby"
        return f"{who} led {time.monotonic() - killed:.1f}s after the SIGKILL"

    cluster.kubectl("scale", *ops, "deployment/kubento", "--replicas=2")
    try:
        cluster.kubectl("rollout", "status", *ops, "deployment/kubento", "--timeout=180s")
        canary_through(cluster, model, images, "takeover", "20s", kill_the_leader,
                       "canary finished after the leader of two replicas was SIGKILLed")
    finally:
        cluster.kubectl("scale", *ops, "deployment/kubento", "--replicas=1")
        cluster.kubectl("rollout", "status", *ops, "deployment/kubento", "--timeout=180s")


def test_operator_killed_mid_rollout_resumes_and_completes(cluster, model, images):
    def delete_the_pod() -> str:
        cluster.kubectl("delete", "pod", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=kubento", "--wait=false")
        return ""

    canary_through(cluster, model, images, "resume", "15s", delete_the_pod,
                   "canary resumed after the operator pod was killed")
    cluster.kubectl("rollout", "status", "-n", OPERATOR_NAMESPACE, "deployment/kubento", "--timeout=120s")


def test_a_deleted_stable_deployment_is_made_again_after_an_abort(cluster, model, images):
    """#24: `kubento abort`, then `kubectl delete deployment` of the stable
    revision under a request loop: kubento makes it again from its
    ControllerRevision at once; the model serves again as soon as its pods
    are ready; the aborted revision never gets a pod."""
    spec = {**example_spec(images), "replicas": 2,
            "rollout": {"strategy": "Canary", "steps": [{"weight": 50, "pause": "1h"}]}}
    name = serving(cluster, model, "keep", spec)
    v1 = md(cluster, name)["status"]["stableRevision"]
    apply_md(cluster, name, {**spec, "env": V2_ENV})
    wait_for("the canary step to hold", lambda: condition(md(cluster, name), "Ready").get("reason") == "CanaryPaused",
             timeout=180, interval=0.5)
    v2 = md(cluster, name)["status"]["rollout"]["revision"]
    kubento(cluster, "abort", name)
    wait_for("the abort", lambda: md(cluster, name)["status"].get("phase") == "RolledBack"
             and not cluster.get("pods", "-n", NAMESPACE, "-l", f"serving.kubento.io/revision={v2}")["items"],
             timeout=120, interval=0.5)
    deployment = f"{name}-{v1}"
    old_uid = cluster.get("deployment", deployment, "-n", NAMESPACE)["metadata"]["uid"]
    candidate_pods = 0
    with TrafficCounter(cluster, name) as traffic:
        start = time.monotonic()
        cluster.kubectl("delete", "deployment", deployment, "-n", NAMESPACE, "--wait=false")

        def made_again():
            d = cluster.get("deployment", deployment, "-n", NAMESPACE)
            return d is not None and d["metadata"]["uid"] != old_uid and d
        back = wait_for("the stable Deployment made again", made_again, timeout=30, interval=0.1)
        recreated = time.monotonic() - start

        def ready_again():
            nonlocal candidate_pods
            candidate_pods += len(cluster.get("pods", "-n", NAMESPACE, "-l",
                                              f"serving.kubento.io/revision={v2}")["items"])
            return (md(cluster, name)["status"].get("readyReplicas") or 0) >= 2
        wait_for("the stable revision serving again", ready_again, timeout=300, interval=0.5)
        serving_again = time.monotonic() - start
        time.sleep(3)
    report(f"stable Deployment deleted: made again in {recreated:.2f}s, 2 pods ready in {serving_again:.1f}s",
           traffic, serving_again)
    assert recreated < 5, f"the Deployment came back after {recreated:.1f}s"
    assert back["spec"]["replicas"] == 2
    assert candidate_pods == 0  # the aborted revision never got a pod
    st = md(cluster, name)["status"]
    assert (st["stableRevision"], st["failedRevision"], st["phase"]) == (v1, v2, "RolledBack")
    assert events(cluster, name, "RevisionRepaired")[0]["type"] == "Warning"
    # Requests fail while no pod serves (deleting the Deployment deleted its pods); none once they are back.
    with TrafficCounter(cluster, name) as after:
        time.sleep(5)
    print(f"[rollout] after the repair: {after.summary()}")
    assert after.failed == 0 and after.ok > 20, after.summary()
