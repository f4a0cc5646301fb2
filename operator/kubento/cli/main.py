"""The ``kubento`` command. For ML engineers: ``kubento deploy``
(kubento.cli.deploy), ``kubento status|logs`` (kubento.cli.status),
``kubento history|rollback|promote|abort`` (kubento.cli.rollout), ``kubento
top`` (kubento.cli.top), ``kubento check`` (kubento.cli.check), and
``kubento profile|drift`` (kubento.cli.quality), ``kubento build`` / ``kubento push`` (a ``.bento`` archive for
``bento.archive``, in an OCI registry or S3; they reuse the in-pod helper
kubento.runtime). For platform engineers: ``kubento run`` (the operator) and
``kubento crds``. Also ``kubectl kubento ...``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from kubento import __version__
from kubento.cli import check, deploy, quality, rollout, status, top


def quiet_logs(liveness_url: str) -> None:
    """What would drown what the operator did: kopf's line for every handler
    call on every watch event (most of its work at a thousand models), and
    for every liveness probe — the kubelet's access line and kopf's "Activity
    'workers' succeeded." (several every 10 s). Failures still show."""
    import logging

    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("kopf.activities.probe").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").addFilter(ProbeFilter(liveness_url))


class ProbeFilter:
    """Drops aiohttp's access lines of successful requests to the liveness
    endpoint's path (a failing probe is still logged)."""

    def __init__(self, liveness_url: str) -> None:
        from urllib.parse import urlsplit

        self.path = urlsplit(liveness_url).path or "/"

    def filter(self, record) -> bool:  # logging.Filter protocol
        text = record.getMessage()
        return not (f'"GET {self.path} ' in text and '" 200 ' in text)


def without_typed_client() -> None:
    """The operator's process never loads the typed Kubernetes client (1,000+
    modules): kubento.controller speaks plain JSON, and kopf, which imports the
    client only to recognise its classes (kopf._cogs.helpers.thirdparty), finds
    it absent. Called before kopf is imported."""
    if "kubernetes" not in sys.modules:
        sys.modules["kubernetes"] = None  # type: ignore[assignment]  # import kubernetes -> ImportError


def _run(args: argparse.Namespace) -> int:
    without_typed_client()
    import kopf

    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    if not args.verbose:
        quiet_logs(args.liveness)
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

    if not args.dir:
        if args.check:
            print("kubento crds --check: give the directories to check (--dir crds --dir charts/kubento/crds)",
                  file=sys.stderr)
            return 2
        for text in crd.render().values():
            sys.stdout.write(text if text.startswith("---") else "---\n" + text)
        return 0
    dirs = args.dir
    if args.check:
        stale = [
            str(d / name) for d in dirs for name, text in crd.render().items()
            if not (d / name).exists() or (d / name).read_text() != text
        ]
        if stale:
            print(f"out of date: {', '.join(stale)} (run `make crds`)", file=sys.stderr)
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


def oci_settings(ca_file: str | None, plain_http: bool) -> None:
    """--ca-file / --plain-http for kubento.runtime.oci (it reads them from the environment)."""
    if ca_file:
        os.environ["KUBENTO_OCI_CA"] = str(Path(ca_file).resolve())
    if plain_http:
        os.environ["KUBENTO_OCI_PLAIN_HTTP"] = "1"


def push_oci(src: Path, uri: str) -> tuple[str, str, str]:
    """Push a .bento file as a bento artifact: (pinned URI, bento tag, sha256)."""
    from kubento.runtime import Failure, bento, oci, storage

    if not src.is_file():
        raise Failure(f"{src} is not a file")
    suffix = bento.archive_suffix(src, str(src))
    tag = bento.archive_tag(src, suffix, str(src))
    digest = storage.sha256_file(src)
    target = oci.parse(uri)
    shown = target.uri() if target.tag or target.digest else f"{target.uri()}:{tag.split(':', 1)[1]}"
    start = time.monotonic()
    print(f"pushing {src} ({storage.human(src.stat().st_size)}, bento {tag}) to {shown}", flush=True)
    pinned = oci.push(src, uri, tag, digest)
    print(f"pushed in {time.monotonic() - start:.1f}s: {pinned}", flush=True)
    return pinned, tag, digest


