"""``python -m kubento.runtime fetch|serve|source|build|plan|download|install|upload``
— what kubento's init containers, model servers, build Jobs and environment
Jobs run (see kubento.runtime for the paths and variables).

  fetch    KUBENTO_ARCHIVE_URI [KUBENTO_ARCHIVE_SHA256] -> bentoml import, tag file;
           also unpacks KUBENTO_ENV_URI [KUBENTO_ENV_SHA256] into KUBENTO_ENV_DIR when set
  serve    [ARGS...] -> exec `bentoml serve <tag from the tag file> ARGS...` (through
           kubento.runtime.serving: at SIGTERM its workers first drain their keep-alive
           connections with Connection: close, kubento.runtime.drain)

The steps of a build Job (all six) and of an environment Job (plan, download,
install, upload), one container each, in this order:
  source   KUBENTO_SOURCE_DIR or KUBENTO_GIT_URL [KUBENTO_GIT_REF, KUBENTO_GIT_PATH]
  build    bentoml build + export
  plan     [KUBENTO_ARCHIVE_URI [KUBENTO_ARCHIVE_SHA256]] KUBENTO_ENV_STORE KUBENTO_INDEX
  download KUBENTO_INDEX [KUBENTO_INDEX_CA, KUBENTO_INDEX_USERNAME/PASSWORD]
  install  KUBENTO_INDEX
  upload   [KUBENTO_OUTPUT_URI] KUBENTO_ENV_STORE -> JSON result
oci:// archives (fetch, plan): KUBENTO_OCI_AUTH_DIR (pull secrets), KUBENTO_OCI_CA,
KUBENTO_OCI_PLAIN_HTTP (kubento.runtime.oci)

A failure exits 1 and leaves its cause in the termination message file
(KUBENTO_TERMINATION_LOG, default /dev/termination-log), where the operator
reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import traceback
from pathlib import Path

from kubento.runtime import Failure, bentoml_home, tag_file, truncate_utf8, work_dir, write_termination_message
from kubento.runtime import bento, environment, services, source, storage

FETCH_MESSAGE_LIMIT = 1000  # one line for a condition message
# Kubernetes keeps 4096 bytes of a container's termination message, and 12 KiB for
# all of a pod's: a build Job's pod has six containers (its steps), so each keeps
# 2048 bytes, cut from the end. A failed step's message (its headline and the end
# of its output, where the error is) fits that.
BUILD_MESSAGE_LIMIT = 2000


def _env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise Failure(f"{name} is not set")
    return value


def fetch() -> int:
    """Get the archive, check it, import it, record its tag."""
    start = time.monotonic()
    uri = _env("KUBENTO_ARCHIVE_URI")
    expected = os.environ.get("KUBENTO_ARCHIVE_SHA256", "").strip().lower() or None
    if expected and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise Failure(f"KUBENTO_ARCHIVE_SHA256 is not a hex SHA-256: {expected[:80]}")
    secret_field = os.environ.get("KUBENTO_SECRET_FIELD") or "archive.secretRef"
    work = work_dir()
    work.mkdir(parents=True, exist_ok=True)
    got = storage.fetch(uri, work / "archive.download", secret_field=secret_field)
    link = None
    try:
        if expected and got.sha256 != expected:
            raise Failure(f"sha256 mismatch for {uri}: expected {expected}, got {got.sha256} "
                          "(the object changed, or archive.sha256 is wrong)")
        print(f"sha256 {got.sha256}" + (" (as expected)" if expected else ""), flush=True)
        if got.pinned and got.pinned != uri:
            print(f"pinned: {got.pinned}", flush=True)
        suffix = bento.archive_suffix(got.path, uri)
        # bentoml import picks the format from the file name
        link = work / f"archive{suffix}"
        link.unlink(missing_ok=True)
        if got.downloaded:
            got.path.rename(link)
        else:
            link.symlink_to(got.path)
        tag = bento.archive_tag(link, suffix, uri)
        print(f"bento {tag}: importing into {bentoml_home()}", flush=True)
        t0 = time.monotonic()
        if bento.import_archive(link, tag):
            print(f"imported {tag} in {time.monotonic() - t0:.1f}s", flush=True)
        tag_file().write_text(tag + "\n")
        env_uri = os.environ.get("KUBENTO_ENV_URI", "").strip()
        if env_uri:
            environment.unpack(env_uri, os.environ.get("KUBENTO_ENV_SHA256", "").strip().lower() or None,
                               environment.env_dir(), secret_field)
    finally:
        for leftover in (link, got.path if got.downloaded else None):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
    print(f"fetch: {uri} -> {tag} ({storage.human(got.size)}) in {time.monotonic() - start:.1f}s; "
          f"tag written to {tag_file()}", flush=True)
    return 0


def serve(args: list[str]) -> int:
    """Replace this process with ``bentoml serve <tag>`` (signals then reach
    bentoml directly), run by kubento.runtime.serving in this Python: BentoML's
    own CLI, whose workers, at SIGTERM, answer ``Connection: close`` until
    their keep-alive clients have left (kubento.runtime.drain) before stopping."""
    path = tag_file()
    try:
        tag = path.read_text().strip()
    except OSError:
        raise Failure(f"no bento to serve: {path} is missing (the fetch init container writes it; "
                      f"is BENTOML_HOME={bentoml_home()} the same volume in both containers?)") from None
    if not tag:
        raise Failure(f"no bento to serve: {path} is empty")
    command = bento.bentoml_command()
    if Path(command[0]).parent == Path(sys.executable).parent:
        argv = [sys.executable, "-m", "kubento.runtime.serving", "serve", tag, *args]
    else:  # another Python's bentoml (on PATH): plain, without the drain
        argv = [*command, "serve", tag, *args]
    print(f"exec: {' '.join(argv)}", flush=True)
    sys.stdout.flush()
    os.execv(argv[0], argv)
    return 1  # not reached


# ------------------------------------------------------------------ the steps
#
# A build Job and an environment Job are a sequence of containers (init
# containers, then one main container) sharing only the work volume; each step
# has only the credentials it needs, and no step that runs code kubento did not
# write has any (see kubento.builders.build_job):
#
#   source    git credentials     the project into the work volume
#   build     none                bentoml build (the project's code) + export
#   plan      store credentials   what the bento's environment needs; in the store?
#   download  index credentials   pip resolves and downloads (netrc of its own)
#   install   none                pip installs from the downloads only (builds sdists)
#   upload    store credentials   the archive and the environment; the result
#
# They hand over through files in the work volume (never a credential).

SOURCE_STATE, BUILD_STATE, ENV_STATE, PINS, INSTALLED = (
    "source.json", "build.json", "environment.json", "pins.json", "installed.json")
ARCHIVE, WHEELHOUSE, ENV_ARCHIVE = "bento.bento", "wheelhouse", "env.tar.gz"
STEPS = ("source", "build", "plan", "download", "install", "upload")


def _load(name: str) -> dict:
    path = work_dir() / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise Failure(f"{path} is missing or unreadable ({type(exc).__name__}): the step before this one did not "
                      "finish (is KUBENTO_WORK_DIR the same volume in every step?)") from exc


def _save(name: str, data: dict) -> None:
    path = work_dir() / name
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def source_step() -> int:
    """The project's files into the work volume: from a mounted directory
    (ConfigMap, PVC) or from git (GIT_USERNAME/GIT_PASSWORD: this step's only)."""
    started = time.time()
    work = work_dir()
    work.mkdir(parents=True, exist_ok=True)
    project = work / "project"
    for stale in (project, work / "checkout"):  # a retried Job may find its earlier attempt's files
        shutil.rmtree(stale, ignore_errors=True)
    if os.environ.get("KUBENTO_SOURCE_DIR"):
        src = source.project_dir(Path(os.environ["KUBENTO_SOURCE_DIR"]))
        n = source.copy_tree(src, project)
        print(f"source: {n} file(s) from {src}", flush=True)
    elif os.environ.get("KUBENTO_GIT_URL"):
        project = source.clone(os.environ["KUBENTO_GIT_URL"], os.environ.get("KUBENTO_GIT_REF") or "HEAD",
                               os.environ.get("KUBENTO_GIT_PATH") or ".", work / "checkout")
    else:
        raise Failure("no source: set KUBENTO_SOURCE_DIR or KUBENTO_GIT_URL")
    _save(SOURCE_STATE, {"project": str(project), "started": started})
    return 0


def build_step() -> int:
    """``bentoml build`` + ``bentoml export``: the project's own code runs
    here, in a step that holds no credential."""
    work = work_dir()
    project = Path(_load(SOURCE_STATE)["project"])
    tag = bento.build(project)
    print(f"built {tag}", flush=True)
    archive = work / ARCHIVE
    bento.export(tag, archive)
    requirements, bento_yaml = environment.read_bento_store(tag)
    _save(BUILD_STATE, {"tag": tag, "requirements": requirements, "bento_yaml": bento_yaml})
    print(f"exported {tag}: {storage.human(archive.stat().st_size)}", flush=True)
    return 0


def plan_step() -> int:
    """What the bento's Python environment needs, and whether the store
    already has it: the built bento's (build Job), or KUBENTO_ARCHIVE_URI's
    (environment Job: fetched with the archive's credentials, this step's)."""
    started = time.time()
    work = work_dir()
    work.mkdir(parents=True, exist_ok=True)
    store = os.environ.get("KUBENTO_ENV_STORE", "").strip()
    uri = os.environ.get("KUBENTO_ARCHIVE_URI", "").strip()
    if uri:
        expected = os.environ.get("KUBENTO_ARCHIVE_SHA256", "").strip().lower() or None
        try:
            got = storage.fetch(uri, work / "archive.download",
                                secret_field=os.environ.get("KUBENTO_SECRET_FIELD") or None)
        except Failure as exc:  # the same cause the model pods would meet: said the same way
            raise Failure(f"BentoFetchFailed: {exc}") from exc
        try:
            if expected and got.sha256 != expected:
                raise Failure(f"BentoFetchFailed: sha256 mismatch for {uri}: expected {expected}, got {got.sha256} "
                              "(the object changed, or archive.sha256 is wrong)")
            requirements, bento_yaml = environment.read_bento_archive(got.path, uri)
        finally:
            if got.downloaded:
                got.path.unlink(missing_ok=True)
        pinned = got.pinned  # oci://...:tag: the digest it resolved to, which the model's pods then fetch
    else:
        built = _load(BUILD_STATE)
        requirements, bento_yaml = built["requirements"], built["bento_yaml"]
        if not store:
            _save(ENV_STATE, {"state": "skip", "started": started})
            return 0
    planned = environment.plan(requirements, bento_yaml, store, environment.Index.from_env(),
                               image=os.environ.get("KUBENTO_RUNTIME_IMAGE", ""))
    _save(ENV_STATE, {**planned, "started": started, "pinned": pinned if uri else None,
                      "services": services.read(bento_yaml)})
    return 0


def download_step() -> int:
    """pip resolves and downloads what the environment needs, with the index
    credentials (this step's only), into the work volume."""
    planned = _load(ENV_STATE)
    if planned["state"] != "needed":
        print("download: nothing to download (no environment to prepare)", flush=True)
        return 0
    index = environment.Index.from_env(credentials=True)
    pins = environment.download(planned["requirements"], index, work_dir() / WHEELHOUSE)
    _save(PINS, {"pins": pins})
    return 0


def install_step() -> int:
    """pip installs the downloads (no index, no credential; source
    distributions are built here) and the result is packed."""
    planned = _load(ENV_STATE)
    if planned["state"] != "needed":
        print("install: nothing to install (no environment to prepare)", flush=True)
        return 0
    work = work_dir()
    pins = _load(PINS)["pins"]
    unpacked = 0
    if pins:
        dest = work / "env"
        environment.install(pins, environment.Index.from_env(), work / WHEELHOUSE, dest)
        unpacked = environment._dir_size(dest)
        t0 = time.monotonic()
        environment.pack(dest, work / ENV_ARCHIVE)
        print(f"packed {len(pins)} package(s): {storage.human(unpacked)} -> "
              f"{storage.human((work / ENV_ARCHIVE).stat().st_size)} in {time.monotonic() - t0:.1f}s", flush=True)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(work / WHEELHOUSE, ignore_errors=True)
    _save(INSTALLED, {"pins": pins, "unpacked": unpacked})
    return 0


def _environment_result(planned: dict) -> dict | None:
    state = planned["state"]
    if state in ("none", "found"):
        return planned["result"]
    if state != "needed":
        return None
    installed = _load(INSTALLED)
    if not installed["pins"]:  # pip found everything in the runtime after all
        return {**planned["base"], "packages": 0}
    store = os.environ.get("KUBENTO_ENV_STORE", "").strip()
    if not store:
        raise Failure("EnvironmentStoreMissing: KUBENTO_ENV_STORE is not set in the upload step")
    return environment.store(work_dir() / ENV_ARCHIVE, store, planned["key"], planned["base"],
                             len(installed["pins"]), installed["unpacked"], planned["started"])


def upload_step() -> int:
    """Store the archive (build Job: KUBENTO_OUTPUT_URI) and the environment
    with the store's credentials (this step's); the result becomes the
    termination message the operator reads."""
    work = work_dir()
    out_uri = os.environ.get("KUBENTO_OUTPUT_URI", "").strip()
    if out_uri:
        loc = storage.parse(out_uri)
        if loc.scheme not in ("s3", "pvc") or not loc.path:
            raise Failure(f"KUBENTO_OUTPUT_URI must be s3://bucket/key or pvc://claim/path, not {out_uri}")
        built = _load(BUILD_STATE)
        archive = work / ARCHIVE
        digest = storage.sha256_file(archive)
        size = archive.stat().st_size
        storage.put(archive, out_uri, sha256=digest,
                    secret_field=os.environ.get("KUBENTO_SECRET_FIELD") or "build.output.secretRef")
        archive.unlink(missing_ok=True)
        result: dict = {"tag": built["tag"], "uri": out_uri, "sha256": digest}
        env = _environment_result(_load(ENV_STATE))
        if env is not None:
            result["environment"] = _with_services(environment.summary(env), _load(ENV_STATE))
        started = _load(SOURCE_STATE).get("started") or time.time()
        result["seconds"] = round(time.time() - started, 1)
        print(f"build: {built['tag']} -> {out_uri} ({storage.human(size)}, sha256 {digest}) in {result['seconds']}s",
              flush=True)
    else:
        planned = _load(ENV_STATE)
        env = _environment_result(planned)
        result = {"environment": _with_services(environment.summary(env or {"packages": 0}), planned)}
        if planned.get("pinned"):
            # one revision never mixes two pushes of a tag: its pods fetch this digest
            result["environment"]["archive"] = planned["pinned"]
        print(f"prepare: {os.environ.get('KUBENTO_ARCHIVE_URI', '')} -> {json.dumps(result['environment'])}",
              flush=True)
    if isinstance(result.get("environment"), dict):
        services.fit(result, result["environment"], BUILD_MESSAGE_LIMIT)
    write_termination_message(json.dumps(result), BUILD_MESSAGE_LIMIT)
    return 0


def _with_services(env: dict, planned: dict) -> dict:
    """The environment's result and the bento's services (read by the plan step)."""
    found = planned.get("services")
    return {**env, "services": found} if found else env


def _failure_message(command: str, exc: Failure) -> str:
    if isinstance(exc, bento.CommandFailed) and command in STEPS:
        # headline + as much of the output's end as fits
        head = exc.headline + "\n"
        room = BUILD_MESSAGE_LIMIT - len(head.encode())
        return head + truncate_utf8("\n".join(exc.tail), room, keep="tail").decode()
    limit = BUILD_MESSAGE_LIMIT if command in STEPS else FETCH_MESSAGE_LIMIT
    text = str(exc) if command in STEPS else " ".join(str(exc).split())  # fetch: one line
    return truncate_utf8(text, limit).decode()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kubento.runtime", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download, verify and import the archive (init container)")
    s = sub.add_parser("serve", help="exec bentoml serve of the imported bento (model server)")
    s.add_argument("args", nargs=argparse.REMAINDER, help="more arguments for bentoml serve")
    for step, what in (("source", "the project into the work volume (build Job)"),
                       ("build", "bentoml build + export of the project (build Job)"),
                       ("plan", "what the bento's environment needs, and whether the store has it"),
                       ("download", "pip: resolve and download the environment's packages"),
                       ("install", "pip: install them from the downloads only, and pack them"),
                       ("upload", "store the archive and the environment; the result")):
        sub.add_parser(step, help=what)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # everything after serve is bentoml's, options included
        args = argparse.Namespace(command="serve", args=argv[2:] if argv[1:2] == ["--"] else argv[1:])
    else:
        args = p.parse_args(argv)
    try:
        if args.command == "fetch":
            return fetch()
        if args.command == "serve":
            return serve(args.args)
        return {"source": source_step, "build": build_step, "plan": plan_step, "download": download_step,
                "install": install_step, "upload": upload_step}[args.command]()
    except Failure as exc:
        message = _failure_message(args.command, exc)
    except Exception as exc:  # noqa: BLE001 - a bug: still leave a message for the operator
        traceback.print_exc()
        message = f"{args.command} failed unexpectedly: {type(exc).__name__}: {exc}"
        message = truncate_utf8(" ".join(message.split()), FETCH_MESSAGE_LIMIT).decode()
    print(message, file=sys.stderr, flush=True)
    write_termination_message(message, BUILD_MESSAGE_LIMIT)
    return 1


if __name__ == "__main__":
    sys.exit(main())
