"""``kubento deploy [PATH | BENTO_TAG]``: from a BentoML project (or a bento
in the local store) to a served model in one command.

1. ``bentoml build`` the project (or take the bento from the store);
2. ``bentoml export`` it and push it to the bento registry as an OCI artifact
   (``oci://REGISTRY/PATH/<bento name>:<version>``, kubento.runtime.oci), its
   digest pinned in the URI;
3. create the ModelDeployment, or patch the one there (a new bento, so a new
   revision), with ``bento.archive.uri`` set to that URI (``-f`` merges a
   manifest of your own; ``--dry-run`` prints the result and changes nothing);
4. follow the rollout until the new revision is Ready (exit 0), rolled back or
   failed (exit 1), its canary step holds (exit 0: ``kubento promote``
   finishes it) or ``--timeout`` passes (exit 2), and print how to call it.

The registry is given once per kubeconfig context (``--registry``, with
``--pull-secret``, ``--plain-http``, ``--ca-file``, ``--ca-configmap``) and
remembered in ``$XDG_CONFIG_HOME/kubento/deploy.json``. What to write is
decided by the pure functions at the top (tests/unit/test_cli_deploy.py).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from kubento.cli.rollout import Refused, read_status

DEFAULT_CANARY_STEPS = [{"weight": 50, "pause": "1h"}]
DEFAULT_TIMEOUT = 600.0
SERVICE_PORT = 80
FAILED_ENVIRONMENT = "False"


# ------------------------------------------------------------------ settings


@dataclass
class Registry:
    """Where bentos go, for one kubeconfig context."""

    registry: str  # oci://host[:port]/path
    pull_secret: Optional[str] = None  # a docker-registry Secret in the model's namespace
    plain_http: bool = False
    ca_file: Optional[str] = None  # for this machine (push)
    ca_configmap: Optional[str] = None  # NAME[:KEY], for the pods

    def env(self) -> None:
        """kubento.runtime.oci reads its settings from the environment."""
        from kubento.cli.main import oci_settings

        oci_settings(self.ca_file, self.plain_http)


def config_path() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kubento" / "deploy.json"


def current_context() -> str:
    from kubernetes import config

    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        return "in-cluster"
    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        _, active = config.list_kube_config_contexts(config_file=path)
    except (config.ConfigException, OSError):
        return "default"
    return (active or {}).get("name") or "default"


def normalize_registry(value: str) -> str:
    """oci://host[:port][/path] (oci:// may be left out); no tag, no digest."""
    from kubento.runtime import Failure, oci

    value = value.strip().rstrip("/")
    if not value.startswith("oci://"):
        if "://" in value:
            raise Failure(f"--registry {value}: want oci://HOST[:PORT][/PATH] (a registry, not {value.split(':')[0]}://)")
        value = "oci://" + value
    probe = oci.parse(value + "/probe") if value.count("/") == 2 else oci.parse(value)
    if probe.tag or probe.digest:
        raise Failure(f"--registry {value}: a registry and a path, without a tag or a digest")
    return value


def registry_settings(args: argparse.Namespace, context: str, saved: dict[str, Any]) -> Registry:
    """--registry and its options, else what was remembered for this context;
    the options given now replace the remembered ones."""
    from kubento.runtime import Failure

    mine = dict((saved.get("contexts") or {}).get(context) or {})
    if args.registry:
        mine = {"registry": normalize_registry(args.registry)}
    if not mine.get("registry"):
        raise Failure(f"no bento registry for context {context}: give one once with --registry oci://HOST[/PATH] "
                      "(any OCI registry your cluster can reach, e.g. the one its images come from)")
    for key, value in (("pull_secret", args.pull_secret), ("ca_file", args.ca_file),
                       ("ca_configmap", args.ca_configmap)):
        if value is not None:
            mine[key] = value or None
    if args.plain_http:
        mine["plain_http"] = True
    if mine.get("ca_file"):
        mine["ca_file"] = str(Path(mine["ca_file"]).expanduser().resolve())
    return Registry(**{k: v for k, v in mine.items() if k in Registry.__dataclass_fields__})


