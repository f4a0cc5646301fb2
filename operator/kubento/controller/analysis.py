"""Analysis I/O: read the new revision's (and the stable one's) BentoML
``/metrics`` from each ready pod and judge the current step's window.

The reads are podio jobs (off the workers): a pass starts one when the
window needs counters and the job's end brings the pass that uses them.
The window of a step starts with the first read after its replicas were
ready and is kept in memory: after an operator restart the step's window starts
again (never a pass without data). A pod's requests before a restart of its
container stay counted. Judging is pure (kubento.rollout.analysis).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

import aiohttp

from kubento.api.v1alpha1 import Analysis
from kubento.controller import podhttp
from kubento.controller.podio import limited
from kubento.rollout.analysis import ZERO, Sample, Verdict, evaluate, parse_metrics, seconds, since, total

log = logging.getLogger("kubento.analysis")

@dataclass
class PodCounts:
    """One pod's requests since the window began, across its restarts (a
    restart resets its counters; what came before is carried)."""

    start: Optional[Sample]  # counters when first seen in the window (None: counts from zero)
    last: Optional[Sample] = None
    carried: Sample = ZERO

    def update(self, now: Sample) -> Sample:
        if self.last is not None and since(self.last, now) is now and now != self.last:
            # A counter went down: the pod restarted. Keep what it had counted.
            self.carried = total([self.carried, since(self.start, self.last)])
            self.start = None
        self.last = now
        return total([self.carried, since(self.start, now)])


@dataclass
class Window:
    started: float
    pods: dict[str, PodCounts] = field(default_factory=dict)  # pod uid -> its counts
    last: Optional[Verdict] = None
    judged: float = 0.0  # when ``last`` was computed

    def counts(self, samples: dict[str, Sample]) -> Sample:
        return total(self.pods.setdefault(uid, PodCounts(None)).update(s) for uid, s in samples.items())


SCRAPE_DEADLINE = 2.0  # seconds for one pod's /metrics, all of it
PODS_AT_ONCE = 8  # a model's pods read in parallel


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


@dataclass(frozen=True)
class Scrape:
    """The counters of a model's ready pods at one moment (a podio job's result)."""

    at: float  # when it began (wall clock)
    samples: dict[str, dict[str, Any]]  # group (e.g. candidate, stable) -> pod uid -> counters (what parse made)
    errors: dict[str, str]  # pod name -> why it gave no counters
    tag: Any = None  # what it was taken for (an analysis window's key)

    def problem(self) -> str:
        """The first pod that gave nothing, and why (for a condition or status message)."""
        if not self.errors:
            return ""
        name = sorted(self.errors)[0]
        more = f" (and {len(self.errors) - 1} more pods)" if len(self.errors) > 1 else ""
        return f"no metrics from pod {name}: {self.errors[name]}{more}"


def _answer_sample(group: str, text: str) -> Sample:
    return parse_metrics(text)


def scrape_job(groups: dict[str, list[dict[str, Any]]], port: int, at: float, tag: Any = None,  # noqa: ANN201
               parse: Callable[[str, str], Any] = _answer_sample):
    """A podio job reading /metrics of every ready pod of each group
    (``parse(group, text)``: a Sample unless said otherwise)."""
    pods = [(group, p) for group, members in groups.items() for p in members
            if (p.get("status") or {}).get("podIP") and is_ready(p)]

    async def run(session: aiohttp.ClientSession) -> Scrape:
        answers = await limited(PODS_AT_ONCE, [
            lambda p=p: podhttp.request(session, podhttp.pod_url(p["status"]["podIP"], port, "/metrics"),
                                        deadline=SCRAPE_DEADLINE, cap=podhttp.METRICS_MAX) for _, p in pods])
        samples: dict[str, dict[str, Sample]] = {group: {} for group in groups}
        errors: dict[str, str] = {}
        for (group, pod), answer in zip(pods, answers):
            name = pod["metadata"].get("name", "")
            if answer.status != 200 or answer.final:
                errors[name] = (f"HTTP {answer.status}: {answer.error}" if answer.status is not None and answer.error
                                else answer.error or f"/metrics answered HTTP {answer.status}")
                continue
            try:
                # Parsing a few MiB takes a while: not on the loop, where other requests' deadlines run.
                samples[group][pod["metadata"]["uid"]] = await asyncio.to_thread(parse, group, answer.body)
            except ValueError:
                errors[name] = "its /metrics is not Prometheus' text format"
        for name, why in errors.items():
            log.info("no metrics from pod %s: %s", name, why)
        return Scrape(at, samples, errors, tag)
    return run


def judge(windows: dict[tuple[str, int], tuple[Window, Window]], key: tuple[str, int], analysis: Analysis,
          now: float, scraped: Optional[Scrape], scrape: Callable[[], None], scraping: bool,
          compare_outputs: bool = False) -> Verdict:
    """The verdict of the window ``key`` (rollout token, step) so far,
    re-judged every ``interval`` from a scrape begun at or after its time.
    ``windows`` is the model's memory of them; ``scraped`` the model's last
    scrape, if one just ended; ``scrape()`` starts one (``scraping``: one
    is under way; its end brings a pass). ``compare_outputs``: both
    revisions count their outputs (for analysis.outputShift)."""
    interval = seconds(analysis.interval)
    if scraped is not None and scraped.tag != key:
        scraped = None  # begun for an earlier step, or another rollout
    if key not in windows:
        if scraped is None:
            if not scraping:
                scrape()
            return Verdict("inconclusive", "Collecting", "collecting metrics: reading the pods' counters")
        windows.clear()  # an earlier step, or another rollout
        candidate, stable = Window(scraped.at), Window(scraped.at)
        candidate.pods = {uid: PodCounts(s) for uid, s in scraped.samples["candidate"].items()}
        stable.pods = {uid: PodCounts(s) for uid, s in scraped.samples["stable"].items()}
        windows[key] = (candidate, stable)
        return Verdict("inconclusive", "Collecting",
                       _with(f"collecting metrics: the first verdict comes after {analysis.interval}", scraped))
    candidate, stable = windows[key]
    due_at = (candidate.judged if candidate.last is not None else candidate.started) + interval
    if scraped is not None and scraped.at >= due_at:
        canary = candidate.counts(scraped.samples["candidate"])
        baseline = stable.counts(scraped.samples["stable"]) if scraped.samples["stable"] else None
        verdict = evaluate(canary, analysis, baseline, compare_outputs)
        candidate.last, candidate.judged = replace(verdict, message=_with(verdict.message, scraped)), scraped.at
        log.info("analysis %s step %d: %s", key[0], key[1], candidate.last.message)
        return candidate.last
    if now >= due_at and not scraping:
        scrape()
    if candidate.last is not None:
        return candidate.last
    return Verdict("inconclusive", "Collecting", f"collecting metrics: the first verdict comes after {analysis.interval}")


def _with(message: str, scraped: Scrape) -> str:
    problem = scraped.problem()
    return f"{message}; {problem}" if problem else message


def next_judgement(windows: dict[tuple[str, int], tuple[Window, Window]], key: tuple[str, int],
                   analysis: Analysis, now: float) -> float:
    """Seconds until the window ``key`` wants another scrape."""
    interval = seconds(analysis.interval)
    if key not in windows:
        return interval  # its first scrape's end brings a pass; this is in case it failed
    candidate = windows[key][0]
    since = candidate.judged if candidate.last is not None else candidate.started
    return max(0.0, since + interval - now)
