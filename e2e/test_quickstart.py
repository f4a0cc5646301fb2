"""The README's quick start, run as written on the cluster, its output compared with the README's
transcripts by shape.

The section between the `[start:quickstart]` and `[end:quickstart]` markers (docs/getting-started.md
includes the same text) is parsed into its `$ ` commands and the lines printed under each. Step 1 is
`make demo`: the e2e fixtures bring up the cluster and the operator as the demo does, the test applies
examples/iris in the `default` namespace as the demo does, and compares `kubectl get md` with the
demo's last table (the demo's own step lines are checked against hack/demo.sh below, without a
cluster). Every command of the later steps then runs verbatim in bash from the repository root, in the
environment the README's `export` line makes, with the cluster's own kubectl first on PATH
(`make demo` links it into .venv/bin).

Compared: table headers, row counts, every column but AGE and TIME, and every other line, with
timestamps masked. A revision hash of the README stands for the real hash first seen in its place and
must stand for that one everywhere after (and two README hashes cannot stand for one real hash), so
`kubento rollback --to-revision 1` must name the revision the first table showed. The local port of
`kubectl port-forward` is a free one instead of 3000 (the output is compared with it written back).

A read-only command that prints a table (`kubectl get`, `kubento history`) is run again until its
output has the README's shape (a rollout takes its time; the README shows a moment of it), for
`STEP_TIMEOUT` seconds at most. `kubectl get -w` runs until it prints the README's last row (or
`STEP_TIMEOUT`), and the README's rows must appear in its output in that order (the watch may print
more rows between them). `kubectl port-forward ... &` runs in the background until the test ends.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml


ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
STEP_TIMEOUT = 180
VOLATILE = {"AGE", "TIME"}  # columns whose values differ from run to run
HASH = re.compile(r"\b[0-9a-f]{10}\b")
TIMESTAMP = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b")
README_PORT = "3000"


@dataclass
class Command:
    step: int
    line: str  # as written, `\` continuations joined
    output: list[str] = field(default_factory=list)


def quick_start(text: str) -> list[Command]:
    """Every `$ ` command of the quick start's console blocks, with the lines shown under it."""
    section = text[text.index("[start:quickstart]"):text.index("[end:quickstart]")]
    commands: list[Command] = []
    for step, body in re.findall(r"^\*\*(\d+)\. (.*?)(?=^\*\*\d+\. |\Z)", section, re.S | re.M):
        for block in re.findall(r"^```console\n(.*?)^```", body, re.S | re.M):
            current = None
            lines = iter(block.splitlines())
            for line in lines:
                if line.startswith("$ "):
                    while line.endswith("\\"):
                        line = line[:-1] + next(lines).strip()
                    current = Command(int(step), line[2:])
                    commands.append(current)
                elif current is not None:
                    current.output.append(line)
    return commands


def demo_table(commands: list[Command]) -> list[str]:
    """The table `make demo` prints last (after its `[N/N] kubectl get md` line)."""
    demo = next(c for c in commands if c.line == "make demo")
    start = next(i for i, line in enumerate(demo.output) if re.fullmatch(r"\[(\d+)/\1\] kubectl get md", line))
    table = []
    for line in demo.output[start + 1:]:
        if not line.strip():
            break
        table.append(line)
    return table


# --- comparing by shape ------------------------------------------------------------------------


def parse_table(lines: list[str]) -> tuple[list[str], list[dict[str, str] | str]] | None:
    """A kubectl-style table (columns start where the header's words do), or None. A line that is
    not aligned with the header (a message under the table) is kept as a string."""
    lines = [line for line in lines if line.strip() and line.strip() != "^C"]
    if not lines or not re.fullmatch(r"[A-Z]+( +[A-Z]+)*", lines[0].strip()):
        return None
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    rows: list[dict[str, str] | str] = []
    for line in lines[1:]:
        if any(len(line) > a and line[a - 1] != " " for a in starts[1:]):
            rows.append(line)
            continue
        bounds = zip(starts, starts[1:] + [max(len(line), starts[-1]) + 1])
        rows.append({n: line[a:b].strip() for n, (a, b) in zip(names, bounds)})
    return names, rows