def remember(context: str, settings: Registry) -> Optional[Path]:
    path = config_path()
    try:
        saved = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        saved = {}
    contexts = saved.setdefault("contexts", {})
    wanted = {k: v for k, v in asdict(settings).items() if v}
    if contexts.get(context) == wanted:
        return None
    contexts[context] = wanted
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    return path


# ------------------------------------------------------------------ decisions


def model_name(bento_name: str) -> str:
    """A ModelDeployment name (DNS label, at most 52 characters) from a bento's name."""
    name = re.sub(r"[^a-z0-9-]+", "-", bento_name.lower()).strip("-")[:52].strip("-")
    if not name:
        raise Refused(f"cannot make a ModelDeployment name from {bento_name!r}: give --name")
    return name


def repository(registry: str, bento_tag: str) -> str:
    """oci://REGISTRY/PATH/<bento name>:<version>."""
    name, version = bento_tag.split(":", 1)
    return f"{registry.rstrip('/')}/{name.lower()}:{version}"


def steps_arg(text: str) -> list[dict[str, Any]]:
    """--steps 25:5m,50:10m,100 -> [{weight, pause}]."""
    out = []
    for part in text.split(","):
        weight, _, pause = part.strip().partition(":")
        if not weight.isdigit():
            raise argparse.ArgumentTypeError(f"{part!r}: want WEIGHT[:PAUSE], e.g. 50:10m")
        out.append({"weight": int(weight), **({"pause": pause} if pause else {})})
    return out


def archive_of(uri: str, settings: Registry) -> dict[str, Any]:
    archive: dict[str, Any] = {"uri": uri}
    if settings.plain_http:
        archive["plainHTTP"] = True
    if settings.ca_configmap:
        name, _, key = settings.ca_configmap.partition(":")
        archive["caBundle"] = {"configMap": name, **({"key": key} if key else {})}
    return archive


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def desired_spec(live: Optional[dict[str, Any]], manifest: Optional[dict[str, Any]], archive: dict[str, Any],
                 settings: Registry, replicas: Optional[int], strategy: Optional[str],
                 steps: Optional[list[dict[str, Any]]]) -> dict[str, Any]:
    """The spec after this deploy: the live one (or the -f manifest's), the
    manifest merged over it, the bento replaced by the pushed archive, then
    --replicas, --strategy/--steps and the pull secret."""
    spec = deep_merge((live or {}).get("spec") or {}, (manifest or {}).get("spec") or {})
    spec["bento"] = {"archive": archive}
    if replicas is not None:
        spec["replicas"] = replicas
    if strategy or steps:
        rollout = dict(spec.get("rollout") or {})
        rollout["strategy"] = strategy or ("Canary" if steps else rollout.get("strategy", "RollingUpdate"))
        if rollout["strategy"] == "Canary":
            rollout["steps"] = steps or rollout.get("steps") or copy.deepcopy(DEFAULT_CANARY_STEPS)
        else:
            rollout.pop("steps", None)
            if rollout["strategy"] == "RollingUpdate":
                rollout.pop("analysis", None)
        spec["rollout"] = rollout
    if settings.pull_secret:
        secrets = list(spec.get("imagePullSecrets") or [])
        if all(s.get("name") != settings.pull_secret for s in secrets):
            secrets.append({"name": settings.pull_secret})
        spec["imagePullSecrets"] = secrets
    return spec


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value) if isinstance(value, dict) and isinstance(old[key], dict) else value
    return patch


def manifest_for(name: str, namespace: str, spec: dict[str, Any], base: Optional[dict[str, Any]]) -> dict[str, Any]:
    from kubento.api import v1alpha1 as api

    meta = copy.deepcopy((base or {}).get("metadata") or {})
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        meta.pop(key, None)
    meta.update({"name": name, "namespace": namespace})
    return {"apiVersion": f"{api.GROUP}/{api.VERSION}", "kind": api.KIND, "metadata": meta, "spec": spec}


def spec_problems(spec: dict[str, Any]) -> list[str]:
    from pydantic import ValidationError

    from kubento.api.v1alpha1 import ModelDeploymentSpec

    try:
        ModelDeploymentSpec.model_validate(spec)
    except ValidationError as exc:
        return [".".join(["spec", *(str(p) for p in e["loc"])]) + ": " + e["msg"].removeprefix("Value error, ")
                for e in exc.errors()]
    return []


