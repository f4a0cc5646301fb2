"""``kubento profile NAME --from FILE`` and ``kubento drift NAME``.

``profile`` computes a reference profile (kubento.quality.profile) from JSON
lines (request bodies, or kubento's payload records with their answers),
with the paths, buckets and categories of the model's
spec.monitoring.statistics (from the cluster, or ``-f`` a manifest before it
is applied), and writes it to the ConfigMap key the spec's ``reference``
names (or prints it: ``--dry-run``).

``drift`` reads the statistics each serving revision's ready pods count
(their ``/metrics``, through the API server's pod proxy, as ``kubento top``:
no Prometheus) and shows per revision and field the Jensen-Shannon distance
from the reference profile, the missing share, the reference vs live
distribution as a small text histogram, and the payload sampling state; each
revision is judged with what its Deployment says it was made with. Counts
are since the pods started, or over ``--window`` seconds (two readings).

The pure functions (what to show) come first (tests/unit/test_quality.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

from kubento.cli.rollout import Refused, on_a_model
from kubento.quality.drift import Counts, FieldScore, RevisionScores, add, difference, score, wanted

BAR = 16  # characters of a full bar


# ------------------------------------------------------------------ decisions


def bar(share: float, width: int = BAR) -> str:
    eighths = round(max(0.0, min(1.0, share)) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _score(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.3f}"


def histogram(labels: tuple[str, ...], columns: dict[str, Optional[dict[str, float]]]) -> list[str]:
    """Each column's shares (e.g. reference and live) of one field, a line per bucket."""
    totals = {name: sum(c.values()) if c else 0.0 for name, c in columns.items()}
    rows = [["bucket"] + [x for name in columns for x in (name, "")]]
    for label in labels:
        shown = ("≤ " + label) if label != "+Inf" and _numeric(label) else label
        row = [shown]
        for name, counts in columns.items():
            share = (counts or {}).get(label, 0.0) / totals[name] if totals[name] else None
            row += ["" if share is None else bar(share), _pct(share)]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["    " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _numeric(label: str) -> bool:
    try:
        float(label)
        return True
    except ValueError:
        return False


def sampling_line(spec_monitoring: Any, counts: Counts) -> str:
    """The payload sampling state: the spec's rate and sinks, and what the pods counted."""
    payloads = spec_monitoring.payloads if spec_monitoring else None
    if payloads is None:
        return "payloads: not sampled (monitoring.payloads is not set)"
    sinks = [s for s, on in (("stdout", payloads.stdout), (payloads.http.url if payloads.http else "", payloads.http),
                             (f"pvc {payloads.files.claim_name}" if payloads.files else "", payloads.files)) if on]
    sent = {k[1]: v for k, v in counts.items() if k[0] == "records" and k[2] == "sent"}
    failed = {k[1]: v for k, v in counts.items() if k[0] == "records" and k[2] == "failed"}
    parts = [f"payloads: {payloads.sample_rate * 100:g}% sampled -> {', '.join(sinks)}",
             f"{counts.get(('sampled',), 0.0):.0f} records"]
    if sent or failed:
        parts.append("; ".join(f"{sink} {sent.get(sink, 0):.0f} sent, {failed.get(sink, 0):.0f} failed"
                               for sink in sorted(set(sent) | set(failed))))
    if counts.get(("dropped",)):
        parts.append(f"{counts[('dropped',)]:.0f} dropped (queue full)")
    return ", ".join(parts)


def report(name: str, namespace: str, since: str, revisions: list[tuple[str, int, RevisionScores]],
           sampling: str) -> str:
    """The text of ``kubento drift``: a block per revision (role, pods), a line and histogram per field."""
    out = [f"{namespace}/{name}: counts {since}", sampling]
    for role, pods, r in revisions:
        out.append("")
        out.append(f"revision {r.revision} ({role}, {pods} pod{'s' if pods != 1 else ''}): "
                   f"{r.input_rows:.0f} input rows, {r.output_rows:.0f} output rows")
        for f in [*r.inputs, *([r.output] if r.output else [])]:
            what = "output" if f is r.output else f"feature {f.name}"
            line = f"  {what}: drift {_score(f.drift)}, missing {_pct(f.missing_ratio)}"
            line += f" (reference {_pct(f.reference_missing)})" if f.reference_missing is not None else ""
            if f is r.output and r.against_stable is not None:
                line += f", vs stable {_score(r.against_stable)}"
            if f.note:
                line += f" [{f.note}]"
            out.append(line)
            out.extend(histogram(f.labels, {"reference": f.reference, "live": f.live}))
    return "\n".join(out)


def as_json(name: str, namespace: str, since: str, revisions: list[tuple[str, int, RevisionScores]],
            sampling: dict[str, Any]) -> dict[str, Any]:
    def field(f: FieldScore) -> dict[str, Any]:
        ref_total, live_total = sum((f.reference or {}).values()), sum(f.live.values())
        return {"name": f.name, "drift": f.drift, "missingRatio": f.missing_ratio,
                "referenceMissingRatio": f.reference_missing, "rows": f.rows, "note": f.note or None,
                "buckets": [{"label": label,
                             "reference": (f.reference or {}).get(label, 0.0) / ref_total if ref_total else None,
                             "live": f.live.get(label, 0.0) / live_total if live_total else None,
                             "liveRows": f.live.get(label, 0.0)} for label in f.labels]}
    return {"model": name, "namespace": namespace, "counts": since, "sampling": sampling, "revisions": [
        {"revision": r.revision, "role": role, "pods": pods, "inputRows": r.input_rows, "outputRows": r.output_rows,
         "inputs": [field(f) for f in r.inputs], "output": field(r.output) if r.output else None,
         "outputShiftAgainstStable": r.against_stable} for role, pods, r in revisions]}


def profile_summary(profile: Any) -> str:
    out = [f"profile of {profile.requests} requests, {profile.rows} input rows"]
    for name, f in [*profile.inputs.items(), *([("output", profile.output)] if profile.output else [])]:
        total = sum(f.counts.values())
        missing = f.missing / (total + f.missing) if total + f.missing else 0.0
        out.append(f"  {name} ({f.type}): missing {_pct(missing)}"
                   + (f", mean {f.mean:.4g} [{f.min:.4g}, {f.max:.4g}]" if f.mean is not None else ""))
        out.extend(histogram(tuple(f.labels()), {"share": dict(f.counts)}))
    return "\n".join(out)


# ------------------------------------------------------------------------ I/O


def _spec(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """(the spec, the ModelDeployment) from -f or the cluster."""
    from kubento.api.v1alpha1 import ModelDeploymentSpec

    if getattr(args, "filename", None):
        import yaml

        with open(args.filename) as f:
            docs = [d for d in yaml.safe_load_all(f) if isinstance(d, dict) and d.get("kind") == "ModelDeployment"
                    and (d.get("metadata") or {}).get("name") == args.name]
        if not docs:
            raise Refused(f"{args.filename} has no ModelDeployment named {args.name}")
        md = docs[0]
    else:
        from kubento.cli.rollout import _apis, _get

        md = _get(_apis()[0], args.namespace, args.name)
    return ModelDeploymentSpec.model_validate(md.get("spec") or {}), md


def _profile(args: argparse.Namespace) -> int:
    from kubento.quality.profile import DEFAULT_KEY, build_profile, read_pairs

    spec, _ = _spec(args)
    stats = spec.monitoring.statistics if spec.monitoring else None
    if stats is None:
        raise Refused(f"{args.name} has no spec.monitoring.statistics: nothing says which fields to profile")
    ref = stats.reference.config_map_key_ref if stats.reference else None
    name = args.configmap or (ref.name if ref else f"{args.name}-profile")
    key = args.key or (ref.key if ref else DEFAULT_KEY)
    source = sys.stdin if args.source == "-" else open(args.source, encoding="utf-8")
    try:
        profile = build_profile(stats, read_pairs(source), source=args.source)
    except ValueError as exc:
        raise Refused(f"{args.source}: {exc}") from None
    finally:
        if source is not sys.stdin:
            source.close()
    text = profile.model_dump_json(exclude_none=True)
    if args.output == "json":
        print(json.dumps(json.loads(text), indent=2))
    else:
        print(profile_summary(profile))
    if args.dry_run:
        return 0
    if len(text.encode()) > 900_000:
        raise Refused(f"the profile is {len(text.encode())} bytes: too large for a ConfigMap")
    _write_config_map(args.namespace, name, key, text, args.name)
    if ref is None or (ref.name, ref.key) != (name, key):
        print(f"wrote ConfigMap {name} key {key}; to use it, set spec.monitoring.statistics.reference to "
              f"{{configMapKeyRef: {{name: {name}, key: {key}}}}}", file=sys.stderr)
    else:
        print(f"wrote ConfigMap {name} key {key} (the reference of {args.name})", file=sys.stderr)
    return 0


def _write_config_map(namespace: str, name: str, key: str, text: str, model: str) -> None:
    from kubernetes import client

    from kubento.builders.meta import MANAGED_BY
    from kubento.cli.rollout import _apis

    core = client.CoreV1Api(_apis()[1].api_client)
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": MANAGED_BY,
                                    "serving.kubento.io/profile-of": model}},
            "data": {key: text}}
    try:
        current = core.read_namespaced_config_map(name, namespace, _preload_content=False)
        data = dict(json.loads(current.data).get("data") or {})
        data[key] = text
        core.patch_namespaced_config_map(name, namespace, {"data": data})
    except client.exceptions.ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_config_map(namespace, body)


