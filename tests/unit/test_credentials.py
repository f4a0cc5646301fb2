"""The operator's credentials from a kubeconfig (kubento.controller.credentials):
what kubectl would use for the current context."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
import yaml

from kubento.controller import credentials
from kubento.controller.credentials import CredentialsError


def kubeconfig(tmp_path: Path, cluster: dict, user: dict, current: str = "c") -> Path:
    path = tmp_path / "conf" / "kubeconfig"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "k", "cluster": cluster}, {"name": "other", "cluster": {"server": "https://wrong"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}},
                     {"name": "d", "context": {"cluster": "other", "user": "u"}}],
    }))
    return path


def test_paths_are_relative_to_the_kubeconfig_and_the_token_is_a_bearer(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, {"server": "https://127.0.0.1:6443/", "certificate-authority": "pki/ca.crt"},
                      {"token": "abc"})
    c = credentials.from_kubeconfig(path)
    assert c.server == "https://127.0.0.1:6443"
    assert c.ca_file == str(tmp_path / "conf" / "pki" / "ca.crt")
    assert c.authorization() == "Bearer abc"
    assert credentials.from_kubeconfig(path, context="d").server == "https://wrong"


def test_inline_data_goes_to_files_only_this_user_reads(tmp_path: Path) -> None:
    enc = lambda b: base64.b64encode(b).decode()  # noqa: E731
    c = credentials.from_kubeconfig(kubeconfig(
        tmp_path, {"server": "https://h", "certificate-authority-data": enc(b"CA")},
        {"client-certificate-data": enc(b"CERT"), "client-key-data": enc(b"KEY")}))
    for file, data in ((c.ca_file, b"CA"), (c.cert_file, b"CERT"), (c.key_file, b"KEY")):
        assert Path(file).read_bytes() == data
        assert stat.S_IMODE(Path(file).stat().st_mode) == 0o600
    assert c.authorization() is None


def test_a_token_file_is_read_again_after_a_401(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "token").write_text("one\n")
    c = credentials.from_kubeconfig(kubeconfig(tmp_path, {"server": "https://h"}, {"tokenFile": "token"}))
    assert c.authorization() == "Bearer one"
    (tmp_path / "conf" / "token").write_text("two\n")
    assert c.authorization() == "Bearer one"  # not read on every request
    c.expire()
    assert c.authorization() == "Bearer two"


def test_basic_auth(tmp_path: Path) -> None:
    c = credentials.from_kubeconfig(kubeconfig(tmp_path, {"server": "http://h"}, {"username": "a", "password": "b"}))
    assert c.authorization() == "Basic " + base64.b64encode(b"a:b").decode()


def test_an_exec_plugin_gives_the_token_and_sees_the_request(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.sh"
    seen = tmp_path / "seen.json"
    plugin.write_text(f"#!/bin/sh\nprintf '%s' \"$KUBERNETES_EXEC_INFO\" > {seen}\n"
                      'echo \'{"kind":"ExecCredential","status":{"token":"from-plugin-\'$GREETING\'",'
                      '"expirationTimestamp":"2999-01-01T00:00:00Z"}}\'\n')
    plugin.chmod(0o755)
    c = credentials.from_kubeconfig(kubeconfig(tmp_path, {"server": "https://h"}, {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
        "env": [{"name": "GREETING", "value": "hi"}], "provideClusterInfo": True}}))
    assert c.authorization() == "Bearer from-plugin-hi"
    assert json.loads(seen.read_text())["spec"]["cluster"]["server"] == "https://h"


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="no kubeconfig at"):
        credentials.from_kubeconfig(tmp_path / "missing")
    with pytest.raises(CredentialsError, match="no context named 'nope'"):
        credentials.from_kubeconfig(kubeconfig(tmp_path, {"server": "https://h"}, {}, current="nope"))
    failing = tmp_path / "fail.sh"
    failing.write_text("#!/bin/sh\necho 'no login' >&2\nexit 1\n")
    failing.chmod(0o755)
    c = credentials.from_kubeconfig(kubeconfig(tmp_path, {"server": "https://h"}, {"exec": {"command": str(failing)}}))
    with pytest.raises(CredentialsError, match="failed: no login"):
        c.authorization()
