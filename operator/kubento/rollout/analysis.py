"""Canary analysis from BentoML's own metrics, as pure functions.

The controller fetches each pod's ``/metrics`` text (BentoML serves it on the
serving port) and hands it in; nothing here does I/O. The flow for one canary
step::

    start = {pod: parse_metrics(text) for pod, text in fetched}      # when the step begins
    ...
    now   = {pod: parse_metrics(text) for pod, text in fetched}      # every analysis.interval
    canary = total(since(start.get(pod), now[pod]) for pod in now)   # per pod, then summed
    verdict = evaluate(canary, analysis, baseline=...)

``since`` works per pod because counters reset when a pod restarts (a pod new
since the start counts from zero); sum only after it.

What BentoML 1.4 exposes (see tests/unit/data/bentoml-metrics.txt, captured
from a real server): ``bentoml_service_request_total`` (counter) and
``bentoml_service_request_duration_seconds`` (histogram, default buckets 5ms
to 180s then +Inf), both labelled ``endpoint``, ``http_response_code``,
``runner_name``, ``service_name``, ``service_version``. Every HTTP request is
counted, the probes (``/readyz``, ``/livez``, ``/healthz``), the docs and
unknown paths included, but not ``/metrics`` itself; an exception raised by an
API is counted as 500. The prefix ``bentoml_service`` is BentoML's
``api_server.metrics.namespace`` setting.

With ``analysis.outputShift``, the answers are compared too: kubento's
runtime counts each revision's output rows by class or bucket
(``kubento_output_total{bucket}``, kubento.runtime.monitor), and the
candidate's distribution over the window must stay within ``maxDistance``
(Jensen-Shannon distance, kubento.quality.drift) of the stable revision's
over the same window (both serve the same traffic mix), else ``OutputShift``.

A verdict is ``pass``, ``fail`` or ``inconclusive``; too few requests is
always ``inconclusive``, never ``pass``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Collection, Iterable, Literal, Optional

from prometheus_client.parser import text_string_to_metric_families

from kubento.api.v1alpha1 import duration_seconds

if TYPE_CHECKING:
    from kubento.api.v1alpha1 import Analysis, OutputShift

NAMESPACE = "bentoml_service"

# Endpoints that are not the model's API: kubelet probes, the metrics scrape,
# the Swagger UI and its assets. Matched on the last path segment so that a
# service's path prefix does not hide them.
INFRA_NAMES = frozenset({"livez", "readyz", "healthz", "metrics", "docs.json", "schema.json"})
INFRA_DIRS = frozenset({"static_content", "assets"})

Buckets = tuple[tuple[float, float], ...]
Outputs = tuple[tuple[str, float], ...]  # output rows by class or bucket label, sorted
OUTPUTS_NAME = "kubento_output_total"  # kubento.runtime.monitor's counter


@dataclass(frozen=True)
class Sample:
    """Counters of one pod, or a sum over pods, for the API endpoints only.

    ``buckets`` are cumulative ``(le, count)`` pairs of the request duration
    histogram, sorted by ``le``, ``+Inf`` last (empty when nothing was seen).
    """

    requests: float = 0.0  # every response code
    errors: float = 0.0  # 5xx responses
    buckets: Buckets = ()
    duration_sum: float = 0.0  # seconds, over all requests
    duration_count: float = 0.0
    in_progress: float = 0.0  # requests being answered now (a gauge, not a counter)
    outputs: Outputs = ()  # kubento's output counts (only the labels asked for)

    @property
    def error_rate(self) -> Optional[float]:
        return self.errors / self.requests if self.requests > 0 else None

    @property
    def p95(self) -> Optional[float]:
        return histogram_quantile(0.95, self.buckets)


ZERO = Sample()


def is_infra(endpoint: str, exclude: Collection[str] = ()) -> bool:
    """True for an endpoint that is not part of the model's API."""
    if endpoint in exclude:
        return True
    segments = [s for s in endpoint.split("/") if s]
    if not segments:  # "/", the index page
        return True
    return segments[-1] in INFRA_NAMES or any(s in INFRA_DIRS for s in segments)


