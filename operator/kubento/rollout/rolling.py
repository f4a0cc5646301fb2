"""RollingUpdate: the new revision takes over one pod at a time (and every
strategy's last move, or a promotion): the old revision shrinks only by new
pods that are ready, so capacity never drops below the requested replicas."""

from __future__ import annotations

from kubento.rollout.strategy import Observed, Plan, Strategy


def shift_all(o: Observed) -> Plan:
    """Move everything to the candidate: RollingUpdate surges one pod at a
    time; stable shrinks only by candidate pods that are ready."""
    r = o.replicas
    if o.candidate.ready >= r and o.stable.desired == 0:
        return Plan(0, r, "candidate", "Promoted", "Promoted", f"the new revision serves all {r} replicas",
                    step=o.step, weight=100)
    candidate = min(r, o.candidate.ready + 1) if o.strategy == "RollingUpdate" and not o.promote else r
    return Plan(max(0, r - o.candidate.ready), candidate, "both", "Progressing", "RollingOut",
                f"{min(o.candidate.ready, r)} of {r} new replicas ready", step=o.step,
                weight=round(100 * min(o.candidate.ready, r) / r))




STRATEGY = Strategy("RollingUpdate", shift_all)
