"""The watch cache: objects grouped by model, stripped, and kubento's own
writes shown until the watch catches up."""

from __future__ import annotations

from kubento.controller import cache, kinds
from kubento.controller.cache import Cache


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def dep(name: str, rv: str, replicas: int = 1, model: str = "iris") -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "uid": f"u-{name}",
                         "labels": {"serving.kubento.io/model-deployment": model},
                         "annotations": {"serving.kubento.io/spec": "x" * 5000, "serving.kubento.io/applied-hash": "h"},
                         "managedFields": [{"manager": "kubento"}]},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "bento"}]}}},
            "status": {"readyReplicas": replicas}}


def test_children_are_grouped_by_model_and_stripped():
    c = Cache()
    assert c.update(kinds.DEPLOYMENT, dep("iris-a", "1")) == [("ns", "iris")]
    c.update(kinds.DEPLOYMENT, dep("other-a", "2", model="other"))
    world = c.model(("ns", "iris"))
    assert [d["metadata"]["name"] for d in world.of("Deployment")] == ["iris-a"]
    kept = world.of("Deployment")[0]
    assert "template" not in kept["spec"] and "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"serving.kubento.io/applied-hash": "h"}  # not the 5 kB spec copy
    assert c.delete(kinds.DEPLOYMENT, dep("iris-a", "3")) == [("ns", "iris")]
    assert c.model(("ns", "iris")).of("Deployment") == []


def test_a_model_is_kept_without_kubectls_copy_of_its_spec():
    c = Cache()
    model = {"metadata": {"name": "iris", "namespace": "ns", "resourceVersion": "1", "uid": "u",
                          "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 4000 + "}",
                                          "team": "ml"},
                          "managedFields": [{"manager": "kubectl"}]},
             "spec": {"replicas": 2}, "status": {"phase": "Ready"}}
    assert c.update(kinds.MODEL, model) == [("ns", "iris")]
    kept = c.model(("ns", "iris")).model
    assert kept["metadata"]["annotations"] == {"team": "ml"} and "managedFields" not in kept["metadata"]
    assert (kept["spec"], kept["status"]) == ({"replicas": 2}, {"phase": "Ready"})


def test_a_write_shows_until_the_watch_moves_past_the_version_it_replaced():
    clock = Clock()
    c = Cache(clock=clock)
    c.update(kinds.DEPLOYMENT, dep("iris-a", "10", replicas=1))
    c.wrote(kinds.DEPLOYMENT, dep("iris-a", "11", replicas=3), replaced=c.version(kinds.DEPLOYMENT, "ns", "iris-a"))
    assert c.model(("ns", "iris")).of("Deployment")[0]["spec"]["replicas"] == 3
    c.update(kinds.DEPLOYMENT, dep("iris-a", "10", replicas=1))  # a late event of the old version
    assert c.model(("ns", "iris")).of("Deployment")[0]["spec"]["replicas"] == 3
    c.update(kinds.DEPLOYMENT, dep("iris-a", "12", replicas=3))  # the write and a later change, merged by kopf
    assert c.model(("ns", "iris")).of("Deployment")[0]["metadata"]["resourceVersion"] == "12"


def test_a_write_the_watch_already_overtook_shows_nothing_stale():
    c = Cache()
    c.update(kinds.DEPLOYMENT, dep("iris-a", "10", replicas=1))
    before = c.version(kinds.DEPLOYMENT, "ns", "iris-a")
    # While kubento's write was on its way, the watch delivered it and a later change.
    c.update(kinds.DEPLOYMENT, dep("iris-a", "12", replicas=3))
    c.wrote(kinds.DEPLOYMENT, dep("iris-a", "11", replicas=3), replaced=before)
    assert c.model(("ns", "iris")).of("Deployment")[0]["metadata"]["resourceVersion"] == "12"


