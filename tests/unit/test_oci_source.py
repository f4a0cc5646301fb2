"""bento.archive from an OCI registry (oci://): what the spec accepts, what the
fetching init container and the environment Job get (the model's pull
secrets and CA, one projected volume), the revision pinned to the digest the
environment Job resolved, and nothing changed for the other archives."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubento.api.v1alpha1 import ArchiveSource, ModelDeploymentSpec
from kubento.builders.bento import REGISTRY_DIR, archive_bento, pinned
from kubento.builders.deployment import deployment, pod_spec, revision, spec_snapshot
from kubento.builders.env_job import env_job, env_source
from kubento.builders.meta import Owner
from kubento.controller.environment import with_environment
from kubento.runtime import oci

OWNER = Owner(name="iris", namespace="ns", uid="uid-1")
DIGEST = "sha256:" + "ab" * 32
TAG_URI = "oci://registry.example.com:5000/ml/iris:v1"


def spec(archive: dict, **more) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({"bento": {"archive": archive}, **more})


@pytest.mark.parametrize("uri", [
    TAG_URI, f"oci://registry.example.com/ml/iris@{DIGEST}", f"{TAG_URI}@{DIGEST}", "oci://10.0.0.1:5000/a/b/c_d-e.f",
])
def test_oci_uris_are_accepted_and_parsed_alike(uri):
    assert ArchiveSource.model_validate({"uri": uri}).uri == uri
    ref = oci.parse(uri)
    assert ref.uri() == uri


@pytest.mark.parametrize("uri", ["oci://iris:v1", "oci://registry.example.com/ML/iris:v1", "oci://r.io/ml/iris@sha256:12",
                                 "oci://r.io/ml/iris:v 1"])
def test_malformed_oci_uris_are_refused(uri):
    with pytest.raises(ValidationError):
        ArchiveSource.model_validate({"uri": uri})


def test_oci_settings_apply_to_oci_only_and_secret_ref_not_to_oci():
    with pytest.raises(ValidationError, match="caBundle applies to oci"):
        ArchiveSource.model_validate({"uri": "s3://b/k.bento", "caBundle": {"configMap": "ca"}})
    with pytest.raises(ValidationError, match="plainHTTP applies to oci"):
        ArchiveSource.model_validate({"uri": "s3://b/k.bento", "plainHTTP": True})
    with pytest.raises(ValidationError, match="imagePullSecrets, not secretRef"):
        ArchiveSource.model_validate({"uri": TAG_URI, "secretRef": {"name": "s"}})


def test_the_fetch_gets_the_pull_secrets_and_the_ca_in_one_projected_volume():
    s = spec({"uri": TAG_URI, "caBundle": {"configMap": "registry-ca", "key": "root.pem"}},
             imagePullSecrets=[{"name": "regcred"}, {"name": "other"}])
    bento = archive_bento(s.bento.archive, "runtime:1", s.image_pull_secrets)
    pod = pod_spec(s, bento)
    [fetch] = pod["initContainers"]
    env = {e["name"]: e.get("value") for e in fetch["env"]}
    assert env["KUBENTO_ARCHIVE_URI"] == TAG_URI
    assert env["KUBENTO_OCI_AUTH_DIR"] == REGISTRY_DIR and env["KUBENTO_OCI_PULL_SECRETS"] == "regcred,other"
    assert env["KUBENTO_OCI_CA"] == f"{REGISTRY_DIR}/.ca/ca.crt" and "KUBENTO_OCI_PLAIN_HTTP" not in env
    assert {"name": "registry-auth", "mountPath": REGISTRY_DIR, "readOnly": True} in fetch["volumeMounts"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "registry-auth"]
    sources = volume["projected"]["sources"]
    assert sources[0] == {"secret": {"name": "regcred", "optional": True, "items": [
        {"key": ".dockerconfigjson", "path": "regcred/.dockerconfigjson"},
        {"key": ".dockercfg", "path": "regcred/.dockercfg"}]}}
    assert sources[2] == {"configMap": {"name": "registry-ca", "items": [{"key": "root.pem", "path": ".ca/ca.crt"}]}}
    # the model server itself sees neither
    assert all(m["name"] != "registry-auth" for m in pod["containers"][0].get("volumeMounts", []))
    assert "envFrom" not in fetch
    # the images are pulled with the same secrets
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other"}]

    # The environment Job fetches the archive in its plan step, with the pull secrets; no other step has them.
    job = env_job(bento, OWNER, None, None)
    pod = job["spec"]["template"]["spec"]
    steps = {c["name"]: c for c in pod["initContainers"] + pod["containers"]}
    assert {e["name"]: e.get("value") for e in steps["plan"]["env"]}["KUBENTO_OCI_PULL_SECRETS"] == "regcred,other"
    assert {"name": "registry-auth", "mountPath": REGISTRY_DIR, "readOnly": True} in steps["plan"]["volumeMounts"]
    assert [n for n, c in steps.items() if any(m["name"] == "registry-auth" for m in c.get("volumeMounts", []))] == ["plan"]
    assert any(v["name"] == "registry-auth" for v in pod["volumes"])


def test_plain_http_and_no_secrets():
    s = spec({"uri": TAG_URI, "plainHTTP": True})
    bento = archive_bento(s.bento.archive, "runtime:1", s.image_pull_secrets)
    pod = pod_spec(s, bento)
    env = {e["name"]: e.get("value") for e in pod["initContainers"][0]["env"]}
    assert env["KUBENTO_OCI_PLAIN_HTTP"] == "true" and env["KUBENTO_OCI_PULL_SECRETS"] == ""
    assert all(v["name"] != "registry-auth" for v in pod["volumes"])


def test_the_revision_runs_the_digest_the_environment_job_resolved():
    s = spec({"uri": TAG_URI}, imagePullSecrets=[{"name": "regcred"}])
    base = archive_bento(s.bento.archive, "runtime:1", s.image_pull_secrets)
    served = with_environment(base, {"packages": 0, "hash": "h", "archive": f"{TAG_URI}@{DIGEST}"})
    assert served.archive_uri == f"{TAG_URI}@{DIGEST}"
    assert revision(s, served) != revision(s, base)
    dep = deployment(s, OWNER, served, 1)
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["initContainers"][0]["env"]}
    assert env["KUBENTO_ARCHIVE_URI"] == f"{TAG_URI}@{DIGEST}"
    # `kubento rollback` restores the digest, not the tag
    assert spec_snapshot(s, served)["bento"]["archive"]["uri"] == f"{TAG_URI}@{DIGEST}"
    # the environment Job is named after what it prepares from: the tag, the secrets
    assert env_source(base, None) == env_source(archive_bento(s.bento.archive, "runtime:1", s.image_pull_secrets), None)
    other = spec({"uri": TAG_URI}, imagePullSecrets=[{"name": "another"}])
    assert env_source(archive_bento(other.bento.archive, "runtime:1", other.image_pull_secrets), None) != \
        env_source(base, None)


def test_other_archives_are_unchanged():
    s = spec({"uri": "s3://models/iris.bento", "secretRef": {"name": "store"}}, imagePullSecrets=[{"name": "regcred"}])
    bento = archive_bento(s.bento.archive, "runtime:1", s.image_pull_secrets)
    assert bento.pull_secrets == () and bento.secret == "store"
    assert pinned(bento, f"{TAG_URI}@{DIGEST}") is bento
    assert with_environment(bento, {"packages": 0, "archive": f"{TAG_URI}@{DIGEST}"}).archive_uri == "s3://models/iris.bento"
    pod = pod_spec(s, bento)
    assert all(not e["name"].startswith("KUBENTO_OCI") for e in pod["initContainers"][0]["env"])
    # the environment Job's name (its source hash) is what it was before oci:// existed
    from kubento.builders.meta import digest

    assert env_source(bento, None) == digest({"archive": bento.archive_uri, "sha256": None, "image": "runtime:1",
                                              "index": None, "secret": "store"}, 16)
