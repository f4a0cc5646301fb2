"""kubento deploy, status and the CLI's shape, without a cluster: what a deploy
writes (a new model, an update, -f, --strategy), when it is done, what the
status screen shows, and --help / --version / crds."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from kubento.cli import deploy, status
from kubento.cli.deploy import Registry, desired_spec, judge, merge_patch, model_name, repository, steps_arg

URI = "oci://registry.example.com/ml/iris:v2@sha256:" + "a" * 64
REG = Registry("oci://registry.example.com/ml", pull_secret="regcred")


def test_names_and_repositories():
    assert model_name("iris_classifier") == "iris-classifier"
    assert repository("oci://r.example.com/ml", "iris_classifier:abc123") == "oci://r.example.com/ml/iris_classifier:abc123"
    assert steps_arg("25:5m,50:10m,100") == [{"weight": 25, "pause": "5m"}, {"weight": 50, "pause": "10m"},
                                             {"weight": 100}]
    with pytest.raises(argparse.ArgumentTypeError):
        steps_arg("half")
    assert deploy.normalize_registry("registry.example.com:5000/ml/") == "oci://registry.example.com:5000/ml"
    assert deploy.normalize_registry("oci://registry.example.com") == "oci://registry.example.com"


def test_a_new_model_gets_the_archive_the_pull_secret_and_the_options():
    spec = desired_spec(None, None, deploy.archive_of(URI, REG), REG, 2, None, None)
    assert spec == {"bento": {"archive": {"uri": URI}}, "replicas": 2, "imagePullSecrets": [{"name": "regcred"}]}
    assert deploy.spec_problems(spec) == []
    plain = Registry("oci://10.0.0.1:5000/ml", plain_http=True, ca_configmap="ca:root.pem")
    assert deploy.archive_of(URI, plain) == {"uri": URI, "plainHTTP": True,
                                             "caBundle": {"configMap": "ca", "key": "root.pem"}}


def test_an_update_replaces_the_bento_keeps_the_rest_and_patches_only_what_changed():
    live = {"metadata": {"name": "iris", "generation": 3},
            "spec": {"bento": {"image": "old:1"}, "replicas": 3, "env": [{"name": "A", "value": "1"}],
                     "imagePullSecrets": [{"name": "regcred"}],
                     "rollout": {"strategy": "BlueGreen", "analysis": {"maxErrorRate": 0.1}}}}
    spec = desired_spec(live, None, {"uri": URI}, REG, None, "Canary", None)
    assert spec["bento"] == {"archive": {"uri": URI}} and spec["replicas"] == 3 and spec["env"] == live["spec"]["env"]
    assert spec["rollout"] == {"strategy": "Canary", "analysis": {"maxErrorRate": 0.1},
                               "steps": [{"weight": 50, "pause": "1h"}]}
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]  # not twice
    patch = merge_patch(live["spec"], spec)
    assert patch == {"bento": {"image": None, "archive": {"uri": URI}},
                     "rollout": {"strategy": "Canary", "steps": [{"weight": 50, "pause": "1h"}]}}
    back = desired_spec({"spec": spec}, None, {"uri": URI}, REG, None, "RollingUpdate", None)
    assert back["rollout"] == {"strategy": "RollingUpdate"}  # no steps, no analysis: they need another strategy
    assert deploy.spec_problems(back) == []


def test_a_manifest_is_merged_under_the_options():
    manifest = {"metadata": {"name": "mine"}, "spec": {"replicas": 4, "resources": {"requests": {"cpu": "1"}},
                                                        "bento": {"image": "ignored"}}}
    spec = desired_spec(None, manifest, {"uri": URI}, Registry("oci://r.example.com/ml"), None, None, [{"weight": 30}])
    assert spec["replicas"] == 4 and spec["resources"] == {"requests": {"cpu": "1"}}
    assert spec["bento"] == {"archive": {"uri": URI}}
    assert spec["rollout"] == {"strategy": "Canary", "steps": [{"weight": 30}]}


T = "2026-12-01T00:00:00Z"  # statuses below are as the API stores them: every required field set


def md(phase="Ready", ready="True", generation=2, observed=2, history=None, rollout=None, stable="r2", failed=None,
       env=None, steps=None):
    conditions = [{"type": "Ready", "status": ready, "reason": "Ready" if ready == "True" else "RolloutInProgress",
                   "message": "m"}]
    if env:
        conditions.append({"type": "EnvironmentReady", "status": env[0], "reason": env[1], "message": env[2]})
    return {"metadata": {"name": "iris", "namespace": "ns", "generation": generation},
            "spec": {"bento": {"archive": {"uri": URI.split("@")[0]}},
                     "rollout": {"strategy": "Canary", "steps": steps} if steps else {}},
            "status": {"phase": phase, "conditions": conditions, "observedGeneration": observed, "stableRevision": stable,
                       "currentRevision": stable, "failedRevision": failed, "rollout": rollout,
                       "history": history if history is not None else [
                           {"number": 1, "revision": "r1", "bento": "oci://old", "outcome": "Superseded", "time": T},
                           {"number": 2, "revision": "r2", "bento": URI, "outcome": "Serving", "time": T}]}}


def test_a_deploy_is_done_when_its_bento_serves_and_not_before():
    assert judge(status.read_view(md()), URI).code == 0 and judge(status.read_view(md()), URI).done
    # status not yet for the new spec
    assert not judge(status.read_view(md(observed=1)), URI).done
    # Ready, but still the old bento (its environment is being prepared)
    old = md(history=[{"number": 1, "revision": "r1", "bento": "oci://old", "outcome": "Serving", "time": T}],
             stable="r1")
    assert not judge(status.read_view(old), URI).done
    # rolling out
    rolling = md(phase="Progressing", ready="False", rollout={"revision": "r2", "strategy": "RollingUpdate", "since": T},
                 stable="r1")
    assert not judge(status.read_view(rolling), URI).done


def test_a_deploy_fails_on_a_rollback_or_a_bento_that_cannot_be_served_and_stops_at_a_held_canary():
    rolled = md(phase="RolledBack", ready="False", stable="r1", failed="r2")
    outcome = judge(status.read_view(rolled), URI)
    assert outcome.done and outcome.code == 1 and "rolled back" in outcome.message
    fetch = md(phase="PreparingEnvironment", env=("False", "BentoFetchFailed", "no tag v3 in r/ml/iris"))
    outcome = judge(status.read_view(fetch), URI)
    assert outcome.code == 1 and "BentoFetchFailed: no tag v3" in outcome.message
    held = md(phase="Progressing", ready="False", stable="r1", steps=[{"weight": 50, "pause": "1h"}],
              rollout={"revision": "r2", "strategy": "Canary", "step": 0, "since": T, "stepReached": "2026-12-01T00:00:00Z",
                       "requestedWeight": 50})
    outcome = judge(status.read_view(held), URI)
    assert outcome.done and outcome.code == 0
    assert outcome.message == ("the canary holds at step 1/1 (50%) for 1h: `kubento promote iris` finishes it now, "
                               "`kubento abort iris` goes back")


def test_the_status_screen():
    from datetime import datetime, timezone

    held = md(phase="Progressing", ready="False", stable="r1", steps=[{"weight": 50, "pause": "1h"}],
              rollout={"revision": "r2", "strategy": "Canary", "step": 0, "since": T, "stepReached": "2026-12-01T00:00:00Z",
                       "requestedWeight": 50, "service": "both", "analysis": "error rate 0.0% <= 5.0%"})
    held["status"]["canaryWeight"] = 50
    pods = status.pods_by_revision([
        {"metadata": {"labels": {"rev": "r1"}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"labels": {"rev": "r2"}}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}},
        {"metadata": {"labels": {"rev": "r2"}, "deletionTimestamp": "x"}},
    ], "rev")
    assert pods == {"r1": (1, 1), "r2": (0, 1)}
    events = [{"lastTimestamp": "2026-12-01T00:00:50Z", "type": "Normal", "reason": "RolloutStep", "message": "step 1"}]
    screen = status.render(status.read_view(held), pods, events, datetime(2026, 12, 1, 0, 1, tzinfo=timezone.utc))
    assert "Phase:      Progressing (RolloutInProgress: m)" in screen
    assert "Rollout:    Canary of r2, step 1/1, weight 50% requested / 50% effective, holding (1h from " in screen
    assert "Service:    selects both revisions" in screen and "Analysis:   error rate 0.0% <= 5.0%" in screen
    lines = screen.splitlines()
    assert lines[lines.index(next(x for x in lines if x.startswith("REVISION"))) + 1].split() == \
        ["r2", "candidate", "0/1", "ready", "Serving"]
    assert any(x.split()[:3] == ["10s", "Normal", "RolloutStep"] for x in lines)


def test_the_status_screen_in_gateway_mode_shows_the_route_and_a_shadow_step():
    from datetime import datetime, timezone

    shadow = md(phase="Progressing", ready="False", stable="r1",
                steps=[{"weight": 0, "mirror": 100, "pause": "1h"}, {"weight": 50}],
                rollout={"revision": "r2", "strategy": "Canary", "step": 0, "since": T, "requestedWeight": 0,
                         "stepReached": "2026-12-01T00:00:00Z", "service": "both"})
    shadow["status"]["conditions"].append({"type": "RouteAccepted", "status": "True", "reason": "Accepted",
                                           "message": "accepted by infra/public"})
    shadow["status"]["url"] = "http://iris.example.com:8080/"
    shadow["status"]["traffic"] = {"mode": "gateway", "route": "iris", "backends": [{"revision": "r1", "weight": 100}],
                                   "mirror": 100}
    view = status.read_view(shadow)
    screen = status.render(view, {}, [], datetime(2026, 12, 1, 0, 1, tzinfo=timezone.utc))
    assert "Strategy:   Canary, steps mirror 100%, 50%" in screen
    assert "Traffic:    HTTPRoute iris: r1 100%; 100% mirrored to r2; accepted; http://iris.example.com:8080/" in screen
    assert "step 1/2, shadow: 100% of requests mirrored" in screen
    assert view.held.startswith("the canary holds at step 1/2 (shadow, 100% mirrored) for 1h")
    assert status.traffic_line(status.read_view(md())) is None  # replicas mode: no line (the quick start's screen)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubento.cli.main", *args], capture_output=True, text=True, timeout=60)


def test_help_groups_the_commands_and_version():
    out = run_cli("--help").stdout
    assert out.index("Serve your model:") < out.index("\n  deploy ") < out.index("Run the operator") < out.index("\n  run ")
    assert run_cli("--version").stdout.strip().startswith("kubento 0.")


def test_crds_writes_only_where_told(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kubento.cli.main", "crds"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "kind: CustomResourceDefinition" in proc.stdout
    assert list(tmp_path.iterdir()) == []
    proc = subprocess.run([sys.executable, "-m", "kubento.cli.main", "crds", "--dir", "out"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and [p.name for p in (tmp_path / "out").iterdir()] == \
        ["serving.kubento.io_modeldeployments.yaml"]


def test_the_operators_log_drops_the_kubelets_successful_probes_only():
    import logging

    from kubento.cli.main import ProbeFilter

    keep = ProbeFilter("http://0.0.0.0:8080/healthz").filter

    def line(text: str) -> logging.LogRecord:
        return logging.LogRecord("aiohttp.access", logging.INFO, "", 0, text, (), None)

    assert not keep(line('10.244.0.1 [06/Dec/2026:22:00:00 +0000] "GET /healthz HTTP/1.1" 200 160 "-" "kube-probe/1.34"'))
    assert keep(line('10.244.0.1 [06/Dec/2026:22:00:00 +0000] "GET /healthz HTTP/1.1" 500 160 "-" "kube-probe/1.34"'))
    assert keep(line('10.244.0.9 [06/Dec/2026:22:00:00 +0000] "GET /other HTTP/1.1" 200 1 "-" "curl"'))


def test_the_operators_log_keeps_a_failing_liveness_probe_and_drops_the_passing_ones():
    import logging

    from kubento.cli.main import quiet_logs

    quiet_logs("http://0.0.0.0:8080/healthz")
    probe = logging.getLogger("kopf.activities.probe")
    assert not probe.isEnabledFor(logging.INFO)  # "Activity 'workers' succeeded." every probe
    assert probe.isEnabledFor(logging.ERROR)  # kopf logs a failing probe handler as an error


def test_the_status_screen_counts_the_pods_of_a_revisions_other_bentoml_services():
    from datetime import datetime, timezone

    def pod(rev: str, service: str, ready: bool) -> dict:
        return {"metadata": {"labels": {"serving.kubento.io/graph-revision": rev,
                                        "serving.kubento.io/bento-service": service}},
                "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}}

    services = status.service_pods_by_revision([pod("r1", "scorer", True), pod("r1", "scorer", False),
                                                pod("r1", "tokenizer", True), pod("r0", "scorer", True)])
    assert services == {"r1": {"scorer": (1, 2), "tokenizer": (1, 1)}, "r0": {"scorer": (1, 1)}}
    screen = status.render(status.read_view(md(stable="r1")), {"r1": (1, 1)}, [],
                           datetime(2026, 12, 1, 0, 1, tzinfo=timezone.utc), services)
    row = next(x for x in screen.splitlines() if x.startswith("r1"))
    assert "1/1 ready, scorer 1/2, tokenizer 1/1" in row, screen
