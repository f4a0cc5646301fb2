"""kubento.rollout.analysis: BentoML metrics text in, a canary verdict out.

tests/unit/data/bentoml-metrics.txt is the /metrics text of a real BentoML
1.4.39 server (tests/runtime/flaky_project, captured by hand with curl; its
header comment lists the exact requests). tests/runtime/test_metrics.py checks
the same parsing against a live server.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from kubento.api.v1alpha1 import Analysis
from kubento.rollout.analysis import (
    Sample,
    evaluate,
    format_duration,
    histogram_quantile,
    is_infra,
    parse_metrics,
    seconds,
    since,
    total,
)

FIXTURE = (Path(__file__).parent / "data" / "bentoml-metrics.txt").read_text()
INF = math.inf
BENTOML_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0)


# ---------------------------------------------------------------- parse_metrics


def test_parses_the_real_bentoml_text() -> None:
    s = parse_metrics(FIXTURE)
    # /work: 23 x 200, 10 x 500, 1 x 400; /nope: 1 x 404. Probes, docs, the index page and static files left out.
    assert (s.requests, s.errors, s.duration_count) == (35, 10, 35)
    assert tuple(le for le, _ in s.buckets) == BENTOML_BOUNDS + (INF,)
    counts = dict(s.buckets)
    assert (counts[0.25], counts[0.5], counts[INF]) == (32, 35, 35)  # the three {"sleep": 0.3} requests
    assert 0.9 < s.duration_sum < 1.2
    assert s.error_rate == pytest.approx(10 / 35)
    assert s.p95 == pytest.approx(0.25 + 0.25 * (0.95 * 35 - 32) / 3)


def test_the_real_text_judged_with_default_analysis() -> None:
    v = evaluate(parse_metrics(FIXTURE), Analysis())
    assert (v.result, v.reason) == ("fail", "ErrorRateTooHigh")
    assert v.message == "error rate 28.6% > maxErrorRate 5.0% (10 of 35 requests)"


def test_the_real_text_without_its_api_endpoint_is_empty() -> None:
    assert parse_metrics(FIXTURE, exclude={"/work", "/nope"}) == Sample()


@pytest.mark.parametrize("text", ["", "# nothing served yet\n", "up 1\n"])
def test_no_requests_yet_is_zeros(text: str) -> None:
    assert parse_metrics(text) == Sample()


def test_probe_only_pod_is_zeros() -> None:
    probes = "\n".join(line for line in FIXTURE.splitlines()
                       if 'endpoint="/work"' not in line and 'endpoint="/nope"' not in line)
    assert parse_metrics(probes) == Sample()


def test_another_namespace() -> None:
    text = FIXTURE.replace("bentoml_service_request", "mymodel_request")
    assert parse_metrics(text) == Sample()
    assert parse_metrics(text, namespace="mymodel").requests == 35


def test_not_prometheus_text() -> None:
    with pytest.raises(ValueError):
        parse_metrics('bentoml_service_request_total{endpoint="/x" 1\n')


@pytest.mark.parametrize("endpoint, infra", [
    ("/", True), ("", True), ("/readyz", True), ("/livez", True), ("/healthz", True), ("/metrics", True),
    ("/docs.json", True), ("/schema.json", True), ("/static_content/index.css", True), ("/assets/app.js", True),
    ("/prefix/readyz", True),
    ("/work", False), ("/classify", False), ("/v1/predict", False), ("/work/submit", False), ("/nope", False),
])
def test_is_infra(endpoint: str, infra: bool) -> None:
    assert is_infra(endpoint) is infra


def registry_text(series: dict[tuple[str, str], list[float]]) -> str:
    """Prometheus text as BentoML's middleware writes it: per (endpoint, code), the durations observed."""
    reg = CollectorRegistry()
    labels = ["endpoint", "service_name", "service_version", "http_response_code"]
    counter = Counter("bentoml_service_request_total", "", labels, registry=reg)
    hist = Histogram("bentoml_service_request_duration_seconds", "", labels, registry=reg, buckets=BENTOML_BOUNDS)
    for (endpoint, code), durations in series.items():
        for d in durations:
            counter.labels(endpoint, "svc", "1", code).inc()
            hist.labels(endpoint, "svc", "1", code).observe(d)
    return generate_latest(reg).decode()


