"""What the operator's watch cache holds per model, measured in process.

    .venv/bin/python -m bench.cache_memory --n 1000 10000

Builds N settled models the way a pass sees them (the ModelDeployment with
its status, its revision Deployment and Service as kubento made them, and
``--pods`` ready pods per model, as the API server returns them), feeds each
object through the cache as a watch event would (kubento.controller.cache:
every kind's strip), and prints the bytes the cache holds per model
(tracemalloc: Python objects only) and the RSS it adds (reliable at large N: at
small N the allocator reuses arenas already mapped). No cluster: the
cache is a pure data structure; the scale bench (bench/scale.py) gives the
whole operator's RSS against a real API server.
"""

from __future__ import annotations

import argparse
import copy
import gc
import tracemalloc

from kubento.controller import kinds
from kubento.controller.cache import Cache
from tests.specs import VALID_SPEC
from tests.unit.test_plan import Toy, settle


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def pod(deployment: dict, i: int) -> dict:
    """A ready pod of ``deployment`` as the API server returns it (spec and status as the kubelet fills them)."""
    template = copy.deepcopy(deployment["spec"]["template"])
    name = f"{deployment['metadata']['name']}-7d9f8c6b5-{i:05d}"
    spec = template["spec"]
    spec.update({"nodeName": "node-1", "serviceAccountName": "default", "restartPolicy": "Always",
                 "schedulerName": "default-scheduler", "dnsPolicy": "ClusterFirst"})
    ready = [{"type": t, "status": "True", "lastTransitionTime": "2026-12-07T10:00:00Z", "lastProbeTime": None}
             for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
    statuses = [{"name": c["name"], "ready": True, "restartCount": 0, "image": c["image"], "imageID": "sha256:" + "a" * 64,
                 "containerID": "containerd://" + "b" * 64, "started": True,
                 "state": {"running": {"startedAt": "2026-12-07T10:00:00Z"}}, "lastState": {}}
                for c in spec.get("containers", [])]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {**template["metadata"], "name": name, "namespace": deployment["metadata"]["namespace"],
                         "uid": f"pod-{name}", "resourceVersion": "123456", "generateName": name[:-5],
                         "creationTimestamp": "2026-12-07T10:00:00Z",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name[:-6],
                                              "uid": "rs-uid", "controller": True}]},
            "spec": spec,
            "status": {"phase": "Running", "podIP": "10.244.0.17", "hostIP": "10.0.0.1", "qosClass": "Burstable",
                       "startTime": "2026-12-07T10:00:00Z", "conditions": ready, "containerStatuses": statuses}}


def settled_model(pods: int) -> list[tuple[str, dict]]:
    toy = Toy({**VALID_SPEC, "replicas": pods})
    settle(toy)
    objects = [(kinds.MODEL, toy.model)] + [(k, o) for (k, _), o in sorted(toy.children.items())]
    deployment = next(o for k, o in objects if k == kinds.DEPLOYMENT)
    return objects + [(kinds.POD, pod(deployment, i)) for i in range(pods)]


def renamed(obj: dict, i: int) -> dict:
    out = copy.deepcopy(obj)
    meta = out["metadata"]
    meta["name"] = f"{meta['name']}-{i}"
    meta["uid"] = f"{meta.get('uid', 'uid')}-{i}"
    labels = meta.get("labels") or {}
    for k, v in labels.items():
        if v == "iris":
            labels[k] = f"iris-{i}"
    return out


def fill(n: int, template: list[tuple[str, dict]]) -> Cache:
    cache = Cache()
    for i in range(n):
        for kind, obj in template:
            cache.update(kind, renamed(obj, i))  # the event's body is dropped after, as kopf's is
    return cache


def measure(n: int, pods: int) -> tuple[float, float, int]:
    """Bytes per model (tracemalloc) and the RSS the cache adds (measured first, untraced: tracemalloc's own
    bookkeeping would count; one size per process for a clean RSS figure)."""
    template = settled_model(pods)
    gc.collect()
    rss0 = rss_mb()
    cache = fill(n, template)
    gc.collect()
    rss = rss_mb() - rss0
    del cache
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    cache = fill(n, template)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return held / n, rss, len(template)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--pods", type=int, default=1, help="ready pods per model (default 1)")
    args = parser.parse_args()
    print(f"{'models':>8}  {'objects/model':>13}  {'cache bytes/model':>17}  {'cache MB':>9}  {'RSS growth MB':>13}")
    for n in args.n:
        per_model, rss_growth, objects = measure(n, args.pods)
        print(f"{n:>8}  {objects:>13}  {per_model:>17,.0f}  {per_model * n / 2**20:>9.1f}  {rss_growth:>13.1f}")


if __name__ == "__main__":
    main()
