"""What must hold once the operator has caught up, checked from the API
server as a user would see it (every object listed fresh):

- every model settled on its spec: status for its generation, phase Ready,
  the spec's revision stable and current, no rollout under way;
- its children exactly what kubento's builders make of the spec (the
  applied-hash annotation of the spec's revision Deployment and of the
  Service): no spec change lost; other revisions kept at zero replicas;
- no revision twice: one Deployment per revision, each revision once in
  status.history, history numbers unique;
- no orphan: every object kubento labels as its own is controlled by a
  ModelDeployment that exists (garbage collection took the rest).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from kubernetes import client
from pydantic import ValidationError

from kubento.api import v1alpha1 as api
from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders.bento import ServedBento
from kubento.builders.deployment import deployment, revision
from kubento.builders.meta import ANNOTATION_APPLIED_HASH, LABEL_REVISION, Owner, preview_name
from kubento.builders.service import preview_service, service
from tests.controlplane import MANAGED, MODEL_LABEL


def _items(response: Any) -> list[dict[str, Any]]:
    return json.loads(response.data)["items"]


def listed(admin: client.ApiClient, namespace: str) -> dict[str, list[dict[str, Any]]]:
    apps, core = client.AppsV1Api(admin), client.CoreV1Api(admin)
    custom, auto = client.CustomObjectsApi(admin), client.AutoscalingV2Api(admin)
    batch = client.BatchV1Api(admin)
    kw = {"_preload_content": False, "_request_timeout": 30}
    return {
        "models": _items(custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, **kw)),
        "Deployment": _items(apps.list_namespaced_deployment(namespace, label_selector=MANAGED, **kw)),
        "Service": _items(core.list_namespaced_service(namespace, label_selector=MANAGED, **kw)),
        "HorizontalPodAutoscaler": _items(auto.list_namespaced_horizontal_pod_autoscaler(
            namespace, label_selector=MANAGED, **kw)),
        "Job": _items(batch.list_namespaced_job(namespace, label_selector=MANAGED, **kw)),
    }


def _hash(obj: dict[str, Any]) -> str:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_APPLIED_HASH, "")


def _controller(obj: dict[str, Any]) -> str:
    return next((r["uid"] for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), "")


def problems(admin: client.ApiClient, namespace: str, written: dict[str, Any] | None = None) -> list[str]:
    """Everything left wrong (empty: converged). ``written``: the last spec
    each model was given (None: deleted), to tell a lost write."""
    world = listed(admin, namespace)
    out: list[str] = []
    models = {m["metadata"]["name"]: m for m in world["models"] if not m["metadata"].get("deletionTimestamp")}
    uids = {m["metadata"]["uid"] for m in world["models"]}
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "Job"):
        for obj in world[kind]:
            meta = obj["metadata"]
            if _controller(obj) not in uids:
                out.append(f"orphan {kind} {meta['name']} (controller {_controller(obj) or 'none'} does not exist)")
    for name, expected in sorted((written or {}).items()):
        live = models.get(name)
        if expected is None and live is not None:
            out.append(f"{name}: deleted but still there")
        elif expected is not None and (live is None or not _same_spec(live["spec"], expected)):
            out.append(f"{name}: spec {(live or {}).get('spec')} is not the one last written {expected}")
    for name, md in sorted(models.items()):
        out += [f"{name}: {p}" for p in _model_problems(md, world)]
    return out


def _same_spec(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal once the defaults are filled in (the API server fills the CRD's)."""
    return ModelDeploymentSpec.model_validate(a).model_dump() == ModelDeploymentSpec.model_validate(b).model_dump()


def _model_problems(md: dict[str, Any], world: dict[str, list[dict[str, Any]]]) -> list[str]:
    meta, st = md["metadata"], md.get("status") or {}
    owner = Owner(meta["name"], meta["namespace"], meta["uid"])
    try:
        spec = ModelDeploymentSpec.model_validate(md["spec"])
    except ValidationError as exc:
        return [f"invalid spec: {exc}"]
    bento = ServedBento(spec.bento.image)
    rev = revision(spec, bento)
    out = []
    if st.get("observedGeneration") != meta["generation"]:
        out.append(f"status is for generation {st.get('observedGeneration')}, the spec's is {meta['generation']}")
    ready = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})
    if st.get("phase") != "Ready" or ready.get("status") != "True":
        out.append(f"phase {st.get('phase')}, Ready {ready.get('status')} ({ready.get('reason')}: {ready.get('message')})")
    if not (st.get("currentRevision") == st.get("stableRevision") == rev):
        out.append(f"spec's revision {rev}, currentRevision {st.get('currentRevision')}, "
                   f"stableRevision {st.get('stableRevision')}")
    if st.get("rollout"):
        out.append(f"a rollout is under way: {st['rollout']}")
    if st.get("failedRevision"):
        out.append(f"failedRevision {st['failedRevision']}")

    mine = lambda kind: [o for o in world[kind] if (o["metadata"].get("labels") or {}).get(MODEL_LABEL) == meta["name"]]  # noqa: E731
    deps = mine("Deployment")
    revs = Counter(d["metadata"]["labels"].get(LABEL_REVISION) for d in deps)
    out += [f"revision {r} has {n} Deployments" for r, n in revs.items() if n > 1]
    current = [d for d in deps if d["metadata"]["labels"].get(LABEL_REVISION) == rev]
    want = deployment(spec, owner, bento, spec.replicas)
    if not current:
        out.append(f"no Deployment for the spec's revision {rev}")
    else:
        dep = current[0]
        if _hash(dep) != _hash(want):
            out.append(f"Deployment {dep['metadata']['name']} is not the spec's (applied-hash {_hash(dep)}, "
                       f"the spec makes {_hash(want)})")
        if dep["spec"].get("replicas") != spec.replicas:
            out.append(f"Deployment {dep['metadata']['name']} has {dep['spec'].get('replicas')} replicas, "
                       f"the spec {spec.replicas}")
    for dep in deps:
        if _controller(dep) != owner.uid:
            out.append(f"Deployment {dep['metadata']['name']} is not controlled by this model")
        if dep["metadata"]["labels"].get(LABEL_REVISION) != rev and dep["spec"].get("replicas"):
            out.append(f"Deployment {dep['metadata']['name']} of an older revision has "
                       f"{dep['spec']['replicas']} replicas")
    services = {s["metadata"]["name"]: s for s in mine("Service")}
    wanted = {meta["name"]: service(spec, owner, rev)}
    if spec.rollout.strategy == "BlueGreen":
        wanted[preview_name(owner)] = preview_service(spec, owner, rev)
    for name, manifest in wanted.items():
        live = services.get(name)
        if live is None:
            out.append(f"no Service {name}")
        elif _hash(live) != _hash(manifest) or _controller(live) != owner.uid:
            out.append(f"Service {name} is not the spec's (selector {live['spec'].get('selector')})")
    out += [f"unexpected Service {n}" for n in services if n not in wanted]
    out += [f"unexpected {kind} {o['metadata']['name']}" for kind in ("HorizontalPodAutoscaler", "Job") for o in mine(kind)]

    history = st.get("history") or []
    twice = [r for r, n in Counter(h["revision"] for h in history).items() if n > 1]
    if twice:
        out.append(f"revisions twice in status.history: {twice}")
    numbers = [h.get("number") for h in history]
    if len(set(numbers)) != len(numbers):
        out.append(f"history numbers repeat: {numbers}")
    serving = [h["revision"] for h in history if h.get("outcome") == "Serving"]
    if serving != [rev]:
        out.append(f"history says {serving} serving, the spec's revision is {rev}")
    return out
