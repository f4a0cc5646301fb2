import copy
import json
from types import SimpleNamespace

import pytest

from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders.bento import ServedBento
from kubento.builders.deployment import spec_snapshot
from kubento.builders.meta import ANNOTATION_ABORT, ANNOTATION_PROMOTE, ANNOTATION_SPEC
from kubento.cli import main as cli
from kubento.cli import rollout
from kubento.cli.rollout import NothingToDo, Refused, spec_patch
from kubento.controller.status import parse_status
from tests.specs import FULL_SPEC


# The commands read status through the API's model; the tests write statuses as they are stored.
def flag_patch(status, which):
    return rollout.flag_patch(parse_status(status), which)


def rollback_target(status, *args, **kwargs):
    return rollout.rollback_target(parse_status(status), *args, **kwargs).model_dump(by_alias=True)


def history_table(status, spec):
    return rollout.history_table(parse_status(status), spec)


def rollout_line(status, spec):
    return rollout.rollout_line(parse_status(status), spec)


def entry(number, revision, outcome, bento="registry.local/iris:1", **extra):
    return {"number": number, "revision": revision, "bento": bento,
            "time": f"2025-01-0{number}T00:00:00Z", "outcome": outcome, **extra}


HISTORY = [
    entry(1, "aaaaaaaaa1", "Superseded"),
    entry(2, "bbbbbbbbb2", "RolledBack", reason="AnalysisFailed", message="error rate 9.0% > 5.0%"),
    entry(3, "ccccccccc3", "Superseded", bento="registry.local/iris:3"),
    entry(4, "ddddddddd4", "Serving", bento="registry.local/iris:4"),
]
SETTLED = {"stableRevision": "ddddddddd4", "currentRevision": "ddddddddd4", "failedRevision": "bbbbbbbbb2",
           "observedGeneration": 7, "history": HISTORY}
