from pathlib import Path

import pytest

from kubento.api import crd

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("directory", ["crds", "charts/kubento/crds"])
def test_generated_crds_match_the_models(directory):
    for name, text in crd.render().items():
        path = ROOT / directory / name
        assert path.exists(), f"{path} missing: run `make crds`"
        assert path.read_text() == text, f"{path} is out of date: run `make crds`"


def _walk(node, path="spec"):
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def schema():
    return crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_schema_is_structural():
    for path, node in _walk(schema()):
        assert "$ref" not in node and "title" not in node, path
        assert "const" not in node, path  # CRDs ignore it
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), path
        else:
            # Only "any JSON" (a check's body, an expected value) may leave its type open.
            assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"


def test_every_spec_field_is_described_for_kubectl_explain():
    spec = schema()["properties"]["spec"]
    # Scalar list items and map values are described by their field.
    missing = [
        p for p, node in _walk(spec)
        if not node.get("description") and not (p.endswith(("[]", "{}")) and node.get("type") != "object")
    ]
    assert missing == []


def test_cross_field_rules_and_printer_columns_are_present():
    version = crd.crd()["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "exactly one of image, archive or build" in str(spec["properties"]["bento"]["x-kubernetes-validations"])
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Ready", "Phase", "Revision", "Stable", "Weight", "Requested", "Traffic", "Replicas", "Available", "URL", "Age",
    ]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert spec["properties"]["autoscaling"]["properties"]["metric"]["enum"] == ["cpu", "memory", "concurrency", "rps"]


def test_constraints_survive_validators_in_the_schema():
    """pydantic drops a field's constraints from its JSON schema when a
    validator follows them (the fuzzer found toleration keys unchecked)."""
    spec = schema()["properties"]["spec"]["properties"]
    key = spec["tolerations"]["items"]["properties"]["key"]
    assert key["pattern"] and key["allOf"] == [{"pattern": r"^([^/]{1,253}/)?[^/]*$"}] and key["maxLength"] == 317
    port = spec["podOverlay"]["properties"]["containers"]["items"]["properties"]["ports"]["items"]["properties"]["name"]
    assert port["maxLength"] == 15 and port["x-kubernetes-validations"]
    topology = spec["topologySpreadConstraints"]["items"]["properties"]["topologyKey"]
    assert topology["pattern"] and topology["allOf"]