ENDPOINTS = st.sampled_from(["/predict", "/classify", "/readyz", "/livez", "/healthz", "/docs.json", "/"])
CODES = st.sampled_from(["200", "400", "404", "500", "503"])


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.tuples(ENDPOINTS, CODES), st.lists(st.floats(0, 400), max_size=20), max_size=12))
def test_parse_counts_api_requests_and_5xx(series: dict[tuple[str, str], list[float]]) -> None:
    s = parse_metrics(registry_text(series))
    api = {k: v for k, v in series.items() if k[0] in ("/predict", "/classify")}
    assert s.requests == sum(len(v) for v in api.values()) == s.duration_count
    assert s.errors == sum(len(v) for k, v in api.items() if k[1].startswith("5"))
    if s.requests:
        assert s.buckets[-1] == (INF, s.requests)
        assert s.duration_sum == pytest.approx(sum(sum(v) for v in api.values()))


# ---------------------------------------------------------------- histogram_quantile

# Prometheus' own test histograms (promql/testdata/histograms.test)
POSITIVE = ((0.1, 50), (0.2, 70), (1.0, 110), (INF, 120))
NEGATIVE = ((-0.2, 10), (-0.1, 20), (0.3, 20), (INF, 30))


@pytest.mark.parametrize("q, buckets, expected", [
    (0, POSITIVE, 0.0),
    (0.25, POSITIVE, 0.06),
    (0.5, POSITIVE, 0.15),
    (0.75, POSITIVE, 0.6),
    (0.99, POSITIVE, 1.0),  # in the +Inf bucket: the largest finite bound
    (1, POSITIVE, 1.0),
    (0, NEGATIVE, -0.2),  # a first bucket with bound <= 0: its bound
    (0.25, NEGATIVE, -0.2),
    (0.5, NEGATIVE, -0.15),
    (0.75, NEGATIVE, 0.3),
    (-0.1, POSITIVE, -INF),
    (1.1, POSITIVE, INF),
    (0.5, ((INF, 120), (0.1, 50), (1.0, 110), (0.2, 70)), 0.15),  # order does not matter
    (0.5, ((0.1, 10), (0.2, 8), (INF, 10)), 0.05),  # decreasing counts made monotonic
    (0.5, ((0.005, 0), (0.01, 4), (INF, 4)), 0.0075),
])
def test_histogram_quantile(q: float, buckets, expected: float) -> None:
    assert histogram_quantile(q, buckets) == pytest.approx(expected)


@pytest.mark.parametrize("buckets", [
    (), ((INF, 5),), ((0.1, 5), (1.0, 5)), ((0.1, 0), (INF, 0)),
])
def test_histogram_quantile_without_an_answer(buckets) -> None:
    assert histogram_quantile(0.95, buckets) is None


