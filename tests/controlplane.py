"""A real control plane with the operator as a process, for the tiers that
need more than KopfRunner: bench/scale.py and the chaos tier (e2e/chaos).

- :class:`ControlPlane` drives e2e/controlplane (etcd, kube-apiserver,
  kube-controller-manager without the Deployment/ReplicaSet/HPA/Job
  controllers) in its own directory and ports, installs the CRD and the
  chart's RBAC, and can stop and start single components (their pid files).
- :class:`Watcher`: list, then watch, forever (relists after any error).
- :class:`DeploymentController` plays the missing Deployment controller:
  it reports every replica of kubento's Deployments ready.
- :class:`Operator`: ``kubento run`` as a process, with the chart
  ServiceAccount's token.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
MANAGED = "app.kubernetes.io/managed-by=kubento"
MODEL_LABEL = "serving.kubento.io/model-deployment"
WORKLOAD_CONTROLLERS_OFF = ("*,-deployment-controller,-replicaset-controller,"
                            "-horizontal-pod-autoscaler-controller,-job-controller")
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")


def say(*args: Any) -> None:
    print(*args, flush=True)


def kube_bin() -> str:
    return subprocess.run([str(ROOT / "e2e" / "kubebin" / "build.sh")], capture_output=True, text=True,
                          check=True).stdout.strip()


def helm_bin() -> str:
    return subprocess.run([str(ROOT / "hack" / "helm.sh")], capture_output=True, text=True, check=True).stdout.strip()


class ControlPlane:
    def __init__(self, dir: Path | str, port: int, etcd_port: int, controllers: str = WORKLOAD_CONTROLLERS_OFF) -> None:
        self.dir = Path(dir)
        self.port = port
        self.env = {**os.environ, "KUBENTO_CP_DIR": str(self.dir), "KUBENTO_CP_PORT": str(port),
                    "KUBENTO_CP_ETCD_PORT": str(etcd_port), "KUBENTO_CP_CONTROLLERS": controllers}
        self.script = str(ROOT / "e2e" / "controlplane")
        self.kube_bin = kube_bin()

    # ------------------------------------------------------------ processes

    def up(self) -> None:
        """A fresh control plane (whatever ran in this directory goes first)."""
        self.down()
        self.start()

    def start(self) -> None:
        """Start every component that is not running (e2e/controlplane up is
        idempotent; etcd keeps its data directory)."""
        proc = subprocess.run([self.script, "up"], env=self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the control plane did not start:\n{proc.stderr}")

    def down(self) -> None:
        subprocess.run([self.script, "down"], env=self.env, capture_output=True)

    def pid(self, component: str) -> Optional[int]:
        try:
            pid = int((self.dir / f"{component}.pid").read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def stop(self, component: str, sig: int = signal.SIGKILL, timeout: float = 30) -> None:
        """Send ``sig`` to a component and wait until it is gone."""
        pid = self.pid(component)
        if pid is None:
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while self.pid(component) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.pid(component) is not None:
            os.kill(pid, signal.SIGKILL)

    def pause(self, component: str) -> None:
        os.kill(self.pid(component), signal.SIGSTOP)

    def resume(self, component: str) -> None:
        os.kill(self.pid(component), signal.SIGCONT)

    def log_tail(self, lines: int = 30) -> str:
        from tests.helpers import tail_logs

        return "\n".join(tail_logs(self.dir / "logs", lines))

    # --------------------------------------------------------------- kubectl

    @property
    def admin(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.dir / "audit.log"

    def kubectl(self, *args: str, input: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.kube_bin, "kubectl", "--kubeconfig", str(self.admin), *args], input=input,
                              capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr}")
        return proc

    def token_kubeconfig(self, sa: str, namespace: str, path: Path, server: Optional[str] = None) -> Path:
        """A kubeconfig with a token of ServiceAccount ``sa`` (optionally
        pointing at another address of the API server, e.g. a proxy)."""
        token = self.kubectl("create", "token", sa, "-n", namespace, "--duration=6h").stdout.strip()
        cfg = yaml.safe_load(self.admin.read_text())
        if server:
            cfg["clusters"][0]["cluster"]["server"] = server
        cfg["users"] = [{"name": sa, "user": {"token": token}}]
        cfg["contexts"] = [{"name": sa, "context": {"cluster": cfg["clusters"][0]["name"], "user": sa}}]
        cfg["current-context"] = sa
        path.write_text(yaml.safe_dump(cfg))
        return path

    def install_operator(self, operator_namespace: str, namespaces: Sequence[str], watch: Sequence[str] = (),
                         api_priority: bool = False) -> None:
        """The CRD, the namespaces and the chart's RBAC (cluster-wide, or one
        Role per namespace of ``watch``); with ``api_priority``, the chart's
        FlowSchema and PriorityLevelConfiguration too (apiPriority.enabled)."""
        self.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        for _ in range(120):  # kubectl wait fails at once while the new CRD has no conditions
            if self.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.serving.kubento.io",
                            "--timeout=10s", check=False).returncode == 0:
                break
            time.sleep(0.5)
        args = ["--set", "watch.namespaces={" + ",".join(watch) + "}"] if watch else []
        args += ["--set", "apiPriority.enabled=true"] if api_priority else []
        rendered = subprocess.run([helm_bin(), "template", "kubento", str(ROOT / "charts" / "kubento"), "--namespace",
                                   operator_namespace, "--kube-version", "1.34.4", *args],
                                  capture_output=True, text=True, check=True).stdout
        docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in
                ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "FlowSchema",
                 "PriorityLevelConfiguration")]
        for ns in dict.fromkeys([operator_namespace, *namespaces]):
            self.kubectl("create", "namespace", ns)
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
        # The token controller; the ServiceAccount's token is asked for next.
        for _ in range(60):
            if self.kubectl("get", "serviceaccount", "kubento", "-n", operator_namespace, check=False).returncode == 0:
                break
            time.sleep(0.5)


def api(kubeconfig: Path, pool: int = 16) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = pool
    return client.ApiClient(cfg)


# --------------------------------------------------------------- watching


class Watcher(threading.Thread):
    """A raw watch (list, then watch from its resourceVersion), calling
    ``on(type, obj)`` for every event; fast enough for thousands. Relists
    after any error (the API server may be away for a while)."""

    def __init__(self, list_call: Callable[..., Any], on: Callable[[str, dict], None], **kw: Any) -> None:
        super().__init__(daemon=True)
        self.list_call, self.on, self.kw = list_call, on, kw
        self.ready = threading.Event()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                resp = self.list_call(_preload_content=False, _request_timeout=30, **self.kw)
                listed = json.loads(resp.data)
                for item in listed["items"]:
                    self.on("LISTED", item)
                self.ready.set()
                rv = listed["metadata"]["resourceVersion"]
                stream = self.list_call(watch=True, resource_version=rv, allow_watch_bookmarks=True,
                                        timeout_seconds=300, _preload_content=False, _request_timeout=(10, 90),
                                        **self.kw)
                for line in stream:
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        break
                    if event["type"] != "BOOKMARK":
                        self.on(event["type"], event["object"])
            except Exception:  # noqa: BLE001 - relist (the API server may be restarting)
                self.stopped.wait(0.5)


class DeploymentController:
    """Plays the Deployment controller for kubento's Deployments in
    ``namespace``: a while after each change (``delay``: seconds, a range to
    draw from), every desired replica is reported ready. Retries whatever
    it could not report (the API server may be away)."""

    def __init__(self, admin: client.ApiClient, namespace: str, delay: tuple[float, float] = (0.0, 0.0),
                 threads: int = 8, on_event: Optional[Callable[[str, dict], None]] = None) -> None:
        self.apps = client.AppsV1Api(admin)
        self.namespace, self.delay, self.on_event = namespace, delay, on_event
        self.lock = threading.Lock()
        self.pending: dict[str, tuple[int, int, float]] = {}  # name -> (generation, replicas, report at)
        self.pool = ThreadPoolExecutor(threads)
        self.reported = 0
        self._stop = threading.Event()
        self.watcher = Watcher(self.apps.list_namespaced_deployment, self._event, namespace=namespace,
                               label_selector=MANAGED)
        self._sweeper = threading.Thread(target=self._sweep, daemon=True)

    def start(self, timeout: float = 60) -> "DeploymentController":
        self.watcher.start()
        self._sweeper.start()
        self.watcher.ready.wait(timeout)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.watcher.stopped.set()

    def _event(self, type_: str, dep: dict) -> None:
        if self.on_event is not None:
            self.on_event(type_, dep)
        meta = dep["metadata"]
        name = meta["name"]
        if type_ == "DELETED" or meta.get("deletionTimestamp"):
            with self.lock:
                self.pending.pop(name, None)
            return
        want = dep["spec"].get("replicas", 1)
        st = dep.get("status") or {}
        done = (st.get("observedGeneration") == meta["generation"] and st.get("readyReplicas", 0) == want
                and st.get("replicas", 0) == want)
        with self.lock:
            if done:
                self.pending.pop(name, None)
            elif self.pending.get(name, (None, None))[:2] != (meta["generation"], want):
                self.pending[name] = (meta["generation"], want, time.monotonic() + random.uniform(*self.delay))

    def _sweep(self) -> None:
        while not self._stop.wait(0.05):
            now = time.monotonic()
            with self.lock:
                due = [(n, g, r) for n, (g, r, at) in self.pending.items() if at <= now]
                for n, g, r in due:  # not again until this report had time to be answered
                    self.pending[n] = (g, r, now + 5.0)
            for n, g, r in due:
                self.pool.submit(self._report, n, g, r)

    def _report(self, name: str, generation: int, replicas: int) -> None:
        status = {"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                  "readyReplicas": replicas, "availableReplicas": replicas,
                  "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                  "message": "ok"},
                                 {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                                  "message": "ok"}]}
        try:
            self.apps.patch_namespaced_deployment_status(name, self.namespace, {"status": status},
                                                         _request_timeout=10)
            self.reported += 1
        except client.ApiException as exc:
            if exc.status == 404:
                with self.lock:
                    self.pending.pop(name, None)
        except Exception:  # noqa: BLE001 - the API server is away: the sweep tries again
            pass


# ---------------------------------------------------------------- operator


def _refuse_if_listening(port: int) -> None:
    """Fail at once when something already listens on ``port`` (e.g. an
    operator left by an earlier run): the new one could not serve its
    metrics or probe and would wait on a test's timeout instead."""
    if not port:
        return
    with socket.socket() as sock:
        sock.settimeout(0.5)
        if sock.connect_ex(("127.0.0.1", port)) != 0:
            return
    holder = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout.strip()
    raise RuntimeError(f"port {port} is taken, the operator cannot start: {holder or 'see ss -ltnp'} "
                       "(an operator left by an earlier run? stop it first)")