CANARY = {
    **SETTLED,
    "currentRevision": "eeeeeeeee5",
    "canaryWeight": 34,
    "rollout": {"revision": "eeeeeeeee5", "number": 5, "strategy": "Canary", "step": 1, "since": "2025-01-05T00:01:00Z",
                "service": "both", "analysis": "error rate 1.0% <= 5.0%"},
    "history": HISTORY + [entry(5, "eeeeeeeee5", "Progressing", bento="registry.local/iris:5")],
}
CANARY_SPEC = {"bento": {"image": "registry.local/iris:5"},
               "rollout": {"strategy": "Canary", "steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}]}}


# ------------------------------------------------------------ promote / abort


def test_promote_and_abort_name_the_revision_rolling_out():
    assert flag_patch(CANARY, "promote") == {"metadata": {"annotations": {ANNOTATION_PROMOTE: "eeeeeeeee5-5"}}}
    assert flag_patch(CANARY, "abort") == {"metadata": {"annotations": {ANNOTATION_ABORT: "eeeeeeeee5-5"}}}
    assert ANNOTATION_PROMOTE == "serving.kubento.io/promote" and ANNOTATION_ABORT == "serving.kubento.io/abort"


@pytest.mark.parametrize("which", ["promote", "abort"])
def test_promote_and_abort_refuse_without_a_rollout(which):
    with pytest.raises(Refused, match="no rollout under way"):
        flag_patch(SETTLED, which)
    with pytest.raises(Refused, match="no rollout under way"):
        flag_patch({}, which)


def test_a_rollback_under_way_cannot_be_promoted_and_needs_no_abort():
    status = copy.deepcopy(CANARY)
    status["rollout"].update(rollback="AnalysisFailed", rollbackMessage="error rate 9.0% > 5.0%")
    with pytest.raises(Refused, match="being rolled back .error rate 9.0% > 5.0%."):
        flag_patch(status, "promote")
    with pytest.raises(NothingToDo, match="already being rolled back"):
        flag_patch(status, "abort")


# ------------------------------------------------------------------ rollback


def test_rollback_defaults_to_the_last_revision_that_served_before_the_stable_one():
    # 4 is stable, 2 was rolled back: 3 is the one that served before.
    assert rollback_target(SETTLED)["number"] == 3
    # During a rollout too: the candidate (Progressing) is no target.
    assert rollback_target(CANARY)["number"] == 3


def test_rollback_default_skips_failed_outcomes():
    history = [entry(1, "a", "Aborted"), entry(2, "b", "RolledBack"), entry(3, "ddddddddd4", "Serving")]
    status = {**SETTLED, "history": history}
    with pytest.raises(Refused, match=r"no earlier revision .* \(history: 1, 2, 3\)"):
        rollback_target(status)
    with pytest.raises(Refused, match=r"history: none"):
        rollback_target({})


def test_rollback_to_a_number():
    assert rollback_target(SETTLED, 1)["revision"] == "aaaaaaaaa1"


def test_rollback_to_an_unknown_number_lists_the_numbers():
    with pytest.raises(Refused, match=r"no revision 9 in status.history \(revisions: 1, 2, 3, 4\)"):
        rollback_target(SETTLED, 9)


def test_rollback_to_the_stable_and_spec_revision_is_nothing_to_do():
    with pytest.raises(NothingToDo, match="revision 4 .ddddddddd4. is already the stable revision"):
        rollback_target(SETTLED, 4, generation=7)


def test_rollback_to_the_stable_revision_is_allowed_when_the_spec_moved_on():
    # A rollout under way: putting stable's spec back ends it.
    assert rollback_target(CANARY, 4)["revision"] == "ddddddddd4"
    # Status not caught up with the spec yet (generation 8 > observed 7): do not claim nothing changed.
    assert rollback_target(SETTLED, 4, generation=8)["revision"] == "ddddddddd4"


def test_rollback_to_the_failed_revision_is_refused():
    with pytest.raises(Refused, match="revision 2 .bbbbbbbbb2. is status.failedRevision"):
        rollback_target(SETTLED, 2)


def test_spec_patch_replaces_whole_values_and_removes_what_the_snapshot_lacks():
    live = {
        "bento": {"build": {"source": {"git": {"url": "https://git.local/iris"}}, "output": {"uri": "s3://b/p"}}},
        "runtimeImage": "registry.local/runtime:2",
        "replicas": 5,
        "autoscaling": {"maxReplicas": 9},
        "rollout": {"strategy": "Canary"},
        "port": 3000,
        "env": [{"name": "A", "value": "1"}],
    }
    snapshot = {"bento": {"image": "registry.local/iris:1"}, "port": 3000, "env": [], "nodeSelector": {},
                "podLabels": {"team": "ml"}}
    assert spec_patch(live, snapshot) == [
        {"op": "add", "path": "/spec/bento", "value": {"image": "registry.local/iris:1"}},
        {"op": "add", "path": "/spec/env", "value": []},
        {"op": "add", "path": "/spec/podLabels", "value": {"team": "ml"}},
        {"op": "remove", "path": "/spec/runtimeImage"},
    ]


def test_spec_patch_never_touches_replicas_autoscaling_or_rollout():
    live = {"bento": {"image": "x"}, "replicas": 5, "autoscaling": {"maxReplicas": 9}}
    snapshot = {"bento": {"image": "x"}, "replicas": 1, "rollout": {"strategy": "BlueGreen"}}
    assert spec_patch(live, snapshot) == []


def apply(spec, ops):
    """RFC 6902 add/remove on /spec/<key>, as the API server applies them."""
    out = copy.deepcopy(spec)
    for op in ops:
        key = op["path"].removeprefix("/spec/").replace("~1", "/").replace("~0", "~")
        if op["op"] == "add":
            out[key] = op["value"]
        else:
            del out[key]  # remove of an absent member fails the whole patch
    return out


def test_spec_patch_restores_the_operators_snapshot_of_a_revision():
    parsed = ModelDeploymentSpec.model_validate(FULL_SPEC)
    snapshot = json.loads(json.dumps(spec_snapshot(parsed, ServedBento(parsed.bento.image))))
    live = copy.deepcopy(FULL_SPEC)
    live.update(bento={"archive": {"uri": "s3://models/iris-2.bento"}}, runtimeImage="registry.local/runtime:1",
                env=[{"name": "MODEL_THRESHOLD", "value": "0.9"}], replicas=3)
    del live["podAnnotations"]
    restored = apply(live, spec_patch(live, snapshot))
    assert restored["bento"] == {"image": "registry.local/iris:1.0"}
    assert "runtimeImage" not in restored
    assert restored["env"] == FULL_SPEC["env"]
    assert restored["podAnnotations"] == {"owner": "ml-platform"}
    assert all(restored[k] == v for k, v in snapshot.items() if v not in ([], {}))
    assert (restored["replicas"], restored["autoscaling"], restored["rollout"]) == \
        (3, FULL_SPEC["autoscaling"], FULL_SPEC["rollout"])
    assert spec_patch(restored, snapshot) == []


def test_spec_patch_escapes_pointer_characters():
    assert spec_patch({}, {"a/b~c": 1}) == [{"op": "add", "path": "/spec/a~1b~0c", "value": 1}]


# ------------------------------------------------------------------- history


def test_history_table_marks_stable_and_rolling_out_and_describes_the_rollout():
    lines = history_table(CANARY, CANARY_SPEC).splitlines()
    assert lines[0].split() == ["NUMBER", "REVISION", "OUTCOME", "TIME", "BENTO", "ENVIRONMENT", "MESSAGE"]
    assert lines[2].split() == ["2", "bbbbbbbbb2", "RolledBack", "2025-01-02T00:00:00Z", "registry.local/iris:1", "-",
                                "error", "rate", "9.0%", ">", "5.0%"]
    assert lines[4].split()[:4] == ["4", "ddddddddd4", "Serving", "(stable)"]
    assert "Progressing (rolling out)" in lines[5]
    assert lines[6] == (
        "Rolling out eeeeeeeee5 (Canary) since 2025-01-05T00:01:00Z, step 2/3 (weight 50% requested), "
        "34% of ready pods on it (effective), Service selects both revisions; analysis: error rate 1.0% <= 5.0%"
    )
    # Columns line up: every row's OUTCOME starts where the header's does.
    col = lines[0].index("OUTCOME")
    assert all(line[col - 2:col] == "  " and line[col] != " " for line in lines[1:6])


def test_history_table_when_settled_mentions_the_failed_revision_once():
    text = history_table(SETTLED, {})
    assert "Rolling" not in text
    # 2 is in the table as RolledBack; it is also failedRevision, not retried.
    assert text.splitlines()[-1] == "Failed revision bbbbbbbbb2 is not rolled out again until the spec changes."


def test_history_table_truncates_messages_and_falls_back_to_the_reason():
    status = {"history": [entry(1, "a", "Aborted", message="x" * 100), entry(2, "b", "RolledBack", reason="Deadline")]}
    rows = history_table(status, {}).splitlines()
    assert rows[1].endswith("x" * 57 + "...")
    assert rows[2].endswith("Deadline")


def test_history_table_shows_each_revisions_python_environment():
    status = {"history": [{**entry(1, "a", "Serving"), "environment": "0123abcd (4 packages, 60.4 MiB)"}]}
    rows = history_table(status, {}).splitlines()
    assert "0123abcd (4 packages, 60.4 MiB)" in rows[1]


def test_history_table_without_history():
    assert history_table({}, {}) == "No revisions recorded yet."


def test_rollout_line_for_blue_green_and_a_rollback_under_way():
    status = {"stableRevision": "s", "rollout": {"revision": "n", "strategy": "BlueGreen", "since": "T",
                                                 "service": "candidate"}}
    assert rollout_line(status, {}) == "Rolling out n (BlueGreen) since T, Service selects the new revision"
    status["rollout"].update(rollback="CandidateFailed", rollbackMessage="CrashLoopBackOff")
    assert rollout_line(status, {}) == "Rolling back n (BlueGreen): CandidateFailed: CrashLoopBackOff; returning to s"


# ---------------------------------------------------- the commands, with fakes


class FakeCustom:
    def __init__(self, md):
        self.md, self.patches = md, []

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        assert (group, version, plural) == ("serving.kubento.io", "v1alpha1", "modeldeployments")
        if self.md is None or name != self.md["metadata"]["name"] or namespace != self.md["metadata"]["namespace"]:
            from kubernetes.client.exceptions import ApiException
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.md)

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body, **kw):
        self.patches.append((namespace, name, body, kw.get("_content_type")))