def _drift(args: argparse.Namespace) -> int:
    import time

    from kubernetes import client

    from kubento.builders.meta import LABEL_MODEL, LABEL_REVISION
    from kubento.cli.rollout import _apis, read_status
    from kubento.cli.top import FETCH_TIMEOUT
    from kubento.controller import podhttp
    from kubento.controller.podio import limited
    from kubento.controller.quality import scored
    from kubento.quality.drift import against, pod_counts
    from kubento.quality.profile import ANNOTATION_MONITORING, judged_of

    spec, md = _spec(args)
    stats = spec.monitoring.statistics if spec.monitoring else None
    if spec.monitoring is None:
        raise Refused(f"{args.name} has no spec.monitoring")
    _, apps = _apis()
    core = client.CoreV1Api(apps.api_client)
    status = read_status(md)
    stable, candidate = scored(status, status.current_revision)
    roles = [(r, role) for r, role in ((stable, "stable"), (candidate, "rolling out")) if r]
    deps = json.loads(apps.list_namespaced_deployment(args.namespace, label_selector=f"{LABEL_MODEL}={args.name}",
                                                      _preload_content=False).data).get("items") or []
    judging = {}
    for d in deps:
        rev = (d["metadata"].get("labels") or {}).get(LABEL_REVISION)
        j = judged_of((d["metadata"].get("annotations") or {}).get(ANNOTATION_MONITORING))
        if rev and j is not None:
            judging[rev] = j
    pods = json.loads(core.list_namespaced_pod(args.namespace, label_selector=f"{LABEL_MODEL}={args.name}",
                                               _preload_content=False).data).get("items") or []
    ready = [(p["metadata"]["name"], (p["metadata"].get("labels") or {}).get(LABEL_REVISION)) for p in pods
             if any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (p.get("status") or {}).get("conditions") or [])
             and not p["metadata"].get("deletionTimestamp")]
    ssl_context, send = podhttp.through_api_server(apps.api_client)

    def read() -> dict[str, Counts]:
        async def all_pods(session: Any) -> list[Any]:
            return await limited(8, [lambda p=p: send(session, args.namespace, p[0], spec.port, "/metrics",
                                                      deadline=FETCH_TIMEOUT, cap=podhttp.METRICS_MAX)
                                     for p in ready])
        out: dict[str, Counts] = {}
        for (pod, rev), answer in zip(ready, podhttp.run(all_pods, ssl_context)):
            if answer.status == 200 and not answer.final:
                try:
                    keep = wanted(judging[rev]) | SAMPLING_KEYS if rev in judging else SAMPLING_KEYS
                    out[pod] = pod_counts(answer.body, keep)
                except ValueError:
                    pass
        return out

    first = read()
    since = "since the pods started"
    if args.window:
        time.sleep(args.window)
        second = read()
        first = {pod: difference(first.get(pod, {}), c) for pod, c in second.items()}
        since = f"over {args.window:g}s"
    per_rev: dict[str, Counts] = {}
    pods_of: dict[str, int] = {}
    for pod, rev in ready:
        if pod in first and rev:
            add(per_rev.setdefault(rev, {}), first[pod])
            pods_of[rev] = pods_of.get(rev, 0) + 1
    min_rows = stats.min_rows if stats else 1
    shown = []
    scores = {rev: score(rev, judging[rev], per_rev.get(rev, {}), min_rows) for rev, _ in roles if rev in judging}
    if candidate in scores and stable in scores:
        scores[candidate] = against(scores[candidate], scores[stable], min_rows)
    for rev, role in roles:
        if rev in scores:
            shown.append((role, pods_of.get(rev, 0), scores[rev]))
    everything: Counts = {}
    for c in first.values():
        add(everything, c)
    if args.output == "json":
        p = spec.monitoring.payloads
        sampling = {"sampleRate": p.sample_rate if p else None, "sampled": everything.get(("sampled",), 0.0),
                    "dropped": everything.get(("dropped",), 0.0),
                    "records": {f"{k[1]}/{k[2]}": v for k, v in everything.items() if k[0] == "records"}}
        print(json.dumps(as_json(args.name, args.namespace, since, shown, sampling), indent=2))
    else:
        print(report(args.name, args.namespace, since, shown, sampling_line(spec.monitoring, everything)))
        if not shown:
            print("no revision counts statistics (monitoring.statistics unset when it rolled out?)")
    return 0