class Operator:
    """``kubento run`` as a process (as the chart runs it: JSON logs, leader
    election when ``election_namespace`` is given). Every start appends to
    one log file."""

    def __init__(self, kubeconfig: Path, log: Path, *, namespaces: Sequence[str] = (), metrics_port: int,
                 health_port: int = 0, election_namespace: str = "", workers: int = 8,
                 resync_seconds: float = 300, identity: str = "kubento-0", wrap: Sequence[str] = ()) -> None:
        self.kubeconfig, self.log_path = kubeconfig, log
        self.namespaces, self.metrics_port, self.health_port = namespaces, metrics_port, health_port
        self.election_namespace, self.workers, self.resync = election_namespace, workers, resync_seconds
        self.identity, self.wrap = identity, list(wrap)  # wrap: a command to run it under (py-spy)
        self.proc: Optional[subprocess.Popen] = None
        self.exits: list[int] = []  # return codes of every process that ended
        self.starts = 0

    def start(self) -> None:
        for port in (self.metrics_port, self.health_port):
            _refuse_if_listening(port)
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "POD_NAME": self.identity}
        scope = [a for ns in self.namespaces for a in ("-n", ns)] or ["-A"]
        liveness = f"http://127.0.0.1:{self.health_port}/healthz" if self.health_port else ""
        with open(self.log_path, "a") as log:
            log.write(json.dumps({"message": f"=== start {self.starts + 1} of {self.identity}"}) + "\n")
            self.proc = subprocess.Popen(
                [*self.wrap, str(ROOT / ".venv" / "bin" / "kubento"), "run", *scope, "--liveness", liveness,
                 "--metrics-port", str(self.metrics_port), "--log-format", "json", "--workers", str(self.workers),
                 "--resync-seconds", str(self.resync), "--leader-election-namespace", self.election_namespace],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1

    @property
    def alive(self) -> bool:
        proc = self.proc  # another thread may be stopping it
        return proc is not None and proc.poll() is None

    def _ended(self, timeout: float) -> None:
        assert self.proc is not None
        try:
            self.exits.append(self.proc.wait(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.exits.append(self.proc.wait())
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no release of the Lease."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self._ended(30)

    def terminate(self, timeout: float = 40) -> None:
        """SIGTERM, as the kubelet stops a pod."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        if self.proc is not None:
            self._ended(timeout)

    def scrape(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()

    def metric(self, name: str) -> Optional[float]:
        """The value of an unlabelled metric (summed over labels otherwise)."""
        total, seen = 0.0, False
        for line in self.scrape().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
                seen = True
        return total if seen else None

    def metric_or_none(self, name: str) -> Optional[float]:
        """:meth:`metric`, or None while the process does not answer."""
        try:
            return self.metric(name) if self.alive else None
        except OSError:
            return None

    def leading(self) -> bool:
        try:
            return self.alive and self.metric("kubento_leader") == 1.0
        except OSError:
            return False

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"message": line})
        return out
