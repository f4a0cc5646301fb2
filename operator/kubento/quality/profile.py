"""Reference profiles, and what a revision is told and judged with.

A profile (``kubento profile NAME --from FILE``; JSON in a ConfigMap key) is
the expected distribution of each field of spec.monitoring.statistics: for a
numeric field its buckets (the reference's deciles unless the spec gives
them) and the rows in each, for a categorical one its categories (the most
frequent unless the spec lists them) and the rows of each, plus the share of
rows missing it; the same for the output. FILE is JSON lines: request bodies,
or kubento's own payload records (their input and, for 2xx answers, output).

A revision gets both halves from the spec and the profile when it is made
(``revision_monitoring``): its pods are told the paths, buckets and
categories (``KUBENTO_MONITORING``, part of the pod template: new buckets are a
new revision), and its Deployment keeps, in an annotation, the bucket labels
and the reference counts it is judged against (so a revision is always scored
with the buckets its pods count in, even after the profile changed).
"""

from __future__ import annotations

import datetime
import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubento.api.v1alpha1 import GROUP, RUNTIME_DIR, Monitoring, Statistics, duration_seconds
from kubento.runtime import fields
from kubento.runtime.monitor import RECORD_KIND

PROFILE_KIND = "kubento.profile/v1"
DEFAULT_KEY = "profile.json"
DECILES = 10
TOP_CATEGORIES = 20
PAYLOADS_VOLUME = "kubento-payloads"
PAYLOADS_MOUNT = f"{RUNTIME_DIR}/payloads"
ANNOTATION_MONITORING = f"{GROUP}/monitoring"  # on a revision's Deployment: what its statistics are judged with


