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
from typing import Callable, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("kubento.leader")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class LeaderElector:
    def __init__(self, api: client.ApiClient, namespace: str, name: str, identity: str, *,
                 lease_seconds: float = 12.0, renew_deadline: float = 8.0, retry_seconds: float = 1.0,
                 renew_seconds: float = 2.0,
                 on_started: Callable[[], None] = lambda: None, on_stopped: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        assert renew_deadline < lease_seconds
        self.coordination = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds, self.renew_deadline, self.retry = lease_seconds, renew_deadline, retry_seconds
        self.renew_every = renew_seconds
        self._held: Optional[client.V1Lease] = None  # the Lease as last written by this replica
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
                lease = self._held or self.coordination.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.timeout)
                if lease.spec.holder_identity == self.identity:
                    lease.spec.holder_identity = ""
                    lease.spec.lease_duration_seconds = 1
                    lease.spec.renew_time = _now()
                    self.coordination.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=self.timeout)
                    log.info("%s released the Lease", self.identity)
            except Exception as exc:  # noqa: BLE001 - best effort: it expires anyway
                log.warning("could not release the Lease: %s", exc)

    # ---------------------------------------------------------------- one try

    def _try(self) -> bool:
        """Take or renew the Lease; True if this replica holds it now."""
        if self._held is not None:
            lease = self._held
            lease.spec.renew_time = _now()
            try:  # the leader's renewal: from its own copy, guarded by resourceVersion
                self._held = self.coordination.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=self.timeout)
                return True
            except ApiException as exc:
                self._held = None
                if exc.status != 409:
                    raise
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(transitions=0, acquired=True),
            )
            try:
                self._held = self.coordination.create_namespaced_lease(self.namespace, body, _request_timeout=self.timeout)
            except ApiException as exc2:
                if exc2.status == 409:
                    return False  # another replica was faster
                raise
            return True
        spec = lease.spec
        holder = spec.holder_identity or ""
        record = f"{holder}/{spec.renew_time}/{spec.lease_transitions}"
        now = self.clock()
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, now)
        duration = spec.lease_duration_seconds or self.lease_seconds
        expired = now - self._observed[1] > duration
        if holder and holder != self.identity and not expired:
            return False
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        lease.spec = self._spec(transitions, acquired=holder != self.identity, previous=spec)
        try:
            self._held = self.coordination.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=self.timeout)  # resourceVersion guards it
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _spec(self, transitions: int, acquired: bool, previous: Optional[client.V1LeaseSpec] = None) -> client.V1LeaseSpec:
        now = _now()
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=int(self.lease_seconds),
            acquire_time=now if acquired or previous is None else previous.acquire_time,
            renew_time=now,
            lease_transitions=transitions,
        )
