"""Gateway mode's traffic decisions, pure (spec.traffic.gateway).

The model's HTTPRoute splits requests between revisions by weight (exact per
request), so a revision runs the pods for its share of requests rather than
a share of pods: :func:`pods_for`. The strategies (kubento.rollout.rolling,
canary, bluegreen) say which share the candidate should get now; this module
turns that into what the route carries (:class:`Route`) and guards the one
ordering every change needs: **the route moves first, the pods follow.**

- A revision keeps its pods while the route sends it requests or mirrors
  requests to it, and while any change of the route is not acknowledged yet
  by every Gateway that carries it (an older version may still send to it:
  :func:`hold`).
- The route never sends a share to a revision without a ready pod while
  another one of its backends has some (:func:`safe`): a Gateway answers 503
  for a backend without endpoints.

What the live route carries is :class:`RouteSeen` (kubento.controller.route
reads it from the cached HTTPRoute and its status).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional


def pods_for(replicas: int, percent: int) -> int:
    """Pods a revision needs for ``percent`` of the requests of ``replicas``
    pods: ceil(percent% x replicas), at least one for any share, at most replicas."""
    if replicas <= 0 or percent <= 0:
        return 0
    return min(replicas, max(1, -(-replicas * percent // 100)))


@dataclass(frozen=True)
class RouteSeen:
    """The model's HTTPRoute as it is: the main rule's weights and mirror, and
    whether every Gateway that can carry it has seen this version of it."""

    weights: Mapping[str, int] = field(default_factory=dict)  # revision -> percent of requests (sum 100)
    mirror: Optional[tuple[str, int]] = None  # (revision, percent) of the main rule's RequestMirror
    acked: bool = True  # False: a Gateway may still route by an older version
    exists: bool = False

    def sends_to(self, revision: str) -> bool:
        """Whether requests may reach ``revision`` through the route now."""
        if not self.exists:
            return False
        if self.weights.get(revision, 0) > 0 or (self.mirror is not None and self.mirror[0] == revision):
            return True
        return not self.acked  # an older version, which kubento does not know, may still send to it

    def carries(self, candidate: str) -> tuple[int, int]:
        """(weight, mirror percent) the route gives ``candidate`` in its current version."""
        mirror = self.mirror[1] if self.mirror is not None and self.mirror[0] == candidate else 0
        return self.weights.get(candidate, 0), mirror


NO_ROUTE = RouteSeen()


def hold(wanted: Mapping[str, int], desired: Mapping[str, int], route: RouteSeen) -> tuple[dict[str, int], list[str]]:
    """``wanted`` replicas, except that a revision the route may still send
    requests to keeps the pods it has (its scale-down waits for the route);
    and the revisions held."""
    out, held = dict(wanted), []
    for rev, n in wanted.items():
        if n < desired.get(rev, 0) and n == 0 and route.sends_to(rev):
            out[rev] = desired[rev]
            held.append(rev)
    return out, held


def safe(weights: Mapping[str, int], ready: Mapping[str, int]) -> dict[str, int]:
    """``weights`` (percent, sum 100), with the share of a revision without a
    ready pod moved to those that have one (none: unchanged)."""
    live = {rev: w for rev, w in weights.items() if w > 0}
    with_pods = {rev: w for rev, w in live.items() if ready.get(rev, 0) > 0}
    if not with_pods or len(with_pods) == len(live):
        return live
    total = sum(with_pods.values())
    if total == 0:  # the revisions with pods had no share: split evenly
        with_pods = {rev: 1 for rev in with_pods}
        total = len(with_pods)
    out = {rev: 100 * w // total for rev, w in with_pods.items()}
    first = sorted(out, key=lambda rev: (-with_pods[rev], rev))[0]
    out[first] += 100 - sum(out.values())
    return out


@dataclass(frozen=True)
class Route:
    """What the model's HTTPRoute should carry (kubento.builders.route makes it)."""

    weights: tuple[tuple[str, int], ...]  # the main rule's backends: (revision, percent > 0), sum 100
    mirror: Optional[tuple[str, int]] = None  # the main rule mirrors this percent to this revision
    probe: Optional[tuple[str, str]] = None  # (to, mirrored to): the mirror probe rule, before a shadow step
    stable: Optional[str] = None  # '<header>: stable' reaches it
    candidate: Optional[str] = None  # '<header>: candidate' reaches it (it has a ready pod)
    revisions: tuple[str, ...] = ()  # each has its Service and a '<header>: <revision>' rule

    @property
    def backends(self) -> tuple[str, ...]:
        """Every revision the route names (each needs its Service)."""
        named = [rev for rev, _ in self.weights] + list(self.revisions)
        named += [self.mirror[0]] if self.mirror else []
        named += list(self.probe) if self.probe else []
        named += [rev for rev in (self.stable, self.candidate) if rev]
        return tuple(dict.fromkeys(named))


MAX_NAMED = 10  # header rules for named revisions, at most (an HTTPRoute has at most 16 rules)


def route(weights: Mapping[str, int], replicas: Mapping[str, int], ready: Mapping[str, int], *,
          stable: Optional[str], candidate: Optional[str] = None, mirror: int = 0, probe: bool = False) -> Route:
    """The route for ``weights`` (made safe), the candidate's mirror or probe
    rule, and header rules for every revision that runs pods (``replicas``)."""
    main = safe(weights, ready)
    has_pods = candidate is not None and ready.get(candidate, 0) > 0
    running = [rev for rev, n in sorted(replicas.items()) if n > 0]
    order = [rev for rev in (stable, candidate) if rev] + running
    named = tuple(dict.fromkeys(rev for rev in order if rev in running or rev in main))[:MAX_NAMED]
    return Route(
        weights=tuple(sorted(main.items(), key=lambda kv: (kv[0] != stable, kv[0]))),
        mirror=(candidate, mirror) if candidate and mirror > 0 and has_pods else None,
        probe=(stable, candidate) if candidate and stable and probe and has_pods else None,
        stable=stable,
        candidate=candidate if has_pods else None,
        revisions=named,
    )
