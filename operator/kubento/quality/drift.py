"""Drift scores from the counts the model pods export, as pure functions.

The score is the **Jensen-Shannon distance** (base 2) between two
distributions over the same buckets: ``sqrt(JS divergence)``, 0 for the same
shares, 1 for disjoint ones. Chosen over PSI because it is bounded (one
threshold means the same for a feature with 3 buckets and one with 10, and
for the candidate-vs-stable comparison as for reference drift), symmetric
(neither revision of a canary is "the reference"), and defined when a bucket
is empty on one side (a class a candidate never answers, a category the
reference never saw: PSI needs an arbitrary epsilon there, and its value then
depends on it). Its cost: small samples read high (see ``expected_noise``).

A pod's counts (``pod_counts``) are parsed from its ``/metrics`` text and
kept only for the names the revision counts (anything else a pod says is
ignored); a pod's window is the sum of its consecutive differences
(``window``), so a container restart within it loses nothing and a counter
never goes negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from prometheus_client.parser import text_string_to_metric_families

from kubento.quality.profile import Judged

# Keys of a pod's counts: ("in", feature, bucket), ("miss", feature),
# ("out", bucket), ("outmiss",), ("rows", "input" | "output"); and the
# sampling state: ("sampled",), ("records", sink, result), ("dropped",).
Key = tuple[str, ...]
Counts = dict[Key, float]


def js_distance(p: Mapping[str, float], q: Mapping[str, float]) -> Optional[float]:
    """The Jensen-Shannon distance (base 2) of two count vectors (None: one is empty)."""
    sp, sq = sum(v for v in p.values() if v > 0), sum(v for v in q.values() if v > 0)
    if sp <= 0 or sq <= 0:
        return None
    divergence = 0.0
    for k in set(p) | set(q):
        a, b = max(p.get(k, 0.0), 0.0) / sp, max(q.get(k, 0.0), 0.0) / sq
        m = (a + b) / 2
        if a > 0:
            divergence += 0.5 * a * math.log2(a / m)
        if b > 0:
            divergence += 0.5 * b * math.log2(b / m)
    return math.sqrt(min(max(divergence, 0.0), 1.0))


def expected_noise(buckets: int, rows: int, reference_rows: Optional[int] = None) -> float:
    """About the distance two samples of one distribution show by chance:
    JS divergence ~ (k - 1)(1/n + 1/m) / (8 ln 2) for k buckets (a reference
    of exact shares: m infinite). For choosing thresholds and minRows."""
    if rows <= 0 or buckets < 2:
        return 0.0
    inverse = 1 / rows + (1 / reference_rows if reference_rows else 0.0)
    return math.sqrt((buckets - 1) * inverse / (8 * math.log(2)))


# ------------------------------------------------------------------- counts


def wanted(judged: Mapping[str, Any]) -> set[Key]:
    """Every key a revision's counts may have (from its judging annotation)."""
    keys: set[Key] = {("rows", "input"), ("rows", "output"), ("outmiss",)}
    for name, j in judged["inputs"].items():
        keys.add(("miss", name))
        keys.update(("in", name, label) for label in j.labels)
    out = judged.get("output")
    if out is not None:
        keys.update(("out", label) for label in out.labels)
    return keys


_KEYS = {
    "kubento_input_total": lambda labels: ("in", labels.get("feature", ""), labels.get("bucket", "")),
    "kubento_input_missing_total": lambda labels: ("miss", labels.get("feature", "")),
    "kubento_output_total": lambda labels: ("out", labels.get("bucket", "")),
    "kubento_output_missing_total": lambda labels: ("outmiss",),
    "kubento_monitor_rows_total": lambda labels: ("rows", labels.get("side", "")),
    # the payload sampling state (kubento drift)
    "kubento_payloads_sampled_total": lambda labels: ("sampled",),
    "kubento_payload_records_total": lambda labels: ("records", labels.get("sink", ""), labels.get("result", "")),
    "kubento_monitor_dropped_total": lambda labels: ("dropped",),
}


def pod_counts(text: str, keep: Optional[set[Key]] = None) -> Counts:
    """A pod's statistics from its /metrics text, only ``keep``'s keys (all
    of kubento's when None). ValueError for text that is not Prometheus'."""
    out: Counts = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("kubento_"):
            continue
        for s in family.samples:
            make = _KEYS.get(s.name)
            if make is None:
                continue
            key = make(s.labels)
            if keep is not None and key not in keep:
                continue
            if math.isfinite(s.value) and s.value >= 0:
                out[key] = out.get(key, 0.0) + s.value
    return out