class FakeApps:
    def __init__(self, deployments, kept=None):
        self.deployments, self.kept, self.selectors = deployments, kept or {}, []

    def list_namespaced_controller_revision(self, namespace, label_selector, _preload_content=True):
        assert _preload_content is False
        rev = label_selector.split("serving.kubento.io/revision=")[1]
        items = [{"metadata": {"name": f"iris-{r}"}, "revision": 1,
                  "data": {"metadata": {"name": f"iris-{r}", "annotations": a}}} for r, a in self.kept.items() if r == rev]
        return SimpleNamespace(data=json.dumps({"kind": "ControllerRevisionList", "items": items}).encode())

    def list_namespaced_deployment(self, namespace, label_selector, _preload_content=True):
        assert _preload_content is False  # read as raw JSON
        self.selectors.append((namespace, label_selector))
        rev = label_selector.split("serving.kubento.io/revision=")[1]
        items = [{"metadata": {"name": f"iris-{r}", "annotations": a}} for r, a in self.deployments.items() if r == rev]
        return SimpleNamespace(data=json.dumps({"kind": "DeploymentList", "items": items}).encode())


def model(status, spec):
    return {"metadata": {"name": "iris", "namespace": "models", "generation": 7, "resourceVersion": "42"}, "spec": spec, "status": status}