class Shapes:
    """Compares printed lines with the README's, binding README hashes to real ones."""

    def __init__(self):
        self.hashes: dict[str, str] = {}  # README hash -> real hash

    def _text(self, want: str, got: str, bound: dict[str, str]) -> bool:
        want, got = TIMESTAMP.sub("<time>", want), TIMESTAMP.sub("<time>", got)
        if HASH.split(want) != HASH.split(got):
            return False
        for w, g in zip(HASH.findall(want), HASH.findall(got)):
            if bound.get(w, g) != g or (w not in bound and g in bound.values()):
                return False
            bound[w] = g
        return True

    def _row(self, want, got, bound: dict[str, str]) -> bool:
        if isinstance(want, str) or isinstance(got, str):
            return isinstance(want, str) and isinstance(got, str) and self._text(want, got, bound)
        return all(self._text(v, got.get(k, ""), bound) for k, v in want.items() if k not in VOLATILE)

    def match(self, want: list[str], got: list[str], watch: bool = False) -> bool:
        """Whether ``got`` has ``want``'s shape; the hashes it binds are kept only if so. With
        ``watch``, ``want``'s rows need only appear in ``got``'s, in order."""
        bound = dict(self.hashes)
        want_table, got_table = parse_table(want), parse_table(got)
        if want_table is None:
            w = [line for line in want if line.strip()]
            g = [line for line in got if line.strip()]
            ok = len(w) == len(g) and all(self._text(a, b, bound) for a, b in zip(w, g))
        elif got_table is None or want_table[0] != got_table[0]:
            ok = False
        elif watch:
            rows = iter(got_table[1])
            ok = all(any(self._row(w, g, bound) for g in rows) for w in want_table[1])
        else:
            ok = len(want_table[1]) == len(got_table[1]) and all(
                self._row(w, g, bound) for w, g in zip(want_table[1], got_table[1]))
        if ok:
            self.hashes = bound
        return ok


# --- running the commands ----------------------------------------------------------------------


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


class Background:
    """A command left running (`... &`), its output collected."""

    def __init__(self, command: str, env: dict[str, str]):
        self.proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_lines(self, n: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.lines) < n and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return list(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
        self.proc.wait(10)


def readme_env(command: str, env: dict[str, str]) -> dict[str, str]:
    """The environment after the README's `export ...` line."""
    out = subprocess.run(["bash", "-c", f"{command}\nenv -0"], cwd=ROOT, env=env, capture_output=True, check=True)
    return dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)


def run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def read_only_table(c: Command) -> bool:
    words = shlex.split(c.line, comments=True)
    return (parse_table(c.output) is not None
            and (words[:2] == ["kubectl", "get"] or words[:2] == ["kubento", "history"]))


