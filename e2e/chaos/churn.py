"""ModelDeployments that change under the operator, as users change them.

:class:`Churn` keeps ``n`` model names busy from a few threads: each
operation picks a name at random and, if the model does not exist, creates
it; otherwise it changes its spec (the rollout strategy), resizes it, rolls
out a new image, rolls it back (``kubento rollback``, the CLI's own code) or
deletes it. Every write is a read-modify-write guarded by resourceVersion,
as ``kubectl edit`` does. It remembers the last spec it wrote per model (so
a check can tell whether a change was lost) and counts operations.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import random
import threading
import time
from collections import Counter
from typing import Any, Optional

from kubernetes import client

from kubento.api import v1alpha1 as api
from kubento.cli import rollout as cli_rollout
from tests.specs import model_deployment

ROLLOUTS: dict[str, dict[str, Any]] = {
    "RollingUpdate": {"strategy": "RollingUpdate"},
    "Canary": {"strategy": "Canary", "steps": [{"weight": 50, "pause": "2s"}]},
    "Canary2": {"strategy": "Canary", "steps": [{"weight": 25, "pause": "1s"}, {"weight": 75, "pause": "2s"}]},
    "BlueGreen": {"strategy": "BlueGreen"},
}
# How often each operation is picked for an existing model.
WEIGHTS = {"change": 2, "resize": 3, "rollout": 4, "rollback": 2, "delete": 1}


def spec(version: int, replicas: int, rollout: str) -> dict[str, Any]:
    return {"bento": {"image": f"registry.local/iris:{version}"}, "replicas": replicas,
            "rollout": copy.deepcopy(ROLLOUTS[rollout])}


class Churn:
    def __init__(self, admin: client.ApiClient, namespace: str, n: int, seed: int) -> None:
        self.custom = client.CustomObjectsApi(admin)
        self.apps = client.AppsV1Api(admin)
        self.namespace = namespace
        self.names = [f"m{i:03d}" for i in range(n)]
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.busy: set[str] = set()
        self.written: dict[str, Optional[dict[str, Any]]] = {}  # name -> last spec written (None: deleted)
        self.ops: Counter[str] = Counter()  # operations done, by kind
        self.refused: Counter[str] = Counter()  # operations the API server (or the CLI) turned down
        self.errors: Counter[str] = Counter()  # operations that failed (API server away)
        self.versions = 1
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------- objects

    def _get(self, name: str) -> Optional[dict[str, Any]]:
        try:
            return self.custom.get_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, api.PLURAL, name,
                                                            _request_timeout=15)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, name: str, body_spec: Optional[dict[str, Any]] = None) -> None:
        body_spec = body_spec or spec(self.versions, self.random.randint(1, 3), self.random.choice(list(ROLLOUTS)))
        self.custom.create_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, api.PLURAL,
                                                    model_deployment(name, self.namespace, body_spec),
                                                    _request_timeout=15)
        self.written[name] = body_spec

    def create_all(self) -> None:
        for name in self.names:
            self.create(name)
            self.ops["create"] += 1

    def _replace(self, obj: dict[str, Any], new_spec: dict[str, Any]) -> None:
        obj = {**obj, "spec": new_spec}
        obj.pop("status", None)  # the main resource ignores it anyway
        self.custom.replace_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, api.PLURAL,
                                                     obj["metadata"]["name"], obj, _request_timeout=15)

    # ---------------------------------------------------------- operations

    def step(self) -> None:
        """One operation on one model no other thread is changing."""
        with self.lock:
            free = [n for n in self.names if n not in self.busy]
            name = self.random.choice(free)
            self.busy.add(name)
            rnd = random.Random(self.random.random())
        try:
            self._step(name, rnd)
        finally:
            with self.lock:
                self.busy.discard(name)

    def _step(self, name: str, rnd: random.Random) -> None:
        op = "?"
        try:
            obj = self._get(name)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                op = "create"
                if obj is None:
                    self.create(name)
                else:
                    return  # still being deleted
            else:
                op = rnd.choices(list(WEIGHTS), list(WEIGHTS.values()))[0]
                new = copy.deepcopy(obj["spec"])
                if op == "change":
                    new["rollout"] = copy.deepcopy(ROLLOUTS[rnd.choice(list(ROLLOUTS))])
                elif op == "resize":
                    new["replicas"] = rnd.choice([r for r in (1, 2, 3) if r != new.get("replicas", 1)])
                elif op == "rollout":
                    with self.lock:
                        self.versions += 1
                        new["bento"] = {"image": f"registry.local/iris:{self.versions}"}
                elif op == "rollback":
                    self._rollback(obj)
                    return
                elif op == "delete":
                    self.custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, api.PLURAL,
                                                                name, _request_timeout=15)
                    self.written[name] = None
                    self.ops[op] += 1
                    return
                self._replace(obj, new)
                self.written[name] = new
            self.ops[op] += 1
        except client.ApiException as exc:
            if exc.status and exc.status < 500:  # 404/409: deleted or changed meanwhile
                self.refused[f"{op} {exc.status}"] += 1
            else:
                self.errors[op] += 1
        except Exception as exc:  # noqa: BLE001 - the API server is away: count and go on
            self.errors[f"{op} {type(exc).__name__}"] += 1

    def _rollback(self, obj: dict[str, Any]) -> None:
        """``kubento rollback NAME``, the CLI's own code with this client."""
        name = obj["metadata"]["name"]
        args = argparse.Namespace(command="rollback", name=name, namespace=self.namespace, to_revision=None,
                                  dry_run=False)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                cli_rollout._rollback(args, obj, self.custom, self.apps)
        except (cli_rollout.Refused, cli_rollout.NothingToDo):
            self.refused["rollback (nothing to roll back to)"] += 1
            return
        self.ops["rollback"] += 1
        live = self._get(name)
        self.written[name] = live["spec"] if live else None

    # ------------------------------------------------------------- threads

    def start(self, rate: float, threads: int = 4) -> "Churn":
        """About ``rate`` operations a second until :meth:`stop`."""
        def run() -> None:
            while not self._stop.is_set():
                t0 = time.monotonic()
                self.step()
                self._stop.wait(max(0.0, threads / rate - (time.monotonic() - t0)))

        self._threads = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def summary(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items()))
        refused = ", ".join(f"{k} {v}" for k, v in sorted(self.refused.items())) or "none"
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        return f"{sum(self.ops.values())} operations ({ops}); turned down: {refused}; failed (API away): {errors}"
