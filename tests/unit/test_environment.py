"""Python environments (#16): the key, the environment Job's manifest, and
the passes of an archive model through preparation (a toy cluster, as in
test_plan), for a success, a failure while an older revision serves, and two
models sharing one Job."""

from __future__ import annotations

import copy
import json

import pytest

from kubento.api.v1alpha1 import ModelDeploymentSpec, PackageIndex
from kubento.builders.bento import ServedBento
from kubento.builders.build_job import build_job, source_hash
from kubento.builders.deployment import POD_SECURITY
from kubento.builders.env_job import ENV_STEPS, archive_store, env_job, env_source, index_env
from kubento.builders.meta import Owner
from kubento.controller.environment import failure_reason
from kubento.controller.observation import Inputs
from kubento.controller.status import to_wire
from kubento.runtime import environment as runtime_env
from tests.unit.test_build_job import credentials, steps
from tests.unit.test_plan import Toy

OWNER = Owner(name="iris", namespace="ns", uid="uid-1")
INDEX = PackageIndex.model_validate({"url": "https://pypi.internal/simple", "extraUrls": ["https://pypi.internal/extra"],
                                     "caBundle": {"configMap": "index-ca"}, "secretRef": {"name": "index-auth"},
                                     "onlyBinary": True})
ARCHIVE_SPEC = {"bento": {"archive": {"uri": "s3://models/iris/v1.bento", "secretRef": {"name": "store"}}}}


def stored_condition(actions, type_):
    """A condition of the status a pass would write, as stored."""
    return next(c for c in to_wire(actions.new_status)["conditions"] if c["type"] == type_)


# ------------------------------------------------------------------ the key


def key(reqs, index=None, python="cpython-3.11", platform="linux-x86_64-glibc-2.36", runtime="r1"):
    return runtime_env.key_of(reqs, python, platform, runtime, index or {})


def test_the_same_dependency_set_is_the_same_environment_whatever_the_order_or_spacing():
    assert key(["scikit-learn==1.6.1", "pandas==2.2.3"]) == key(["pandas==2.2.3 ", "scikit-learn==1.6.1"])


@pytest.mark.parametrize("change", [
    {"reqs": ["scikit-learn==1.6.0", "pandas==2.2.3"]},
    {"index": {"url": "https://mirror/simple"}},
    {"index": {"extraUrls": ["https://extra/simple"]}},
    {"index": {"onlyBinary": True}},
    {"python": "cpython-3.12"},
    {"platform": "linux-aarch64-glibc-2.36"},
    {"runtime": "r2"},
])
def test_a_change_of_requirements_index_python_platform_or_runtime_is_a_new_environment(change):
    base = {"reqs": ["scikit-learn==1.6.1", "pandas==2.2.3"]}
    assert key(**base) != key(**{**base, **change})


def test_requirement_lines_drop_comments_and_set_pip_options_aside():
    reqs, options = runtime_env.requirement_lines(
        "# locked\nscikit-learn==1.6.1  # via -r in\n\n--index-url https://x/simple\nbentoml==1.4.39\n")
    assert reqs == ["scikit-learn==1.6.1", "bentoml==1.4.39"]
    assert options == ["--index-url https://x/simple"]


def test_the_bento_python_version_is_read_and_a_mismatch_is_refused_by_name():
    assert runtime_env.bento_python("image:\n  base_image: python:3.10-slim\n  python_version: '3.10'\n") == "3.10"
    with pytest.raises(Exception) as exc:
        runtime_env.check_python("2.7", "rt:1")
    assert str(exc.value).startswith("PythonVersionMismatch: the bento was built for Python 2.7")
    assert failure_reason(str(exc.value), "BuildFailed") == "PythonVersionMismatch"
    runtime_env.check_python(runtime_env.runtime_python())  # the same: no complaint


