"""The README's quick start, run as written on the cluster (steps 2-5), its output compared with the
README's transcripts by shape: the same table headers, the same number of rows, the same values in
the columns that do not change from run to run (READY, PHASE, REPLICAS, WEIGHT, OUTCOME, ...), and
the same messages with revision hashes masked. Revision hashes, ages, times and URLs differ.

The model runs under its own name in the e2e namespace: `iris` in the README's commands becomes that
name and `-n <namespace>` is added. Commands that only keep running (`-w`, `&`) are not run; a
table command is polled until it shows what the README shows (a rollout takes its time).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from e2e.conftest import NAMESPACE
from e2e.support import IRIS_ROWS, apply_md, example_spec, predict, ready
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]
STABLE_COLUMNS = {"NAME", "READY", "PHASE", "REPLICAS", "AVAILABLE", "WEIGHT", "REQUESTED", "NUMBER", "OUTCOME", "BENTO"}
HASH = re.compile(r"\b[0-9a-f]{10}\b")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def quick_start() -> list[tuple[int, str, list[str]]]:
    """(step, command, expected output lines) of every `$ ` line of the README's quick start."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("[start:quickstart]"):text.index("[end:quickstart]")]
    out = []
    for step, body in re.findall(r"\*\*(\d)\..*?```console\n(.*?)```", section, re.S):
        current: list | None = None
        for line in body.replace("\\\n", " ").splitlines():  # a command continued with \
            if line.startswith("$ "):
                current = [int(step), line[2:], []]
                out.append(current)
            elif current is not None:
                current[2].append(line)
    return [tuple(c) for c in out]


def table(lines: list[str]) -> tuple[list[str], list[dict[str, str]]] | None:
    """A kubectl-style table (columns start where the header's words do), or None."""
    if not lines or not re.fullmatch(r"[A-Z]+( +[A-Z]+)*", lines[0].strip()):
        return None
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    rows: list = []
    for line in lines[1:]:
        if not line.strip() or line.strip() == "^C":
            continue
        if any(len(line) >= a and line[a - 1] != " " for a in starts[1:]):  # not aligned: a message under it
            rows.append(TIME.sub("<time>", HASH.sub("<rev>", line)))
            continue
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [len(line) + 1])]
        rows.append(dict(zip(names, cells)))
    return names, rows


def shape(lines: list[str], name: str) -> object:
    parsed = table(lines)
    if parsed is None:
        return [HASH.sub("<rev>", line.replace(name, "iris")) for line in lines if line.strip()]
    names, rows = parsed
    return names, [row.replace(name, "iris") if isinstance(row, str) else
                   {k: v.replace(name, "iris") for k, v in row.items() if k in STABLE_COLUMNS} for row in rows]


def test_the_readme_quick_start_runs_as_shown(cluster, images, operator):
    steps = quick_start()
    assert [s for s, _, _ in steps if s >= 3], "the quick start's commands were not found in the README"
    name = f"qs-{uuid.uuid4().hex[:5]}"
    apply_md(cluster, name, example_spec(images))  # step 1 (make demo) on the e2e cluster
    wait_for("the model Ready", lambda: ready(cluster, name), timeout=180, interval=1)
    assert predict(cluster, name, IRIS_ROWS[:2]) == ["setosa", "virginica"]  # step 2 (through the Service)
    env = dict(os.environ, KUBECONFIG=cluster.kubeconfig)
    kubento = str(Path(sys.executable).parent / "kubento")
    try:
        for step, command, expected in steps:
            words = shlex.split(command)
            if step < 3 or words[-1] == "&" or "-w" in words or words[0] not in ("kubectl", "kubento"):
                continue
            words = [name if w == "iris" else w for w in words]
            if words[0] == "kubectl":
                argv = [cluster.kubectl_bin, "kubectl", "--kubeconfig", cluster.kubeconfig, "-n", NAMESPACE, *words[1:]]
            else:
                argv = [kubento, *words[1:], "-n", NAMESPACE]
            assert expected, f"step {step}: the README shows no output for `{command}`"
            want = shape(expected, name)
            polled = table(expected) is not None
            deadline = time.monotonic() + (150 if polled else 0)
            while True:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
                got = shape(proc.stdout.splitlines(), name)
                if proc.returncode == 0 and got == want or time.monotonic() > deadline:
                    break
                time.sleep(2)
            assert proc.returncode == 0, f"step {step}: {command}\n{proc.stdout}{proc.stderr}"
            assert got == want, (f"step {step}: `{command}` printed\n{proc.stdout}\nREADME shows\n" + "\n".join(expected)
                                 + f"\n{cluster.log_tail()}")
    finally:
        cluster.kubectl("delete", "md", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)


@pytest.mark.parametrize("lines, rows", [(["NAME   READY   PHASE", "iris   True    Ready"], 1)])
def test_tables_parse_by_header_columns(lines, rows):
    names, parsed = table(lines)
    assert names == ["NAME", "READY", "PHASE"] and len(parsed) == rows and parsed[0]["PHASE"] == "Ready"


def test_a_message_under_a_table_is_compared_with_hashes_and_times_masked():
    lines = ["NUMBER  REVISION    OUTCOME", "1       95bc78848d  Superseded",
             "Rolling out 542c6403c6 (Canary) since 2026-12-01T04:23:34Z, step 1/1"]
    _, rows = table(lines)
    assert rows == [{"NUMBER": "1", "REVISION": "95bc78848d", "OUTCOME": "Superseded"},
                    "Rolling out <rev> (Canary) since <time>, step 1/1"]
