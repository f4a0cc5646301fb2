"""kubento.controller.kopfadapter without a cluster.

- The wrapper on a scripted continuous_watch: each complete listing is
  reported, a stream that ended is stale until it has listed again.
- The real kopf's ``infinite_watch``/``continuous_watch`` with only their
  HTTP layer (``fetch_objs``, ``watch_objs``) scripted: kopf's own retry
  rules (410 Gone, 429, a watch that times out, a listing that fails, an
  error it does not retry) as the adapter assumes them.
- The shapes of kopf's internals the adapter uses (a kopf upgrade that
  changes them fails here, with what changed).

tests/integration/test_kopf_contract.py runs the same against a real API
server."""

from __future__ import annotations

import asyncio
import urllib.parse
from types import SimpleNamespace

import aiohttp
import kopf
import pytest
from kopf._cogs.clients import api, errors, watching
from kopf._cogs.structs import references

from kubento.controller import kopfadapter
from kubento.controller.kopfadapter import KopfChanged, NoDiffBase, Watches, install

RESOURCE = SimpleNamespace(group="apps", plural="deployments")


def listed_event(uid: str) -> dict:
    return {"type": None, "object": {"metadata": {"uid": uid}}}


class Reports:
    """An on_listed that records, and checks the cache is updated before passes may run."""

    def __init__(self, watches: Watches) -> None:
        self.watches, self.calls = watches, []

    def __call__(self, group, plural, ns, uids):
        assert not self.watches.fresh.is_set()  # the cache drops what is gone before any pass may run
        self.calls.append((group, plural, ns, set(uids)))
        return 0


@pytest.fixture
def subscribe():
    """install(), undone after the test (the wrapper stays: it is idempotent)."""
    undo = []

    def sub(settings=None):
        watches = Watches()
        reports = Reports(watches)
        undo.append(install(watches, reports, settings=settings))
        return watches, reports

    yield sub
    for u in undo:
        u()


# --------------------------------------------------- the wrapper, scripted


@pytest.fixture
def wrapped(monkeypatch, subscribe):
    """kopf's continuous_watch replaced by one playing ``script``, then wrapped."""
    script: list = []

    async def fake(*, settings=None, resource, namespace, operator_pause_waiter=None):
        for item in script.pop(0):
            if isinstance(item, BaseException):
                raise item
            yield item

    monkeypatch.setattr(watching, "continuous_watch", fake)
    watches, reports = subscribe()
    return script, watches, reports.calls


def drain(namespace=None, settings=None):
    async def run():
        out = []
        async for event in watching.continuous_watch(resource=RESOURCE, namespace=namespace, settings=settings):
            out.append(event)
        return out
    return asyncio.run(run())


def test_each_complete_listing_is_reported_and_watch_events_are_not(wrapped):
    script, watches, reports = wrapped
    modified = {"type": "MODIFIED", "object": {"metadata": {"uid": "c"}}}
    script.append([listed_event("a"), listed_event("b"), watching.Bookmark.LISTED, modified])
    events = drain(namespace="ns")
    assert events[-1] == modified and watching.Bookmark.LISTED in events  # kopf sees everything unchanged
    assert reports == [("apps", "deployments", "ns", {"a", "b"})]
    assert not watches.fresh.is_set()  # the stream ended: stale until it lists again
    script.append([watching.Bookmark.LISTED])
    drain(namespace="ns")
    assert reports[-1] == ("apps", "deployments", "ns", set()) and watches.relists == 1


def test_a_stream_that_ends_for_good_leaves_nothing_stale(wrapped):
    script, watches, _ = wrapped
    script.append([watching.Bookmark.LISTED, RuntimeError("a watch error kopf does not retry")])
    with pytest.raises(RuntimeError):
        drain()
    assert watches.fresh.is_set()  # nobody lists it again: passes must not wait for it
    script.append([errors.APITooManyRequestsError({}, status=429, headers={})])
    with pytest.raises(errors.APITooManyRequestsError):
        drain()
    assert not watches.fresh.is_set()  # kopf retries after a 429: a listing follows