def test_a_delete_hides_the_object_and_overlays_expire():
    clock = Clock()
    c = Cache(clock=clock)
    c.update(kinds.DEPLOYMENT, dep("iris-a", "10"))
    c.wrote(kinds.DEPLOYMENT, None, "ns", "iris-a", replaced="10")
    assert c.model(("ns", "iris")).of("Deployment") == []
    clock.t = 100  # the watch never told: the watched state wins again
    assert len(c.model(("ns", "iris")).of("Deployment")) == 1


def test_config_map_content_is_kept_only_for_a_build_that_reads_it():
    c = Cache()
    cm = {"metadata": {"name": "proj", "namespace": "ns", "resourceVersion": "1"}, "data": {"service.py": "x"}}
    c.update(kinds.CONFIG_MAP, cm)
    assert c.config_map("ns", "proj") == (False, None)  # exists, content not kept: the caller reads it once
    c.update(kinds.MODEL, {"metadata": {"name": "m", "namespace": "ns"},
                           "spec": {"bento": {"build": {"source": {"configMap": {"name": "proj"}}}}}})
    assert c.models_reading("ns", "proj") == [("ns", "m")]
    c.update(kinds.CONFIG_MAP, cm)
    assert c.config_map("ns", "proj") == (True, {"data": {"service.py": "x"}, "binaryData": {}})
    assert c.config_map("ns", "missing") == (True, None)


def model(name: str, ns: str = "ns") -> dict:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": "1", "uid": f"u-{ns}-{name}"},
            "spec": {"bento": {"image": "x"}}}


def test_a_relist_drops_what_was_deleted_while_the_watch_was_away():
    clock = Clock()
    c = Cache(clock=clock)
    for name in ("iris", "gone"):
        c.update(kinds.MODEL, model(name))
    c.update(kinds.MODEL, model("elsewhere", ns="other"))
    c.update(kinds.DEPLOYMENT, dep("iris-a", "1"))
    c.update(kinds.DEPLOYMENT, dep("gone-a", "1", model="gone"))
    # No DELETED came for "gone" and its Deployment; the listings of ns do not have them.
    assert c.relisted(kinds.MODEL, "ns", {"u-ns-iris"}) == [("ns", "gone")]
    assert c.relisted(kinds.DEPLOYMENT, "ns", {"u-iris-a"}) == [("ns", "gone")]
    assert c.keys() == [("ns", "iris"), ("other", "elsewhere")]  # another namespace's stream says nothing of it
    assert c.model(("ns", "gone")).of("Deployment") == []
    # An event the old stream still had queued for it does not bring it back; a new object does.
    assert c.update(kinds.MODEL, model("gone")) == [] and ("ns", "gone") not in c.keys()
    recreated = {**model("gone"), "metadata": {**model("gone")["metadata"], "uid": "u-new"}}
    assert c.update(kinds.MODEL, recreated) == [("ns", "gone")]
    # A cluster-wide listing covers every namespace.
    assert c.relisted(kinds.MODEL, None, {"u-ns-iris", "u-new"}) == [("other", "elsewhere")]
    clock.t += cache.TOMBSTONE_SECONDS + 1
    c.relisted(kinds.MODEL, None, {"u-ns-iris", "u-new"})
    assert "u-ns-gone" not in c._tombstones  # bounded in time


def test_a_relisted_service_gone_reaches_the_model_that_found_it_by_name():
    c = Cache()
    c.update(kinds.MODEL, model("iris"))
    someone_elses = {"metadata": {"name": "iris", "namespace": "ns", "uid": "u-svc", "resourceVersion": "3"},
                     "spec": {"selector": {"app": "x"}}}
    c.update(kinds.SERVICE, someone_elses)
    assert [s["metadata"]["uid"] for s in c.model(("ns", "iris")).of("Service")] == ["u-svc"]
    assert c.relisted(kinds.SERVICE, "ns", set()) == [("ns", "iris")]
    assert c.model(("ns", "iris")).of("Service") == []
