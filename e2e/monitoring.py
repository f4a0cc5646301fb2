"""A real Prometheus and Alertmanager watching a cluster from this machine,
for e2e/test_monitoring.py: Prometheus 2.42.0 built from its Go module by
hack/prometheus.sh (Debian's ``prometheus`` package has no Kubernetes service
discovery; it provides promtool), Debian's ``prometheus-alertmanager`` 0.25
(hack/install-deps.sh). Also by hand:

    .venv/bin/python -m e2e.monitoring up --kubeconfig "$(e2e/cluster kubeconfig)" [--rules FILE]
    .venv/bin/python -m e2e.monitoring down

Prometheus scrapes with the chart's documented scrape configuration
(charts/kubento/files/prometheus-scrape.yaml) unchanged but for one line per
job: ``kubeconfig_file`` (it runs outside the cluster; pod IPs must be
reachable from here, as on e2e/cluster's node). It evaluates the rule file
given (e.g. the chart's, rendered with short ``for:``) and sends alerts to
the Alertmanager, which groups them per model and posts every notification
(firing and resolved) to a webhook when one is given.

Both listen on 127.0.0.1 only; state and logs under ``--dir``
(default /tmp/kubento-monitoring: prometheus.log, alertmanager.log).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRAPE_CONFIG = ROOT / "charts" / "kubento" / "files" / "prometheus-scrape.yaml"
DEFAULT_DIR = Path(os.environ.get("KUBENTO_MONITORING_DIR", "/tmp/kubento-monitoring"))
PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"  # Debian's name for alertmanager


def prometheus_binary() -> str:
    """Prometheus with Kubernetes service discovery (hack/prometheus.sh builds and caches it)."""
    proc = subprocess.run([str(ROOT / "hack" / "prometheus.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"hack/prometheus.sh could not build Prometheus:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prometheus_config(kubeconfig: str, alertmanager: str, interval: str) -> dict[str, Any]:
    """The documented scrape jobs, each kubernetes_sd_configs entry given the kubeconfig."""
    jobs = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]
    for job in jobs:
        for sd in job.get("kubernetes_sd_configs", []):
            sd["kubeconfig_file"] = kubeconfig
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": ["rules.yaml"],
        "alerting": {"alertmanagers": [{"api_version": "v2", "static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": jobs,
    }


def alertmanager_config(webhook: Optional[str]) -> dict[str, Any]:
    receiver: dict[str, Any] = {"name": "default"}
    if webhook:
        receiver["webhook_configs"] = [{"url": webhook, "send_resolved": True}]
    return {
        "route": {"receiver": "default", "group_by": ["alertname", "namespace", "model"],
                  "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [receiver],
    }


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class Stack:
    dir: Path
    prometheus: str  # base URLs
    alertmanager: str
    pids: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)  # when started by this process

    # -- Prometheus
    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now (raises on a PromQL error)."""
        answer = _get(f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if answer.get("status") != "success":
            raise AssertionError(f"{expr}: {answer}")
        return answer["data"]["result"]

    def targets(self) -> list[dict[str, Any]]:
        return _get(f"{self.prometheus}/api/v1/targets?state=active")["data"]["activeTargets"]

    def rules(self) -> list[dict[str, Any]]:
        return [r for g in _get(f"{self.prometheus}/api/v1/rules")["data"]["groups"] for r in g["rules"]]

    # -- Alertmanager
    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """Alertmanager's alerts (its API v2) whose labels include ``labels``."""
        query = urllib.parse.urlencode([("filter", f'{k}="{v}"') for k, v in labels.items()])
        return _get(f"{self.alertmanager}/api/v2/alerts?{query}")

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for name in (PROMETHEUS, ALERTMANAGER):
            log = self.dir / f"{name}.log"
            if log.exists():
                out.append(f"--- {log} (last {lines} lines)")
                out.extend(log.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out)

    def stop(self) -> None:
        for name, pid in self.pids.items():
            proc = self.procs.get(name)
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        for name in self.pids:
            (self.dir / f"{name}.pid").unlink(missing_ok=True)


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is missing: run hack/install-deps.sh (Debian package prometheus-alertmanager)")
    return path


def start(kubeconfig: str, rules: str, directory: Path = DEFAULT_DIR, webhook: Optional[str] = None,
          interval: str = "2s", timeout: float = 60.0) -> Stack:
    """Start Alertmanager and Prometheus (fresh state in ``directory``); return
    once both answer and Prometheus has loaded ``rules`` (a rule file's text)."""
    prom_bin, am_bin = prometheus_binary(), binary(ALERTMANAGER)
    stop(directory)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    prom_port, am_port = free_port(), free_port()
    (directory / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(webhook)))
    (directory / "prometheus.yml").write_text(
        yaml.safe_dump(prometheus_config(kubeconfig, f"127.0.0.1:{am_port}", interval), sort_keys=False))
    (directory / "rules.yaml").write_text(rules)
    stack = Stack(directory, f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}")
    commands = {
        ALERTMANAGER: [am_bin, f"--config.file={directory / 'alertmanager.yml'}",
                       f"--storage.path={directory / 'alertmanager-data'}",
                       f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
        PROMETHEUS: [prom_bin, f"--config.file={directory / 'prometheus.yml'}",
                     f"--storage.tsdb.path={directory / 'prometheus-data'}",
                     f"--web.listen-address=127.0.0.1:{prom_port}"],
    }
    for name, command in commands.items():
        with open(directory / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=directory)
        stack.pids[name], stack.procs[name] = proc.pid, proc
        (directory / f"{name}.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while True:
        try:
            _get(f"{stack.alertmanager}/api/v2/status")
            if len(stack.rules()) > 0:
                return stack
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        if time.monotonic() > deadline:
            stack.stop()
            raise RuntimeError(f"Prometheus/Alertmanager did not start in {timeout}s ({last}):\n{stack.log_tail()}")
        time.sleep(0.5)


def stop(directory: Path = DEFAULT_DIR) -> None:
    """Stop what ``start`` left running in ``directory`` (by the pids it wrote)."""
    pids = {}
    for name in (PROMETHEUS, ALERTMANAGER):
        pid_file = directory / f"{name}.pid"
        if pid_file.exists():
            pids[name] = int(pid_file.read_text())
    Stack(directory, "", "", pids).stop()


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m e2e.monitoring", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Prometheus and Alertmanager; print their URLs")
    up.add_argument("--kubeconfig", required=True)
    up.add_argument("--rules", default=str(ROOT / "dist" / "kubento-rules.yaml"), help="a rule file")
    up.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    up.add_argument("--interval", default="15s", help="scrape and evaluation interval")
    down = sub.add_parser("down", help="stop them")
    down.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = p.parse_args(argv)
    if args.command == "down":
        stop(args.dir)
        return 0
    stack = start(args.kubeconfig, Path(args.rules).read_text(), args.dir, interval=args.interval)
    print(f"prometheus   {stack.prometheus}\nalertmanager {stack.alertmanager}\nstate, logs  {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
