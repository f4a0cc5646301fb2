"""``python -m kubento.runtime.worker ARGS`` — one of BentoML's HTTP workers
that drains its keep-alive connections at SIGTERM (kubento.runtime.drain),
answers only its own model when it is another service's dependency
(kubento.runtime.guard),
routes task ids to the replica that owns them (kubento.runtime.tasks) and,
with ``KUBENTO_MONITORING``, records and counts what goes in and comes out
(kubento.runtime.monitor).
BentoML's arbiter starts it in place of its own ``_bentoml_impl.worker.service``
(kubento.runtime.serving), with the same arguments; everything else is
BentoML's worker, unchanged."""

from __future__ import annotations


def main() -> None:
    from kubento.runtime import drain, guard, monitor, tasks

    guard.install()  # outermost: a dependency service refuses callers of other models before anything
    drain.install()
    tasks.install()  # inside the drain; its linger comes before the drain at stop
    monitor.install()  # innermost: a forwarded task call is recorded by its owner only
    from _bentoml_impl.worker.service import main as bentoml_worker

    bentoml_worker()  # a click command: reads sys.argv


if __name__ == "__main__":
    main()