def difference(before: Counts, after: Counts) -> Counts:
    """What a pod counted between two readings (all of ``after`` when a
    counter went down: the container restarted in between)."""
    if any(after.get(k, 0.0) < v for k, v in before.items()):
        return dict(after)
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def add(into: Counts, more: Counts) -> Counts:
    for k, v in more.items():
        into[k] = into.get(k, 0.0) + v
    return into


@dataclass
class PodWindow:
    """One pod's readings over the window (oldest first; the first is the base)."""

    readings: list[tuple[float, Counts]] = field(default_factory=list)

    def add(self, at: float, counts: Counts, window: float) -> None:
        self.readings.append((at, counts))
        # keep the newest reading at or before the window's start as the base
        while len(self.readings) > 1 and self.readings[1][0] <= at - window:
            self.readings.pop(0)

    def counts(self) -> Counts:
        out: Counts = {}
        for (_, a), (_, b) in zip(self.readings, self.readings[1:]):
            add(out, difference(a, b))
        return out

    def covers(self) -> float:
        """Seconds between its base and its last reading."""
        return self.readings[-1][0] - self.readings[0][0] if len(self.readings) > 1 else 0.0


# ------------------------------------------------------------------- scores


@dataclass(frozen=True)
class FieldScore:
    name: str
    rows: float  # rows in the window (values + missing)
    missing_ratio: Optional[float]
    reference_missing: Optional[float]
    drift: Optional[float]  # JS distance from the reference; None: no reference or too few rows
    live: dict[str, float]  # rows by bucket label, in the window
    reference: Optional[dict[str, float]]
    labels: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class RevisionScores:
    revision: str
    inputs: tuple[FieldScore, ...]
    output: Optional[FieldScore]
    input_rows: float
    output_rows: float
    against_stable: Optional[float] = None  # output distance from the stable revision's (a candidate only)


def _field(name: str, j: Judged, live: dict[str, float], missing: float, min_rows: int,
           note_when_few: str) -> FieldScore:
    rows = sum(live.values()) + missing
    enough = rows >= min_rows
    drift = js_distance(live, j.reference) if enough and j.reference is not None else None
    note = j.note if j.reference is None else ("" if enough else note_when_few)
    return FieldScore(name, rows, missing / rows if rows and enough else None, j.missing, drift, live, j.reference,
                      j.labels, note)


def score(revision: str, judged: Mapping[str, Any], counts: Counts, min_rows: int) -> RevisionScores:
    """A revision's scores from its window's counts (summed over its pods)."""
    few = f"fewer than minRows {min_rows} rows in the window"
    inputs = tuple(
        _field(name, j, {label: counts.get(("in", name, label), 0.0) for label in j.labels},
               counts.get(("miss", name), 0.0), min_rows, few)
        for name, j in sorted(judged["inputs"].items()))
    output = None
    out = judged.get("output")
    if out is not None:
        output = _field("output", out, {label: counts.get(("out", label), 0.0) for label in out.labels},
                        counts.get(("outmiss",), 0.0), min_rows, few)
    return RevisionScores(revision, inputs, output, counts.get(("rows", "input"), 0.0),
                          counts.get(("rows", "output"), 0.0))


def against(candidate: RevisionScores, stable: RevisionScores, min_rows: int) -> RevisionScores:
    """The candidate's scores with its output's distance from the stable revision's."""
    a, b = candidate.output, stable.output
    if a is None or b is None or a.labels != b.labels:
        return candidate
    if sum(a.live.values()) < min_rows or sum(b.live.values()) < min_rows:
        return candidate
    from dataclasses import replace

    return replace(candidate, against_stable=js_distance(a.live, b.live))


def totals(windows: Iterable[PodWindow]) -> Counts:
    out: Counts = {}
    for w in windows:
        add(out, w.counts())
    return out


def shares(counts: Mapping[str, float], labels: Iterable[str]) -> list[tuple[str, float]]:
    total = sum(counts.values())
    return [(label, counts.get(label, 0.0) / total if total else 0.0) for label in labels]