def test_an_operators_streams_go_to_its_own_subscription_only(wrapped, subscribe):
    script, process_wide, process_reports = wrapped
    settings = kopf.OperatorSettings()
    own, own_reports = subscribe(settings=settings)
    script.append([listed_event("a"), watching.Bookmark.LISTED])
    drain(settings=settings)
    assert own_reports.calls == [("apps", "deployments", None, {"a"})] and not process_reports
    script.append([listed_event("b"), watching.Bookmark.LISTED])
    drain(settings=kopf.OperatorSettings())  # another operator's stream: the process-wide subscription's
    assert process_reports == [("apps", "deployments", None, {"b"})] and len(own_reports.calls) == 1


def test_passes_wait_while_any_stream_relists():
    w = Watches()
    w.listed(("", "pods", None))
    w.listed(("apps", "deployments", None))
    w.ended(("", "pods", None), for_good=False)
    w.started(("apps", "deployments", None))
    assert not w.fresh.is_set()
    w.listed(("", "pods", None))
    assert not w.fresh.is_set()
    w.listed(("apps", "deployments", None))
    assert w.fresh.is_set() and w.relists == 2


# ------------------------------- the real kopf, its HTTP layer scripted


CONFIGMAPS = references.Resource(group="", version="v1", plural="configmaps", namespaced=True)
KEY = ("", "configmaps", "ns")


def obj(uid: str, rv: str) -> dict:
    return {"metadata": {"uid": uid, "name": uid, "namespace": "ns", "resourceVersion": rv}}


class Server:
    """Plays the API server under kopf's fetch_objs and watch_objs (kopf's
    ``api.get`` and ``api.stream``): ``lists`` and ``watches`` are consumed
    in order (an exception is raised; a watch is a list of raw events, then
    the server ends it); once the script is over, a watch hangs. Records
    the resourceVersion each watch resumes from."""

    def __init__(self, monkeypatch, lists, watches):
        self.lists, self.watches, self.since = list(lists), list(watches), []
        monkeypatch.setattr(api, "get", self.get)
        monkeypatch.setattr(api, "stream", self.stream)

    async def get(self, url, **_):
        step = self.lists.pop(0)
        if isinstance(step, BaseException):
            raise step
        items, rv = step
        return {"kind": "ConfigMapList", "apiVersion": "v1", "items": items, "metadata": {"resourceVersion": rv}}

    async def stream(self, url, **_):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        self.since.append(query.get("resourceVersion", [None])[0])
        if not self.watches:
            await asyncio.sleep(3600)
        step = self.watches.pop(0)
        if isinstance(step, BaseException):
            raise step
        for raw in step:
            yield raw


def run_kopf(settings, until, timeout=5.0):
    """kopf's real infinite_watch (through the adapter) until ``until(events)``; the events."""
    async def run():
        events = []
        stream = watching.infinite_watch(settings=settings, resource=CONFIGMAPS, namespace="ns")
        try:
            async with asyncio.timeout(timeout):
                async for event in stream:
                    events.append(event)
                    if until(events):
                        return events
        finally:
            await stream.aclose()
    return asyncio.run(run())


def listings(n):
    return lambda events: sum(e is watching.Bookmark.LISTED for e in events) >= n


@pytest.fixture
def real(subscribe):
    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0
    settings.networking.error_backoffs = [0]
    watches, reports = subscribe(settings=settings)
    return settings, watches, reports


def test_kopf_lists_again_after_410_gone_and_sends_nothing_for_what_went(monkeypatch, real):
    settings, watches, reports = real
    gone = {"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old resource version"}}
    Server(monkeypatch, lists=[([obj("a", "1"), obj("b", "2")], "5"), ([obj("a", "1")], "9")], watches=[[gone]])
    events = run_kopf(settings, listings(2))
    assert reports.calls == [("", "configmaps", "ns", {"a", "b"}), ("", "configmaps", "ns", {"a"})]
    assert not any(isinstance(e, dict) and e.get("type") == "DELETED" for e in events)
    assert watches.relists == 1 and watches.fresh.is_set()