SAMPLING_KEYS = {("sampled",), ("dropped",), *{("records", s, r) for s in ("stdout", "http", "files")
                                                for r in ("sent", "failed")}}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile", help="compute a model's reference profile from a dataset and store it in a ConfigMap",
        description="Read JSON lines (request bodies, or kubento payload records with their answers) and compute, "
        "for each field of spec.monitoring.statistics, its buckets (deciles; the spec's when given) or "
        "categories (the most frequent; the spec's when given), the rows in each and the missing share; then "
        "write it to the ConfigMap key spec.monitoring.statistics.reference names (default <NAME>-profile, key "
        "profile.json). The model's revisions count with these buckets: a new profile whose buckets differ "
        "rolls out as a new revision.")
    p.add_argument("name", metavar="NAME", help="the ModelDeployment")
    p.add_argument("--from", dest="source", required=True, metavar="FILE", help="JSON lines (- for stdin)")
    p.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)")
    p.add_argument("-f", "--filename", metavar="MANIFEST",
                   help="read the ModelDeployment from this file instead of the cluster (profile before applying)")
    p.add_argument("--configmap", metavar="NAME", help="write to this ConfigMap (default: the spec's reference)")
    p.add_argument("--key", metavar="KEY", help="and this key")
    p.add_argument("--dry-run", action="store_true", help="print the profile, write nothing")
    p.add_argument("-o", "--output", choices=["json"], help="print the profile as JSON")
    p.set_defaults(func=on_a_model("profile", _profile))

    d = sub.add_parser(
        "drift", help="drift of a model's inputs and outputs per revision, from its pods' counts",
        description="Read the statistics every ready pod of the serving revisions counts (their /metrics, "
        "through the API server's pod proxy: no Prometheus needed) and show, per revision and field, the "
        "Jensen-Shannon distance from the reference profile (0: the same distribution, 1: disjoint), the "
        "missing share, the reference vs live distribution and the payload sampling state. Counts since the "
        "pods started, or over --window seconds.")
    d.add_argument("name", metavar="NAME", help="the ModelDeployment")
    d.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)")
    d.add_argument("--window", type=float, default=0.0, metavar="SECONDS",
                   help="count over this many seconds (two readings) instead of since the pods started")
    d.add_argument("-o", "--output", choices=["json"], help="JSON")
    d.set_defaults(func=on_a_model("drift", _drift))
