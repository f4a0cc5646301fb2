"""Cold start with a bento's own Python environment (#16): `kubectl apply`
-> Ready (median of RUNS) for

  - the iris bento as a prebuilt image (bentoml containerize-like: scikit-learn inside);
  - the same bento as an archive on the default runtime image (no scikit-learn), its
    environment not yet stored (the environment Job installs it) and already stored
    (another archive with the same dependency set prepared it: the Job finds it);
  - a larger dependency set (scikit-learn + pandas, the iris-source project with a
    pandas step) as an archive, environment not stored and stored;

and the environment's size and preparation time. Packages come from a
private index the bench starts on the host (no public index in the cluster).

    .venv/bin/pytest bench/test_environment_cold_start.py -s -p no:logging   (KUBENTO_BENCH_RUNS=1: one run each)

Prints a table; asserts only that every model predicts correctly.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from pathlib import Path

import pytest

from e2e.conftest import NAMESPACE, S3_SECRET
from e2e.support import IRIS_CLASSES, IRIS_ROWS, ROOT, apply_md, predict, ready
from tests import pyindex
from tests.helpers import wait_for

RUNS = int(os.environ.get("KUBENTO_BENCH_RUNS", "3"))  # fewer for a quick look
PANDAS_PACKAGES = ["scikit-learn==1.6.1", "pandas==2.2.3"]


def pandas_project() -> dict[str, str]:
    service = (ROOT / "examples" / "iris-source" / "service.py").read_text().replace(
        "        iris = load_iris()\n",
        "        import pandas as pd\n\n        iris = load_iris()\n"
        "        frame = pd.DataFrame(iris.data).describe()  # pandas at load time, as a real model would\n"
        "        assert len(frame) == 8\n")
    assert "import pandas" in service
    bentofile = (ROOT / "examples" / "iris-source" / "bentofile.yaml").read_text().replace(
        "    - scikit-learn==1.6.1\n", "".join(f"    - {p}\n" for p in PANDAS_PACKAGES))
    return {"service.py": service, "bentofile.yaml": bentofile}


@pytest.fixture(scope="module")
def index(host_ip):
    with pyindex.running(pyindex.wheels(PANDAS_PACKAGES), host=host_ip) as served:
        yield served


def apply_to_ready(cluster, name: str, spec: dict) -> tuple[float, dict]:
    start = time.monotonic()
    apply_md(cluster, name, spec)
    obj = wait_for(f"{name} Ready", lambda: ready(cluster, name), timeout=900, interval=0.25)
    took = time.monotonic() - start
    assert wait_for("a prediction", lambda: predict(cluster, name, IRIS_ROWS), timeout=60) == IRIS_CLASSES
    return took, obj


def delete(cluster, name: str, obj: dict | None = None) -> None:
    cluster.kubectl("delete", "md", name, "-n", NAMESPACE, "--wait=true", "--timeout=120s", check=False)
    job = ((obj or {}).get("status", {}).get("environment") or {}).get("job")
    if job:  # its environment Job goes with it (garbage collection): the next model makes its own
        wait_for(f"Job {job} gone", lambda: cluster.get("jobs", "-n", NAMESPACE, "--field-selector",
                                                         f"metadata.name={job}")["items"] == [], timeout=120)


def job_seconds(cluster, name: str) -> float:
    job = cluster.get("job", name, "-n", NAMESPACE)
    from kubento.rollout.revisions import epoch

    return epoch(job["status"]["completionTime"]) - epoch(job["status"]["startTime"])


def test_apply_to_ready_with_an_environment(cluster, images, s3, iris_bento, index, tmp_path: Path):
    python = {"index": {"url": index.url, "onlyBinary": True}}
    results: dict[str, list[float]] = {}
    sizes: dict[str, str] = {}

    def archive_case(label: str, archive: Path, stored: bool) -> None:
        results[label] = []
        shared = f"bench-env/{uuid.uuid4().hex[:6]}"
        for i in range(RUNS):
            # Not stored: a new directory each run (the environment lives beside the archive).
            prefix = shared if stored else f"bench-env/{uuid.uuid4().hex[:6]}"
            key = f"{prefix}/{archive.name}"
            s3.upload("models", key, archive)
            if stored and i == 0:  # prepare it once, outside the timing
                warm = f"bench-warm-{uuid.uuid4().hex[:5]}"
                _, got = apply_to_ready(cluster, warm, {"bento": {"archive": {
                    "uri": f"s3://models/{key}", "secretRef": {"name": S3_SECRET}}}, "python": python})
                delete(cluster, warm, got)
            name = f"bench-env-{uuid.uuid4().hex[:5]}"
            took, obj = apply_to_ready(cluster, name, {"bento": {"archive": {
                "uri": f"s3://models/{key}", "secretRef": {"name": S3_SECRET}}}, "python": python})
            env = obj["status"]["environment"]
            assert bool(env.get("reused")) == stored
            sizes[label] = (f"{env['packages']} packages, {env['size'] / 1e6:.1f} MB packed, "
                            f"{env['unpacked'] / 1e6:.1f} MB unpacked, preparation Job "
                            f"{job_seconds(cluster, env['job']):.0f} s")
            results[label].append(took)
            print(f"  {label:36} run {i + 1}: {took:6.1f} s  ({sizes[label]})", flush=True)
            delete(cluster, name, obj)

    results["iris: prebuilt image"] = []
    for i in range(RUNS):
        name = f"bench-img-{uuid.uuid4().hex[:5]}"
        took, _ = apply_to_ready(cluster, name, {"bento": {"image": images["iris"]}})
        results["iris: prebuilt image"].append(took)
        print(f"  {'iris: prebuilt image':36} run {i + 1}: {took:6.1f} s", flush=True)
        delete(cluster, name)
    archive_case("iris: archive, environment not stored", iris_bento, stored=False)
    archive_case("iris: archive, environment stored", iris_bento, stored=True)

    # The larger set: build the pandas project once, then serve its archive.
    project = f"bench-pandas-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "configmap", project, "-n", NAMESPACE,
                    *[f"--from-literal={k}={v}" for k, v in pandas_project().items()])
    build = f"bench-pandas-{uuid.uuid4().hex[:5]}"
    took, obj = apply_to_ready(cluster, build, {"bento": {"build": {
        "source": {"configMap": {"name": project}}, "output": {"uri": "s3://built/bench-env", "secretRef": {"name": S3_SECRET}}}},
        "python": python})
    env = obj["status"]["environment"]
    print(f"  sklearn+pandas build (bentoml build + environment + serve): {took:.1f} s; environment "
          f"{env['packages']} packages, {env['size'] / 1e6:.1f} MB packed, {env['unpacked'] / 1e6:.1f} MB unpacked; "
          f"build Job {job_seconds(cluster, obj['status']['build']['job']):.0f} s", flush=True)
    bucket, key = obj["status"]["build"]["archive"].removeprefix("s3://").split("/", 1)
    pandas_bento = tmp_path / "iris-pandas.bento"
    pandas_bento.write_bytes(s3.get(bucket, key))
    delete(cluster, build)
    cluster.kubectl("delete", "configmap", project, "-n", NAMESPACE, check=False)
    archive_case("sklearn+pandas: archive, not stored", pandas_bento, stored=False)
    archive_case("sklearn+pandas: archive, stored", pandas_bento, stored=True)

    print("\napply -> Ready (s) on the local single-node cluster (images on the node; index on the host):")
    print(f"  {'case':36} {'median':>7} {'min':>7} {'max':>7}   runs")
    for label, times in results.items():
        print(f"  {label:36} {statistics.median(times):7.1f} {min(times):7.1f} {max(times):7.1f}   "
              + " ".join(f"{t:.1f}" for t in times))
    for label, size in sizes.items():
        print(f"  {label}: {size}")