def _push(args: argparse.Namespace) -> int:
    try:
        from kubento.runtime import Failure, storage
    except ImportError as exc:
        print(f"kubento push: {exc.name} is missing: {_BUILD_EXTRA}", file=sys.stderr)
        return 1
    src = Path(args.file)
    uri = args.uri
    try:
        if uri.startswith("oci://"):
            oci_settings(args.ca_file, args.plain_http)
            pinned, _, digest = push_oci(src, uri)
            print(f"sha256: {digest}\n\nIn a ModelDeployment (a private registry: a docker-registry Secret, "
                  "as for images):")
            print(f"  bento:\n    archive:\n      uri: {pinned}")
            print("  imagePullSecrets: [{name: <your-pull-secret>}]")
            return 0
        if not src.is_file():
            raise Failure(f"{src} is not a file")
        loc = storage.parse(uri, allow_local=True)
        if loc.scheme == "s3" and (not loc.path or uri.endswith("/")):
            uri = f"{uri.rstrip('/')}/{src.name}"  # s3://bucket[/prefix/]: keep the file's name
        elif loc.scheme == "file":
            dest = Path(loc.path)
            uri = str(dest / src.name if dest.is_dir() or uri.endswith("/") else dest)
        elif loc.scheme != "s3":
            raise Failure(f"cannot push to {uri}: use oci://registry/repository[:tag], s3://bucket/key "
                          "or a local directory")
        digest = storage.sha256_file(src)
        storage.put(src, uri, endpoint_url=args.endpoint_url, secret_field=None, sha256=digest)
    except Failure as exc:
        print(f"kubento push: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"kubento push: {exc.name} is missing: {_BUILD_EXTRA}", file=sys.stderr)
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
    p = argparse.ArgumentParser(prog=prog, description="Serve BentoML models on Kubernetes.",
                                usage=f"{prog} [-h] [--version] COMMAND ...",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"kubento {__version__}")
    # The commands are listed by group in the epilog (argparse has one flat list).
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS)

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

    crds = sub.add_parser(
        "crds", help="print the CRDs generated from the API models (or write them into --dir)",
        description="Print the ModelDeployment CRD (YAML) on stdout, e.g. `kubento crds | kubectl apply "
        "--server-side -f -`, or write it into each --dir (in a checkout: make crds). Nothing is written elsewhere.")
    crds.add_argument("--dir", type=Path, action="append", help="write into this directory (repeatable)")
    crds.add_argument("--check", action="store_true", help="with --dir: fail if the files differ from what would be written")
    crds.set_defaults(func=_crds)

    build = sub.add_parser(
        "build", help="bentoml build a project and export it as a .bento archive (needs the build extra: pip install -e '.[build]')"
    )
    build.add_argument("path", help="the BentoML project directory (service.py, bentofile.yaml)")
    build.add_argument("--output", "-o", help="archive file to write (default: ./NAME-VERSION.bento)")
    build.set_defaults(func=_build)

    push = sub.add_parser("push", help="push a .bento archive to an OCI registry or S3 (or copy it to a directory)")
    push.add_argument("file", help="the .bento archive")
    push.add_argument(
        "uri", help="oci://REGISTRY/REPOSITORY[:TAG] (default tag: the bento's version; credentials from your "
        "Docker config, as docker login writes), s3://bucket/key (s3://bucket/prefix/ keeps the file name) or a "
        "local directory; S3 credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY[, AWS_SESSION_TOKEN, AWS_REGION]",
    )
    push.add_argument(
        "--endpoint-url", help="an S3-compatible endpoint, http(s)://host:port (default: AWS_ENDPOINT_URL, else AWS)"
    )
    push.add_argument("--ca-file", help="oci: a PEM file with the CA that signs the registry's certificate")
    push.add_argument("--plain-http", action="store_true", help="oci: the registry speaks plain HTTP, not TLS")
    push.set_defaults(func=_push)

    deploy.register(sub)
    status.register(sub)  # status, logs
    rollout.register(sub)  # history, rollback, promote, abort
    top.register(sub)
    check.register(sub)
    quality.register(sub)  # profile, drift
    helps = {a.dest: a.help for a in sub._choices_actions}
    listed = [name for _, names in GROUPS for name in names]
    assert sorted(listed) == sorted(sub.choices), (sorted(listed), sorted(sub.choices))
    width = max(map(len, listed)) + 2
    p.epilog = "\n\n".join(title + ":\n" + "\n".join(f"  {name:<{width}}{helps[name]}" for name in names)
                             for title, names in GROUPS) + f"\n\n`{prog} COMMAND --help` tells more."
    return p


GROUPS = [
    ("Serve your model", ["deploy", "status", "logs"]),
    ("Steer its rollouts", ["history", "promote", "abort", "rollback", "check", "top"]),
    ("Watch its data", ["profile", "drift"]),
    ("Archives by hand", ["build", "push"]),
    ("Run the operator (platform engineers)", ["run", "crds"]),
]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