def parse_metrics(text: str, *, namespace: str = NAMESPACE, exclude: Collection[str] = (),
                  outputs: Collection[str] = ()) -> Sample:
    """One pod's ``/metrics`` text as a ``Sample`` of its API endpoints.

    Sums over endpoints, services and every other label; probe and docs
    endpoints (``is_infra``) and ``exclude`` (e.g. a custom ``livez`` path) are
    left out. A pod that has served nothing yet gives zeros. ``outputs``: the
    output labels (classes, buckets) whose counts to keep (anything else the
    pod exports is ignored). Raises ``ValueError`` on text that is not
    Prometheus' exposition format.
    """
    requests_name = f"{namespace}_request_total"
    hist = f"{namespace}_request_duration_seconds"
    in_progress_name = f"{namespace}_request_in_progress"
    requests = errors = dsum = dcount = in_progress = 0.0
    buckets: dict[float, float] = {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == OUTPUTS_NAME and outputs:
                label = s.labels.get("bucket", "")
                if label in outputs and math.isfinite(s.value):
                    out[label] = out.get(label, 0.0) + s.value
                continue
            if s.name not in (requests_name, in_progress_name, f"{hist}_bucket", f"{hist}_sum", f"{hist}_count"):
                continue
            if is_infra(s.labels.get("endpoint", ""), exclude):
                continue
            if s.name == in_progress_name:
                in_progress += s.value
            elif s.name == requests_name:
                requests += s.value
                if s.labels.get("http_response_code", "").startswith("5"):
                    errors += s.value
            elif s.name == f"{hist}_bucket":
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
            elif s.name == f"{hist}_sum":
                dsum += s.value
            else:
                dcount += s.value
    return Sample(requests, errors, tuple(sorted(buckets.items())), dsum, dcount, in_progress,
                  tuple(sorted(out.items())))


def _outputs(a: Outputs, b: Outputs, sign: float) -> Outputs:
    merged = dict(a)
    for label, n in b:
        merged[label] = merged.get(label, 0.0) + sign * n
    return tuple(sorted(merged.items()))


def _count_at(buckets: Buckets, le: float) -> float:
    """Observations ``<= le`` that ``buckets`` prove: the count of the largest
    bound not above ``le`` (so histograms with different layouts still add up
    to cumulative, monotonic buckets)."""
    count = 0.0
    for bound, c in buckets:
        if bound > le:
            break
        count = c
    return count


def _combine(a: Buckets, b: Buckets, sign: float) -> Buckets:
    if not a:
        return b if sign > 0 else tuple((le, -c) for le, c in b)
    if not b:
        return a
    les = sorted({le for le, _ in a} | {le for le, _ in b})
    return tuple((le, _count_at(a, le) + sign * _count_at(b, le)) for le in les)


def since(before: Optional[Sample], after: Sample) -> Sample:
    """What one pod's counters accumulated since ``before`` (taken at the
    start of a step). No ``before`` (a pod new since then), or any counter
    that went down (the pod restarted), counts from zero: ``after``."""
    if before is None:
        return after
    buckets = _combine(after.buckets, before.buckets, -1.0)
    outputs = _outputs(after.outputs, before.outputs, -1.0)
    if (after.requests < before.requests or after.errors < before.errors
            or after.duration_count < before.duration_count or any(c < 0 for _, c in buckets)
            or any(c < 0 for _, c in outputs)):
        return after
    return Sample(after.requests - before.requests, after.errors - before.errors, buckets,
                  max(after.duration_sum - before.duration_sum, 0.0), after.duration_count - before.duration_count,
                  after.in_progress, outputs)


def total(samples: Iterable[Sample]) -> Sample:
    """The sum of samples (e.g. over a revision's pods)."""
    out = ZERO
    for s in samples:
        out = Sample(out.requests + s.requests, out.errors + s.errors, _combine(out.buckets, s.buckets, 1.0),
                     out.duration_sum + s.duration_sum, out.duration_count + s.duration_count,
                     out.in_progress + s.in_progress, _outputs(out.outputs, s.outputs, 1.0))
    return out


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> Optional[float]:
    """The ``q``-quantile of cumulative ``(le, count)`` buckets, as PromQL's
    ``histogram_quantile`` computes it: linear interpolation inside the bucket
    the rank falls in (the first bucket starts at 0 when its bound is
    positive); a rank in the ``+Inf`` bucket gives the largest finite bound.
    ``None`` where Prometheus says NaN: no observations, no ``+Inf`` bucket,
    fewer than two buckets. ``q`` below 0 or above 1 gives -inf / +inf.
    Counts that decrease (a scrape racing an observation) are made monotonic.
    """
    bs = sorted((float(le), float(c)) for le, c in buckets)
    if math.isnan(q) or len(bs) < 2 or bs[-1][0] != math.inf:
        return None
    monotonic: list[tuple[float, float]] = []
    for le, c in bs:
        if monotonic and le == monotonic[-1][0]:  # the same bound twice: one bucket
            monotonic[-1] = (le, max(monotonic[-1][1], c))
            continue
        monotonic.append((le, max(c, monotonic[-1][1]) if monotonic else c))
    bs = monotonic
    if len(bs) < 2:
        return None
    observations = bs[-1][1]
    if not observations > 0:
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    rank = q * observations
    b = next(i for i, (_, c) in enumerate(bs) if c >= rank)
    if b == len(bs) - 1:
        return bs[-2][0]
    if b == 0 and bs[0][0] <= 0:
        return bs[0][0]
    start = 0.0 if b == 0 else bs[b - 1][0]
    end, count = bs[b]
    if b > 0:
        count -= bs[b - 1][1]
        rank -= bs[b - 1][1]
    if count <= 0:
        return start
    return start + (end - start) * (rank / count)


seconds = duration_seconds  # an API Duration (500ms, 30s, 1m30s) in seconds


def format_duration(secs: float) -> str:
    """Seconds as an API Duration, to the millisecond: 90.5 -> ``1m30s500ms``."""
    if secs < 0 or not math.isfinite(secs):
        raise ValueError(f"{secs!r} is not a duration")
    ms = round(secs * 1000)
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, ms = divmod(ms, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"


Result = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Verdict:
    """An analysis result; ``reason`` and ``message`` are ready for a condition."""

    result: Result
    reason: str  # AnalysisPassed, ErrorRateTooHigh, LatencyTooHigh, ErrorRateAndLatencyTooHigh,
    #              NotEnoughRequests, NoLatencyData, OutputShift, NotEnoughOutputs
    message: str
    requests: float = 0.0
    errors: float = 0.0
    error_rate: Optional[float] = None
    p95_seconds: Optional[float] = None
    output_distance: Optional[float] = None

    @property
    def rollback_reason(self) -> str:
        """The rollout's reason when this verdict fails it."""
        return OUTPUT_SHIFT if self.reason == OUTPUT_SHIFT else "AnalysisFailed"


OUTPUT_SHIFT = "OutputShift"
NOT_COMPARED = ("a revision counts no output classes or buckets (monitoring.statistics.output: categories or "
                "buckets, or a profile made with the answers)")
SHOWN_CLASSES = 6  # of a distribution, in a verdict's message


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _latency(secs: float) -> str:
    if secs == math.inf:
        return "inf"
    return f"{secs * 1000:.3g}ms" if secs < 1 else f"{secs:.3g}s"


def _describe(s: Sample) -> str:
    if s.requests <= 0:
        return "no requests"
    p95 = s.p95
    latency = f", p95 {_latency(p95)}" if p95 is not None else ""
    return f"error rate {_pct(s.error_rate or 0.0)} ({_num(s.errors)} of {_num(s.requests)} requests){latency}"


def evaluate(canary: Sample, analysis: Analysis, baseline: Optional[Sample] = None,
             compare_outputs: bool = False) -> Verdict:
    """Judge the new revision's requests of one window against ``analysis``.

    Fewer than ``minRequests`` requests (or none at all, even with
    ``minRequests: 0``) is ``inconclusive``. Otherwise an error rate above
    ``maxErrorRate`` or a p95 latency above ``maxLatencyP95`` fails (both
    named when both fail); with a latency limit but no latency data the
    verdict is ``inconclusive``. ``baseline`` (the stable revision over the
    same window) only adds context to the message, unless
    ``analysis.outputShift`` is set and ``compare_outputs`` (both revisions
    count their outputs): then a verdict that would pass also needs the
    outputs to (``output_shift``).

    The p95 is estimated from BentoML's buckets; one in the ``+Inf`` bucket is
    reported as the largest finite bound (180s by default), so a limit at or
    above that bound cannot catch it.
    """
    requests, errors = canary.requests, canary.errors
    rate, p95 = canary.error_rate, canary.p95
    context = f"; stable: {_describe(baseline)}" if baseline is not None else ""

    def verdict(result: Result, reason: str, message: str) -> Verdict:
        return Verdict(result, reason, message + context, requests, errors, rate, p95)

    if requests <= 0 or requests < analysis.min_requests:
        return verdict("inconclusive", "NotEnoughRequests",
                       f"{_num(requests)} requests < minRequests {max(analysis.min_requests, 1)}: "
                       "not enough traffic for a verdict")
    assert rate is not None
    error_part = (f"error rate {_pct(rate)} {'>' if rate > analysis.max_error_rate else '<='} "
                  f"maxErrorRate {_pct(analysis.max_error_rate)} ({_num(errors)} of {_num(requests)} requests)")
    failed_errors = rate > analysis.max_error_rate
    latency_part, failed_latency = "", False
    if analysis.max_latency_p95 is not None:
        limit = seconds(analysis.max_latency_p95)
        if p95 is None:
            if failed_errors:
                return verdict("fail", "ErrorRateTooHigh", error_part)
            return verdict("inconclusive", "NoLatencyData",
                           f"{error_part}; no request duration buckets to check maxLatencyP95 "
                           f"{analysis.max_latency_p95}")
        failed_latency = p95 > limit
        latency_part = (f"p95 latency {_latency(p95)} {'>' if failed_latency else '<='} "
                        f"maxLatencyP95 {analysis.max_latency_p95}")
    elif p95 is not None:
        latency_part = f"p95 latency {_latency(p95)}"
    if failed_errors and failed_latency:
        return verdict("fail", "ErrorRateAndLatencyTooHigh", f"{error_part}; {latency_part}")
    if failed_errors:
        return verdict("fail", "ErrorRateTooHigh", error_part)
    if failed_latency:
        return verdict("fail", "LatencyTooHigh", f"{latency_part} ({_num(requests)} requests)")
    passed = f"{error_part}" + (f", {latency_part}" if latency_part else "")
    if analysis.output_shift is None:
        return verdict("pass", "AnalysisPassed", passed)
    if not compare_outputs or baseline is None:
        return verdict("pass", "AnalysisPassed", f"{passed}; outputs not compared: {NOT_COMPARED}")
    shift = output_shift(canary, baseline, analysis.output_shift)
    judged = Verdict(shift.result, shift.reason, f"{shift.message}; {passed}" if shift.result != "pass"
                     else f"{passed}; {shift.message}", requests, errors, rate, p95, shift.output_distance)
    return replace(judged, message=judged.message + context)


def _distribution(outputs: Outputs) -> str:
    total_ = sum(n for _, n in outputs)
    top = sorted(((n, label) for label, n in outputs if n > 0), reverse=True)[:SHOWN_CLASSES]
    more = "" if len([1 for _, n in outputs if n > 0]) <= SHOWN_CLASSES else ", ..."
    return ", ".join(f"{label} {n / total_ * 100:.0f}%" for n, label in top) + more + f" of {_num(total_)}"


def output_shift(candidate: Sample, stable: Sample, criterion: OutputShift) -> Verdict:
    """The new revision's answers against the stable revision's over the same
    window: ``fail`` (``OutputShift``) when their distributions are further
    apart than ``maxDistance``; ``inconclusive`` until each has given
    ``minOutputs`` answers."""
    from kubento.quality.drift import js_distance

    a, b = dict(candidate.outputs), dict(stable.outputs)
    na, nb = sum(a.values()), sum(b.values())
    if na < criterion.min_outputs or nb < criterion.min_outputs:
        return Verdict("inconclusive", "NotEnoughOutputs",
                       f"outputs: {_num(na)} new and {_num(nb)} stable answers counted < minOutputs "
                       f"{criterion.min_outputs}: not enough to compare")
    distance = js_distance(a, b)
    assert distance is not None
    shifted = distance > criterion.max_distance
    message = (f"output distribution {distance:.3f} {'>' if shifted else '<='} maxDistance "
               f"{criterion.max_distance:g} from stable's (Jensen-Shannon; new: {_distribution(candidate.outputs)}; "
               f"stable: {_distribution(stable.outputs)})")
    return Verdict("fail" if shifted else "pass", OUTPUT_SHIFT if shifted else "AnalysisPassed", message,
                   output_distance=distance)


def output_shift_on_mirrored_traffic(candidate: Sample, stable: Sample, criterion: OutputShift) -> Verdict:
    """HOOK for a Gateway API shadow step (RequestMirror; the routes are built
    on another branch): before the new revision takes any weight, judge its
    answers to the mirrored requests against the stable revision's answers to
    the same window's requests. The new revision's pods count mirrored
    requests like any other (kubento.runtime.monitor sees every request), so
    a shadow step's window (controller.analysis.Window of both revisions) can
    call this with its sums; a ``fail`` rolls back with OutputShift as in a
    canary step. Nothing calls it yet."""
    return output_shift(candidate, stable, criterion)
