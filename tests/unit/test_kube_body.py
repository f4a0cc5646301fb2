"""The server-side apply body: JSON that a YAML decoder reads back unchanged,
whatever the strings in it (the fuzzer found annotations with characters
beyond U+FFFF, then C1 control characters, refused by the API server's YAML
decoder)."""

import json

import yaml
from hypothesis import given, strategies as st

from kubento.controller.kube import apply_body

strings = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)


@given(st.dictionaries(strings, strings, max_size=4))
def test_apply_body_is_json_and_yaml_of_the_same_object(annotations):
    manifest = {"metadata": {"name": "x", "annotations": annotations}}
    body = apply_body(manifest)
    assert json.loads(body) == manifest
    assert yaml.safe_load(body) == manifest


def test_apply_body_sends_astral_characters_raw_and_escapes_what_yaml_refuses():
    body = apply_body({"a": "\U0001f916 \x85\x9f\u2028"})
    assert "\U0001f916".encode() in body and b"\\ud83e" not in body
    assert b"\\u0085\\u009f\\u2028" in body


def test_a_refusal_reaches_status_bounded():
    from kubento.controller.kube import REJECTION_MAX, ApiError, rejection
    short = ApiError(422, "Unprocessable", json.dumps({"message": "denied by policy x"}).encode())
    assert rejection(short) == "denied by policy x"
    long = ApiError(403, "Forbidden", json.dumps({"message": "webhook says: " + "x" * 100_000 + " end"}).encode())
    text = rejection(long)
    assert len(text) <= REJECTION_MAX and text.startswith("webhook says: ") and text.endswith(" end")
    assert rejection(ApiError(502, "Bad Gateway", b"<html>proxy</html>")) == "<html>proxy</html>"


def test_the_cli_s_refusals_are_the_typed_client_s():
    from kubernetes.client.exceptions import ApiException
    from kubento.controller.kube import rejection
    refused = ApiException(status=422, reason="Unprocessable")
    refused.body = json.dumps({"message": "denied by policy x"})
    assert rejection(refused) == "denied by policy x"