def test_kopf_lists_again_after_a_429_it_gave_up_on(monkeypatch, real):
    settings, watches, reports = real
    busy = errors.APITooManyRequestsError({}, status=429, headers={})
    Server(monkeypatch, lists=[([obj("a", "1")], "5"), busy, ([obj("a", "1")], "9")], watches=[busy])
    run_kopf(settings, listings(2))
    assert [c[3] for c in reports.calls] == [{"a"}, {"a"}] and watches.relists == 1 and watches.fresh.is_set()


def test_kopf_lists_again_after_a_listing_that_failed(monkeypatch, real):
    settings, watches, reports = real
    gone = {"type": "ERROR", "object": {"code": 410}}
    Server(monkeypatch, lists=[([obj("a", "1")], "5"), aiohttp.ClientConnectionError("refused"), ([], "9")],
           watches=[[gone]])
    run_kopf(settings, listings(2))
    assert [c[3] for c in reports.calls] == [{"a"}, set()] and watches.relists == 1 and watches.fresh.is_set()


def test_a_watch_that_ends_resumes_from_its_resource_version_without_a_relist(monkeypatch, real):
    settings, watches, reports = real
    added = {"type": "ADDED", "object": obj("b", "7")}
    modified = {"type": "MODIFIED", "object": obj("b", "8")}
    server = Server(monkeypatch, lists=[([obj("a", "1")], "5")],
                    watches=[[], [added], aiohttp.ClientPayloadError("cut"), [modified]])  # ended, an event, cut
    events = run_kopf(settings, lambda events: modified in events)
    assert server.since == ["5", "5", "7", "7"]  # each new watch resumes where the last one was
    assert added in events and len(reports.calls) == 1 and watches.relists == 0 and watches.fresh.is_set()


def test_an_error_kopf_does_not_retry_ends_the_stream_and_nothing_waits_for_it(monkeypatch, real):
    settings, watches, reports = real
    Server(monkeypatch, lists=[([], "5")], watches=[[{"type": "ERROR", "object": {"code": 500}}]])
    with pytest.raises(watching.WatchingError):
        run_kopf(settings, lambda events: False)
    assert len(reports.calls) == 1 and watches.fresh.is_set() and watches.relisting() == []


# -------------------------------------------------------------- the shapes


# kopf 1.45.2's internals as kubento.controller.kopfadapter uses them.
KOPF_SHAPES = {
    "watching.continuous_watch": "async generator (*, settings, resource, namespace, operator_pause_waiter)",
    "watching.infinite_watch": "async generator (*, settings, resource, namespace, operator_paused=None, "
                               "_iterations=None)",
    "watching.infinite_watch calls": "APITooManyRequestsError, continuous_watch, streaming_block",
    "watching.Bookmark": "LISTED",
    "DiffBaseStorage abstract": "fetch, store",
    "DiffBaseStorage.build": "(self, *, body, extra_fields=None)",
    "DiffBaseStorage.fetch": "(self, *, body)",
    "DiffBaseStorage.store": "(self, *, body, patch, essence)",
    "PersistenceSettings.diffbase_storage": "DiffBaseStorage",
    "ToggleSet.__init__": "(self, fn)",
    "ToggleSet.make_toggle": "(self, _ToggleSet__val=False, *, name=None)",
    "ToggleSet.drop_toggle": "(self, toggle)",
    "ToggleSet.drop_toggles": "(self, toggles)",
    "ToggleSet.wait_for": "(self, _ToggleSet__state)",
    "Toggle.__init__": "(self, _Toggle__state=False, *, name=None, condition=None)",
}


