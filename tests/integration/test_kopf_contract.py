"""The contract between kubento and kopf, against the real kopf (the version
installed) and a real API server: kopf's own watcher (KopfRunner, so
kopf's queueing watcher -> infinite_watch -> continuous_watch, as in
production) watches ConfigMaps through kubento.controller.kopfadapter, with
kubento's NoDiffBase, an index handler and an event handler, as kubento's
handlers use them.

- (a) the first listing is reported with exactly the uids listed, the cache
  is told before passes may run (``fresh`` clear while on_listed runs) and
  ``fresh`` is set after; index handlers have seen every listed object
  before the first event handler runs; watches the server ends (every 2 s
  here) resume from their resourceVersion: events keep coming, no relist,
  passes never wait.
- (b) + (c) the API server is killed; while it is down an object is deleted
  (in etcd, the only way without an API server: the operator's watch is
  away either way); the API server starts again. Its watch cache starts at
  etcd's current revision, so kopf's resumed watch gets a 410 Gone ERROR
  event (seen on the raw stream) and lists again: the relist is reported,
  the deleted object is not in it and never comes as a DELETED event,
  ``fresh`` is clear while it relists and set again after (no stall), and
  the stream carries new events after.

Not produced here: a 429 on the watch (kopf's other way to a relist). This
API server exempts system:masters from API Priority and Fairness, and a
priority level with no seats still admits a request while nothing else
runs in it, so a 429 needs a level kept saturated by a stuck request;
tests/unit/test_kopfadapter.py runs kopf's real infinite_watch with a
scripted 429 instead (and 410, a failed listing, a resumed watch).

This module runs its own control plane (its own directory and ports: it
restarts the API server, which no other test may see), not the session's.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import kopf
import pytest
import yaml
from kopf._cogs.clients import watching
from kopf.testing import KopfRunner

from kubento.controller import kopfadapter
from kubento.controller.kopfadapter import NoDiffBase, Watches
from tests.controlplane import ControlPlane
from tests.helpers import free_port, wait_for


def _free_pair() -> int:
    """A port p with p and p+1 free (etcd: clients, peers)."""
    for _ in range(50):
        p = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="module")
def cp():
    base = os.environ.get("KUBENTO_CP_DIR", "/tmp/kubento-controlplane")
    plane = ControlPlane(Path(f"{base}-kopf-contract"), port=free_port(), etcd_port=_free_pair())
    plane.etcd_port = int(plane.env["KUBENTO_CP_ETCD_PORT"])
    try:
        plane.up()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)  # never skip: this tier is meaningless without an API server
    yield plane
    if not os.environ.get("KUBENTO_KEEP_CLUSTER"):
        plane.down()


@pytest.fixture
def namespace(cp):
    name = f"contract-{uuid.uuid4().hex[:6]}"
    cp.kubectl("create", "namespace", name)
    # The controller-manager adds kube-root-ca.crt to every namespace: before the listing, not during it.
    wait_for("kube-root-ca.crt", lambda: cp.kubectl("get", "configmap", "kube-root-ca.crt", "-n", name,
                                                    check=False).returncode == 0)
    return name


def configmap(cp, namespace: str, name: str) -> str:
    """Create it; its uid."""
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
           "data": {"k": "v"}}
    out = cp.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(doc)).stdout
    return json.loads(out)["metadata"]["uid"]


def uids(cp, namespace: str) -> set[str]:
    items = json.loads(cp.kubectl("get", "configmaps", "-n", namespace, "-o", "json").stdout)["items"]
    return {i["metadata"]["uid"] for i in items}


class RecordingWatches(Watches):
    """Watches that keep every value ``fresh`` took."""

    def __init__(self) -> None:
        self.history: list[bool] = []
        super().__init__()

    def _update(self) -> None:
        super()._update()
        self.history.append(self.fresh.is_set())


class Contract:
    """A small kopf operator on ConfigMaps of one namespace, as kubento's
    handlers use kopf, recording what kopf and the adapter do."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        self.namespace = namespace
        self.settings = kopf.OperatorSettings()
        self.settings.persistence.diffbase_storage = NoDiffBase()
        self.settings.watching.server_timeout = 2  # the server ends each watch after 2 s: kopf resumes it
        self.settings.posting.enabled = False
        self.registry = kopf.OperatorRegistry()
        self.watches = RecordingWatches()
        self.lock = threading.Lock()
        self.listings: list[dict] = []  # what on_listed got, and the state then
        self.indexed: set[str] = set()
        self.events: list[tuple[object, str]] = []  # (type, uid) as event handlers got them
        self.indexed_at_first_event: set[str] | None = None
        self.raw_errors: list[dict] = []  # ERROR events on this namespace's ConfigMap watches
        self.hold = threading.Event()  # set: the next ConfigMap relist waits in on_listed ...
        self.holding = threading.Event()  # ... says so ...
        self.release = threading.Event()  # ... until this
        cfg = yaml.safe_load(cp.admin.read_text())
        server, token = cfg["clusters"][0]["cluster"]["server"], cfg["users"][0]["user"]["token"]
        ca = cfg["clusters"][0]["cluster"]["certificate-authority"]

        @kopf.on.login(registry=self.registry)
        def login(**_):
            return kopf.ConnectionInfo(server=server, ca_path=ca, token=token, scheme="Bearer")

        @kopf.index("", "v1", "configmaps", registry=self.registry)
        def index(body, **_):
            with self.lock:
                self.indexed.add(body["metadata"]["uid"])

        @kopf.on.event("", "v1", "configmaps", registry=self.registry)
        def event(type, body, **_):
            with self.lock:
                if self.indexed_at_first_event is None:
                    self.indexed_at_first_event = set(self.indexed)
                self.events.append((type, body["metadata"]["uid"]))

    def on_listed(self, group: str, plural: str, namespace, listed: set[str]) -> int:
        entry = {"plural": plural, "namespace": namespace, "uids": set(listed),
                 "fresh": self.watches.fresh.is_set(), "relisting": self.watches.relisting()}
        with self.lock:
            self.listings.append(entry)
        if plural == "configmaps" and self.hold.is_set() and len(self.configmap_listings()) > 1:
            self.hold.clear()
            self.holding.set()
            self.release.wait(30)  # blocks kopf's loop: the test looks at the state meanwhile
        return 0

    def configmap_listings(self) -> list[dict]:
        with self.lock:
            return [e for e in self.listings if e["plural"] == "configmaps" and e["namespace"] == self.namespace]

    def types_of(self, uid: str) -> list[object]:
        with self.lock:
            return [t for t, u in self.events if u == uid]


