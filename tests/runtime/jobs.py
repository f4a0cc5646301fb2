"""Run a Job manifest's steps as real processes, one after the other, each
with exactly what its container would get: the manifest's env (secretKeyRef
and envFrom resolved from ``secrets``), and only the volumes it mounts, at
its mount paths under a directory of its own that stands for the
container's filesystem (its own HOME, TMPDIR and working directory too). A
missing Secret key fails like the kubelet (CreateContainerConfigError).

    run = run_job(build_job(...), tmp_path, secrets={"s3": s3.env()}, config_maps={...})
    run.ok, run.failed, run.result, run.output
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tests.runtime.conftest import clean_env

IN_POD = "/var/lib/kubento"


@dataclass
class Step:
    name: str
    returncode: int
    stdout: str
    stderr: str
    message: str  # its termination message
    root: Path  # what stands for its container's /


@dataclass
class JobRun:
    steps: list[Step] = field(default_factory=list)

    @property
    def failed(self) -> Optional[Step]:
        return next((s for s in self.steps if s.returncode != 0), None)

    @property
    def ok(self) -> bool:
        return self.failed is None

    @property
    def message(self) -> str:
        """What the operator reads: the failed step's message, else the last step's."""
        return (self.failed or self.steps[-1]).message

    @property
    def result(self) -> dict[str, Any]:
        assert self.ok, self.output[-4000:]
        return json.loads(self.steps[-1].message)

    @property
    def output(self) -> str:
        return "".join(f"--- {s.name} (exit {s.returncode})\n{s.stdout}{s.stderr}" for s in self.steps)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


class CreateContainerConfigError(Exception):
    pass


def _volumes(pod: dict[str, Any], root: Path, config_maps: dict[str, Path], pvcs: dict[str, Path]) -> dict[str, Path]:
    out = {}
    for v in pod.get("volumes") or []:
        if "emptyDir" in v:
            path = root / "volumes" / v["name"]
            path.mkdir(parents=True, exist_ok=True)
        elif "configMap" in v:
            path = config_maps[v["configMap"]["name"]]
        elif "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"]["claimName"]
            path = pvcs.get(claim) or root / "claims" / claim
            path.mkdir(parents=True, exist_ok=True)
        else:
            raise AssertionError(f"volume kind not emulated: {v}")
        out[v["name"]] = path
    return out


def _env(container: dict[str, Any], fs: Path, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        name = source["secretRef"]["name"]
        if name not in secrets:
            raise CreateContainerConfigError(f'secret "{name}" not found')
        env.update(secrets[name])
    for e in container.get("env") or []:
        if "value" in e:
            value = e["value"]
            env[e["name"]] = str(fs / value.lstrip("/")) if value.startswith(IN_POD) else value
            continue
        ref = e["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None:
            if ref.get("optional"):
                continue
            raise CreateContainerConfigError(f'couldn\'t find key {ref["key"]} in Secret {ref["name"]}')
        env[e["name"]] = value
    return env


def run_job(job: dict[str, Any], root: Path, secrets: dict[str, dict[str, str]],
            config_maps: Optional[dict[str, Path]] = None, pvcs: Optional[dict[str, Path]] = None,
            timeout: float = 300) -> JobRun:
    pod = job["spec"]["template"]["spec"]
    assert not pod.get("shareProcessNamespace")
    volumes = _volumes(pod, root, config_maps or {}, pvcs or {})
    run = JobRun()
    for container in (pod.get("initContainers") or []) + pod["containers"]:
        home = root / "containers" / container["name"]
        fs = home / "fs"
        for d in ("home", "tmp"):
            (home / d).mkdir(parents=True, exist_ok=True)
        for mount in container.get("volumeMounts") or []:
            target = fs / mount["mountPath"].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(volumes[mount["name"]])
        termination = home / "termination-log"
        env = clean_env(HOME=str(home / "home"), TMPDIR=str(home / "tmp"), KUBENTO_TERMINATION_LOG=str(termination))
        env.update(_env(container, fs, secrets))
        command = container["command"]
        argv = [sys.executable if command[0] == "python" else command[0], *command[1:]]
        proc = subprocess.run(argv, env=env, cwd=home / "home", capture_output=True, text=True, timeout=timeout)
        message = termination.read_text() if termination.exists() else ""
        if proc.returncode != 0 and not message:  # terminationMessagePolicy FallbackToLogsOnError
            message = "\n".join((proc.stdout + proc.stderr).splitlines()[-80:])[-2048:]
        run.steps.append(Step(container["name"], proc.returncode, proc.stdout, proc.stderr, message, fs))
        if proc.returncode != 0:
            break
    return run
