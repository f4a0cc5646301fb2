"""``python -m kubento.runtime fetch`` and ``serve``: what the init container
and the model server of an archive bento run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request

from tests.runtime.conftest import BUCKET, SECRET_TOKEN, Archive, Pod
from tests.s3server import S3Server, free_port


def assert_imported(pod: Pod, proc: subprocess.CompletedProcess, archive: Archive) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pod.tag() == archive.tag
    name, version = archive.tag.split(":")
    assert (pod.home / "bentos" / name / version / "bento.yaml").is_file()
    assert list(pod.work.iterdir()) == [], "the downloaded archive is deleted"
    assert not pod.message()


def assert_failed(pod: Pod, proc: subprocess.CompletedProcess, *expected: str) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = pod.message()
    assert "\n" not in message.strip() and 0 < len(message.encode()) < 1024, message
    for text in expected:
        assert text in message, message
    assert message.strip() in proc.stderr  # the same line on stderr, for kubectl logs
    assert not (pod.home / "kubento-bento-tag").exists()
    return message


def test_fetch_from_s3(pod: Pod, s3: S3Server, echo_archive: Archive) -> None:
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI=f"s3://{BUCKET}/echo/echo.bento",
                   KUBENTO_ARCHIVE_SHA256=echo_archive.sha256, **s3.env())
    assert_imported(pod, proc, echo_archive)
    assert "MB/s" in proc.stdout and f"s3://{BUCKET}/echo/echo.bento" in proc.stdout
    assert s3.secret_key not in proc.stdout + proc.stderr


def test_fetch_from_s3_with_region_and_again_into_the_same_home(pod: Pod, s3: S3Server, echo_archive: Archive) -> None:
    env = dict(KUBENTO_ARCHIVE_URI=f"s3://{BUCKET}/echo/echo.bento", **s3.env(region=True))
    assert_imported(pod, pod.run("fetch", **env), echo_archive)
    # a restarted pod keeps its emptyDir: bentoml would refuse a second import
    again = pod.run("fetch", **env)
    assert_imported(pod, again, echo_archive)
    assert "already in" in again.stdout


def test_fetch_from_http_with_sha256(pod: Pod, http_base: str, echo_archive: Archive) -> None:
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI=f"{http_base}/echo.bento", KUBENTO_ARCHIVE_SHA256=echo_archive.sha256)
    assert_imported(pod, proc, echo_archive)
    assert f"sha256 {echo_archive.sha256} (as expected)" in proc.stdout


def test_fetch_from_http_with_authorization(pod: Pod, http_base: str, echo_archive: Archive) -> None:
    uri = f"{http_base}/private/echo.bento"
    assert_failed(pod, pod.run("fetch", KUBENTO_ARCHIVE_URI=uri), f"cannot fetch {uri}: HTTP 401")
    pod.termination.unlink()  # (each container run gets a new file)
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI=uri, HTTP_AUTHORIZATION=SECRET_TOKEN)
    assert_imported(pod, proc, echo_archive)
    assert SECRET_TOKEN not in proc.stdout + proc.stderr


def test_fetch_from_pvc(pod: Pod, echo_archive: Archive) -> None:
    (pod.pvc / "claim" / "bentos").mkdir(parents=True)
    src = pod.pvc / "claim" / "bentos" / "echo-v1"  # no extension: the format is found from the content
    shutil.copy(echo_archive.path, src)
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI="pvc://claim/bentos/echo-v1",
                   KUBENTO_ARCHIVE_SHA256=echo_archive.sha256)
    assert_imported(pod, proc, echo_archive)
    assert src.is_file(), "the file in the volume is read in place, never removed"


def test_fetch_other_archive_formats(pod: Pod, echo_archive: Archive) -> None:
    """bentoml import picks the format from the file name: the runtime names
    the file after its content (here a tar.gz called .bento)."""
    (pod.pvc / "claim").mkdir()
    with tarfile.open(echo_archive.path, "r:xz") as src, tarfile.open(pod.pvc / "claim" / "echo.bento", "w:gz") as dst:
        for member in src:
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    assert_imported(pod, pod.run("fetch", KUBENTO_ARCHIVE_URI="pvc://claim/echo.bento"), echo_archive)


def test_fetch_from_pvc_missing_file(pod: Pod) -> None:
    (pod.pvc / "claim").mkdir()
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI="pvc://claim/x.bento")
    assert_failed(pod, proc, f"pvc path {pod.pvc}/claim/x.bento does not exist")
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI="pvc://other/x.bento")
    assert_failed(pod, proc, "pvc other is not mounted")


def test_sha256_mismatch(pod: Pod, http_base: str, echo_archive: Archive) -> None:
    wrong = "0" * 64
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI=f"{http_base}/echo.bento", KUBENTO_ARCHIVE_SHA256=wrong)
    assert_failed(pod, proc, f"sha256 mismatch for {http_base}/echo.bento: expected {wrong}, got {echo_archive.sha256}")
    assert list(pod.work.iterdir()) == [], "the rejected download is deleted"


def test_wrong_access_key(pod: Pod, s3: S3Server) -> None:
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI=f"s3://{BUCKET}/echo/echo.bento", **s3.env("wrong-key"))
    message = assert_failed(pod, proc, f"cannot fetch s3://{BUCKET}/echo/echo.bento: ",
                            "check the credentials in the ModelDeployment's archive.secretRef Secret")
    assert "InvalidAccessKeyId" in message or "AccessDenied" in message
    assert s3.wrong_secret_key not in proc.stdout + proc.stderr


def test_wrong_secret_key(pod: Pod, s3: S3Server) -> None:
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI=f"s3://{BUCKET}/echo/echo.bento", **s3.env("wrong-secret", region=True))
    assert_failed(pod, proc, "SignatureDoesNotMatch — check the credentials")


def test_no_credentials(pod: Pod, s3: S3Server) -> None:
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI=f"s3://{BUCKET}/echo/echo.bento", **s3.env("none"))
    assert_failed(pod, proc, "no credentials were given (anonymous request)")


def test_missing_object_and_bucket(pod: Pod, s3: S3Server) -> None:
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI=f"s3://{BUCKET}/echo/nope.bento", **s3.env())
    assert_failed(pod, proc, f"cannot fetch s3://{BUCKET}/echo/nope.bento: NoSuchKey — the object does not exist")
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI="s3://no-such-bucket/echo.bento", **s3.env(region=True))
    assert_failed(pod, proc, "NoSuchBucket — the bucket does not exist")


def test_connection_refused_fails_fast(pod: Pod) -> None:
    port = free_port("127.0.0.1")
    start = time.monotonic()
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI="s3://models/echo.bento", AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                   AWS_ACCESS_KEY_ID="AKIAX", AWS_SECRET_ACCESS_KEY="x")
    elapsed = time.monotonic() - start
    assert_failed(pod, proc, f"connection refused (endpoint http://127.0.0.1:{port})")
    assert elapsed < 20, f"took {elapsed:.1f}s"
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI=f"http://127.0.0.1:{port}/x.bento")
    assert_failed(pod, proc, f"cannot fetch http://127.0.0.1:{port}/x.bento: connection refused")


def test_not_a_bento_archive(pod: Pod, http_base: str) -> None:
    proc = pod.run("fetch", KUBENTO_ARCHIVE_URI=f"{http_base}/garbage.bento")
    assert_failed(pod, proc, f"{http_base}/garbage.bento is not a bento archive")


def test_bad_settings(pod: Pod) -> None:
    assert_failed(pod, pod.run("fetch"), "KUBENTO_ARCHIVE_URI is not set")
    assert_failed(pod, pod.run("fetch", KUBENTO_ARCHIVE_URI="ftp://x/y.bento"), "unsupported URI ftp://x/y.bento")
    assert_failed(pod, pod.run("fetch", KUBENTO_ARCHIVE_URI="s3://b/k", KUBENTO_ARCHIVE_SHA256="abc"),
                  "KUBENTO_ARCHIVE_SHA256 is not a hex SHA-256")


def test_serve_without_a_fetched_bento(pod: Pod) -> None:
    proc = pod.run("serve")
    assert proc.returncode == 1
    assert f"no bento to serve: {pod.home}/kubento-bento-tag is missing" in pod.message()


def test_fetch_then_serve(pod: Pod, http_base: str, echo_archive: Archive) -> None:
    assert_imported(pod, pod.run("fetch", KUBENTO_ARCHIVE_URI=f"{http_base}/echo.bento"), echo_archive)
    port = free_port("127.0.0.1")
    log = open(pod.root / "serve.log", "w+")
    server = subprocess.Popen([sys.executable, "-m", "kubento.runtime", "serve", "--host", "127.0.0.1"],
                              env=pod.env(BENTOML_PORT=str(port)), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"bentoml serve exited: {(pod.root / 'serve.log').read_text()[-3000:]}"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, (pod.root / "serve.log").read_text()[-3000:]
                time.sleep(0.3)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/echo", data=json.dumps({"text": "kubento"}).encode(),
                                     headers={"Content-Type": "application/json"})
        assert urllib.request.urlopen(req, timeout=10).read().decode() == "otnebuk"
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    assert f"serve {echo_archive.tag} --host 127.0.0.1" in (pod.root / "serve.log").read_text()