def test_what_this_python_already_has_is_not_an_extra_package():
    from importlib import metadata

    numpy = metadata.version("numpy")
    assert runtime_env.unsatisfied(["pydantic", f"NumPy=={numpy}", "surely-not-installed-pkg==1.0", "numpy==0.0.1"]) == [
        "surely-not-installed-pkg==1.0", "numpy==0.0.1"]
    # What the standard library cannot judge goes to pip.
    assert runtime_env.unsatisfied(["numpy>=1", 'numpy; python_version > "3"']) == ["numpy>=1", 'numpy; python_version > "3"']


def test_index_credentials_go_to_the_index_host_only_through_netrc_never_on_pips_command_line():
    index = runtime_env.Index(url="https://pypi.internal:8443/simple",
                              extra_urls=("https://pypi.internal:8443/x", "https://other/simple"),
                              username="bob", password='p@ss wo"rd\\')
    args = index.pip_args()
    assert args[:4] == ["--index-url", "https://pypi.internal:8443/simple", "--extra-index-url",
                        "https://pypi.internal:8443/x"]
    assert not any("bob" in a or "p@ss" in a or "p%40ss" in a for a in args)
    text = index.netrc_text()
    assert text.startswith("machine pypi.internal\n")  # pip matches a netrc entry by host name: the index's only
    import netrc
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".netrc") as f:
        f.write(text)
        f.flush()
        parsed = netrc.netrc(f.name)
    assert parsed.authenticators("pypi.internal") == ("bob", "", 'p@ss wo"rd\\')  # quoted: spaces, quotes, backslashes
    assert parsed.authenticators("other") is None
    assert runtime_env.Index(url="https://pypi.internal/simple").netrc_text() == ""
    assert index.secrets() == ['p@ss wo"rd\\', "p%40ss%20wo%22rd%5C"]  # the user name is not masked
    assert "bob" not in json.dumps(index.settings()) and "p@ss" not in json.dumps(index.settings())


def test_only_the_download_step_reads_the_index_credentials(monkeypatch):
    monkeypatch.setenv("KUBENTO_INDEX", json.dumps({"url": "https://pypi.internal/simple"}))
    monkeypatch.setenv("KUBENTO_INDEX_USERNAME", "bob")
    monkeypatch.setenv("KUBENTO_INDEX_PASSWORD", "secret-pw")
    assert runtime_env.Index.from_env().password == ""
    assert runtime_env.Index.from_env(credentials=True).password == "secret-pw"


def test_what_building_a_source_distribution_needs_is_read_from_its_pyproject(tmp_path):
    import io
    import tarfile

    def sdist(name, pyproject=None):
        path = tmp_path / f"{name}-1.0.tar.gz"
        with tarfile.open(path, "w:gz") as t:
            files = {"setup.py": "from setuptools import setup; setup()\n"}
            if pyproject is not None:
                files["pyproject.toml"] = pyproject
            for fname, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(f"{name}-1.0/{fname}")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        return path

    assert runtime_env._build_requirements(sdist("plain")) == ["setuptools>=40.8.0", "wheel"]
    hatch = sdist("hatched", '[build-system]\nrequires = ["hatchling>=1.20"]\nbuild-backend = "hatchling.build"\n')
    assert runtime_env._build_requirements(hatch) == ["hatchling>=1.20"]
    scm = sdist("scm", '[build-system]\nrequires = ["setuptools>=64", "setuptools-scm>=8"]\n')
    assert runtime_env._build_requirements(scm) == ["setuptools>=64", "setuptools-scm>=8", "wheel"]



def test_an_http_index_the_user_named_is_trusted_by_pip():
    index = runtime_env.Index(url="http://10.0.0.5:8080/simple", extra_urls=("https://pypi.internal/x", "http://mirror/simple"),
                              username="bob", password="pw")
    args = index.pip_args()
    trusted = [args[i + 1] for i, a in enumerate(args) if a == "--trusted-host"]
    assert trusted == ["10.0.0.5:8080", "mirror"]  # never an https host, never the credentials
    assert not any("--trusted-host" == a for a in runtime_env.Index(url="https://pypi.internal/simple").pip_args())