@pytest.fixture
def fake_cluster(monkeypatch):
    def install(md, deployments=None, kept=None):
        custom, apps = FakeCustom(md), FakeApps(deployments or {}, kept)
        monkeypatch.setattr(rollout, "_apis", lambda: (custom, apps))
        monkeypatch.setattr(rollout, "default_namespace", lambda: "models")
        return custom, apps
    return install


def test_rollback_command_patches_the_spec_with_a_json_patch(fake_cluster, capsys):
    snapshot = {"bento": {"image": "registry.local/iris:3"}, "port": 3000}
    live = {"bento": {"image": "registry.local/iris:4"}, "replicas": 2, "port": 3000}
    custom, apps = fake_cluster(model(SETTLED, live), {"ccccccccc3": {ANNOTATION_SPEC: json.dumps(snapshot)}})
    assert cli.main(["rollback", "iris"]) == 0
    selector = "serving.kubento.io/model-deployment=iris,serving.kubento.io/revision=ccccccccc3"
    assert apps.selectors == [("models", selector)]
    assert custom.patches == [("models", "iris", [{"op": "test", "path": "/metadata/generation", "value": 7}, {"op": "add", "path": "/spec/bento", "value": snapshot["bento"]}],
                               "application/json-patch+json")]
    assert capsys.readouterr().out == (
        "iris: rolling back to revision 3 (ccccccccc3, image registry.local/iris:3) — "
        "the operator rolls it out with the model's strategy\n"
    )


def test_rollback_reads_the_revision_its_controller_revision_keeps_when_its_deployment_is_gone(fake_cluster, capsys):
    snapshot = {"bento": {"image": "registry.local/iris:3"}, "port": 3000}
    live = {"bento": {"image": "registry.local/iris:4"}, "replicas": 2, "port": 3000}
    custom, apps = fake_cluster(model(SETTLED, live), {}, kept={"ccccccccc3": {ANNOTATION_SPEC: json.dumps(snapshot)}})
    assert cli.main(["rollback", "iris"]) == 0
    assert apps.selectors == []  # the Deployment was not needed
    assert custom.patches[0][2][1] == {"op": "add", "path": "/spec/bento", "value": snapshot["bento"]}


def test_rollback_command_when_the_revision_is_gone(fake_cluster, capsys):
    custom, _ = fake_cluster(model(SETTLED, {"bento": {"image": "x"}}), {})
    assert cli.main(["rollback", "iris", "--to-revision", "1", "-n", "models"]) == 1
    assert custom.patches == []
    assert capsys.readouterr().err == (
        "kubento rollback iris: revision 1 (aaaaaaaaa1) is no longer kept; raise spec.rollout.revisionHistoryLimit\n"
    )


def test_rollback_command_dry_run_prints_the_patch_only(fake_cluster, capsys):
    custom, _ = fake_cluster(model(SETTLED, {"bento": {"image": "x"}}),
                        {"ccccccccc3": {ANNOTATION_SPEC: '{"bento":{"image":"y"}}'}})
    assert cli.main(["rollback", "iris", "--dry-run"]) == 0
    assert custom.patches == []
    assert json.loads(capsys.readouterr().out) == [{"op": "add", "path": "/spec/bento", "value": {"image": "y"}}]


def test_rollback_command_nothing_to_do_exits_0(fake_cluster, capsys):
    custom, _ = fake_cluster(model(SETTLED, {"bento": {"image": "x"}}))
    assert cli.main(["rollback", "iris", "--to-revision", "4"]) == 0
    assert custom.patches == []
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.parametrize("which, annotation, said", [
    ("promote", ANNOTATION_PROMOTE, "iris: promoting revision eeeeeeeee5: "),
    ("abort", ANNOTATION_ABORT,
     "iris: aborting the rollout of eeeeeeeee5: the operator returns to revision ddddddddd4"),
])
def test_promote_and_abort_commands(fake_cluster, capsys, which, annotation, said):
    custom, _ = fake_cluster(model(CANARY, CANARY_SPEC))
    assert cli.main([which, "iris"]) == 0
    assert custom.patches == [("models", "iris", {"metadata": {"annotations": {annotation: "eeeeeeeee5-5"}}}, None)]
    assert capsys.readouterr().out.startswith(said)


