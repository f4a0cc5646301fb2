"""``python -m kubento.runtime.serving serve TAG [ARGS...]`` — ``bentoml serve``
(BentoML's own CLI, in this process) whose HTTP workers run
kubento.runtime.worker: BentoML's worker with DrainMiddleware (see
kubento.runtime.drain). ``python -m kubento.runtime serve`` execs it."""

from __future__ import annotations

import os
import sys

WORKER = "kubento.runtime.worker"


def use_kubento_worker() -> bool:
    """Point BentoML's arbiter at kubento's worker module. False (and a
    warning) when this BentoML starts its workers some other way: it then
    serves without the drain (keep-alive clients as before)."""
    try:
        from _bentoml_impl.server import serving
    except ImportError as exc:
        print(f"kubento: cannot import BentoML's server ({exc}): serving without the drain", file=sys.stderr)
        return False
    if not isinstance(getattr(serving, "_SERVICE_WORKER_SCRIPT", None), str):
        print("kubento: this BentoML has no _bentoml_impl.server.serving._SERVICE_WORKER_SCRIPT: "
              "serving without the drain (answers never say Connection: close)", file=sys.stderr)
        return False
    serving._SERVICE_WORKER_SCRIPT = WORKER
    return True


# Set on the pods of a bento split into one Deployment per BentoML service (kubento.builders.graph).
SERVICE_ENV, DEPENDS_ENV = "BENTOML_SERVE_SERVICE_NAME", "BENTOML_SERVE_DEPENDS"


def own_envs(tag: str, name: str) -> None:
    """The ``envs`` defaults of service ``name`` (``@bentoml.service(envs=...)``)
    into this process's environment, where the pod's own do not set them:
    BentoML's server applies the entry service's, whichever service it runs
    (as `bentoml serve` gives each dependency its own)."""
    from _bentoml_impl.loader import load

    svc = load(tag)
    if name != svc.name:
        svc = svc.find_dependent_by_name(name)
    for env in svc.envs:
        if env.stage != "build" and env.value and env.name not in os.environ:
            os.environ[env.name] = env.value


def main() -> None:
    use_kubento_worker()
    if os.environ.get(SERVICE_ENV):
        # One service of the bento, its dependencies at the URLs BENTOML_SERVE_DEPENDS gives: BentoML's
        # own entrypoint for that (its containers' and Yatai's), which reads both variables.
        from bentoml_cli._internal.start import start_command

        own_envs(sys.argv[2], os.environ[SERVICE_ENV])
        sys.argv[1:2] = ["start-http-server"]
        sys.exit(start_command())  # reads sys.argv: start-http-server TAG ARGS...
    from bentoml_cli.cli import cli

    sys.exit(cli())  # reads sys.argv: serve TAG ARGS...


if __name__ == "__main__":
    main()
