"""The ``kubento`` command: ``kubento run`` (the operator), ``kubento crds``,
and, for ML engineers, ``kubento build`` / ``kubento push`` (a ``.bento``
archive for ``bento.archive``; they reuse the in-pod helper kubento.runtime),
``kubento history|rollback|promote|abort`` (kubento.cli.rollout), ``kubento
top`` (kubento.cli.top) and ``kubento check`` (kubento.cli.check); also
``kubectl kubento ...``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kubento.cli import check, rollout, top


def _run(args: argparse.Namespace) -> int:
    import kopf

    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    if not args.verbose:
        # kopf logs every handler call on every watch event at info: at a
        # thousand models that is most of the operator's work.
        import logging

        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if not args.namespace and not args.all_namespaces:
        print("kubento run: give -n/--namespace (repeatable) or -A/--all-namespaces", file=sys.stderr)
        return 2
    from kubento.controller.config import Config
    from kubento.controller.handlers import registry
    from kubento.controller.operator import Operator

    config = Config.from_env(workers=args.workers, resync_seconds=args.resync_seconds,
                             stall_seconds=args.stall_seconds, election_namespace=args.leader_election_namespace)
    operator = Operator(config)
    if args.metrics_port:
        from kubento.controller import metrics

        metrics.serve(args.metrics_port)
    kopf.run(
        registry=registry(operator),
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


# kubento is not published on PyPI: the build extra installs from a checkout.
_BUILD_EXTRA = "pip install -e '.[build]' in a kubento checkout"


def _build(args: argparse.Namespace) -> int:
    try:
        from kubento.runtime import Failure, bento, storage
    except ImportError as exc:
        print(f"kubento build: {exc.name} is missing: {_BUILD_EXTRA}", file=sys.stderr)
        return 1
    project = Path(args.path)
    try:
        if not project.is_dir():
            raise Failure(f"{project} is not a directory (want a BentoML project: service.py, bentofile.yaml)")
        try:
            bento.bentoml_command()
        except Failure as exc:
            raise Failure(f"{exc}: {_BUILD_EXTRA}") from None
        tag = bento.build(project)
        out = Path(args.output) if args.output else Path(f"{tag.replace(':', '-')}.bento")
        bento.export(tag, out.resolve())
        digest = storage.sha256_file(out)
    except Failure as exc:
        print(f"kubento build: {exc}", file=sys.stderr)
        return 1
    print(f"\ntag:    {tag}\npath:   {out}\nsize:   {storage.human(out.stat().st_size)}\nsha256: {digest}")
    print(f"next:   kubento push {out} s3://BUCKET/{out.name}")
    return 0


def _push(args: argparse.Namespace) -> int:
    try:
        from kubento.runtime import Failure, storage
    except ImportError as exc:
        print(f"kubento push: {exc.name} is missing: {_BUILD_EXTRA}", file=sys.stderr)
        return 1
    src = Path(args.file)
    uri = args.uri
    try:
        if not src.is_file():
            raise Failure(f"{src} is not a file")
        loc = storage.parse(uri, allow_local=True)
        if loc.scheme == "s3" and (not loc.path or uri.endswith("/")):
            uri = f"{uri.rstrip('/')}/{src.name}"  # s3://bucket[/prefix/]: keep the file's name
        elif loc.scheme == "file":
            dest = Path(loc.path)
            uri = str(dest / src.name if dest.is_dir() or uri.endswith("/") else dest)
        elif loc.scheme != "s3":
            raise Failure(f"cannot push to {uri}: use s3://bucket/key or a local directory")
        digest = storage.sha256_file(src)
        storage.put(src, uri, endpoint_url=args.endpoint_url, secret_field=None, sha256=digest)
    except Failure as exc:
        print(f"kubento push: {exc}", file=sys.stderr)
        return 1
    print(f"\npushed {src} to {uri}\nsha256: {digest}\n")
    if uri.startswith("s3://"):
        endpoint = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        keys = "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY" + (f", AWS_ENDPOINT_URL={endpoint}" if endpoint else "")
        print("In a ModelDeployment:")
        print(f"  bento:\n    archive:\n      uri: {uri}\n      sha256: {digest}")
        print(f"      secretRef: {{name: <your-secret>}}  # a Secret with {keys}")
    else:
        print("If this directory is (in) a PersistentVolume, in a ModelDeployment:")
        print(f"  bento:\n    archive:\n      uri: pvc://<claim>/<path in the volume>/{Path(uri).name}")
        print(f"      sha256: {digest}")
    return 0


def parser() -> argparse.ArgumentParser:
    # Installed twice: `kubento ...` and, as a kubectl plugin, `kubectl kubento ...`.
    prog = "kubectl kubento" if Path(sys.argv[0]).name == "kubectl-kubento" else "kubento"
    p = argparse.ArgumentParser(prog=prog, description="Serve BentoML models on Kubernetes.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", help="watch this namespace (repeatable; globs allowed)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL ('' to disable)")
    run.add_argument("--metrics-port", type=int, default=0,
                     help="serve the operator's Prometheus metrics on this port (0: off)")
    run.add_argument("--workers", type=int, default=int(os.environ.get("KUBENTO_WORKERS", "8")),
                     help="models reconciled at once (default 8; env KUBENTO_WORKERS)")
    run.add_argument("--resync-seconds", type=float, default=float(os.environ.get("KUBENTO_RESYNC_SECONDS", "300")),
                     help="every model is passed at least this often (default 300; env KUBENTO_RESYNC_SECONDS)")
    run.add_argument("--stall-seconds", type=float, default=float(os.environ.get("KUBENTO_STALL_SECONDS", "180")),
                     help="the liveness endpoint fails while a pass has run longer than this (default 180; env "
                          "KUBENTO_STALL_SECONDS)")
    run.add_argument("--leader-election-namespace", default=os.environ.get("KUBENTO_LEADER_ELECTION_NAMESPACE", ""),
                     help="elect a leader on a Lease in this namespace (replicas > 1; the chart sets it); "
                          "empty: this process leads alone")
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

    build = sub.add_parser(
        "build", help="bentoml build a project and export it as a .bento archive (needs the build extra: pip install -e '.[build]')"
    )
    build.add_argument("path", help="the BentoML project directory (service.py, bentofile.yaml)")
    build.add_argument("--output", "-o", help="archive file to write (default: ./NAME-VERSION.bento)")
    build.set_defaults(func=_build)

    push = sub.add_parser("push", help="upload a .bento archive to S3 (or copy it to a directory)")
    push.add_argument("file", help="the .bento archive")
    push.add_argument(
        "uri", help="s3://bucket/key (s3://bucket/prefix/ keeps the file name) or a local directory; "
        "S3 credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY[, AWS_SESSION_TOKEN, AWS_REGION]",
    )
    push.add_argument(
        "--endpoint-url", help="an S3-compatible endpoint, http(s)://host:port (default: AWS_ENDPOINT_URL, else AWS)"
    )
    push.set_defaults(func=_push)

    rollout.register(sub)  # history, rollback, promote, abort
    top.register(sub)
    check.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