@st.composite
def histograms(draw, min_count: int = 0, bounds=None) -> tuple[tuple[float, float], ...]:
    """Cumulative buckets ending in +Inf; ``bounds``: the finite bounds to use."""
    if bounds is None:
        bounds = sorted(draw(st.sets(st.floats(0.001, 1000, allow_nan=False), min_size=1, max_size=10)))
    bounds = list(bounds)
    increments = draw(st.lists(st.integers(0, 50), min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    if sum(increments) < min_count:
        increments[-1] += min_count
    cumulative, n = [], 0
    for le, inc in zip(bounds + [INF], increments):
        n += inc
        cumulative.append((le, float(n)))
    return tuple(cumulative)


@given(histograms(min_count=1), st.floats(0, 1), st.floats(0, 1))
def test_quantile_within_its_bucket_and_monotonic(buckets, q1: float, q2: float) -> None:
    lo, hi = sorted((q1, q2))
    a, b = histogram_quantile(lo, buckets), histogram_quantile(hi, buckets)
    assert a is not None and b is not None
    assert a <= b + 1e-9
    finite = [le for le, _ in buckets if le != INF]
    for q, value in ((lo, a), (hi, b)):
        assert 0 <= value <= finite[-1]
        rank = q * buckets[-1][1]
        i = next(i for i, (_, c) in enumerate(buckets) if c >= rank)
        if buckets[i][0] == INF:
            assert value == finite[-1]
        else:
            assert (buckets[i - 1][0] if i else 0.0) - 1e-9 <= value <= buckets[i][0] + 1e-9


# ---------------------------------------------------------------- since / total


def sample(requests: float, errors: float = 0, buckets=(), dsum: float = 0.0) -> Sample:
    return Sample(requests, errors, tuple(buckets), dsum, buckets[-1][1] if buckets else 0.0)


def test_since_subtracts() -> None:
    before = sample(100, 5, ((0.1, 90), (1.0, 99), (INF, 100)), 10.0)
    after = sample(160, 25, ((0.1, 130), (1.0, 155), (INF, 160)), 16.0)
    assert since(before, after) == Sample(60, 20, ((0.1, 40), (1.0, 56), (INF, 60)), pytest.approx(6.0), 60)


def test_since_nothing_or_a_new_pod() -> None:
    s = sample(10, 1, ((0.1, 10), (INF, 10)), 0.5)
    assert since(None, s) == s
    assert since(s, s) == Sample(0, 0, ((0.1, 0), (INF, 0)), 0.0, 0)


@pytest.mark.parametrize("after", [
    sample(3, 0, ((0.1, 3), (INF, 3)), 0.1),  # fewer requests: restarted
    sample(150, 0, ((0.1, 140), (INF, 150)), 20.0),  # more requests, fewer errors: restarted and busy
    Sample(150, 10, ((0.1, 60), (INF, 150)), 20.0, 150),  # a bucket went down
])
def test_since_a_reset_counter_counts_from_zero(after: Sample) -> None:
    before = sample(100, 5, ((0.1, 90), (INF, 100)), 10.0)
    assert since(before, after) == after


def test_total_sums_pods_and_merges_bucket_layouts() -> None:
    a = sample(10, 1, ((0.1, 8), (1.0, 10), (INF, 10)), 1.0)
    b = sample(4, 2, ((0.5, 3), (INF, 4)), 2.0)
    t = total([a, b, Sample()])
    assert (t.requests, t.errors, t.duration_sum, t.duration_count) == (14, 3, 3.0, 14)
    # cumulative counts each pod proves at every bound of either layout
    assert t.buckets == ((0.1, 8), (0.5, 11), (1.0, 13), (INF, 14))
    assert total([]) == Sample()


@st.composite
def samples(draw, bounds=None) -> Sample:
    buckets = draw(histograms(bounds=bounds))
    n = buckets[-1][1]
    return Sample(n, float(draw(st.integers(0, int(n)))), buckets, draw(st.floats(0, 1e4)), n)


@given(st.data())
def test_since_undoes_total(data) -> None:
    before = data.draw(samples())
    delta = data.draw(samples(bounds=[le for le, _ in before.buckets[:-1]]))  # the same pod: the same layout
    window = since(before, total([before, delta]))
    assert (window.requests, window.errors, window.duration_count) == (delta.requests, delta.errors,
                                                                      delta.duration_count)
    assert histogram_quantile(0.5, window.buckets) == (
        pytest.approx(histogram_quantile(0.5, delta.buckets)) if delta.requests else None)


@given(samples(), st.integers(1, 10_000))
def test_since_of_a_reset_counter_is_the_new_count(before: Sample, lost: int) -> None:
    after = Sample(max(before.requests - lost, 0), 0, (), 0.0, 0)
    if after.requests < before.requests:
        assert since(before, after) == after


@given(st.lists(samples(), max_size=5))
def test_total_does_not_depend_on_order(pods: list[Sample]) -> None:
    a, b = total(pods), total(reversed(pods))
    assert (a.requests, a.errors, a.buckets) == (b.requests, b.errors, b.buckets)


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize("text, expected", [
    ("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1m30s", 90), ("1.5s", 1.5), ("0s", 0),
    ("1h2m3s4ms", 3723.004), ("250ms250ms", 0.5),
])
def test_seconds(text: str, expected: float) -> None:
    assert seconds(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "5", "1d", "-1s", "1.s", ".5s", "s", " 5s", "5s ", "5 s", "1e3ms", None, 5])
def test_seconds_refuses(text) -> None:
    with pytest.raises(ValueError):
        seconds(text)


@pytest.mark.parametrize("secs, text", [(0, "0s"), (0.5, "500ms"), (90, "1m30s"), (3600, "1h"), (90.5, "1m30s500ms")])
def test_format_duration(secs: float, text: str) -> None:
    assert format_duration(secs) == text


@given(st.integers(0, 10**10))
def test_seconds_round_trips(ms: int) -> None:
    assert seconds(format_duration(ms / 1000)) == ms / 1000


@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["ms", "s", "m", "h"])), min_size=1, max_size=5))
def test_seconds_sums_the_parts(parts) -> None:
    size = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    assert seconds("".join(f"{n}{u}" for n, u in parts)) == pytest.approx(sum(n * size[u] for n, u in parts))