@pytest.fixture
def contract(cp, namespace, monkeypatch):
    """Start it with ``contract.start()``: the objects to list come first."""
    c = Contract(cp, namespace)
    real_watch_objs = watching.watch_objs

    async def watch_objs(**kw):  # records the raw ERROR events (kopf acts on them and never yields them)
        async for raw in real_watch_objs(**kw):
            if raw.get("type") == "ERROR" and kw["resource"].plural == "configmaps" and kw["namespace"] == namespace:
                c.raw_errors.append(raw)
            yield raw

    monkeypatch.setattr(watching, "watch_objs", watch_objs)
    runners: list[KopfRunner] = []
    with contextlib.ExitStack() as stack:
        stack.callback(kopfadapter.install(c.watches, c.on_listed, settings=c.settings))  # uninstalls
        # kopf's CLI makes the registry it is given the default: put the default back after.
        stack.callback(kopf.set_default_registry, kopf.get_default_registry())

        def start() -> KopfRunner:
            runner = KopfRunner(["run", "--standalone", "--namespace", namespace], registry=c.registry,
                                settings=c.settings, timeout=60)
            runners.append(stack.enter_context(runner))
            stack.callback(c.release.set)  # before the runner stops: nothing stays held in on_listed
            return runner

        c.start = start
        yield c
    for runner in runners:
        assert runner.exit_code == 0, runner.output[-3000:]


