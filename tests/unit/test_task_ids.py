"""Task ids that carry their owner (kubento.runtime.tasks): pure functions."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubento.runtime.tasks import Address, decode, encode, forward_refusal, task_call

ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
inner_ids = st.from_regex(r"[0-9A-Za-z_]{1,128}", fullmatch=True)


@given(ip=ips, port=st.integers(1, 65535), inner=inner_ids)
def test_an_id_gives_back_its_owner_and_bentomls_id(ip, port: int, inner: str) -> None:
    public = encode(Address(ip, port), inner)
    assert decode(public) == (Address(ip, port), inner)
    assert public.isascii() and " " not in public and "&" not in public  # as it is in a query string


@given(st.text(max_size=80))
def test_any_other_string_is_not_ours(text: str) -> None:
    if not text.startswith("kt1-"):
        assert decode(text) is None


@pytest.mark.parametrize("text", [
    "kt1-0a000001-0-abc",          # port 0
    "kt1-0a000001-70000-abc",      # no such port
    "kt1-0a0001-3000-abc",         # neither 4 nor 16 bytes
    "kt1-0a000001-3000-a-b",       # BentoML's ids have no dash
    "kt1-0a000001-3000-",          # no id
    "f" * 32,                      # BentoML's own
])
def test_malformed_ids_are_not_ours(text: str) -> None:
    assert decode(text) is None


def a(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return Address(ipaddress.ip_address(host.strip("[]")), int(port))


@pytest.mark.parametrize("own,owner,refused", [
    ("10.244.1.5:3000", "10.244.2.7:3000", None),
    ("10.244.1.5:3000", "192.168.0.9:3000", None),
    ("[fd00::5]:3000", "[fd00::9]:3000", None),
    ("127.0.0.1:3000", "127.0.0.2:3000", None),          # one machine: its peers too
    ("10.244.1.5:3000", "10.244.2.7:8080", "port"),      # the model's port only
    ("10.244.1.5:3000", "127.0.0.1:3000", "pod address"),
    ("10.244.1.5:3000", "169.254.169.254:3000", "pod address"),  # cloud metadata
    ("10.244.1.5:3000", "8.8.8.8:3000", "pod address"),
    ("10.244.1.5:3000", "0.0.0.0:3000", "pod address"),
    ("10.244.1.5:3000", "224.0.0.1:3000", "pod address"),
    ("10.244.1.5:3000", "[fd00::9]:3000", "family"),
    ("127.0.0.1:3000", "10.0.0.1:3000", "this machine"),
])
def test_only_a_peers_address_is_followed(own: str, owner: str, refused) -> None:
    why = forward_refusal(a(own), a(owner))
    assert (why is None) if refused is None else (why is not None and refused in why), why


@pytest.mark.parametrize("method,path,call", [
    ("POST", "/predict/submit", "submit"), ("GET", "/predict/status", "status"), ("GET", "/predict/get", "get"),
    ("PUT", "/predict/cancel", "cancel"), ("POST", "/predict/retry", "retry"), ("GET", "/v1/x/status/", "status"),
    ("POST", "/predict", None), ("GET", "/predict/submit", None), ("POST", "/predict/get", None),
    ("GET", "/status", None), ("GET", "/readyz", None), ("POST", "/submit", None),
])
def test_task_routes(method: str, path: str, call) -> None:
    assert task_call(method, path) == call
