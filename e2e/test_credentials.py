"""Credentials never beside untrusted code (#23), on a real node.

A build from a private git repository (git.secretRef), stored in S3
(output.secretRef), whose bento needs a package from a private index
(python.index.secretRef, onlyBinary): every credential a build Job can hold
is in play. The project's service.py — the code kubento did not write, run by
``bentoml build`` — searches everything it can read for their values (its
environment, every /proc/*/environ and /proc/*/cmdline it can see, the whole
filesystem: tests/leakprobe.py) and fails the build naming what it found.
The build must succeed having found nothing, while each credential was used
(the private clone, the upload, the index's wheel).

Fails, never skips.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid

import pytest
import yaml

from e2e.conftest import NAMESPACE, put_secret
from e2e.support import md
from tests import leakprobe, pyindex
from tests.helpers import condition, wait_for
from tests.runtime import gitserver

PACKAGE = "threadpoolctl==3.8.0"  # small, pure Python, not in the runtime image
GIT_USER, INDEX_USER = "kubento-git", "kubento-index"
GIT_PASSWORD = f"git-pw-{secrets.token_hex(12)}"
INDEX_PASSWORD = f"index-pw-{secrets.token_hex(12)}"
S3_SECRET = "e2e-leak-s3"
GIT_SECRET = "e2e-leak-git"
INDEX_SECRET = "e2e-leak-index"
INDEX_CA = "e2e-leak-index-ca"

SERVICE = '''
import bentoml


@bentoml.service
class Probe:
    @bentoml.api
    def echo(self, text: str) -> str:
        return text[::-1]
'''
BENTOFILE = f'''service: "service:Probe"
include: ["*.py"]
python:
  lock_packages: false
  packages:
    - {PACKAGE}
'''


@pytest.fixture(scope="module")
def stores(cluster, operator, host_ip, s3, tmp_path_factory):
    """Secrets for S3, git and the index, the private repository holding the
    probe project, and the private index; yields what the spec needs."""
    needles = {
        "git password": leakprobe.forms(GIT_PASSWORD, GIT_USER),
        "s3 access key id": leakprobe.forms(s3.access_key),
        "s3 secret key": leakprobe.forms(s3.secret_key),
        "index password": leakprobe.forms(INDEX_PASSWORD, INDEX_USER),
    }
    service = leakprobe.render(needles, roots=["/"]) + leakprobe.FAIL_ON_FINDINGS + SERVICE
    assert GIT_PASSWORD not in service and s3.secret_key not in service and INDEX_PASSWORD not in service
    repo = gitserver.Repository.create(tmp_path_factory.mktemp("leak-git") / "probe.git")
    repo.tag("v1", repo.commit({"probe/service.py": service, "probe/bentofile.yaml": BENTOFILE}, "probe"))
    put_secret(cluster, S3_SECRET, s3.env(host=host_ip))
    put_secret(cluster, GIT_SECRET, {"username": GIT_USER, "password": GIT_PASSWORD})
    put_secret(cluster, INDEX_SECRET, {"username": INDEX_USER, "password": INDEX_PASSWORD})
    try:
        with gitserver.serving({"/probe.git": repo.path}, host=host_ip, credentials=(GIT_USER, GIT_PASSWORD)) as git, \
                pyindex.running(pyindex.wheels([PACKAGE]), host=host_ip, auth=(INDEX_USER, INDEX_PASSWORD),
                                tls=True) as index:
            ca = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": INDEX_CA, "namespace": NAMESPACE},
                  "data": {"ca.crt": index.ca_pem}}
            cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(ca))
            yield {"git": f"{git}/private/probe.git", "index": index}
    finally:
        for kind, name in (("secret", S3_SECRET), ("secret", GIT_SECRET), ("secret", INDEX_SECRET),
                           ("configmap", INDEX_CA)):
            cluster.kubectl("delete", kind, name, "-n", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)


def test_a_projects_build_code_finds_no_credential_anywhere_it_can_read(cluster, images, s3, stores, model):
    index = stores["index"]
    spec = {
        "bento": {"build": {
            "source": {"git": {"url": stores["git"], "ref": "v1", "path": "probe", "secretRef": {"name": GIT_SECRET}}},
            "output": {"uri": "s3://built/e2e-leak", "secretRef": {"name": S3_SECRET}},
        }},
        "python": {"index": {"url": index.url, "secretRef": {"name": INDEX_SECRET}, "caBundle": {"configMap": INDEX_CA},
                             "onlyBinary": True}},
    }
    start = time.monotonic()
    name = model(f"leak-{uuid.uuid4().hex[:4]}", spec)
    obj = wait_for("the build to end", lambda: (lambda o: o if condition(o, "BuildSucceeded").get("status") in
                                                 ("True", "False") else None)(md(cluster, name)),
                   timeout=600, interval=1)
    built = condition(obj, "BuildSucceeded")
    print(f"build with git, S3 and index credentials: {built['status']} after {time.monotonic() - start:.1f}s")
    assert built["status"] == "True", built["message"]

    job = obj["status"]["build"]["job"]
    log = cluster.kubectl("logs", "-n", NAMESPACE, f"job/{job}", "-c", "build", "--tail=200").stdout
    probe = [line for line in log.splitlines() if line.startswith(leakprobe.MARKER)]
    print("  " + "\n  ".join(probe))
    assert probe and "nothing found" in probe[-1], log[-3000:]
    files = int(probe[-1].rsplit("processes, ", 1)[1].split()[0])
    assert files > 1000, probe  # it did search the filesystem (the runtime image's files)

    # Every credential was used: the private clone, the upload, the private index's wheel.
    assert obj["status"]["build"]["archive"].startswith("s3://built/e2e-leak/")
    assert any(w.startswith("threadpoolctl-3.8.0") for w in index.downloaded()), index.downloaded()
    env = obj["status"].get("environment") or {}
    assert env.get("packages") == 1, env
    events = cluster.get("events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}")["items"]
    shown = json.dumps(obj) + json.dumps(events) + log
    for value in (GIT_PASSWORD, INDEX_PASSWORD, s3.secret_key):
        assert value not in shown