# ---------------------------------------------------------------- evaluate

FAST = ((0.05, 0.0), (0.1, 200.0), (INF, 200.0))  # p95 = 0.0975
SLOW = ((0.5, 100.0), (1.0, 120.0), (2.5, 200.0), (INF, 200.0))  # p95 = 2.3125


@pytest.mark.parametrize("canary, analysis, result, reason, message", [
    (Sample(), Analysis(min_requests=0), "inconclusive", "NotEnoughRequests",
     "0 requests < minRequests 1: not enough traffic for a verdict"),
    (sample(19, 19, FAST), Analysis(min_requests=20), "inconclusive", "NotEnoughRequests",
     "19 requests < minRequests 20: not enough traffic for a verdict"),
    (sample(200, 62, FAST), Analysis(), "fail", "ErrorRateTooHigh",
     "error rate 31.0% > maxErrorRate 5.0% (62 of 200 requests)"),
    (sample(200, 10, FAST), Analysis(), "pass", "AnalysisPassed",
     "error rate 5.0% <= maxErrorRate 5.0% (10 of 200 requests), p95 latency 97.5ms"),
    (sample(200, 0, FAST), Analysis(max_error_rate=0), "pass", "AnalysisPassed",
     "error rate 0.0% <= maxErrorRate 0.0% (0 of 200 requests), p95 latency 97.5ms"),
    (sample(200, 1, FAST), Analysis(max_error_rate=0), "fail", "ErrorRateTooHigh",
     "error rate 0.5% > maxErrorRate 0.0% (1 of 200 requests)"),
    (sample(200, 0, FAST), Analysis(max_latency_p95="100ms"), "pass", "AnalysisPassed",
     "error rate 0.0% <= maxErrorRate 5.0% (0 of 200 requests), p95 latency 97.5ms <= maxLatencyP95 100ms"),
    (sample(200, 0, SLOW), Analysis(max_latency_p95="500ms"), "fail", "LatencyTooHigh",
     "p95 latency 2.31s > maxLatencyP95 500ms (200 requests)"),
    (sample(200, 30, SLOW), Analysis(max_latency_p95="1s"), "fail", "ErrorRateAndLatencyTooHigh",
     "error rate 15.0% > maxErrorRate 5.0% (30 of 200 requests); p95 latency 2.31s > maxLatencyP95 1s"),
    (Sample(50, 0), Analysis(max_latency_p95="1s"), "inconclusive", "NoLatencyData",
     "error rate 0.0% <= maxErrorRate 5.0% (0 of 50 requests); no request duration buckets to check "
     "maxLatencyP95 1s"),
    (Sample(50, 20), Analysis(max_latency_p95="1s"), "fail", "ErrorRateTooHigh",
     "error rate 40.0% > maxErrorRate 5.0% (20 of 50 requests)"),
    (Sample(50, 0), Analysis(), "pass", "AnalysisPassed", "error rate 0.0% <= maxErrorRate 5.0% (0 of 50 requests)"),
])
def test_evaluate(canary: Sample, analysis: Analysis, result: str, reason: str, message: str) -> None:
    v = evaluate(canary, analysis)
    assert (v.result, v.reason, v.message) == (result, reason, message)
    assert v.requests == canary.requests and v.errors == canary.errors
    assert v.error_rate == canary.error_rate and v.p95_seconds == canary.p95