def test_the_readme_quick_start_runs_as_shown(cluster, images, operator, tmp_path):
    commands = quick_start(README.read_text())
    assert [c.step for c in commands if c.step > 1], "the quick start's commands were not found in README.md"
    assert images["iris"] == "kubento.local/iris:v1", images["iris"]  # the image the README's tables show

    # The cluster's own kubectl, as `kubectl`.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").symlink_to(cluster.kubectl_bin)
    env = dict(os.environ, KUBECONFIG=cluster.kubeconfig, PATH=f"{bin_dir}:{os.environ['PATH']}")
    env.pop("VIRTUAL_ENV", None)

    def kubectl(*args: str, check: bool = True):
        return cluster.kubectl(*args, "-n", "default", check=check)

    kubectl("delete", "md", "iris", "--ignore-not-found", "--wait=true")
    shapes = Shapes()
    background: list[Background] = []
    port = free_port()

    def fail(c: Command, printed: str, why: str = "") -> None:
        pytest.fail(f"step {c.step}: `{c.line}` printed{why}:\n{printed}\n--- the README shows:\n"
                    + "\n".join(c.output), pytrace=False)

    try:
        # Step 1, as `make demo` does it (hack/demo.sh): the example with the image built here.
        manifest = yaml.safe_load((ROOT / "examples" / "iris" / "modeldeployment.yaml").read_text())
        manifest["spec"]["bento"]["image"] = images["iris"]
        cluster.kubectl("apply", "-n", "default", "-f", "-", input=yaml.safe_dump(manifest))
        kubectl("wait", "--for=condition=Ready", "md/iris", "--timeout=300s")
        demo = Command(1, "kubectl get md", demo_table(commands))
        got = kubectl("get", "md").stdout
        if not shapes.match(demo.output, got.splitlines()):
            fail(demo, got)

        for c in commands:
            if c.step == 1:
                continue
            line = c.line.replace(f"localhost:{README_PORT}", f"localhost:{port}").replace(
                f" {README_PORT}:", f" {port}:")
            words = shlex.split(line, comments=True)
            if words[0] == "export":
                env = readme_env(line, env)
                if not os.environ.get("KUBENTO_E2E_KUBECONFIG"):
                    assert env["KUBECONFIG"] == cluster.kubeconfig, f"`{c.line}` sets {env['KUBECONFIG']}"
                env.update(KUBECONFIG=cluster.kubeconfig, PATH=f"{bin_dir}:{env['PATH']}")
                assert not c.output, c.output
                continue
            if words[-1] == "&":
                proc = Background(line.split("&")[0], env)
                background.append(proc)
                printed = proc.wait_lines(len(c.output), timeout=30)
                printed = [p.replace(f"127.0.0.1:{port} ", f"127.0.0.1:{README_PORT} ")
                           .replace(f"[::1]:{port} ", f"[::1]:{README_PORT} ") for p in printed]
                if not shapes.match(c.output, printed):
                    fail(c, "\n".join(printed))
                continue
            if "-w" in words:
                want = parse_table(c.output)
                proc = Background(line, env)
                try:
                    deadline = time.monotonic() + STEP_TIMEOUT
                    while time.monotonic() < deadline and proc.proc.poll() is None:
                        probe = Shapes()  # until the README's rows are all printed
                        probe.hashes = dict(shapes.hashes)
                        if probe.match(c.output, list(proc.lines), watch=True):
                            break
                        time.sleep(0.5)
                finally:
                    proc.stop()
                printed = list(proc.lines)
                if not want or not shapes.match(c.output, printed, watch=True):
                    fail(c, "\n".join(printed), " (the README's rows are not among these, in order)")
                continue
            poll = read_only_table(c)
            deadline = time.monotonic() + (STEP_TIMEOUT if poll else 0)
            while True:
                proc = run(line, env)
                if proc.returncode == 0 and shapes.match(c.output, proc.stdout.splitlines()):
                    break
                if time.monotonic() >= deadline:
                    fail(c, proc.stdout + proc.stderr, f" (exit {proc.returncode})")
                time.sleep(2)
    finally:
        for proc in background:
            proc.stop()
        kubectl("delete", "md", "iris", "--ignore-not-found", "--wait=false", check=False)


# --- without a cluster: the parser, the comparison, and `make demo`'s transcript --------------


def test_the_quick_start_is_parsed_into_its_steps_commands_and_output():
    commands = quick_start(README.read_text())
    assert commands[0].step == 1 and commands[0].line == "make demo"
    assert sorted({c.step for c in commands}) == [1, 2, 3, 4, 5]
    curl = next(c for c in commands if c.line.startswith("curl"))
    assert "-d '{\"features\"" in curl.line and curl.output == ['["setosa", "virginica"]']
    assert parse_table(demo_table(commands))[0][:3] == ["NAME", "READY", "PHASE"]


