"""RollingUpdate: the new revision takes over one pod at a time (and every
strategy's last move, or a promotion): the old revision shrinks only by new
pods that are ready, so capacity never drops below the requested replicas.

In gateway mode the route moves with the pods: the new revision takes the
share of requests its ready pods can carry (never less than the route
already gives it), and the old one keeps the pods for the share the route
still sends it; it leaves only once the route sends it nothing."""

from __future__ import annotations

from kubento.rollout.strategy import Observed, Plan, Strategy
from kubento.rollout.traffic import pods_for


def shift_all(o: Observed) -> Plan:
    """Move everything to the candidate: RollingUpdate surges one pod at a
    time; stable shrinks only by candidate pods that are ready."""
    r = o.replicas
    if o.gateway:
        return _shift_routed(o)
    if o.candidate.ready >= r and o.stable.desired == 0:
        return Plan(0, r, "candidate", "Promoted", "Promoted", f"the new revision serves all {r} replicas",
                    step=o.step, weight=100)
    candidate = min(r, o.candidate.ready + 1) if o.strategy == "RollingUpdate" and not o.promote else r
    return Plan(max(0, r - o.candidate.ready), candidate, "both", "Progressing", "RollingOut",
                f"{min(o.candidate.ready, r)} of {r} new replicas ready", step=o.step,
                weight=round(100 * min(o.candidate.ready, r) / r))


def _shift_routed(o: Observed) -> Plan:
    r = o.replicas
    ready = min(o.candidate.ready, r)
    route = max(o.route, 100 * ready // r)  # what its ready pods can carry; never back
    if o.candidate.ready >= r and o.stable.desired == 0 and o.carries == (100, 0):
        return Plan(0, r, "candidate", "Promoted", "Promoted", f"the new revision serves all {r} replicas",
                    step=o.step, weight=100, route=100)
    candidate = min(r, o.candidate.ready + 1) if o.strategy == "RollingUpdate" and not o.promote else r
    # Stable keeps the pods for the share the route gives it now (all of them while that is in flux).
    stable = pods_for(r, 100 - o.route)
    if not o.acked:
        stable = max(stable, o.stable.desired)
    message = f"{ready} of {r} new replicas ready; the route sends {route}% of requests to them"
    return Plan(stable, candidate, "both", "Progressing", "RollingOut", message, step=o.step, weight=route,
                route=route)


STRATEGY = Strategy("RollingUpdate", shift_all)