def test_evaluate_names_the_baseline_for_context() -> None:
    canary, stable = sample(200, 62, FAST), sample(800, 4, SLOW)
    v = evaluate(canary, Analysis(), baseline=stable)
    assert v.message == ("error rate 31.0% > maxErrorRate 5.0% (62 of 200 requests); "
                         "stable: error rate 0.5% (4 of 800 requests), p95 2.31s")
    assert evaluate(canary, Analysis(), baseline=Sample()).message.endswith("; stable: no requests")
    # the baseline never changes the verdict
    assert evaluate(sample(200, 0, FAST), Analysis(), baseline=sample(100, 100)).result == "pass"


ANALYSES = st.builds(
    Analysis,
    max_error_rate=st.floats(0, 1),
    max_latency_p95=st.none() | st.sampled_from(["5ms", "100ms", "250ms", "1s", "1m30s", "10m"]),
    min_requests=st.integers(0, 300),
)
SEVERITY = {"pass": 0, "inconclusive": 1, "fail": 2}


@given(samples(), ANALYSES)
def test_never_passes_without_enough_requests(canary: Sample, analysis: Analysis) -> None:
    v = evaluate(canary, analysis)
    if canary.requests < max(analysis.min_requests, 1):
        assert (v.result, v.reason) == ("inconclusive", "NotEnoughRequests")
    if v.result == "pass":
        assert canary.requests >= max(analysis.min_requests, 1)
        assert canary.errors <= analysis.max_error_rate * canary.requests


@given(samples(), ANALYSES, st.integers(0, 10**6), st.integers(0, 10**6))
def test_more_errors_never_turn_a_fail_into_a_pass(canary: Sample, analysis: Analysis, e1: int, e2: int) -> None:
    lo, hi = sorted((min(e1, canary.requests), min(e2, canary.requests)))
    fewer = evaluate(Sample(canary.requests, lo, canary.buckets, canary.duration_sum, canary.duration_count), analysis)
    more = evaluate(Sample(canary.requests, hi, canary.buckets, canary.duration_sum, canary.duration_count), analysis)
    assert SEVERITY[fewer.result] <= SEVERITY[more.result]


@given(samples(), ANALYSES)
def test_more_latency_never_turns_a_fail_into_a_pass(canary: Sample, analysis: Analysis) -> None:
    # the same requests, every one moved one bucket up
    les = [le for le, _ in canary.buckets]
    slower = tuple((le, canary.buckets[i - 1][1] if i else 0.0) for i, le in enumerate(les[:-1]))
    slower += (canary.buckets[-1],)
    a = evaluate(canary, analysis)
    b = evaluate(Sample(canary.requests, canary.errors, slower, canary.duration_sum, canary.duration_count), analysis)
    assert SEVERITY[a.result] <= SEVERITY[b.result]