@dataclass(frozen=True)
class Outcome:
    done: bool
    code: int  # exit code once done
    message: str = ""


def judge(view: Any, expected_bento: Optional[str]) -> Outcome:
    """Whether the deploy is over: the new bento serves (0), it failed or was
    rolled back (1), its canary step holds (0, promote finishes it)."""
    if not view.current:
        return Outcome(False, 0)
    ours = [h for h in view.history if expected_bento is None or h.bento == expected_bento]
    env = view.conditions.get("EnvironmentReady")
    if env is not None and env.status == FAILED_ENVIRONMENT:
        return Outcome(True, 1, f"the bento cannot be served: {env.reason}: {env.message}")
    if view.phase == "Failed":
        ready = view.conditions.get("Ready")
        return Outcome(True, 1, f"{ready.reason}: {ready.message}" if ready else "failed")
    if view.phase == "RolledBack" and ours and view.failed_revision == ours[-1].revision:
        ready = view.conditions.get("Ready")
        return Outcome(True, 1, f"rolled back: {ready.message if ready else ''}".rstrip(": "))
    held = view.held
    if held and ours and view.rollout is not None and view.rollout.revision == ours[-1].revision:
        return Outcome(True, 0, f"{held}: `kubento promote {view.name}` finishes it now, "
                       f"`kubento abort {view.name}` goes back")
    serving = ours and view.stable_revision == ours[-1].revision
    if view.ready and view.rollout is None and serving:
        return Outcome(True, 0)
    return Outcome(False, 0)


def gateway_url(md: dict[str, Any]) -> Optional[str]:
    """Hook: the model's URL through a Gateway API route, once kubento owns
    one (spec.traffic.gateway, not built yet). None: print the port-forward."""
    return None


def sample(schema: Any, depth: int = 0) -> Any:
    """An example value of a JSON schema (what to send in the printed curl)."""
    if not isinstance(schema, dict) or depth > 4:
        return None
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        names = schema.get("required") or list(props)
        return {n: sample(props.get(n), depth + 1) for n in names}
    if kind == "array":
        return [sample(schema.get("items"), depth + 1)]
    return {"string": "text", "number": 1.0, "integer": 1, "boolean": False}.get(kind)


def call_hint(name: str, namespace: str, md: dict[str, Any], routes: list[tuple[str, Any]],
              ns_flag: bool) -> list[str]:
    url = gateway_url(md)
    api = ", ".join(f"POST {r}" for r, _ in routes[:6]) or "its BentoML API"
    route, body = routes[0] if routes else ("/<api>", None)
    data = json.dumps(body) if body is not None else "<JSON input>"
    if url:
        return [f"Call it ({api}):", f"  curl -X POST {url}{route} -H 'content-type: application/json' -d '{data}'"]
    ns = f" -n {namespace}" if ns_flag else ""
    return [f"Call it ({api}; BentoML's UI at http://localhost:3000):",
            f"  kubectl port-forward svc/{name}{ns} 3000:{SERVICE_PORT}",
            f"  curl -X POST localhost:3000{route} -H 'content-type: application/json' -d '{data}'"]