# ------------------------------------------------------------- the manifests


def test_the_environment_job_is_restricted_has_no_token_and_only_its_download_step_sees_the_index_credentials():
    bento = ServedBento("rt:1", archive_uri="s3://models/iris/v1.bento", secret="store")
    job = env_job(bento, OWNER, INDEX, None)
    pod = job["spec"]["template"]["spec"]
    by_name = steps(job)
    assert tuple(by_name) == ENV_STEPS and [c["name"] for c in pod["containers"]] == ["upload"]
    assert pod["automountServiceAccountToken"] is False and pod["shareProcessNamespace"] is False
    assert pod["securityContext"] == POD_SECURITY and pod["securityContext"]["runAsNonRoot"] is True
    for container in by_name.values():
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # Who holds what: the store's Secret where the store is read and written, the index's where pip downloads;
    # none where pip installs (it builds source distributions there).
    assert {n: credentials(c) for n, c in by_name.items()} == {
        "plan": [("envFrom", "store")],
        "download": [("KUBENTO_INDEX_USERNAME", "index-auth"), ("KUBENTO_INDEX_PASSWORD", "index-auth")],
        "install": [],
        "upload": [("envFrom", "store")],
    }
    env = {e["name"]: e for e in by_name["plan"]["env"]}
    assert env["KUBENTO_ENV_STORE"]["value"] == "s3://models/iris"  # beside the archive
    assert json.loads(env["KUBENTO_INDEX"]["value"]) == {"url": "https://pypi.internal/simple",
                                                          "extraUrls": ["https://pypi.internal/extra"], "onlyBinary": True}
    download = {e["name"]: e for e in by_name["download"]["env"]}
    assert download["KUBENTO_INDEX_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "index-auth", "key": "password"}
    assert download["KUBENTO_INDEX_CA"]["value"].endswith("/ca.crt")
    assert any(v.get("configMap", {}).get("name") == "index-ca" for v in pod["volumes"])
    assert [n for n, c in by_name.items() if any(m["name"] == "index-ca" for m in c["volumeMounts"])] == ["download"]
    assert job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["name"] == f"kubento-env-{env_source(bento, INDEX)}"
    assert OWNER.uid not in job["metadata"]["name"]  # shared by every model serving this archive


def test_the_build_job_prepares_the_environment_beside_its_archives_with_the_index():
    spec = ModelDeploymentSpec.model_validate({"bento": {"build": {"source": {"configMap": {"name": "p"}},
                                                                   "output": {"uri": "s3://built/e2e/"}}}})
    job = build_job(spec.bento.build, OWNER, "rt:1", "h", "b", INDEX)
    by_name = steps(job)
    env = {e["name"]: e for e in by_name["upload"]["env"]}
    assert env["KUBENTO_ENV_STORE"]["value"] == "s3://built/e2e"
    # the index credentials: the download step's only
    assert [n for n, c in by_name.items() if any(e["name"].startswith("KUBENTO_INDEX_") and "valueFrom" in e
                                                  for e in c["env"])] == ["download"]
    build = spec.bento.build
    assert source_hash(build, "rt:1", None) != source_hash(build, "rt:1", None, INDEX.wire())


def test_an_environment_store_is_beside_an_s3_or_pvc_archive_and_an_http_archive_has_none():
    assert archive_store("s3://models/iris/v1.bento") == "s3://models/iris"
    assert archive_store("s3://models/v1.bento") == "s3://models"
    assert archive_store("pvc://claim/dir/v1.bento") == "pvc://claim/dir"
    assert archive_store("https://host/v1.bento") is None


def test_an_index_change_is_a_new_preparation():
    bento = ServedBento("rt:1", archive_uri="s3://models/iris/v1.bento")
    assert env_source(bento, None) != env_source(bento, INDEX)
    assert env_source(bento, None) != env_source(ServedBento("rt:2", archive_uri=bento.archive_uri), None)


# ---------------------------------------------------------------- the passes


def finish(toy: Toy, job: dict, message: dict | str, ok: bool = True) -> dict:
    """The Job ran: its pod's termination message, its condition."""
    job = copy.deepcopy(job)
    job["metadata"].update(uid="job-uid", creationTimestamp="2026-01-01T00:00:00Z")
    job["status"] = {"conditions": [{"type": "Complete" if ok else "Failed", "status": "True",
                                     "reason": "" if ok else "BackoffLimitExceeded"}]}
    toy.children[("Job", job["metadata"]["name"])] = job
    pod = {"metadata": {"name": job["metadata"]["name"] + "-x", "creationTimestamp": "2026-01-01T00:00:01Z",
                        "labels": {"batch.kubernetes.io/job-name": job["metadata"]["name"]}},
           "status": {"containerStatuses": [{"name": "upload", "state": {"terminated": {
               "exitCode": 0 if ok else 1, "message": message if isinstance(message, str) else json.dumps(message)}}}]}}
    return pod


class EnvToy(Toy):
    pods: list

    def world(self):
        w = super().world()
        w.children["Pod"] = list(getattr(self, "pods", []))
        return w


RESULT = {"environment": {"hash": "abc123", "uri": "s3://models/iris/envs/abc123.tar.gz", "sha256": "f" * 64,
                          "size": 50 << 20, "unpacked": 150 << 20, "packages": 4, "python": "3.11", "reused": False}}


def test_an_archive_is_served_with_its_environment_once_prepared_and_then_costs_nothing():
    toy = EnvToy(ARCHIVE_SPEC)
    first = toy.step()
    assert [c["kind"] for c in first.creates] == ["Job"] and first.applies == []
    assert first.status["phase"] == "PreparingEnvironment"
    env_cond = stored_condition(first, "EnvironmentReady")
    assert env_cond["status"] == "Unknown" and env_cond["reason"] == "PreparingEnvironment"
    toy.pods = [finish(toy, first.creates[0], RESULT)]
    served = toy.step()
    (dep,) = [a.manifest for a in served.applies if a.manifest["kind"] == "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    fetch_env = {e["name"]: e.get("value") for e in pod["initContainers"][0]["env"]}
    assert fetch_env["KUBENTO_ENV_URI"] == "s3://models/iris/envs/abc123.tar.gz"
    assert fetch_env["KUBENTO_ENV_SHA256"] == "f" * 64
    server = pod["containers"][0]
    assert {"name": "PYTHONPATH", "value": "/var/lib/kubento/env/site-packages"} in server["env"]
    # No index credential, no store credential in the model server's environment.
    assert "envFrom" not in server and not any("INDEX" in e["name"] for e in server["env"])
    status = toy.model["status"]["environment"]
    assert status["hash"] == "abc123" and status["packages"] == 4 and status["size"] == 50 << 20
    # Settled from status: the Job may go, nothing is asked again.
    toy.children = {k: v for k, v in toy.children.items() if k[0] != "Job"}
    toy.pods = []
    from tests.unit.test_plan import settle
    last = settle(toy)
    assert last.creates == [] and last.requeue_after is None
    history = toy.model["status"]["history"]
    assert history[-1]["environment"] == "abc123 (4 packages, 50.0 MiB)"


def test_an_archive_needing_nothing_runs_in_the_runtime_image_as_before():
    toy = EnvToy(ARCHIVE_SPEC)
    first = toy.step()
    toy.pods = [finish(toy, first.creates[0], {"environment": {"packages": 0, "python": "3.11"}})]
    served = toy.step()
    (dep,) = [a.manifest for a in served.applies if a.manifest["kind"] == "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    assert not any(e["name"] == "KUBENTO_ENV_URI" for e in pod["initContainers"][0]["env"])
    assert not any(e["name"] == "PYTHONPATH" for e in pod["containers"][0]["env"])
    assert not any(v["name"] == "python-env" for v in pod["volumes"])


def test_a_missing_package_fails_preparation_by_name_and_the_serving_revision_stays():
    toy = EnvToy(ARCHIVE_SPEC)
    toy.pods = [finish(toy, toy.step().creates[0], {"environment": {"packages": 0}})]
    from tests.unit.test_plan import settle
    settle(toy)
    serving = toy.model["status"]["currentRevision"]
    deployments = {k for k in toy.children if k[0] == "Deployment"}
    toy.model["spec"] = {"bento": {"archive": {**ARCHIVE_SPEC["bento"]["archive"], "uri": "s3://models/iris/v2.bento"}}}
    toy.model["metadata"]["generation"] = 2
    second = toy.step()
    assert [c["kind"] for c in second.creates] == ["Job"]
    tail = ("PackageNotFound: no-such-package==9.9 is not on https://pypi.internal/simple (no matching distribution); "
            "pip's log ends:\nERROR: No matching distribution found for no-such-package==9.9")
    toy.pods = [finish(toy, second.creates[0], tail, ok=False)]
    failed = toy.step()
    status = toy.model["status"]
    env_cond = next(c for c in status["conditions"] if c["type"] == "EnvironmentReady")
    assert env_cond["status"] == "False" and env_cond["reason"] == "PackageNotFound"
    assert "no-such-package==9.9" in env_cond["message"]
    assert status["phase"] == "Degraded" and status["currentRevision"] == serving
    assert {k for k in toy.children if k[0] == "Deployment"} == deployments  # nothing new rolled out
    assert ("Warning", "PackageNotFound") in [(e[0], e[1]) for e in failed.events]
    assert any("no-such-package" in e[2] for e in failed.events)


def test_two_models_serving_one_archive_share_one_job():
    a, b = EnvToy(ARCHIVE_SPEC, name="a"), EnvToy(ARCHIVE_SPEC, name="b")
    b.model["metadata"]["uid"] = "uid-2"
    job = a.step().creates[0]
    # b sees a's Job (gather finds it in the cache by name): it creates none and waits.
    live = copy.deepcopy(job)
    live["metadata"].update(uid="job-uid", creationTimestamp="2026-01-01T00:00:00Z")
    waiting = b.step(Inputs(now=0, shared_jobs=[live]))
    assert waiting.creates == [] and waiting.status["phase"] == "PreparingEnvironment"
    assert waiting.requeue_after is not None  # its events reach a, not b
    pod = finish(a, job, RESULT)
    done = b.step(Inputs(now=0, shared_jobs=[a.children[("Job", job["metadata"]["name"])]], shared_pods=[pod]))
    assert done.creates == []  # no Job of its own
    assert any(x.manifest["kind"] == "Deployment" for x in done.applies)
    assert b.model["status"]["environment"]["hash"] == "abc123"
    assert not any(d.kind == "Job" for d in done.deletes)  # never deletes a's Job


def test_a_build_records_the_environment_its_job_prepared():
    from kubento.controller.build import build_state

    spec = ModelDeploymentSpec.model_validate({"bento": {"build": {"source": {"configMap": {"name": "p"}},
                                                                   "output": {"uri": "s3://b/p"}}}})
    job = {"metadata": {"name": "iris-build-1"}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    pods = [{"metadata": {"name": "p"}, "status": {"containerStatuses": [{"name": "build", "state": {"terminated": {
        "exitCode": 1, "message": "PackageNotFound: nope==1 is not on the default index (pypi.org)"}}}]}}]
    state = build_state(spec.bento.build, job, pods, "h")
    assert state.reason == "PackageNotFound" and "nope==1" in state.summary
    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = json.dumps(
        {"tag": "iris:1", "sha256": "a" * 64, "environment": RESULT["environment"]})
    assert build_state(spec.bento.build, job, pods, "h").environment["hash"] == "abc123"


def test_index_env_is_nothing_without_an_index():
    assert index_env(None) == ([], [], [])