class FieldProfile(BaseModel):
    """One field of the reference: its buckets or categories and its rows in each."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["numeric", "categorical"]
    buckets: Optional[list[float]] = Field(default=None, max_length=49)
    categories: Optional[list[str]] = Field(default=None, max_length=50)
    counts: dict[str, float] = Field(default_factory=dict, max_length=51)
    missing: float = 0.0
    mean: Optional[float] = None
    min: Optional[float] = None
    max: Optional[float] = None

    def labels(self) -> list[str]:
        if self.type == "numeric":
            return fields.numeric_labels(self.buckets or [])
        return [*(self.categories or []), fields.OTHER]


class Profile(BaseModel):
    """A reference profile (the JSON ``kubento profile`` writes)."""

    model_config = ConfigDict(extra="ignore")

    kind: Literal["kubento.profile/v1"]
    source: str = ""
    created: str = ""
    requests: int = 0
    rows: int = 0
    inputs: dict[str, FieldProfile] = Field(default_factory=dict, max_length=64)
    output: Optional[FieldProfile] = None


def parse_profile(text: str) -> Profile:
    """A profile from its JSON; ValueError saying what is wrong."""
    try:
        return Profile.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ValueError(f"not a kubento profile ({where}: {first['msg']})") from None


# ------------------------------------------------------------------ building


def deciles(values: Sequence[float], n: int = DECILES) -> list[float]:
    """Upper bounds of ``n`` buckets holding about as many values each (values
    of the data, so that ties stay in one bucket); fewer when values repeat."""
    ordered = sorted(values)
    if not ordered:
        return []
    bounds = []
    for i in range(1, n):
        v = ordered[max(0, math.ceil(i * len(ordered) / n) - 1)]
        if v < ordered[-1] and (not bounds or v > bounds[-1]):
            bounds.append(v)
    return bounds


def top_categories(names: Iterable[str], k: int = TOP_CATEGORIES) -> list[str]:
    counted = Counter(n for n in names if 0 < len(n) <= 63 and n == n.strip())
    return [name for name, _ in sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def _profile_field(values: list[Any], missing: int, kind: str, buckets: Optional[list[float]],
                   categories: Optional[list[str]]) -> FieldProfile:
    if kind == "numeric":
        numbers = [x for x in (fields.number(v) for v in values) if x is not None]
        bounds = list(buckets) if buckets is not None else deciles(numbers)
        counts = Counter(fields.bucket_of(x, "numeric", bounds) for x in numbers)
        return FieldProfile(type="numeric", buckets=bounds, counts=dict(counts), missing=missing + len(values)
                            - len(numbers), mean=sum(numbers) / len(numbers) if numbers else None,
                            min=min(numbers, default=None), max=max(numbers, default=None))
    names = [x for x in (fields.category(v) for v in values) if x is not None]
    cats = list(categories) if categories is not None else top_categories(names)
    counted = Counter(fields.bucket_of(n, "categorical", categories=cats) for n in names)
    return FieldProfile(type="categorical", categories=cats, counts=dict(counted),
                        missing=missing + len(values) - len(names))


def build_profile(stats: Statistics, pairs: Iterable[tuple[Any, Any]], source: str = "",
                  now: Optional[float] = None) -> Profile:
    """The profile of (request body, response body or None) pairs, with the
    spec's paths, buckets and categories (the rest from the data)."""
    in_rows = fields.compile_path(stats.input_rows) if stats.input_rows else None
    out_rows = fields.compile_path(stats.output_rows) if stats.output_rows else None
    values: dict[str, list[Any]] = {f.name: [] for f in stats.inputs}
    missing: Counter = Counter()
    outputs: list[Any] = []
    out_missing = requests = rows = 0
    paths = {f.name: fields.compile_path(f.path) for f in stats.inputs}
    out_path = fields.compile_path(stats.output.path) if stats.output else None
    for request, response in pairs:
        requests += 1
        for row in fields.select(request, in_rows) if in_rows is not None else [request]:
            rows += 1
            for name, path in paths.items():
                found = fields.select(row, path)
                if found and found[0] is not None:
                    values[name].append(found[0])
                else:
                    missing[name] += 1
        if out_path is not None and response is not None:
            for row in fields.select(response, out_rows) if out_rows is not None else [response]:
                found = fields.select(row, out_path)
                if found and found[0] is not None:
                    outputs.append(found[0])
                else:
                    out_missing += 1
    inputs = {f.name: _profile_field(values[f.name], missing[f.name], f.type, f.buckets, f.categories)
              for f in stats.inputs}
    output = None
    if stats.output is not None and (outputs or out_missing):
        o = stats.output
        output = _profile_field(outputs, out_missing, o.type, o.buckets, o.categories)
    created = datetime.datetime.fromtimestamp(now if now is not None else datetime.datetime.now().timestamp(),
                                              datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Profile(kind=PROFILE_KIND, source=source, created=created, requests=requests, rows=rows, inputs=inputs,
                   output=output)


def read_pairs(lines: Iterable[str]) -> Iterable[tuple[Any, Any]]:
    """(request, response) pairs of JSON lines: kubento payload records
    (their output only for a 2xx answer) or plain request bodies. A line that
    is not JSON raises ValueError naming it."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise ValueError(f"line {number} is not JSON: {line[:60]!r}") from None
        if isinstance(value, dict) and value.get("kind") == RECORD_KIND:
            ok = isinstance(value.get("status"), int) and 200 <= value["status"] < 300
            yield value.get("input"), value.get("output") if ok else None
        else:
            yield value, None


# ------------------------------------------------------------ a revision's


@dataclass(frozen=True)
class Judged:
    """One field as a revision counts and is judged: its bucket labels, and
    the reference's rows by label and missing share (None: no reference for it)."""

    labels: tuple[str, ...]
    reference: Optional[dict[str, float]] = None
    missing: Optional[float] = None
    note: str = ""  # why there is no reference, if there is none

    def wire(self) -> dict[str, Any]:
        out = {"labels": list(self.labels), "reference": self.reference, "missing": self.missing,
               "note": self.note or None}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def of(cls, wire: dict[str, Any]) -> "Judged":
        ref = wire.get("reference")
        return cls(tuple(str(x) for x in wire["labels"]),
                   {str(k): float(v) for k, v in ref.items()} if isinstance(ref, dict) else None,
                   float(wire["missing"]) if wire.get("missing") is not None else None, str(wire.get("note", "")))


def _resolve(kind: str, buckets: Optional[list[float]], categories: Optional[list[str]],
             prof: Optional[FieldProfile], profile_name: str) -> tuple[dict[str, Any], Judged]:
    """(what the pods are told, how the revision is judged) for one field."""
    usable = prof is not None and prof.type == kind
    if kind == "numeric":
        bounds = buckets if buckets is not None else (prof.buckets if usable and prof is not None else None)
        told: dict[str, Any] = {"type": kind, "buckets": list(bounds or [])}
        labels = tuple(fields.numeric_labels(bounds or []))
    else:
        cats = categories if categories is not None else (prof.categories if usable and prof is not None else None)
        told = {"type": kind, "categories": list(cats or [])}
        labels = tuple([*(cats or []), fields.OTHER])
    if prof is None:
        note = f"not in the profile {profile_name}" if profile_name else "no reference profile"
        return told, Judged(labels, note=note)
    if not usable or tuple(prof.labels()) != labels:
        return told, Judged(labels, note=f"the profile {profile_name} has other buckets: run kubento profile again")
    seen = sum(prof.counts.values())
    total = seen + prof.missing
    return told, Judged(labels, {k: float(prof.counts.get(k, 0.0)) for k in labels},
                        prof.missing / total if total else None)


def revision_monitoring(monitoring: Monitoring, model: str, profile: Optional[Profile],
                        profile_name: str = "") -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
    """(KUBENTO_MONITORING for the pods, the Deployment's judging annotation or None)."""
    told: dict[str, Any] = {"model": model}
    judged: Optional[dict[str, Any]] = None
    stats = monitoring.statistics
    if stats is not None:
        inputs, judged_inputs = [], {}
        for f in stats.inputs:
            field_told, field_judged = _resolve(f.type, f.buckets, f.categories,
                                                profile.inputs.get(f.name) if profile else None, profile_name)
            inputs.append({"name": f.name, "path": f.path, **field_told})
            judged_inputs[f.name] = field_judged.wire()
        told["statistics"] = {"endpoint": stats.endpoint, "inputs": inputs}
        for key, value in (("inputRows", stats.input_rows), ("outputRows", stats.output_rows)):
            if value:
                told["statistics"][key] = value
        judged = {"inputs": judged_inputs}
        if stats.output is not None:
            o = stats.output
            out_told, out_judged = _resolve(o.type, o.buckets, o.categories, profile.output if profile else None,
                                            profile_name)
            told["statistics"]["output"] = {"path": o.path, **out_told}
            judged["output"] = out_judged.wire()
    payloads = monitoring.payloads
    if payloads is not None:
        p: dict[str, Any] = {"sampleRate": payloads.sample_rate, "maxBytes": payloads.max_bytes,
                             "stdout": payloads.stdout}
        for key, value in (("drop", payloads.drop), ("hash", payloads.hash), ("endpoints", payloads.endpoints)):
            if value:
                p[key] = list(value)
        if payloads.http is not None:
            p["http"] = {"url": payloads.http.url, "timeout": duration_seconds(payloads.http.timeout)}
        if payloads.files is not None:
            f = payloads.files
            p["files"] = {"dir": f"{PAYLOADS_MOUNT}/{f.path}", "maxBytes": f.max_bytes,
                          "maxAge": duration_seconds(f.max_age)}
        told["payloads"] = p
    return told, judged


def judged_of(annotation: Optional[str]) -> Optional[dict[str, Any]]:
    """A revision Deployment's judging annotation: {"inputs": {name: Judged}, "output": Judged | None}."""
    if not annotation:
        return None
    try:
        wire = json.loads(annotation)
        return {"inputs": {str(n): Judged.of(w) for n, w in (wire.get("inputs") or {}).items()},
                "output": Judged.of(wire["output"]) if wire.get("output") else None}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
