"""Bentos in an OCI registry: ``kubento push FILE oci://...`` and the pod
helper's ``fetch`` of ``oci://...``, against a real CNCF Distribution registry
(hack/registry.sh builds it from its Go module): plain HTTP, htpasswd users
(Basic auth) and TLS from a private CA. Credentials reach the fetch the way
a pod gives them: the model's imagePullSecrets mounted as directories
(KUBENTO_OCI_AUTH_DIR/<secret>/.dockerconfigjson)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests import ociregistry
from tests.runtime.conftest import Archive, Pod, clean_env
from tests.runtime.test_fetch import assert_failed, assert_imported


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Iterator[ociregistry.Registry]:
    with ociregistry.running(tmp_path_factory.mktemp("registry-plain")) as registry:
        yield registry


@pytest.fixture(scope="module")
def private(tmp_path_factory) -> Iterator[ociregistry.Registry]:
    """htpasswd users and TLS from a private CA."""
    with ociregistry.running(tmp_path_factory.mktemp("registry-private"), auth=True, tls=True) as registry:
        yield registry


def kubento(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubento.cli.main", *args], cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=120)


def push(registry: ociregistry.Registry, archive: Archive, ref: str, tmp: Path, *flags: str,
         docker: bool = True) -> str:
    """kubento push as a user runs it: credentials from a Docker config; returns the pinned URI."""
    env = {"HOME": str(tmp)}
    if docker and registry.auth:
        env["DOCKER_CONFIG"] = str(registry.docker_config(tmp / "docker" / "config.json").parent)
    proc = kubento("push", str(archive.path), f"oci://{registry.host}/{ref}", *flags, cwd=tmp, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pinned = re.search(r"uri: (oci://\S+)", proc.stdout).group(1)
    assert re.fullmatch(rf"oci://{re.escape(registry.host)}/{ref.split(':')[0]}:[\w.-]+@sha256:[0-9a-f]{{64}}",
                        pinned), pinned
    return pinned


def pull_secret(pod: Pod, registry: ociregistry.Registry, name: str = "regcred", **creds: str) -> dict[str, str]:
    """The model's imagePullSecrets as the pod mounts them."""
    d = pod.root / "registry-auth" / name
    d.mkdir(parents=True)
    (d / ".dockerconfigjson").write_text(registry.dockerconfigjson(**creds))
    return {"KUBENTO_OCI_AUTH_DIR": str(pod.root / "registry-auth")}


def test_push_then_fetch_by_tag_and_by_digest(pod: Pod, plain, echo_archive: Archive, tmp_path: Path) -> None:
    pinned = push(plain, echo_archive, "ml/echo:v1", tmp_path, "--plain-http")
    tag_uri = pinned.split("@")[0]
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI=tag_uri, KUBENTO_ARCHIVE_SHA256=echo_archive.sha256, **plain.env())
    assert_imported(pod, proc, echo_archive)
    assert f"pinned: {pinned}" in proc.stdout, proc.stdout  # the tag resolved to the manifest's digest
    assert "MB/s" in proc.stdout

    again = Pod(tmp_path / "pod2")
    for d in (again.home, again.work, again.pvc):
        d.mkdir(parents=True)
    assert_imported(again, again.run("fetch", KUBENTO_ARCHIVE_URI=pinned, **plain.env()), echo_archive)

    # the default tag is the bento's version
    default = push(plain, echo_archive, "ml/echo", tmp_path, "--plain-http")
    assert default.split("@")[0] == f"oci://{plain.host}/ml/echo:{echo_archive.tag.split(':')[1]}"
    assert default.split("@")[1] == pinned.split("@")[1], "the same bento is the same manifest"


def test_a_wrong_digest_is_refused(pod: Pod, plain, echo_archive: Archive, tmp_path: Path) -> None:
    pinned = push(plain, echo_archive, "ml/digest:v1", tmp_path, "--plain-http")
    wrong = pinned.split("@")[0] + "@sha256:" + "0" * 64
    assert_failed(pod, pod.run("fetch", KUBENTO_ARCHIVE_URI=wrong, **plain.env()),
                  f"cannot fetch {wrong}: no manifest sha256:{'0' * 64} in {plain.host}/ml/digest (MANIFEST_UNKNOWN)")


def test_a_wrong_tag_a_missing_repository_and_artifacts_that_are_not_bentos(pod: Pod, plain, echo_archive: Archive,
                                                                             tmp_path: Path) -> None:
    push(plain, echo_archive, "ml/iris:v1", tmp_path, "--plain-http")
    push(plain, echo_archive, "ml/iris:v2", tmp_path, "--plain-http")

    uri = f"oci://{plain.host}/ml/iris:v3"
    message = assert_failed(pod, pod.run("fetch", KUBENTO_ARCHIVE_URI=uri, **plain.env()))
    assert message == f"cannot fetch {uri}: no tag v3 in {plain.host}/ml/iris (MANIFEST_UNKNOWN); tags there: v1, v2"

    pod.termination.unlink()
    uri = f"oci://{plain.host}/ml/nothing-here:v1"
    assert_failed(pod, pod.run("fetch", KUBENTO_ARCHIVE_URI=uri, **plain.env()),
                  f"cannot fetch {uri}: no repository ml/nothing-here in the registry {plain.host} (NAME_UNKNOWN)")

    pod.termination.unlink()
    image = plain.push_image("ml/server", "1.0")
    uri = f"oci://{plain.host}/ml/server:1.0"
    assert_failed(pod, pod.run("fetch", KUBENTO_ARCHIVE_URI=uri, **plain.env()),
                  f"{plain.host}/ml/server@{image} is a container image, not a bento: serve an image with bento.image")

    pod.termination.unlink()
    other = plain.push_artifact("ml/weights", "v1")
    uri = f"oci://{plain.host}/ml/weights:v1"
    assert_failed(pod, pod.run("fetch", KUBENTO_ARCHIVE_URI=uri, **plain.env()),
                  f"{plain.host}/ml/weights@{other} is not a bento (artifact type application/vnd.example.model.v1, "
                  "want application/vnd.kubento.bento.config.v1+json")