def bento_routes(tag: str) -> list[tuple[str, Any]]:
    """The HTTP routes of a bento in the local store and an example input of
    each (its bento.yaml's schema)."""
    import yaml

    from kubento.runtime.bento import store_path

    try:
        data = yaml.safe_load((store_path(tag) / "bento.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    routes = (data.get("schema") or {}).get("routes") or []
    return [(r["route"], sample(r.get("input"))) for r in routes if isinstance(r, dict) and r.get("route")]


# ------------------------------------------------------------------------ I/O


def locate(target: str) -> tuple[str, Optional[Path]]:
    """("project", dir) or ("bento", None) with the tag in the first item."""
    from kubento.runtime import Failure, bentoml_home
    from kubento.runtime.bento import in_store

    path = Path(target)
    if path.is_dir():
        if not ((path / "bentofile.yaml").is_file() or (path / "service.py").is_file()
                or (path / "pyproject.toml").is_file()):
            raise Failure(f"{path} is not a BentoML project (no bentofile.yaml, service.py or pyproject.toml)")
        return "project", path
    tag = target
    if ":" not in tag:
        latest = bentoml_home() / "bentos" / tag / "latest"
        if latest.is_file():
            tag = f"{tag}:{latest.read_text().strip()}"
    if ":" in tag and in_store(tag):
        return tag, None
    raise Failure(f"{target} is neither a BentoML project directory nor a bento in {bentoml_home() / 'bentos'} "
                  "(`bentoml list` shows them)")


def _follow(api: Any, namespace: str, name: str, expected: Optional[str], timeout: float) -> Outcome:
    from kubento.cli.status import Cluster, one_line

    cluster = Cluster()
    start = time.monotonic()
    last = None
    print(f"following the rollout (Ctrl-C stops following; the rollout goes on: `kubento status {name} -w`)",
          flush=True)
    while True:
        view, pods = cluster.snapshot(namespace, name)
        line = one_line(view, pods) if view.current else "Pending      waiting for the operator"
        if line != last:
            print(f"  {time.monotonic() - start:4.0f}s  {line}", flush=True)
            last = line
        outcome = judge(view, expected)
        if outcome.done:
            return outcome
        if time.monotonic() - start > timeout:
            return Outcome(True, 2, f"not Ready after {timeout:.0f}s (--timeout): `kubento status {name} -w` "
                           "follows it")
        time.sleep(1.0)


def deploy(args: argparse.Namespace) -> int:
    import yaml
    from kubernetes.client.exceptions import ApiException

    from kubento.api import v1alpha1 as api
    from kubento.cli.main import push_oci
    from kubento.cli.rollout import _apis, default_namespace
    from kubento.runtime import Failure, bento, storage

    started = time.monotonic()
    context = current_context()
    config = config_path()
    saved = json.loads(config.read_text()) if config.is_file() else {}
    settings = registry_settings(args, context, saved)
    settings.env()
    manifest = None
    if args.filename:
        manifest = yaml.safe_load(Path(args.filename).read_text()) or {}
        if manifest.get("kind") not in (None, api.KIND):
            raise Failure(f"{args.filename} is a {manifest.get('kind')}, not a {api.KIND}")

    kind, project = locate(args.target)
    if project is not None:
        print(f"bentoml build {project}", flush=True)
        tag = bento.build(project)
    else:
        tag = kind
    name = args.name or ((manifest or {}).get("metadata") or {}).get("name") or model_name(tag.split(":")[0])
    namespace = args.namespace or ((manifest or {}).get("metadata") or {}).get("namespace") or default_namespace()
    target = repository(settings.registry, tag)

    custom, _ = _apis()
    try:
        live = custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        live = None

    if args.dry_run:
        uri = target
    else:
        with tempfile.TemporaryDirectory(prefix="kubento-deploy-") as tmp:
            archive_path = Path(tmp) / f"{tag.replace(':', '-')}.bento"
            print(f"bentoml export {tag}", flush=True)
            bento.export(tag, archive_path)
            uri, _, _ = push_oci(archive_path, target)
        where = remember(context, settings)
        if where:
            print(f"(the registry for context {context} is remembered in {where})", flush=True)

    spec = desired_spec(live, manifest, archive_of(uri, settings), settings, args.replicas, args.strategy, args.steps)
    problems = spec_problems(spec)
    if problems:
        raise Refused("the resulting spec is refused: " + "; ".join(problems))
    if args.dry_run:
        print(yaml.safe_dump(manifest_for(name, namespace, spec, live or manifest), sort_keys=False), end="")
        return 0
    if live is None:
        body = manifest_for(name, namespace, spec, manifest)
        created = custom.create_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, body)
        print(f"modeldeployment {name} created (namespace {namespace}, generation "
              f"{created['metadata'].get('generation')})", flush=True)
    else:
        patch = {"spec": merge_patch(live.get("spec") or {}, spec)}
        if manifest and (manifest.get("metadata") or {}).get("labels"):
            patch["metadata"] = {"labels": manifest["metadata"]["labels"]}
        updated = custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name, patch)
        changed = updated["metadata"].get("generation") != live["metadata"].get("generation")
        print(f"modeldeployment {name} {'updated' if changed else 'unchanged'} (namespace {namespace}, generation "
              f"{updated['metadata'].get('generation')})", flush=True)
    if args.no_wait:
        print(f"not waiting (--no-wait): `kubento status {name} -w` follows the rollout")
        return 0
    outcome = _follow(custom, namespace, name, uri, args.timeout)
    elapsed = time.monotonic() - started
    md = custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
    if outcome.code != 0:
        print(f"{name}: {outcome.message}", file=sys.stderr)
        return outcome.code
    status = read_status(md)
    if outcome.message:
        print(f"{name}: {outcome.message}")
    else:
        print(f"{name} is Ready after {elapsed:.0f}s: revision {status.stable_revision}, "
              f"{status.ready_replicas or 0}/{status.replicas or 0} pods ready, bento {tag}")
    for line in call_hint(name, namespace, md, bento_routes(tag), bool(args.namespace)):
        print(line)
    _ = storage  # (imported for its failures' types)
    return 0


