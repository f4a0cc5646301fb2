"""Leader election on a coordination.k8s.io Lease, as client-go's.

Every replica runs kopf's watches and keeps its cache warm; only the leader
runs passes. A candidate looks at the Lease every ``retry_seconds`` and takes it when it
is free (no holder, or its holder released it) or when it has not changed for
``lease_seconds`` by the candidate's own clock (no trust in other pods'
clocks). The leader renews it every ``renew_seconds`` from the copy it holds
(one write, no read); if it cannot renew for ``renew_deadline`` seconds it
stops leading before anyone else may take over (renew_deadline < lease). On a
clean stop the leader releases the Lease, so a standby takes over within
``retry_seconds``.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Any, Callable, Optional
from urllib.parse import quote

from kubento.controller.kube import ApiError, Kube

log = logging.getLogger("kubento.leader")


def _now() -> str:
    """MicroTime, as a Lease's times are written."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, *,
                 lease_seconds: float = 12.0, renew_deadline: float = 8.0, retry_seconds: float = 1.0,
                 renew_seconds: float = 2.0,
                 on_started: Callable[[], None] = lambda: None, on_stopped: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        assert renew_deadline < lease_seconds
        self.kube = kube
        self.namespace, self.name, self.identity = namespace, name, identity
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace, safe='')}/leases"
        self.lease_seconds, self.renew_deadline, self.retry = lease_seconds, renew_deadline, retry_seconds
        self.renew_every = renew_seconds
        self._held: Optional[dict[str, Any]] = None  # the Lease as last written by this replica
        self.on_started, self.on_stopped = on_started, on_stopped
        self.clock = clock
        self.leading = threading.Event()
        self._stop = threading.Event()
        self._observed: Optional[tuple[str, float]] = None  # (the Lease's record, when it last changed here)
        self._renewed = 0.0
        # Every Lease request gives up in time for the renew deadline to be
        # checked: a request hanging on a partitioned network must not keep a
        # leader leading past its Lease (another replica takes it then).
        self.timeout = max(0.5, renew_deadline / 4)

    # --------------------------------------------------------------- the loop

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                held = self._try()
            except Exception as exc:  # noqa: BLE001 - the API server may be away: keep trying
                log.warning("leader election: %s", getattr(exc, "reason", None) or exc)
                held = False
            now = self.clock()
            if held:
                self._renewed = now
                if not self.leading.is_set():
                    log.info("%s leads (Lease %s/%s)", self.identity, self.namespace, self.name)
                    self.leading.set()
                    self.on_started()
            elif self.leading.is_set() and now - self._renewed > self.renew_deadline:
                log.warning("%s stops leading: the Lease was not renewed for %.0fs", self.identity, now - self._renewed)
                self.leading.clear()
                self.on_stopped()
            self._stop.wait(self.renew_every if self.leading.is_set() else self.retry)

    def stop(self, release: bool = True) -> None:
        """Stop; a leader releases the Lease so a standby takes over at once."""
        self._stop.set()
        if release and self.leading.is_set():
            self.leading.clear()
            try:
                lease = self._held or self._read()
                if lease["spec"].get("holderIdentity") == self.identity:
                    lease["spec"].update(holderIdentity="", leaseDurationSeconds=1, renewTime=_now())
                    self._replace(lease)
                    log.info("%s released the Lease", self.identity)
            except Exception as exc:  # noqa: BLE001 - best effort: it expires anyway
                log.warning("could not release the Lease: %s", exc)

    # ---------------------------------------------------------------- one try

    def _try(self) -> bool:
        """Take or renew the Lease; True if this replica holds it now."""
        if self._held is not None:
            lease = self._held
            lease["spec"]["renewTime"] = _now()
            try:  # the leader's renewal: from its own copy, guarded by resourceVersion
                self._held = self._replace(lease)
                return True
            except ApiError as exc:
                self._held = None
                if exc.status != 409:
                    raise
        try:
            lease = self._read()
        except ApiError as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(transitions=0, acquired=True)}
            try:
                self._held = self.kube.request("POST", self.path, body, timeout=self.timeout)
            except ApiError as exc2:
                if exc2.status == 409:
                    return False  # another replica was faster
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = f"{holder}/{spec.get('renewTime')}/{spec.get('leaseTransitions')}"
        now = self.clock()
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, now)
        duration = spec.get("leaseDurationSeconds") or self.lease_seconds
        expired = now - self._observed[1] > duration
        if holder and holder != self.identity and not expired:
            return False
        transitions = (spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        lease["spec"] = self._spec(transitions, acquired=holder != self.identity, previous=spec)
        try:
            self._held = self._replace(lease)  # resourceVersion guards it
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _read(self) -> dict[str, Any]:
        return self.kube.request("GET", f"{self.path}/{quote(self.name, safe='')}", timeout=self.timeout)

    def _replace(self, lease: dict[str, Any]) -> dict[str, Any]:
        """A PUT of the whole Lease: 409 unless its resourceVersion is still the stored one."""
        return self.kube.request("PUT", f"{self.path}/{quote(self.name, safe='')}", lease, timeout=self.timeout)

    def _spec(self, transitions: int, acquired: bool, previous: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        now = _now()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "acquireTime": now if acquired or previous is None else previous.get("acquireTime"),
            "renewTime": now,
            "leaseTransitions": transitions,
        }
