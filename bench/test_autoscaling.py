"""Reaction of kubento's own autoscaler to a load step, on the local cluster.

    make bench   # or: .venv/bin/pytest bench/test_autoscaling.py -s -p no:logging

flaky_project (POST /work sleeps 0.5 s) with concurrency autoscaling (target
2 in flight per replica, 1..4 replicas, 20 s window, 10 s scale-down
stabilisation); 8 clients for 60 s, then none. Prints the time from load
onset to the scale-up decision and to the new pods being Ready, and back
down, the replicas over time as a table, and draws them to
bench/out/autoscaling.png. Asserts nothing about speed.
"""

from __future__ import annotations

from pathlib import Path

from e2e.test_autoscaling import run_concurrency_scenario

OUT = Path(__file__).resolve().parent / "out"


def test_reaction_to_a_load_step(cluster, model, images, s3):
    timeline, start, stop, load = run_concurrency_scenario(cluster, model, images, load_seconds=60, idle_seconds=150)
    timeline.print("replicas over time (concurrency target 2 per replica, 8 clients x 0.5 s requests)")
    decided = timeline.first(lambda r: r[0] >= start and (r[1] or 0) > 1)
    first_ready = timeline.first(lambda r: r[0] >= start and r[2] > 1)
    all_ready = timeline.first(lambda r: r[0] >= start and r[2] == 4)
    down = timeline.first(lambda r: r[0] >= stop and r[1] == 1)
    print("\nload onset -> scale-up decision      "
          f"{(decided - start) if decided else float('nan'):6.1f} s")
    print(f"load onset -> first new pod Ready     {(first_ready - start) if first_ready else float('nan'):6.1f} s")
    print(f"load onset -> all 4 pods Ready        {(all_ready - start) if all_ready else float('nan'):6.1f} s")
    print(f"load stop  -> scale-down to 1 decided {(down - stop) if down else float('nan'):6.1f} s")
    print(f"requests answered {load.ok}, failed {sum(load.failures.values())}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(exist_ok=True)
    t = [r[0] for r in timeline.rows]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.step(t, [r[1] or 0 for r in timeline.rows], where="post", label="desired replicas (status.autoscaling)")
    ax.step(t, [r[2] for r in timeline.rows], where="post", label="ready replicas")
    ax.plot(t, [(r[3] or 0) / 2 for r in timeline.rows], ":", label="in-flight requests / target (20 s window)")
    ax.axvspan(start, stop, color="orange", alpha=0.15, label="8 clients sending")
    ax.set_xlabel("seconds")
    ax.set_ylabel("replicas")
    ax.set_title("kubento concurrency autoscaler: load step on and off")
    ax.legend(loc="lower center", fontsize=8)
    ax.grid(alpha=0.3)
    path = OUT / "autoscaling.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"plot: {path}")