def test_kopfs_internals_have_the_shapes_the_adapter_was_written_for():
    now = kopfadapter.shapes()
    changed = {k: (KOPF_SHAPES.get(k), now.get(k)) for k in KOPF_SHAPES.keys() | now.keys()
               if KOPF_SHAPES.get(k) != now.get(k)}
    assert not changed, (
        f"kopf {kopf.__version__ if hasattr(kopf, '__version__') else ''} changed internals that "
        "kubento.controller.kopfadapter relies on:\n"
        + "\n".join(f"  {k}:\n    was {was}\n    now {new}" for k, (was, new) in sorted(changed.items()))
        + "\nRead kopf's _cogs/clients/watching.py, _cogs/configs/diffbase.py and _cogs/aiokits/aiotoggles.py, adapt the adapter, run "
          "tests/integration/test_kopf_contract.py, then update KOPF_SHAPES.")
    assert kopfadapter.problems() == []
    NoDiffBase()  # still every abstract method


def test_install_refuses_a_kopf_it_cannot_wrap(monkeypatch):
    async def inlined(**_):  # an infinite_watch that no longer calls the module's continuous_watch
        yield watching.Bookmark.LISTED

    monkeypatch.setattr(watching, "infinite_watch", inlined)
    with pytest.raises(KopfChanged, match="infinite_watch no longer calls the module's continuous_watch"):
        install(Watches(), lambda *a: 0)
    monkeypatch.undo()

    async def renamed(*, settings, resource, ns, operator_pause_waiter):
        yield None

    monkeypatch.setattr(watching, "continuous_watch", renamed)
    assert kopfadapter.problems() == ["watching.continuous_watch takes no keyword namespace"]


# ------------------------------------------------------------ quiet toggles


def readiness_storm(n: int) -> tuple[int, int]:
    """kopf's indexing readiness as its watcher and workers use it: each of
    ``n`` objects' workers gets a toggle, drops it once indexed (a few loop
    turns later), then waits for the whole set; the last one turns it on.
    Returns (the set's is_on() evaluations, workers that proceeded)."""
    from kopf._cogs.aiokits import aiotoggles

    async def run() -> tuple[int, int]:
        ready = aiotoggles.ToggleSet(all)
        calls = [0]
        real_is_on = ready.is_on

        def counted() -> bool:
            calls[0] += 1
            return real_is_on()
        ready.is_on = counted  # the waiters' predicate calls it
        blocker = await ready.make_toggle(name="listing")
        done = []

        async def worker(toggle, turns):
            for _ in range(turns):
                await asyncio.sleep(0)
            await ready.drop_toggle(toggle)
            await ready.wait_for(True)
            done.append(toggle)
        tasks = []
        for i in range(n):
            tasks.append(asyncio.create_task(worker(await ready.make_toggle(name=str(i)), i % 50)))
            await asyncio.sleep(0)
        await ready.drop_toggle(blocker)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return calls[0], len(done)
    return asyncio.run(run())


def test_kopfs_readiness_wakes_its_waiters_once_not_once_per_object():
    kopfadapter.quiet_toggles()
    calls, done = readiness_storm(2000)
    assert done == 2000  # every worker proceeds once the set is on
    assert calls < 10 * 2000, calls  # kopf's own notify_all on every toggle: 2,002,300 here (7 CPU s)


def test_a_set_that_turns_on_or_off_still_wakes_its_waiters():
    from kopf._cogs.aiokits import aiotoggles

    kopfadapter.quiet_toggles()

    async def run():
        paused = aiotoggles.ToggleSet(any)  # kopf's operator_paused: any toggle on pauses
        flag = await paused.make_toggle(True, name="conflict")
        waiter = asyncio.create_task(paused.wait_for(False))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await paused.drop_toggle(flag)
        await asyncio.wait_for(waiter, 1)
        again = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0.01)
        await paused.make_toggle(True, name="another")
        await asyncio.wait_for(again, 1)
        ready = aiotoggles.ToggleSet(all)
        toggles = [await ready.make_toggle(name=str(i)) for i in range(3)]
        on = asyncio.create_task(ready.wait_for(True))
        await ready.drop_toggles(toggles[:2])
        await asyncio.sleep(0.01)
        assert not on.done()
        await toggles[2].turn_to(True)  # a toggle's own change still notifies (kopf's Toggle.turn_to)
        await asyncio.wait_for(on, 1)
    asyncio.run(run())