def test_a_registry_that_does_not_answer_fails_fast(pod: Pod) -> None:
    port = ociregistry.free_port()
    uri = f"oci://127.0.0.1:{port}/ml/echo:v1"
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI=uri, KUBENTO_OCI_PLAIN_HTTP="1", timeout=60)
    assert_failed(pod, proc, f"cannot fetch {uri}: connection refused (registry http://127.0.0.1:{port})")


def test_a_private_registry_with_the_pull_secret_and_the_ca(pod: Pod, private, echo_archive: Archive,
                                                            tmp_path: Path) -> None:
    pinned = push(private, echo_archive, "team/echo:v1", tmp_path, "--ca-file", str(private.ca))
    env = {**pull_secret(pod, private), **private.env()}
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI=pinned, **env)
    assert_imported(pod, proc, echo_archive)
    assert ociregistry.PASSWORD not in proc.stdout + proc.stderr


def test_private_registry_failures_name_the_pull_secrets_and_the_ca(pod: Pod, private, echo_archive: Archive,
                                                                   tmp_path: Path) -> None:
    pinned = push(private, echo_archive, "team/echo:v2", tmp_path, "--ca-file", str(private.ca))

    # no pull secret for the registry
    empty = pod.root / "no-secrets"
    empty.mkdir()
    message = assert_failed(pod, pod.run("fetch", KUBENTO_ARCHIVE_URI=pinned, KUBENTO_OCI_AUTH_DIR=str(empty),
                                         **private.env()))
    assert f"the registry {private.host} asks for credentials and none were given for it: add them to the " \
           "ModelDeployment's imagePullSecrets (it has none)" in message, message

    # a wrong password
    pod.termination.unlink()
    env = {**pull_secret(pod, private, password="wrong"), **private.env()}
    message = assert_failed(pod, pod.run("fetch", KUBENTO_ARCHIVE_URI=pinned, **env))
    assert f"the registry {private.host} refused the credentials for it in the ModelDeployment's imagePullSecrets " \
           "(regcred)" in message, message
    assert "wrong" not in message.replace("(wrong user", "")

    # the right secret, but not the CA
    pod.termination.unlink()
    (pod.root / "registry-auth" / "regcred" / ".dockerconfigjson").write_text(private.dockerconfigjson())
    message = assert_failed(pod, pod.run("fetch", KUBENTO_ARCHIVE_URI=pinned,
                                         KUBENTO_OCI_AUTH_DIR=str(pod.root / "registry-auth")))
    assert f"TLS error talking to https://{private.host}: its certificate is not signed by a CA kubento trusts: " \
           "give the CA that signs it (bento.archive.caBundle" in message, message


def test_push_without_credentials_or_ca_says_what_to_do(private, echo_archive: Archive, tmp_path: Path) -> None:
    target = f"oci://{private.host}/team/echo:v3"
    proc = kubento("push", str(echo_archive.path), target, "--ca-file", str(private.ca), cwd=tmp_path,
                   HOME=str(tmp_path))
    assert proc.returncode == 1
    assert f"kubento push: push to {target} failed: HTTP 401: the registry {private.host} asks for credentials and " \
           "none were given for it: add them to your Docker config" in proc.stderr, proc.stderr
    docker = private.docker_config(tmp_path / "d" / "config.json").parent
    proc = kubento("push", str(echo_archive.path), target, cwd=tmp_path, HOME=str(tmp_path), DOCKER_CONFIG=str(docker))
    assert proc.returncode == 1 and "--ca-file" in proc.stderr and "TLS error" in proc.stderr, proc.stderr


def test_the_manifest_is_a_bento_artifact(plain, echo_archive: Archive, tmp_path: Path) -> None:
    """What `kubento push` writes, as any OCI tool sees it."""
    pinned = push(plain, echo_archive, "ml/shape:v1", tmp_path, "--plain-http")
    digest = pinned.split("@")[1]
    status, _, body = plain.request(f"/v2/ml/shape/manifests/{digest}",
                                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 200
    manifest = json.loads(body)
    assert manifest["config"]["mediaType"] == "application/vnd.kubento.bento.config.v1+json"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.kubento.bento.v1.tar"
    assert layer["digest"] == f"sha256:{echo_archive.sha256}" and layer["size"] == echo_archive.path.stat().st_size
    assert layer["annotations"]["org.opencontainers.image.title"] == echo_archive.tag.replace(":", "-") + ".bento"
    assert manifest["annotations"]["io.kubento.bento.tag"] == echo_archive.tag
