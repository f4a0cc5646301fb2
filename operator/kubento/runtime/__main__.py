"""``python -m kubento.runtime fetch|serve|build`` — what kubento's init
containers, model servers and build Jobs run (see kubento.runtime for the
paths and variables).

  fetch   KUBENTO_ARCHIVE_URI [KUBENTO_ARCHIVE_SHA256] -> bentoml import, tag file
  serve   [ARGS...] -> exec `bentoml serve <tag from the tag file> ARGS...`
  build   KUBENTO_SOURCE_DIR or KUBENTO_GIT_URL [KUBENTO_GIT_REF, KUBENTO_GIT_PATH],
          KUBENTO_OUTPUT_URI [KUBENTO_ENV_STORE] -> bentoml build + export, upload, the
          bento's Python environment (kubento.runtime.environment); JSON result
  prepare KUBENTO_ARCHIVE_URI [KUBENTO_ARCHIVE_SHA256] KUBENTO_ENV_STORE -> the archive's
          Python environment, prepared or found in the store; JSON result
  oci:// archives: KUBENTO_OCI_AUTH_DIR (pull secrets), KUBENTO_OCI_CA, KUBENTO_OCI_PLAIN_HTTP (kubento.runtime.oci)
  fetch also unpacks KUBENTO_ENV_URI [KUBENTO_ENV_SHA256] into KUBENTO_ENV_DIR when set

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
from kubento.runtime import bento, environment, source, storage

FETCH_MESSAGE_LIMIT = 1000  # one line for a condition message
BUILD_MESSAGE_LIMIT = 3500  # Kubernetes keeps 4096 bytes


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
    bentoml directly)."""
    path = tag_file()
    try:
        tag = path.read_text().strip()
    except OSError:
        raise Failure(f"no bento to serve: {path} is missing (the fetch init container writes it; "
                      f"is BENTOML_HOME={bentoml_home()} the same volume in both containers?)") from None
    if not tag:
        raise Failure(f"no bento to serve: {path} is empty")
    argv = [*bento.bentoml_command(), "serve", tag, *args]
    print(f"exec: {' '.join(argv)}", flush=True)
    sys.stdout.flush()
    os.execv(argv[0], argv)
    return 1  # not reached


def build() -> int:
    """Build the project, export it, upload the archive to KUBENTO_OUTPUT_URI."""
    start = time.monotonic()
    out_uri = _env("KUBENTO_OUTPUT_URI")
    loc = storage.parse(out_uri)
    if loc.scheme not in ("s3", "pvc") or not loc.path:
        raise Failure(f"KUBENTO_OUTPUT_URI must be s3://bucket/key or pvc://claim/path, not {out_uri}")
    work = work_dir()
    project = work / "project"
    for stale in (project, work / "checkout"):  # a retried Job may find its earlier attempt's files
        shutil.rmtree(stale, ignore_errors=True)
    if os.environ.get("KUBENTO_SOURCE_DIR"):
        src = Path(os.environ["KUBENTO_SOURCE_DIR"])
        n = source.copy_tree(src, project)
        print(f"source: {n} file(s) from {src}", flush=True)
    elif os.environ.get("KUBENTO_GIT_URL"):
        project = source.clone(os.environ["KUBENTO_GIT_URL"], os.environ.get("KUBENTO_GIT_REF") or "HEAD",
                               os.environ.get("KUBENTO_GIT_PATH") or ".", work / "checkout")
    else:
        raise Failure("no source: set KUBENTO_SOURCE_DIR or KUBENTO_GIT_URL")
    tag = bento.build(project)
    print(f"built {tag}", flush=True)
    archive = work / "bento.bento"
    bento.export(tag, archive)
    digest = storage.sha256_file(archive)
    size = archive.stat().st_size
    print(f"exported {tag}: {storage.human(size)}, sha256 {digest}", flush=True)
    storage.put(archive, out_uri, sha256=digest,
                secret_field=os.environ.get("KUBENTO_SECRET_FIELD") or "build.output.secretRef")
    archive.unlink(missing_ok=True)
    result: dict = {"tag": tag, "uri": out_uri, "sha256": digest}
    store = os.environ.get("KUBENTO_ENV_STORE", "").strip()
    if store:
        requirements, bento_yaml = environment.read_bento_store(tag)
        result["environment"] = environment.summary(
            environment.prepare(requirements, bento_yaml, store, image=os.environ.get("KUBENTO_RUNTIME_IMAGE", "")))
    seconds = round(time.monotonic() - start, 1)
    result["seconds"] = seconds
    print(f"build: {tag} -> {out_uri} ({storage.human(size)}, sha256 {digest}) in {seconds}s", flush=True)
    write_termination_message(json.dumps(result), BUILD_MESSAGE_LIMIT)
    return 0


def prepare() -> int:
    """The Python environment of an exported archive (the environment Job)."""
    start = time.monotonic()
    uri = _env("KUBENTO_ARCHIVE_URI")
    expected = os.environ.get("KUBENTO_ARCHIVE_SHA256", "").strip().lower() or None
    work = work_dir()
    work.mkdir(parents=True, exist_ok=True)
    try:
        got = storage.fetch(uri, work / "archive.download", secret_field=os.environ.get("KUBENTO_SECRET_FIELD") or None)
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
    result = environment.summary(environment.prepare(
        requirements, bento_yaml, os.environ.get("KUBENTO_ENV_STORE", "").strip(),
        image=os.environ.get("KUBENTO_RUNTIME_IMAGE", "")))
    if got.pinned:
        # oci://...:tag: the digest it was prepared from, which the model's pods then fetch
        # (one revision never mixes two pushes of a tag)
        result["archive"] = got.pinned
    print(f"prepare: {uri} -> {json.dumps(result)} in {time.monotonic() - start:.1f}s", flush=True)
    write_termination_message(json.dumps({"environment": result}), BUILD_MESSAGE_LIMIT)
    return 0


def _failure_message(command: str, exc: Failure) -> str:
    if isinstance(exc, bento.CommandFailed) and command in ("build", "prepare"):
        # headline + as much of the output's end as fits
        head = exc.headline + "\n"
        room = BUILD_MESSAGE_LIMIT - len(head.encode())
        return head + truncate_utf8("\n".join(exc.tail), room, keep="tail").decode()
    limit = BUILD_MESSAGE_LIMIT if command in ("build", "prepare") else FETCH_MESSAGE_LIMIT
    text = str(exc) if command in ("build", "prepare") else " ".join(str(exc).split())  # fetch: one line
    return truncate_utf8(text, limit).decode()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kubento.runtime", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download, verify and import the archive (init container)")
    s = sub.add_parser("serve", help="exec bentoml serve of the imported bento (model server)")
    s.add_argument("args", nargs=argparse.REMAINDER, help="more arguments for bentoml serve")
    sub.add_parser("build", help="build a project and upload its archive (build Job)")
    sub.add_parser("prepare", help="prepare an archive's Python environment (environment Job)")
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
        if args.command == "prepare":
            return prepare()
        return build()
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