def test_a_wrong_value_a_wrong_row_count_or_another_revision_is_a_different_shape():
    want = ["NAME   READY   PHASE   REVISION     AGE", "iris   True    Ready   95bc78848d   5s"]
    shapes = Shapes()
    assert shapes.match(want, ["NAME   READY   PHASE   REVISION     AGE", "iris   True    Ready   1234567890   2m"])
    assert not shapes.match(want, ["NAME   READY   PHASE   REVISION     AGE", "iris   False   Ready   1234567890   2m"])
    assert not shapes.match(want, ["NAME   READY   PHASE   REVISION     AGE"])
    # 95bc78848d is 1234567890 from now on: another real hash in its place is another revision
    assert not shapes.match(want, ["NAME   READY   PHASE   REVISION     AGE", "iris   True    Ready   abcdef0123   5s"])
    assert not shapes.match(["rolling back to 95bc78848d"], ["rolling back to abcdef0123"])
    assert shapes.match(["rolling back to 95bc78848d"], ["rolling back to 1234567890"])
    # and no other README hash can stand for 1234567890
    assert not shapes.match(["now abc73ed3f6"], ["now 1234567890"])


def test_a_message_under_a_table_is_compared_with_times_masked():
    want = ["NUMBER  REVISION    OUTCOME           TIME                  MESSAGE",
            "1       95bc78848d  Superseded        2026-12-01T04:21:33Z",
            "Rolling out 542c6403c6 (Canary) since 2026-12-01T04:23:34Z, step 1/1"]
    got = ["NUMBER  REVISION    OUTCOME     TIME                  MESSAGE",
           "1       0123456789  Superseded  2027-01-02T03:04:05Z",
           "Rolling out 9876543210 (Canary) since 2027-01-02T03:04:06Z, step 1/1"]
    assert Shapes().match(want, got)
    assert not Shapes().match(want, got[:2] + [got[2].replace("1/1", "1/2")])


def test_a_watch_shows_the_readme_rows_in_order_among_others():
    want = ["NAME   READY   PHASE         REPLICAS", "iris   False   Progressing   2", "iris   True    Ready         2", "^C"]
    got = ["NAME   READY   PHASE         REPLICAS", "iris   True    Ready         1", "iris   False   Progressing   1",
           "iris   False   Progressing   2", "iris   True    Ready         2"]
    assert Shapes().match(want, got, watch=True)
    assert not Shapes().match(want, got[:1] + got[3:1:-1], watch=True)


def test_make_demos_transcript_is_what_hack_demo_sh_prints():
    """`make demo` is not run here (it installs the operator with its own values, over the e2e
    fixtures'); its transcript's step lines and closing hints are hack/demo.sh's own lines."""
    script = (ROOT / "hack" / "demo.sh").read_text()
    demo = next(c for c in quick_start(README.read_text()) if c.line == "make demo")

    def pattern(text: str) -> re.Pattern:  # shell expansions match anything
        parts = re.split(r"\$\{[^}]*\}|\$\([^)]*\)|\$[A-Za-z_]\w*|\\\$", text)
        return re.compile(".+".join(re.escape(p) for p in parts))

    titles = [pattern(t) for t in re.findall(r'^\s*begin "(.*)"', script, re.M)]
    steps = [line for line in demo.output if re.match(r"\[\d+/\d+\] ", line)]
    local = [t for t in titles if not t.pattern.startswith(re.escape("cluster: kind"))]
    assert len(steps) == len(local) and all(t.fullmatch(s.split("] ", 1)[1]) for t, s in zip(local, steps)), steps
    assert all(s.startswith(f"[{i}/{len(local)}]") for i, s in enumerate(steps, 1)), steps
    hints = demo.output[demo.output.index(next(x for x in demo.output if x.startswith("done."))) + 1:]
    heredoc = script.split("Next (the quick start", 1)[1].split("\nEOF\n", 1)[0].splitlines()[1:]
    printed = heredoc + re.findall(r'echo "(  make .*)"', script)
    assert len(hints) == len(printed), hints
    for hint, line in zip(hints, printed):
        assert pattern(line).fullmatch(hint), f"hack/demo.sh prints {line!r}, not {hint!r}"
