"""Gateway API data planes for the e2e tier (e2e/gateway/dataplane starts
them beside e2e/cluster: Envoy Gateway, and Traefik; on kind, Traefik alone,
as a Deployment in the cluster) and what tests need to drive them: the
Gateways' addresses, HTTPRoutes, waiting for a route to carry traffic. The
fixtures are in e2e/conftest.py (envoy_gateway, traefik_gateway).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DATAPLANE = HERE / "dataplane"
GATEWAY_NAMESPACE = "kubento-gateway"


@dataclass(frozen=True)
class DataPlane:
    """One running data plane and its Gateway (HTTP listener: ``url``)."""

    name: str  # envoy-gateway | traefik
    gateway: str  # the Gateway's name, in GATEWAY_NAMESPACE
    url: str  # http://<node IP>:<listener port>; in the cluster (kind): http://<its Service's ClusterIP>:<listener port>
    mirrors: bool  # whether it implements the standard RequestMirror filter (Traefik does not)

    def parent_ref(self) -> dict[str, Any]:
        return {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": self.gateway,
                "namespace": GATEWAY_NAMESPACE, "sectionName": "http"}


PLANES = {
    "envoy-gateway": ("kubento-e2e", "KUBENTO_GATEWAY_URL", True),
    "traefik": ("kubento-e2e-traefik", "KUBENTO_GATEWAY_TRAEFIK_URL", False),
}


def start(name: str) -> DataPlane:
    """``e2e/gateway/dataplane up NAME`` (builds what it needs, cached); raises
    AssertionError with its output when it cannot. With KUBENTO_E2E_KUBECONFIG
    and KUBENTO_E2E_LOAD in the environment (e2e/kind/run), Traefik runs in
    that cluster (its Service's address: reached from the client pod)."""
    gateway, url_var, mirrors = PLANES[name]
    proc = subprocess.run([str(DATAPLANE), "up", name], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise AssertionError(f"the {name} data plane did not start (e2e/gateway/dataplane up {name}):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}")
    env = subprocess.run([str(DATAPLANE), "env"], capture_output=True, text=True, check=True).stdout
    urls = dict(line.removeprefix("export ").split("=", 1) for line in env.splitlines() if "=" in line)
    return DataPlane(name, gateway, urls[url_var], mirrors)


def stop(name: str) -> None:
    subprocess.run([str(DATAPLANE), "down", name], capture_output=True, text=True, timeout=120)


def backend(service: str, port: int, weight: int | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": service, "port": port}
    if weight is not None:
        ref["weight"] = weight
    return ref


def http_route(name: str, namespace: str, plane: DataPlane, hostname: str, rules: list[dict]) -> dict[str, Any]:
    """An HTTPRoute attached to ``plane``'s Gateway, for requests to ``hostname``
    (one hostname per test: its requests reach only its route)."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"parentRefs": [plane.parent_ref()], "hostnames": [hostname], "rules": rules},
    }


def route_conditions(cluster, name: str, namespace: str) -> dict[str, dict]:
    """The route's conditions for its (first) parent, by type, when written for
    its current generation."""
    obj = cluster.get("httproute", name, "-n", namespace)
    if not obj:
        return {}
    for parent in (obj.get("status") or {}).get("parents") or []:
        conds = {c["type"]: c for c in parent.get("conditions") or []}
        if all(c.get("observedGeneration") == obj["metadata"]["generation"] for c in conds.values()):
            return conds
    return {}


def apply(cluster, manifest: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))


def _status_in_cluster(cluster, url: str, hostname: str, body: bytes) -> int | str:
    """One POST from the client pod (e2e/support.tally): the status, or the failure's name."""
    from e2e.support import tally

    rows = json.loads(body or b"{}").get("features")  # tally sends {"features": rows}
    got = tally(cluster, url, 1, headers={"host": hostname}, rows=rows, timeout=5)
    if not got.failures:
        return 200
    failure = next(iter(got.failures))
    return int(failure[5:]) if failure.startswith("HTTP ") else failure


def wait_serving(url: str, hostname: str, timeout: float = 60, body: bytes = b"{}",
                 ok=lambda status: status < 400, cluster=None) -> int:
    """Send requests for ``hostname`` until ``ok(status)``: the route's rules
    have reached the data plane (before, it answers 404). The status seen.
    With ``cluster`` whose addresses answer only inside it (KUBENTO_E2E_IN_CLUSTER),
    from its client pod."""
    from e2e.conftest import IN_CLUSTER

    deadline = time.monotonic() + timeout
    last = None
    while True:
        if IN_CLUSTER:
            assert cluster is not None and cluster.client_pod, f"{url} answers in the cluster only: pass its cluster"
            last = _status_in_cluster(cluster, url, hostname, body)
        else:
            req = urllib.request.Request(url, data=body, method="POST",
                                         headers={"host": hostname, "content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    last = resp.status
            except urllib.error.HTTPError as exc:
                last = exc.code
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
        if isinstance(last, int) and ok(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} (Host: {hostname}) still answers {last} after {timeout}s")
        time.sleep(0.2)
