"""docs/models/deploy.md ("Serve your own model"), run as written on the cluster.

The page's two files (its ```python / ```yaml blocks titled ``sentiment/...``) are written into a
temporary directory, and each ``$ `` command of its console blocks runs there in bash, in order, as a
user types it: `kubento deploy` builds the project with the venv's BentoML, pushes it to a real OCI
registry (CNCF Distribution, hack/registry.sh, with a user: htpasswd) and the local cluster serves it,
then the edit, the canary deploy, `kubento promote` and a prediction of each version.

What the test does instead of the page's once-per-cluster bash block: the registry listens on the
node's address (pods reach it) over plain HTTP, the Docker config the CLI reads is written into a
temporary DOCKER_CONFIG, and the `regcred` Secret is made with `kubectl create secret docker-registry`.
The one change to a command: the page's registry, `oci://registry.example.com/ml`, is that one's
address, plus `--plain-http` (remembered with it, as the page says of the pull secret). Like the README
test, `localhost:3000` is a free local port.

Output is compared by shape: every line the page shows must appear in the command's output, in order,
with `…` standing for anything (and a line of `…` alone for any number of lines). Read-only commands
(`kubento status`, `kubento history`) run again until they match; `kubento status -w` runs until its
output has the page's lines. The transcript and the figures (deploy to Ready, cold and warm registry)
are printed at the end (`pytest -s`).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from e2e.test_quickstart import Background, free_port
from tests import ociregistry

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "models" / "deploy.md"
PAGE_REGISTRY = "oci://registry.example.com/ml"
PAGE_PORT = "3000"
STEP_TIMEOUT = 300
NAME = "sentiment"


@dataclass
class Command:
    line: str
    output: list[str] = field(default_factory=list)


def files(text: str) -> dict[str, str]:
    """The page's titled code blocks: path -> content."""
    return {m.group(1): m.group(2) for m in re.finditer(r'^```\w+ title="([^"]+)"\n(.*?)^```', text, re.S | re.M)}


def commands(text: str) -> list[Command]:
    out: list[Command] = []
    for block in re.findall(r"^```console\n(.*?)^```", text, re.S | re.M):
        current = None
        for line in block.splitlines():
            if line.startswith("$ "):
                current = Command(line[2:])
                out.append(current)
            elif current is not None:
                current.output.append(line)
    return out


def pattern(line: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(part) for part in line.split("…")))


def shows(want: list[str], got: list[str]) -> bool:
    """Whether every line of ``want`` matches a line of ``got``, in order (`…` alone: any lines)."""
    lines = iter(got)
    for w in want:
        if w.strip() in ("", "…"):
            continue
        p = pattern(w)
        if not any(p.fullmatch(g) for g in lines):
            return False
    return True


@pytest.fixture(scope="module")
def registry(host_ip, tmp_path_factory):
    with ociregistry.running(tmp_path_factory.mktemp("own-model-registry"), host=host_ip, auth=True) as reg:
        yield reg


