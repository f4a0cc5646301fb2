"""The ``kubento`` command: ``kubento run`` (the operator) and ``kubento crds``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    import kopf

    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    import kubento.controller.handlers  # noqa: F401  (registers the handlers)

    if not args.namespace and not args.all_namespaces:
        print("kubento run: give -n/--namespace (repeatable) or -A/--all-namespaces", file=sys.stderr)
        return 2
    kopf.run(
        standalone=True,  # one active replica (the chart's Deployment); no peering objects needed
        clusterwide=args.all_namespaces,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness or None,
    )
    return 0


def _crds(args: argparse.Namespace) -> int:
    from kubento.api import crd

    dirs = args.dir or [Path("crds"), Path("charts/kubento/crds")]
    if args.check:
        stale = [
            str(d / name) for d in dirs for name, text in crd.render().items()
            if not (d / name).exists() or (d / name).read_text() != text
        ]
        if stale:
            print(f"out of date: {', '.join(stale)} (run `kubento crds`)", file=sys.stderr)
            return 1
        print(f"up to date: {', '.join(map(str, dirs))}")
        return 0
    for d in dirs:
        for path in crd.write(d):
            print(f"wrote {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubento", description="Serve BentoML models on Kubernetes.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", help="watch this namespace (repeatable; globs allowed)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL ('' to disable)")
    run.add_argument("--log-format", choices=["plain", "json"], default="plain")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=_run)

    crds = sub.add_parser("crds", help="write the CRDs generated from the API models")
    crds.add_argument(
        "--dir", type=Path, action="append",
        help="output directory, repeatable (default: crds and charts/kubento/crds)",
    )
    crds.add_argument("--check", action="store_true", help="fail if the files differ from what would be written")
    crds.set_defaults(func=_crds)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