def test_promote_without_a_rollout_fails_naming_the_model(fake_cluster, capsys):
    custom, _ = fake_cluster(model(SETTLED, {}))
    assert cli.main(["promote", "iris"]) == 1
    assert custom.patches == []
    assert capsys.readouterr().err.startswith("kubento promote iris: no rollout under way")


def test_a_missing_model(fake_cluster, capsys):
    fake_cluster(None)
    assert cli.main(["history", "iris"]) == 1
    assert capsys.readouterr().err == "kubento history iris: modeldeployment iris not found in namespace models\n"


def test_history_command_output_formats(fake_cluster, capsys):
    fake_cluster(model(CANARY, CANARY_SPEC))
    assert cli.main(["history", "iris", "-o", "json"]) == 0
    stored = [{"message": "", **h} for h in CANARY["history"]]  # as the API server returns it (with the CRD's defaults)
    assert json.loads(capsys.readouterr().out) == stored
    assert cli.main(["history", "iris", "-o", "yaml"]) == 0
    import yaml
    assert yaml.safe_load(capsys.readouterr().out) == stored
    assert cli.main(["history", "iris"]) == 0
    assert capsys.readouterr().out == history_table(CANARY, CANARY_SPEC) + "\n"


def test_namespace_from_the_kubeconfig_context(tmp_path, monkeypatch):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "dev",
        "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u", "namespace": "ml"}},
                     {"name": "other", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert rollout.default_namespace() == "ml"
    kubeconfig.write_text(kubeconfig.read_text().replace('"current-context": "dev"', '"current-context": "other"'))
    assert rollout.default_namespace() == "default"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert rollout.default_namespace() == "default"


def test_history_shows_the_agreement_with_stable_when_there_is_one():
    from kubento.cli.check import check_table
    from kubento.cli.check import pick_revision as pick

    def pick_revision(status, requested):
        return pick(parse_status(status), requested)

    status = {"stableRevision": "aaa", "history": [
        {"number": 1, "revision": "aaa", "outcome": "Serving", "time": "t1", "bento": "image iris:1"},
        {"number": 2, "revision": "bbb", "outcome": "RolledBack", "time": "t2", "bento": "image iris:2",
         "reason": "PredictionMismatch", "agreement": 0.6, "message": "agreement 60% (6 of 10 inputs) < 95%"}]}
    table = history_table(status, {})
    assert table.splitlines()[0].split() == ["NUMBER", "REVISION", "OUTCOME", "TIME", "BENTO", "ENVIRONMENT", "AGREEMENT", "MESSAGE"]
    assert "60%" in table.splitlines()[2]
    assert "AGREEMENT" not in history_table({"history": status["history"][:1]}, {})
    assert pick_revision(status, None) == "aaa" and pick_revision(status, "bbb") == "bbb"
    out = check_table([{"check": "setosa", "pod": "iris-aaa-x", "expected": '$[0] = "setosa"', "got": '"virginica"',
                        "ok": False, "seconds": 0.0123}])
    assert out.splitlines()[1].split() == ["setosa", "iris-aaa-x", "$[0]", "=", '"setosa"', '"virginica"', "FAIL",
                                           "12ms"]


def test_rollback_refuses_a_revision_todays_rules_refuse_and_names_the_field(fake_cluster, capsys):
    # Revision 3 started slowly; since then the rollout's deadline was cut below its startup budget.
    snapshot = {"bento": {"image": "registry.local/iris:3"}, "port": 3000, "startupTimeoutSeconds": 900}
    live = {"bento": {"image": "registry.local/iris:4"}, "port": 3000, "rollout": {"progressDeadlineSeconds": 300}}
    custom, _ = fake_cluster(model(SETTLED, live), {"ccccccccc3": {ANNOTATION_SPEC: json.dumps(snapshot)}})
    assert cli.main(["rollback", "iris"]) == 1
    assert custom.patches == []
    err = capsys.readouterr().err
    assert err.startswith("kubento rollback iris: revision 3 (ccccccccc3) cannot be restored as it was")
    assert "(spec: startupTimeoutSeconds: rollout.progressDeadlineSeconds (default 600) must be at least" in err, err
    assert "kubectl edit md iris" in err
