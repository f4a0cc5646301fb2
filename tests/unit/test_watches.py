"""kopf's watch stream as kubento sees it: each complete listing is
reported, and a stream that ended is stale until it has listed again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from kopf._cogs.clients import errors, watching

from kubento.controller.watches import Watches, install

RESOURCE = SimpleNamespace(group="apps", plural="deployments")


def listed_event(uid: str) -> dict:
    return {"type": None, "object": {"metadata": {"uid": uid}}}


@pytest.fixture
def wrapped(monkeypatch):
    """kopf's continuous_watch replaced by one playing ``script``, then wrapped."""
    script: list = []

    async def fake(**_):
        for item in script.pop(0):
            if isinstance(item, BaseException):
                raise item
            yield item

    monkeypatch.setattr(watching, "continuous_watch", fake)
    watches, reports = Watches(), []

    def on_listed(group, plural, ns, uids):
        assert not watches.fresh.is_set()  # the cache drops what is gone before any pass may run
        reports.append((group, plural, ns, uids))
        return 0

    install(watches, on_listed)
    return script, watches, reports


def drain(namespace=None):
    async def run():
        out = []
        async for event in watching.continuous_watch(resource=RESOURCE, namespace=namespace):
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