def test_the_own_model_page_runs_as_written(cluster, images, operator, registry, tmp_path):
    text = PAGE.read_text()
    for path, content in files(text).items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    steps = commands(text)
    assert any(c.line.startswith("kubento deploy") for c in steps), "the page's commands were not found"
    assert sum(PAGE_REGISTRY in c.line for c in steps) == 1, "the registry is named once"

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").symlink_to(cluster.kubectl_bin)
    docker = registry.docker_config(tmp_path / "docker" / "config.json").parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBENTO_", "BENTOML_"))}
    env.update(KUBECONFIG=cluster.kubeconfig, PATH=f"{bin_dir}:{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
               DOCKER_CONFIG=str(docker), XDG_CONFIG_HOME=str(tmp_path / "config"),
               BENTOML_HOME=str(tmp_path / "bentoml"), BENTOML_DO_NOT_TRACK="True")
    env.pop("VIRTUAL_ENV", None)

    def kubectl(*args: str, check: bool = True):
        return cluster.kubectl(*args, "-n", "default", check=check)

    kubectl("delete", "md", NAME, "--ignore-not-found", "--wait=true")
    kubectl("delete", "secret", "regcred", "--ignore-not-found")
    kubectl("create", "secret", "docker-registry", "regcred", f"--docker-server={registry.host}",
            f"--docker-username={ociregistry.USER}", f"--docker-password={ociregistry.PASSWORD}")
    port = free_port()
    background: list[Background] = []
    transcript: list[str] = []
    figures: dict[str, float] = {}

    def bash(line: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=timeout)

    def fail(c: Command, printed: str, why: str = "") -> None:
        pytest.fail(f"`{c.line}` printed{why}:\n{printed}\n--- the page shows:\n" + "\n".join(c.output),
                    pytrace=False)

    try:
        for c in steps:
            line = c.line.replace(f"localhost:{PAGE_PORT}", f"localhost:{port}").replace(f" {PAGE_PORT}:", f" {port}:")
            if PAGE_REGISTRY in line:
                line = line.replace(PAGE_REGISTRY, f"oci://{registry.host}/ml") + " --plain-http"
            want = [w.replace("registry.example.com", registry.host) for w in c.output]
            words = shlex.split(line)
            transcript.append(f"$ {c.line}")
            if line == "kill %1":
                background.pop(0).stop()
                continue
            if words[-1] == "&":
                proc = Background(line.rsplit("&", 1)[0], env)  # (in ROOT: it needs none of the page's files)
                background.append(proc)
                printed = [p.replace(f":{port} ", f":{PAGE_PORT} ") for p in proc.wait_lines(len(want), timeout=30)]
                transcript += printed
                if not shows(want, printed):
                    fail(c, "\n".join(printed))
                continue
            if "-w" in words:
                proc = Background(line, env)
                try:
                    deadline = time.monotonic() + STEP_TIMEOUT
                    while time.monotonic() < deadline and proc.proc.poll() is None and not shows(want, proc.lines):
                        time.sleep(1)
                finally:
                    proc.stop()
                screens = "\n".join(proc.lines).split("\n\nName:")
                transcript.append(("Name:" + screens[-1]) if len(screens) > 1 else "\n".join(proc.lines))
                if not shows(want, proc.lines):
                    fail(c, "\n".join(proc.lines), " (the page's lines are not among these)")
                continue
            retry = words[:2] in (["kubento", "status"], ["kubento", "history"]) or words[0] == "curl"
            deadline = time.monotonic() + (STEP_TIMEOUT if retry else 0)
            start = time.monotonic()
            while True:
                proc = bash(line)
                printed = (proc.stdout + proc.stderr).splitlines()
                if proc.returncode == 0 and shows(want, printed):
                    break
                if time.monotonic() >= deadline:
                    fail(c, proc.stdout + proc.stderr, f" (exit {proc.returncode})")
                time.sleep(2)
            if words[:2] == ["kubento", "deploy"]:
                figures["cold" if "cold" not in figures else "canary"] = time.monotonic() - start
                ours = next(i for i, p in enumerate(printed) if p.startswith("pushing "))
                printed = printed[:1] + ["… (bentoml build and export)"] + printed[ours:]
            transcript += printed

        # The same bento again, into a new ModelDeployment: the registry already has it (warm).
        for proc in background:
            proc.stop()
        background.clear()
        kubectl("delete", "md", NAME, "--wait=true")
        tag = re.search(r"bento (sentiment:\w+)", "\n".join(transcript)).group(1)
        start = time.monotonic()
        warm = bash(f"kubento deploy {tag} --name {NAME}")
        figures["warm"] = time.monotonic() - start
        assert warm.returncode == 0, warm.stdout + warm.stderr
        assert "is Ready after" in warm.stdout
    finally:
        for proc in background:
            proc.stop()
        print("\n--- transcript (bentoml's build output left out)\n" + "\n".join(transcript))
        print(f"\n--- kubento deploy to Ready: first deploy of a fresh project (cold registry) "
              f"{figures.get('cold', 0):.0f}s; canary deploy (to its held step) {figures.get('canary', 0):.0f}s; "
              f"the same bento into a new model (warm registry, nothing uploaded) {figures.get('warm', 0):.0f}s")
        kubectl("delete", "md", NAME, "--ignore-not-found", "--wait=false", check=False)


# --- without a cluster: the page's parts --------------------------------------------------------


def test_the_page_is_parsed_into_files_and_commands():
    text = PAGE.read_text()
    assert set(files(text)) == {"sentiment/service.py", "sentiment/bentofile.yaml"}
    lines = [c.line for c in commands(text)]
    assert lines[0].startswith("kubento deploy sentiment --registry oci://registry.example.com/ml")
    assert "kubento promote sentiment" in lines and "kill %1" in lines
    curl = [c for c in commands(text) if c.line.startswith("curl")]
    assert [c.output for c in curl] == [['["positive", "negative"]'], ['["positive", "positive"]']]


def test_lines_are_matched_in_order_with_ellipses():
    assert shows(["a …", "…", "c"], ["a 1", "b", "c"])
    assert not shows(["c", "a …"], ["a 1", "b", "c"])
    assert not shows(["x"], ["a"])
