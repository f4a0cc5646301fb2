"""The in-pod helper: ``python -m kubento.runtime fetch|serve|<build step>``.

It runs in the runtime image, which holds only ``kubento/__init__.py`` and this
package next to bentoml, minio and dulwich: so it imports nothing but the
standard library, minio (S3) and dulwich (git; the image has no git binary),
with urllib3, their HTTP client, and calls bentoml through its CLI. The model
server's own modules (serving, worker, drain: the drain of keep-alive
connections at stop) run inside BentoML's processes and import its server
(uvicorn, BentoML's CLI and worker) there, inside functions only.
``kubento build`` / ``kubento push`` reuse it.

The paths and variables are a contract with the operator's pod builders
(kubento.builders.bento):

  BENTOML_HOME              the bento store (pod: /var/lib/kubento/bentoml, an emptyDir)
  KUBENTO_WORK_DIR          scratch (default /var/lib/kubento/work)
  KUBENTO_PVC_ROOT          pvc://CLAIM/PATH is $KUBENTO_PVC_ROOT/CLAIM/PATH (default /var/lib/kubento/pvc)
  KUBENTO_TERMINATION_LOG   failure message, build result (default /dev/termination-log)
  $BENTOML_HOME/kubento-bento-tag   name:version, written by fetch, read by serve
  fetch: KUBENTO_ARCHIVE_URI, KUBENTO_ARCHIVE_SHA256 (optional)
  source: KUBENTO_SOURCE_DIR, or KUBENTO_GIT_URL (http(s):// or git://; no ssh) + KUBENTO_GIT_REF
         (branch, tag, full ref or commit id; default HEAD) + KUBENTO_GIT_PATH (.) with
         GIT_USERNAME/GIT_PASSWORD (optional, https only)
  upload: KUBENTO_OUTPUT_URI (s3:// or pvc://, the full key), KUBENTO_ENV_STORE
  (the build and environment Jobs' steps: kubento.runtime.__main__; each gets only its own credentials)
  s3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL,
      AWS_REGION / AWS_DEFAULT_REGION, AWS_CA_BUNDLE (all optional; no key: anonymous)
  http(s): HTTP_AUTHORIZATION (optional, sent as the Authorization header)
  KUBENTO_SECRET_FIELD      the spec field named in credential hints (default
                            archive.secretRef for fetch, build.output.secretRef for build)
"""

from __future__ import annotations

import os
from pathlib import Path

TAG_FILE_NAME = "kubento-bento-tag"


def bentoml_home() -> Path:
    """Where bentoml keeps bentos: in a pod the operator sets BENTOML_HOME to
    an emptyDir (/var/lib/kubento/bentoml); otherwise bentoml's own default."""
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")


def work_dir() -> Path:
    """Scratch space: downloads, the project copy, the exported archive."""
    return Path(os.environ.get("KUBENTO_WORK_DIR") or "/var/lib/kubento/work")


def pvc_root() -> Path:
    """The operator mounts claim C at <pvc_root>/C; pvc://C/P is <pvc_root>/C/P."""
    return Path(os.environ.get("KUBENTO_PVC_ROOT") or "/var/lib/kubento/pvc")


def tag_file() -> Path:
    """``fetch`` writes the imported bento's name:version here; ``serve`` reads it."""
    return bentoml_home() / TAG_FILE_NAME


class Failure(Exception):
    """An expected failure: its message says what failed and what to do, and
    becomes the container's termination message."""


def write_termination_message(text: str, limit: int) -> None:
    """Kubernetes shows this file's content in the pod status (capped at 4096
    bytes); the operator turns it into a condition. Outside a pod the file's
    directory usually does not exist: then nothing is written."""
    path = Path(os.environ.get("KUBENTO_TERMINATION_LOG") or "/dev/termination-log")
    data = truncate_utf8(text, limit)
    try:
        if path.parent.is_dir():
            path.write_bytes(data)
    except OSError:
        pass


def truncate_utf8(text: str, limit: int, keep: str = "head") -> bytes:
    """``text`` as UTF-8, at most ``limit`` bytes (keep the head or the tail),
    never cutting a character in two."""
    data = text.encode()
    if len(data) <= limit:
        return data
    cut = data[:limit] if keep == "head" else data[-limit:]
    return cut.decode(errors="ignore").encode()
