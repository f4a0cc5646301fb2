"""Drift scores, the I/O half: every ``statistics.interval`` a model with
spec.monitoring.statistics gets a read of its serving revisions' ready pods'
``/metrics`` (a podio job, as the analysis and the autoscaler do: off the
workers, through podhttp's caps and deadlines). When it ends, each pod's
counts join its window (kubento.quality.drift.PodWindow), and each revision's
scores over the window, against the reference it was made with (its
Deployment's annotation) and, for a rollout's new revision, against the
stable revision's outputs, become the operator's metrics
(kubento.controller.metrics.quality). Nothing is written to the API server.

Only the stable revision and the one rolling out (or the current one) are
scored: at most two revisions' series per model. The windows live in memory:
after an operator restart they fill again (no score until minRows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from kubento.api.v1alpha1 import ModelDeploymentStatus, Statistics
from kubento.controller import analysis, metrics
from kubento.controller.analysis import Scrape
from kubento.controller.world import Revisions
from kubento.quality.drift import PodWindow, RevisionScores, against, pod_counts, score, totals, wanted
from kubento.quality.profile import ANNOTATION_MONITORING, judged_of
from kubento.rollout.analysis import seconds


@dataclass
class QualityMemory:
    pods: dict[str, tuple[str, PodWindow]] = field(default_factory=dict)  # pod uid -> (revision, its window)
    scrape_started: float = float("-inf")
    last: list[RevisionScores] = field(default_factory=list)  # the scores last published


def judged(revisions: Revisions, rev: Optional[str]) -> Optional[dict[str, Any]]:
    """What a revision's statistics are judged with (None: it counts none)."""
    dep = revisions.deployments.get(rev or "")
    annotations = ((dep or {}).get("metadata") or {}).get("annotations") or {}
    return judged_of(annotations.get(ANNOTATION_MONITORING))


def scored(status: ModelDeploymentStatus, current: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """(stable, candidate) revisions to score: the one rolling out (or the current one) and the stable one."""
    stable = status.stable_revision
    candidate = status.rollout.revision if status.rollout else current
    return stable, (candidate if candidate != stable else None)


def observe(namespace: str, name: str, memory: QualityMemory, stats: Optional[Statistics], revisions: Revisions,
            status: ModelDeploymentStatus, current: Optional[str], now: float, scraped: Optional[Scrape],
            scrape: Callable[[dict[str, list[dict[str, Any]]], Callable[[str, str], Any]], None],
            scraping: bool) -> Optional[float]:
    """Take a scrape that ended, publish the scores, start the next scrape
    when due. Returns seconds until the next is due (None: not monitored)."""
    if stats is None:
        if memory.pods or memory.last:
            memory.pods.clear()
            memory.last = []
            metrics.quality(namespace, name, [])
        return None
    interval, window = seconds(stats.interval), seconds(stats.window)
    stable, candidate = scored(status, current)
    judging = {rev: j for rev in (stable, candidate) if rev and (j := judged(revisions, rev)) is not None}
    if scraped is not None:
        live = set()
        for rev, pods in scraped.samples.items():
            for uid, counts in pods.items():
                live.add(uid)
                kept = memory.pods.get(uid)
                if kept is None or kept[0] != rev:
                    kept = memory.pods[uid] = (rev, PodWindow())
                kept[1].add(scraped.at, counts, window)
        for uid in [u for u in memory.pods if u not in live]:
            del memory.pods[uid]  # gone (or not ready: its counts come back with it, from a new base)
        scores = {rev: score(rev, j, totals(w for r, w in memory.pods.values() if r == rev), stats.min_rows)
                  for rev, j in judging.items()}
        if candidate in scores and stable in scores:
            scores[candidate] = against(scores[candidate], scores[stable], stats.min_rows)
        memory.last = [scores[r] for r in (stable, candidate) if r in scores]
        metrics.quality(namespace, name, memory.last)
    if not scraping and now - memory.scrape_started >= interval * 0.9 and judging:
        memory.scrape_started = now
        groups = {rev: [p for p in revisions.pods.get(rev, []) if analysis.is_ready(p)] for rev in judging}
        keep = {rev: wanted(j) for rev, j in judging.items()}
        scrape(groups, lambda group, text: pod_counts(text, keep.get(group, set())))
    return max(0.5, memory.scrape_started + interval - now)
