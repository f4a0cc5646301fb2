"""dist/kustomization.yaml, the kubectl-only install of docs/install.md: rendered by
kubectl's own kustomize (the cluster's kubectl, e2e/kubebin), it is dist/install.yaml;
after the page's `sed`, both images are the user's registry's."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kubectl() -> list[str]:
    proc = subprocess.run([str(ROOT / "e2e" / "kubebin" / "build.sh")], capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [proc.stdout.strip(), "kubectl"]


def render(kubectl: list[str], directory: Path) -> dict[tuple[str, str], dict]:
    proc = subprocess.run([*kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(proc.stdout) if d}


def operator(objects: dict) -> dict:
    return objects[("Deployment", "kubento")]["spec"]["template"]["spec"]["containers"][0]


def test_the_kustomization_is_the_install_file(kubectl):
    rendered = render(kubectl, ROOT / "dist")
    install = {(d["kind"], d["metadata"]["name"]): d
               for d in yaml.safe_load_all((ROOT / "dist" / "install.yaml").read_text()) if d}
    for objects in (rendered, install):  # (the patch moves the variable it sets first)
        operator(objects)["env"].sort(key=lambda e: e["name"])
    assert rendered == install


def test_the_pages_sed_points_both_images_at_the_registry(kubectl, tmp_path):
    page = (ROOT / "docs" / "install.md").read_text()
    [command] = re.findall(r"^sed -i .* dist/kustomization.yaml$", page, re.M)
    shutil.copytree(ROOT / "dist", tmp_path / "dist")
    subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True, timeout=30)
    container = operator(render(kubectl, tmp_path / "dist"))
    assert container["image"] == "registry.example.com/ml/kubento-operator:0.1.0"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBENTO_RUNTIME_IMAGE"] == "registry.example.com/ml/bentoml-runtime:0.1.0"
    assert "kubectl apply --server-side -k dist/" in page