def run(args: argparse.Namespace) -> int:
    from kubento.cli.rollout import answered

    def action() -> int:
        try:
            from kubento.runtime import Failure
        except ImportError as exc:
            raise Refused(f"{exc.name} is missing: pip install -e '.[build]' in a kubento checkout") from None
        if shutil.which("bentoml") is None and not (Path(sys.executable).parent / "bentoml").exists():
            raise Refused("bentoml is not installed: pip install -e '.[build]' in a kubento checkout")
        try:
            return deploy(args)
        except Failure as exc:
            raise Refused(str(exc)) from None
        except KeyboardInterrupt:
            print("\nstopped following; the rollout goes on", file=sys.stderr)
            return 130

    return answered("kubento deploy", args.name or args.target, action)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy", help="build your BentoML project, push it to your registry, serve it and follow the rollout",
        description="Build a BentoML project (bentoml build; or take BENTO_TAG from the local store), push it to the "
        "bento registry as an OCI artifact (pinned by digest), create or update the ModelDeployment, and follow the "
        "rollout until it is Ready (exit 0), rolled back or failed (exit 1), its canary step holds (exit 0: "
        "`kubento promote` finishes it) or --timeout passes (exit 2); then print how to call the model. The registry "
        "is given once per kubeconfig context (--registry and its options) and remembered.",
        epilog="examples:\n  kubento deploy . --registry oci://registry.example.com/ml --pull-secret regcred\n"
        "  kubento deploy                      # again after an edit: a new revision\n"
        "  kubento deploy --strategy Canary    # half the pods on it, held until `kubento promote`\n"
        "  kubento deploy iris:latest -n models --replicas 2 --dry-run",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", default=".", metavar="PATH | BENTO_TAG",
                   help="a BentoML project directory (default: .) or a bento in the local store (NAME[:VERSION])")
    p.add_argument("--name", help="the ModelDeployment's name (default: the bento's name)")
    p.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)")
    p.add_argument("--replicas", type=int, help="number of pods (default: the model's, else 1)")
    p.add_argument("--strategy", choices=["RollingUpdate", "Canary", "BlueGreen"],
                   help="how the new revision rolls out (Canary without --steps: 50%% held for 1h)")
    p.add_argument("--steps", type=steps_arg, metavar="W[:PAUSE],...", help="canary steps, e.g. 25:5m,50:10m")
    p.add_argument("-f", "--filename", help="a ModelDeployment manifest to merge (its spec is the base)")
    p.add_argument("--dry-run", action="store_true", help="build, but push and change nothing: print the manifest")
    p.add_argument("--no-wait", action="store_true", help="do not follow the rollout")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to follow it (default 600)")
    reg = p.add_argument_group("bento registry (remembered per kubeconfig context)")
    reg.add_argument("--registry", metavar="oci://HOST[/PATH]", help="where bentos are pushed, e.g. "
                     "oci://registry.example.com/ml; credentials from your Docker config (docker login)")
    reg.add_argument("--pull-secret", metavar="SECRET", help="a docker-registry Secret in the model's namespace "
                     "the pods fetch with (spec.imagePullSecrets); '' forgets it")
    reg.add_argument("--plain-http", action="store_true", help="the registry speaks plain HTTP (a test registry)")
    reg.add_argument("--ca-file", metavar="PEM", help="the CA of the registry's certificate, for this machine")
    reg.add_argument("--ca-configmap", metavar="NAME[:KEY]", help="the same CA in a ConfigMap, for the pods "
                     "(bento.archive.caBundle)")
    p.set_defaults(func=run)