def test_the_first_listing_is_reported_before_passes_run_and_watches_resume_without_relisting(cp, namespace,
                                                                                             contract):
    for name in ("a", "b", "c"):
        configmap(cp, namespace, name)
    expected = uids(cp, namespace)
    assert len(expected) == 4  # and kube-root-ca.crt
    contract.start()
    [first] = wait_for("kopf's first listing of the ConfigMaps", contract.configmap_listings, timeout=60)
    assert first["uids"] == expected, "the listing reported is not what the API server listed"
    assert not first["fresh"], "on_listed must run before passes may (fresh clear)"
    assert ("", "configmaps", namespace) in first["relisting"]
    wait_for("fresh once every stream has listed", contract.watches.fresh.is_set, timeout=10)

    # kubento's cache is written by index handlers: kopf runs them for the whole listing first.
    wait_for("the event handler for every listed object", lambda: all(contract.types_of(u) for u in expected))
    assert contract.indexed_at_first_event is not None and expected <= contract.indexed_at_first_event, \
        "kopf ran an event handler before its index handlers had seen every listed object"
    assert all(contract.types_of(u)[0] is None for u in expected), "listed objects come as events of type None"

    # The server ends each watch after 2 s: kopf resumes from its resourceVersion (no listing).
    fresh_since = len(contract.watches.history)
    time.sleep(5)
    late = configmap(cp, namespace, "d")
    wait_for("the watch event of an object created later", lambda: contract.types_of(late), timeout=20)
    assert contract.types_of(late)[0] == "ADDED"
    assert len(contract.configmap_listings()) == 1 and contract.watches.relists == 0, \
        "a watch the server ended was listed again instead of resumed from its resourceVersion"
    assert all(contract.watches.history[fresh_since:]) and contract.watches.fresh.is_set(), \
        "passes waited although no watch relisted"


def etcd_delete(cp: ControlPlane, key: str) -> int:
    """Delete a key in etcd (its v3 JSON gateway); how many were deleted."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{cp.etcd_port}/v3/kv/deleterange", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(json.load(resp).get("deleted", 0))


def test_after_an_api_server_restart_a_410_gone_relists_without_what_was_deleted_meanwhile(cp, namespace,
                                                                                           contract):
    keep, gone = configmap(cp, namespace, "keep"), configmap(cp, namespace, "gone")
    before = uids(cp, namespace)
    contract.start()
    wait_for("kopf's first listing of the ConfigMaps", contract.configmap_listings, timeout=60)
    wait_for("fresh once every stream has listed", contract.watches.fresh.is_set, timeout=10)
    wait_for("the event handlers", lambda: contract.types_of(gone))
    assert contract.configmap_listings()[0]["uids"] == before

    contract.hold.set()
    stale_from = len(contract.watches.history)
    cp.stop("kube-apiserver")
    # Deleted while the operator's watch is away (no API server: in etcd itself).
    assert etcd_delete(cp, f"/registry/configmaps/{namespace}/gone") == 1
    cp.start()  # the same API server, again; waits until it is ready

    # (c) kopf's resumed watch is refused with 410 Gone, and it lists again (held in on_listed here).
    wait_for("410 Gone on kopf's ConfigMap watch resumed after the API server restart",
             lambda: any(e["object"].get("code") == 410 for e in contract.raw_errors), timeout=120)
    wait_for("the adapter to report kopf's relist after 410 Gone", contract.holding.is_set, timeout=30)
    # (b) while it relists, passes wait ...
    assert not contract.watches.fresh.is_set(), "fresh while a watch relists: passes would run on a stale cache"
    assert ("", "configmaps", namespace) in contract.watches.relisting()
    relist = contract.configmap_listings()[-1]
    assert not relist["fresh"]
    # ... and the listing reported lacks what was deleted meanwhile.
    assert relist["uids"] == before - {gone} and keep in relist["uids"], \
        f"relist {relist['uids']} vs before {before} minus {gone}"
    contract.release.set()
    wait_for("fresh again once the relist is over (no stream stuck relisting)", contract.watches.fresh.is_set,
             timeout=30)
    assert contract.watches.relists >= 1
    assert False in contract.watches.history[stale_from:] and contract.watches.history[-1]
    assert "DELETED" not in contract.types_of(gone), "kopf sent a DELETED event it cannot have seen"

    # The stream works on: an object created now comes as an event.
    late = configmap(cp, namespace, "late")
    wait_for("a watch event after the relist", lambda: "ADDED" in contract.types_of(late), timeout=30)
    assert uids(cp, namespace) == before - {gone} | {late}
